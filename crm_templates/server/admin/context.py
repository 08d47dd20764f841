"""What every admin view shares: the operator acting, the audit record of an action, and the
page frame (title, breadcrumbs, navigation) of ``admin/base.html``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from flask import render_template, url_for

from ... import audit
from ...storage.audit import AuditRecord
from ..builtin_pages import asset_urls
from ..customers import current_operator_id
from ..state import state

audit_log = logging.getLogger("crm_templates.audit")

# The admin's navigation bar: (label, endpoint). Views of later concerns add theirs here.
NAVIGATION: list[tuple[str, str]] = [("Dashboard", "crm_admin.dashboard")]


def operator_id() -> str:
    """The id of the operator acting in this request: an account's id (``op_…``), or
    ``"operator"`` for the bootstrap account of ``CRM_OPERATOR_PASSWORD``. Only meaningful
    inside the admin, behind its guard (RuntimeError outside an operator session)."""
    operator = current_operator_id()
    if operator is None:
        raise RuntimeError("operator_id() outside an operator session")
    return operator


def record_action(
    action: str,
    *,
    entry_id: str | None = None,
    entity: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Record an admin action (``"value.edit"``, ``"entry.stage"``, ``"entity.update"``…) with
    the operator's id in the store's audit trail (`crm_templates.audit`; issue 12, item 1),
    readable per entry (`audit_for_entry`, the ``admin/_audit.html`` partial) and at
    ``/admin/audit``; also a line in the ``crm_templates.audit`` log. Call it after the write
    succeeded. `CrmValidationError` for an action that is not a lower-case dotted name or
    details that are not a small JSON-able mapping."""
    record = audit.record(
        state().crm.store,
        operator_id(),
        action,
        entry_id=entry_id,
        entity=entity,
        details=details,
    )
    audit_log.info(
        "%s by %s%s%s %s",
        action,
        record.operator_id,
        f" entry={entry_id}" if entry_id else "",
        f" entity={entity}" if entity else "",
        record.details,
    )
    return record


def render_admin(
    template: str,
    /,
    *,
    title: str,
    breadcrumbs: Sequence[tuple[str, str | None]] = (),
    status: int = 200,
    **context: Any,
) -> tuple[str, int]:
    """Render an admin page: ``title`` (the ``<h1>`` and the ``<title>``), ``breadcrumbs`` as
    ``(label, url or None)`` after "Admin", and the template's own ``context``."""
    navigation = [(label, url_for(endpoint)) for label, endpoint in NAVIGATION]
    body = render_template(
        template,
        title=title,
        breadcrumbs=[("Admin", url_for("crm_admin.dashboard")), *breadcrumbs],
        navigation=navigation,
        admin_stylesheet=url_for("crm_admin.static", filename="admin.css"),
        **asset_urls(),
        **context,
    )
    return body, status
