"""Operator sign-in (``/operator``): the gate for previews and the admin (``/admin``).

Operators are the accounts kept in the store (``crm-templates operator add EMAIL``; issue 12),
signing in with their email and password, and the bootstrap account of
``CRM_OPERATOR_PASSWORD`` or, better, a werkzeug hash in ``CRM_OPERATOR_PASSWORD_HASH``
(id ``"operator"``), signing in with the password alone (the email left empty). With neither
an account nor a bootstrap password, operator features are off and every operator URL answers
403 saying how to turn them on.

Failed attempts are counted per client IP in the store (all processes share the count); a
successful sign-in does not count and clears the IP's failures. Sign-out revokes the operator
session in the store; ``POST /operator/sign-out-everywhere`` ends every session of the
signed-in operator. Sign-in and sign-out are recorded in the audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash

from .. import audit
from ..operators import BOOTSTRAP_ID, authenticate, generation_key
from . import sessions
from .admin_theme import sign_in_context
from .customers import attach_operator, current_operator_id, detach_operator, forget_operator
from .security import is_same_site_url
from .state import state

bp = Blueprint("crm_operator", __name__, url_prefix="/operator")
F = TypeVar("F", bound=Callable[..., Any])
DISABLED = (
    "Operator features are disabled: add an operator account (crm-templates operator add EMAIL "
    "--site SITE_DIR), or set CRM_OPERATOR_PASSWORD (or CRM_OPERATOR_PASSWORD_HASH, a werkzeug "
    "password hash) and restart the server."
)
ADMIN_STATIC = Path(__file__).resolve().parent / "admin" / "static"
LANDING = "/admin/"  # where a sign-in without a `next` goes


def bootstrap_enabled() -> bool:
    """True when the bootstrap password (``CRM_OPERATOR_PASSWORD``/``_HASH``) is configured."""
    config = current_app.config
    return bool(config.get("CRM_OPERATOR_PASSWORD_HASH") or config.get("CRM_OPERATOR_PASSWORD"))


def operator_enabled() -> bool:
    """True when the bootstrap password is configured or the store holds an operator account.

    The settings are read first; only without a bootstrap password does it ask the store (one
    ``SELECT 1 … LIMIT 1`` / one ``_count``), once per request. Only operator URLs and
    previews call it, never an ordinary page view.
    """
    if bootstrap_enabled():
        return True
    if "crm_operators_exist" not in g:
        g.crm_operators_exist = state().crm.store.has_operators()
    return bool(g.crm_operators_exist)


def check_password(given: str) -> bool:
    """Compare ``given`` with the configured bootstrap password in constant time (False when
    there is none)."""
    config = current_app.config
    hashed = config.get("CRM_OPERATOR_PASSWORD_HASH")
    if hashed:
        return check_password_hash(hashed, given)
    plain = config.get("CRM_OPERATOR_PASSWORD") or ""
    # Digests first, so the comparison takes the same time whatever the lengths.
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(plain.encode()).digest()
    )


def operator_required(view: F) -> F:
    """Views for operators only: 403 when disabled, else the sign-in page."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not operator_enabled():
            abort(403, DISABLED)
        if current_operator_id() is None:
            wanted = request.full_path if request.args else request.path
            return redirect(url_for("crm_operator.sign_in", next=wanted))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _sign_in_form(next_url: str, error: str | None, email: str = "", status: int = 200) -> Any:
    body = render_template(
        "crm/operator_sign_in.html",
        next=next_url,
        error=error,
        email=email,
        bootstrap=bootstrap_enabled(),
        **sign_in_context(),
    )
    return Response(body, status=status)


@bp.get("/theme.css")
def theme() -> ResponseReturnValue:
    """The admin theme (``admin/static/admin.css``) for the pages outside the admin's gate that
    wear it: this sign-in page and the error pages of visitors who are not operators
    (`admin_theme`). The same file as ``/admin/static/admin.css``; only a stylesheet."""
    return send_from_directory(ADMIN_STATIC, "admin.css", mimetype="text/css")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    """The operator sign-in form: email and password of an account, or the bootstrap password
    alone (email left empty)."""
    if not operator_enabled():
        abort(403, DISABLED)
    next_url = request.values.get("next") or LANDING
    if not is_same_site_url(next_url):
        next_url = LANDING
    if request.method == "GET":
        return _sign_in_form(next_url, None)
    attempts = state().operator_attempts
    ip = request.remote_addr or "unknown"
    # Checked before the password, recorded only on failure: a right password never counts.
    if attempts.exceeded(ip):
        abort(429, "Too many operator sign-in attempts. Please wait a few minutes.")
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    store = state().crm.store
    operator_id: str | None = None
    secret: str | None = None
    if email:
        account = authenticate(store, email, password)
        if account is not None:
            operator_id, secret = account.id, account.password_hash
        error = "That email and password are not right."
    else:
        if bootstrap_enabled() and check_password(password):
            operator_id = BOOTSTRAP_ID
        error = (
            "That password is not right."
            if bootstrap_enabled()
            else "Enter your operator email and password."
        )
    if operator_id is None:
        attempts.hit(ip)
        return _sign_in_form(next_url, error, email=email[:320], status=403)
    attempts.clear(ip)
    attach_operator(operator_id, secret)
    audit.record(store, operator_id, "operator.sign_in", details={"ip": ip})
    return redirect(next_url, code=303)


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> ResponseReturnValue:
    """End the operator session, server-side too (the visitor's own customer stays)."""
    operator_id = current_operator_id()
    if operator_id is not None:
        audit.record(state().crm.store, operator_id, "operator.sign_out")
    detach_operator()
    return redirect("/", code=303)


@bp.route("/sign-out-everywhere", methods=["POST"])
@operator_required
def sign_out_everywhere() -> ResponseReturnValue:
    """End every session of the signed-in operator (the bootstrap account's, or one
    account's), in every browser and process."""
    operator_id = current_operator_id()
    assert operator_id is not None  # operator_required
    sessions.bump(generation_key(operator_id))
    audit.record(state().crm.store, operator_id, "operator.sign_out_everywhere")
    forget_operator()
    return redirect("/", code=303)


@bp.route("/")
@operator_required
def index() -> ResponseReturnValue:
    """The customers list moved to the admin (issue 12): ``/admin/customers``."""
    return redirect(url_for("crm_admin.customers"), code=302)
