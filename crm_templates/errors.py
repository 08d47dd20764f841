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
    """A concurrent writer won every optimistic-concurrency retry."""


class DuplicateError(StoreError):
    """A unique key (entity slug, customer email, id) already exists."""


class BadRequestError(StoreError):
    """The backend rejected a request as malformed (a bug or an incompatible server)."""
