"""The admin theme outside the admin's views (issue 12, item 8): the operator sign-in page and
the error pages answered under ``/admin`` and ``/operator`` share ``admin/base.html`` and
``admin.css`` with the admin's views.

The site's customer-facing error pages keep the site's look (`builtin_pages.render_builtin`);
these pages are the server's own, rendered by Flask from the package only (a site cannot
override or restyle them). Autoescaped like every Flask template.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import render_template, request, url_for

log = logging.getLogger("crm_templates.server")

#: URL prefixes whose error pages are in the admin theme.
PREFIXES = ("/admin", "/operator")

#: A heading per status; the message says what happened in this request.
TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Changed meanwhile",
    413: "Too large",
    415: "Unsupported request",
    422: "Not accepted",
    429: "Too many requests",
    500: "Server error",
}


def is_admin_path(path: str | None = None) -> bool:
    """True for ``/admin``, ``/admin/…``, ``/operator``, ``/operator/…`` (this request's path
    when ``path`` is None)."""
    path = request.path if path is None else path
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PREFIXES)


def navigation() -> list[tuple[str, str]]:
    """The admin's navigation bar for a signed-in operator, else ``[]`` (no bar, no sign-out:
    a customer refused at the gate or a visitor on the sign-in page sees neither)."""
    from .admin.context import NAVIGATION
    from .customers import current_operator_id

    if current_operator_id() is None:
        return []
    return [(label, url_for(endpoint)) for label, endpoint in NAVIGATION]


def render_admin_error(status: int, message: str, details: str | None = None) -> str | None:
    """The HTML of an error page in the admin theme (``admin/error.html``), or None when it
    cannot be rendered (logged; the caller falls back to the server's plain error page)."""
    try:
        return render_template(
            "admin/error.html",
            title=TITLES.get(status, "Error"),
            status=status,
            message=message,
            details=details,
            navigation=navigation(),
            breadcrumbs=[],
        )
    except Exception:
        log.exception("the admin's error page %s failed; shown in the server's own look", status)
        return None


def sign_in_context() -> dict[str, Any]:
    """What ``crm/operator_sign_in.html`` (extending ``admin/base.html``) needs of the frame."""
    return {"title": "Operator sign-in", "navigation": [], "breadcrumbs": []}
