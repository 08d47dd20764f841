"""The audit trail (issue 12, item 1): every admin action, with who did it, kept in the store.

`record` appends an `AuditRecord` (never updated, never deleted); `records` reads them newest
first, all of them or one entry's or one operator's, a page at a time by keyset (`Cursor`:
the ``(at, id)`` of the last record shown, written as an opaque token for URLs).

Actions are short dotted names: ``"operator.sign_in"``, ``"operator.sign_out"``,
``"operator.add"``, ``"operator.remove"``, ``"operator.password"``,
``"customer.sign_out_everywhere"``, and whatever the admin's views record (``"value.edit"``,
``"entry.stage"``, ``"entity.update"``…). The operator id is an account's id (``op_…``),
``"operator"`` for the bootstrap account, or ``"cli"`` for a change made with
``crm-templates operator``.

This is the core: no Flask, no Jinja2 (SPEC §2).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import CrmValidationError
from .ids import new_id, utc_now
from .storage.audit import AuditRecord
from .storage.base import Store

ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
MAX_ACTION = 100
MAX_ID = 200
#: The largest ``details`` object kept, as compact JSON (characters).
MAX_DETAILS = 16_384
#: Page sizes are whole numbers from 1 to this.
MAX_LIMIT = 500
ID_PREFIX = "aud_"
CLI_OPERATOR = "cli"

Cursor = tuple[str, str]


def _check_text(value: Any, name: str, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise CrmValidationError(f"audit {name} must be text of 1 to {MAX_ID} characters")
    return value


def check_limit(limit: Any) -> int:
    """``limit`` if it is a whole number from 1 to `MAX_LIMIT`, else `CrmValidationError`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise CrmValidationError(f"an audit page holds 1 to {MAX_LIMIT} records; got {limit!r}")
    return limit


def _details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise CrmValidationError("audit details must be a mapping")
    # Round-trip through JSON: what is stored is exactly what is read back (dates, sets and
    # other objects as their str()).
    text = json.dumps(dict(details), default=str, ensure_ascii=False, separators=(",", ":"))
    if len(text) > MAX_DETAILS:
        raise CrmValidationError(
            f"audit details hold at most {MAX_DETAILS} characters of JSON; got {len(text)}"
        )
    loaded = json.loads(text)
    assert isinstance(loaded, dict)
    return loaded


def record(
    store: Store,
    operator_id: str,
    action: str,
    *,
    entry_id: str | None = None,
    entity: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Append one record and return it. `CrmValidationError` for an ``action`` that is not a
    lower-case dotted name of at most `MAX_ACTION` characters, ids that are not short text, or
    ``details`` that are not a mapping of at most `MAX_DETAILS` characters as JSON."""
    if not isinstance(action, str) or len(action) > MAX_ACTION or not ACTION_RE.match(action):
        raise CrmValidationError(
            f"an audit action is a lower-case dotted name like 'value.edit'; got {action!r}"
        )
    entry = AuditRecord(
        id=new_id(ID_PREFIX),
        at=utc_now(),
        operator_id=str(_check_text(operator_id, "operator id", optional=False)),
        action=action,
        entry_id=_check_text(entry_id, "entry id", optional=True),
        entity=_check_text(entity, "entity", optional=True),
        details=_details(details),
    )
    store.add_audit_record(entry)
    return entry


def records(
    store: Store,
    *,
    entry_id: str | None = None,
    operator_id: str | None = None,
    before: Cursor | None = None,
    limit: int = 50,
) -> tuple[list[AuditRecord], Cursor | None]:
    """One page of records, newest first, matching every given filter, older than
    ``before``; and the cursor of the next page (None on the last page)."""
    limit = check_limit(limit)
    found = store.list_audit_records(
        entry_id=entry_id, operator_id=operator_id, before=before, limit=limit + 1
    )
    if len(found) > limit:
        return found[:limit], found[limit - 1].cursor
    return found, None


def for_entry(store: Store, entry_id: str, limit: int = 50) -> list[AuditRecord]:
    """The newest ``limit`` actions on one entry, newest first."""
    return store.list_audit_records(entry_id=entry_id, limit=check_limit(limit))


def encode_cursor(cursor: Cursor) -> str:
    """``cursor`` as a URL-safe token."""
    raw = json.dumps(list(cursor), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor:
    """The cursor a token of `encode_cursor` holds; `CrmValidationError` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(part, str) and 0 < len(part) <= MAX_ID for part in value)
    ):
        raise CrmValidationError("not a page token of the audit trail; start from the first page")
    return value[0], value[1]


__all__ = [
    "CLI_OPERATOR",
    "AuditRecord",
    "Cursor",
    "decode_cursor",
    "encode_cursor",
    "for_entry",
    "record",
    "records",
]
