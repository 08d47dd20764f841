"""The core's exception tree: one root (`CrmError`), translated from backend errors in one place.

Two families matter to page authors:

* `CrmUsageError` (also a `TypeError`): the call itself is wrong — a missing required option, an
  unknown option, an unknown entity slug or field key. The message names what is accepted.
* `CrmValidationError` (also a `ValueError`): a value is invalid for its field. Nothing is written.

`PreviewError` (also a `PermissionError`) is raised by a read-only view's non-function writes
(``update_entry``, ``create_customer``, any writing `Store` method); nothing is written.

Storage failures derive from `StoreError`; backends raise them ``from`` the client's exception.
"""

from __future__ import annotations

from typing import Any


class CrmError(Exception):
    """Root of every error the core raises."""


class CrmUsageError(CrmError, TypeError):
    """A CRM function was called wrongly (missing/unknown option, unknown slug or key)."""


class MissingOptionError(CrmUsageError):
    """A required option was not given."""


class UnknownOptionError(CrmUsageError):
    """An option name is not accepted by the function (usually a typo)."""


class UnknownFunctionError(CrmUsageError):
    """No CRM function has the given name (the message suggests the nearest)."""


class UnknownEntityError(CrmUsageError):
    """No entity has the given slug."""


class UnknownFieldError(CrmUsageError):
    """The entity declares no field with the given key."""


class CrmValidationError(CrmError, ValueError):
    """A value or option is invalid; nothing was written."""


class SchemaFileError(CrmValidationError):
    """A schema file (``crm.yaml``) or seed file (``seed.yaml``) is wrong: bad YAML or JSON, a
    key the file's JSON Schema does not allow, or a value the CRM refuses (issue 11, item 4).

    ``file``, ``line`` and ``column`` (both 1-based) locate the first problem, ``path`` names it
    in the document (``entities[0].fields[2].type``; ``""`` for the whole document) and
    ``message`` says what is expected. ``problems`` holds every problem found, the first
    included, as ``(file, line, column, path, message)`` tuples; ``str()`` prints one
    ``file:line:column: path: message`` line per problem.
    """

    def __init__(
        self,
        file: str,
        line: int,
        column: int,
        path: str,
        message: str,
        problems: tuple[tuple[str, int, int, str, str], ...] = (),
    ) -> None:
        self.file, self.line, self.column, self.path, self.message = (
            file, line, column, path, message,
        )  # fmt: skip
        self.problems = problems or ((file, line, column, path, message),)
        lines = [_problem_line(*p) for p in self.problems[:MAX_SHOWN_PROBLEMS]]
        if len(self.problems) > MAX_SHOWN_PROBLEMS:
            lines.append(f"... and {len(self.problems) - MAX_SHOWN_PROBLEMS} more problem(s)")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.file, self.line, self.column, self.path, self.message, self.problems),
        )


#: How many problems `SchemaFileError`'s message lists (all stay in ``problems``).
MAX_SHOWN_PROBLEMS = 20


def _problem_line(file: str, line: int, column: int, path: str, message: str) -> str:
    return f"{file}:{line}:{column}: {path or 'top level'}: {message}"


class EntryNotFoundError(CrmValidationError):
    """An entry id given in the options does not exist (or belongs to another entity)."""


class PreviewError(CrmError, PermissionError):
    """A write was refused because the service view is read-only (an operator preview or
    ``crm-templates render``; issue 8). Nothing was written."""


class StoreError(CrmError):
    """A storage backend failed."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached; retrying later may help."""


class ConflictError(StoreError):
    """A concurrent writer changed the document first. A store's compare-and-set raises it;
    the service retries and raises it only when the store's ``conflict_deadline`` (default
    10 s; `crm_templates.conflicts`) passed without a win."""


class StaleEntryError(CrmError):
    """The entry changed since the caller read it (its version moved on); nothing was written.
    Raised for an ``expected_version`` that no longer holds (the admin's edits, issue 12) and
    never retried: the caller decides (the admin answers 409)."""


class DuplicateError(StoreError):
    """A unique key (entity slug, customer email, id) already exists."""


class BadRequestError(StoreError):
    """The backend rejected a request as malformed (a bug or an incompatible server)."""
