"""The operator admin (issue 12, SPEC §8): ``/admin/…``, server-rendered, one theme.

Every URL under ``/admin`` is for operators only. The guard runs before each view:

- operator features off (no ``CRM_OPERATOR_PASSWORD``/``..._HASH`` and no operator account
  in the store): 403 saying how to turn them on;
- no operator session: a redirect (302) to ``/operator/sign-in?next=<the admin URL>``;
- a signed-in customer without an operator session: 403 (a customer never sees the admin).

Views live in one module per concern (``dashboard``, ``customers``, ``entities``, ``entries``,
``boards``, ``reports``, ``playground``), each adding routes to `bp`; the templates extend
``admin/base.html`` (navigation, breadcrumbs, the admin theme ``admin.css``).
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, request, url_for
from flask.typing import ResponseReturnValue

from ..customers import is_operator, is_signed_in
from ..operator import DISABLED, operator_enabled

bp = Blueprint(
    "crm_admin",
    __name__,
    url_prefix="/admin",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@bp.before_request
def operators_only() -> ResponseReturnValue | None:
    """The admin's one gate (see the module docstring)."""
    if not operator_enabled():
        abort(403, DISABLED)
    if is_operator():
        return None
    if is_signed_in():
        abort(403, "The admin is for operators. Sign in as an operator at /operator/sign-in.")
    wanted = request.full_path if request.args else request.path
    return redirect(url_for("crm_operator.sign_in", next=wanted))


# The views register their routes on `bp` when imported (one module per concern).
from . import (  # noqa: E402,F401
    acting,
    api_keys,
    audit,
    boards,
    customers,
    dashboard,
    entities,
    entries,
    entry_edits,
    playground,
    reports,
    transfer,
    webhooks,
)
