"""What every admin view shares: the operator acting, the audit record of an action, and the
page frame (title, breadcrumbs, navigation) of ``admin/base.html``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from flask import render_template, url_for

from ..builtin_pages import asset_urls
from ..customers import is_operator

audit_log = logging.getLogger("crm_templates.audit")

# The admin's navigation bar: (label, endpoint). Views of later concerns add theirs here.
NAVIGATION: list[tuple[str, str]] = [("Dashboard", "crm_admin.dashboard")]


def operator_id() -> str:
    """The id of the operator acting in this request (``"operator"``: the bootstrap account of
    ``CRM_OPERATOR_PASSWORD``). Only meaningful inside the admin, behind its guard."""
    if not is_operator():
        raise RuntimeError("operator_id() outside an operator session")
    return "operator"


def record_action(
    action: str,
    *,
    entry_id: str | None = None,
    entity: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record an admin action (``"value.edit"``, ``"entry.stage"``, ``"entity.update"``…) with
    the operator's id, in the ``crm_templates.audit`` log (issue 12, item 1)."""
    audit_log.info(
        "%s by %s%s%s %s",
        action,
        operator_id(),
        f" entry={entry_id}" if entry_id else "",
        f" entity={entity}" if entity else "",
        dict(details or {}),
    )


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
