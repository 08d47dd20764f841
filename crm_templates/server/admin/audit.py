"""``/admin/audit``: the audit trail (issue 12, item 1), and its per-entry partial.

- ``GET /admin/audit?entry=ID&operator=ID&before=TOKEN`` — every recorded action, newest
  first, `PAGE` per page by keyset (``before`` is the opaque token of the "Older" link, 400
  when it is not one), filtered by entry and/or operator.
- ``admin/_audit.html`` — a template partial listing one entry's actions: include it in a page
  rendered with ``audit_records=audit_for_entry(entry_id)`` and ``audit_entry_id=entry_id``
  (`audit_context` gives both).

Operators are shown by email (accounts), "Site operator password" (the bootstrap account
``operator``) or "Command line" (``cli``); the id is kept in the record.
"""

from __future__ import annotations

from typing import Any

from flask import abort, g, request, url_for
from flask.typing import ResponseReturnValue

from ... import audit
from ...errors import CrmValidationError
from ...operators import BOOTSTRAP_ID
from ...storage.audit import AuditRecord
from ..state import state
from . import bp
from .context import NAVIGATION, render_admin

PAGE = 50
NAVIGATION.append(("Audit trail", "crm_admin.audit"))
FIXED_LABELS = {BOOTSTRAP_ID: "Site operator password", audit.CLI_OPERATOR: "Command line"}


def audit_for_entry(entry_id: str, limit: int = 50) -> list[AuditRecord]:
    """The newest ``limit`` (1 to 500) recorded actions on one entry, newest first."""
    return audit.for_entry(state().crm.store, entry_id, limit)


def audit_context(entry_id: str, limit: int = 50) -> dict[str, Any]:
    """The variables ``admin/_audit.html`` reads, for ``render_admin(..., **audit_context(id))``."""
    return {"audit_records": audit_for_entry(entry_id, limit), "audit_entry_id": entry_id}


def operator_labels() -> dict[str, str]:
    """Operator id → what to show for it (emails of the accounts; once per request)."""
    if "crm_operator_labels" not in g:
        labels = dict(FIXED_LABELS)
        labels.update({a.id: a.email for a in state().crm.store.list_operators()})
        g.crm_operator_labels = labels
    labels = g.crm_operator_labels
    assert isinstance(labels, dict)
    return labels


@bp.context_processor
def audit_helpers() -> dict[str, Any]:
    """``operator_label(id)`` for the admin's templates (the audit partial uses it)."""

    def operator_label(operator_id: str) -> str:
        return operator_labels().get(operator_id, operator_id)

    return {"operator_label": operator_label}


def _filter(name: str) -> str | None:
    value = request.args.get(name, "").strip()
    if len(value) > audit.MAX_ID:
        abort(400, f"{name} is at most {audit.MAX_ID} characters.")
    return value or None


@bp.get("/audit", endpoint="audit")
def audit_trail() -> ResponseReturnValue:
    """Every recorded action, newest first, filterable by entry and operator."""
    entry_id, operator_id = _filter("entry"), _filter("operator")
    token = request.args.get("before")
    try:
        before = audit.decode_cursor(token) if token else None
    except CrmValidationError as exc:
        abort(400, str(exc))
    records, cursor = audit.records(
        state().crm.store, entry_id=entry_id, operator_id=operator_id, before=before, limit=PAGE
    )
    given = (("entry", entry_id), ("operator", operator_id))
    filters: dict[str, Any] = {name: value for name, value in given if value}
    older = (
        url_for("crm_admin.audit", before=audit.encode_cursor(cursor), **filters)
        if cursor
        else None
    )
    return render_admin(
        "admin/audit.html",
        title="Audit trail",
        records=records,
        entry_id=entry_id or "",
        operator_id=operator_id or "",
        operators=sorted(operator_labels().items(), key=lambda item: item[1]),
        older_url=older,
        newest_url=url_for("crm_admin.audit", **filters) if before else None,
    )
