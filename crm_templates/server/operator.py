"""Operator sign-in (``/operator``): the gate for previews (and the admin views).

The password comes from ``CRM_OPERATOR_PASSWORD`` or, better, a werkzeug hash in
``CRM_OPERATOR_PASSWORD_HASH``. With neither set, operator features are off and every
operator URL answers 403 saying how to turn them on.

Failed attempts are counted per client IP in the store (all processes share the count); a
successful sign-in does not count and clears the IP's failures. Sign-out revokes the operator
session in the store; ``POST /operator/sign-out-everywhere`` ends every operator session.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash

from . import sessions
from .builtin_pages import asset_urls
from .customers import attach_operator, detach_operator, forget_operator, is_operator
from .security import is_same_site_url
from .state import state

bp = Blueprint("crm_operator", __name__, url_prefix="/operator")
F = TypeVar("F", bound=Callable[..., Any])
DISABLED = (
    "Operator features are disabled: set CRM_OPERATOR_PASSWORD (or CRM_OPERATOR_PASSWORD_HASH, "
    "a werkzeug password hash) and restart the server."
)


def operator_enabled() -> bool:
    """True when an operator password is configured."""
    config = current_app.config
    return bool(config.get("CRM_OPERATOR_PASSWORD_HASH") or config.get("CRM_OPERATOR_PASSWORD"))


def check_password(given: str) -> bool:
    """Compare ``given`` with the configured password in constant time."""
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
        if not is_operator():
            wanted = request.full_path if request.args else request.path
            return redirect(url_for("crm_operator.sign_in", next=wanted))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    """The operator password form."""
    if not operator_enabled():
        abort(403, DISABLED)
    next_url = request.values.get("next") or "/operator/"
    if not is_same_site_url(next_url):
        next_url = "/operator/"
    if request.method == "GET":
        return render_template(
            "crm/operator_sign_in.html", next=next_url, error=None, **asset_urls()
        )
    attempts = state().operator_attempts
    ip = request.remote_addr or "unknown"
    # Checked before the password, recorded only on failure: a right password never counts.
    if attempts.exceeded(ip):
        abort(429, "Too many operator sign-in attempts. Please wait a few minutes.")
    if not check_password(request.form.get("password", "")):
        attempts.hit(ip)
        body = render_template(
            "crm/operator_sign_in.html",
            next=next_url,
            error="That password is not right.",
            **asset_urls(),
        )
        return Response(body, status=403)
    attempts.clear(ip)
    attach_operator()
    return redirect(next_url, code=303)


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> ResponseReturnValue:
    """End the operator session, server-side too (the visitor's own customer stays)."""
    detach_operator()
    return redirect("/", code=303)


@bp.route("/sign-out-everywhere", methods=["POST"])
@operator_required
def sign_out_everywhere() -> ResponseReturnValue:
    """End every operator session, in every browser and process."""
    sessions.bump(sessions.OPERATOR_GENERATION)
    forget_operator()
    return redirect("/", code=303)


@bp.route("/")
@operator_required
def index() -> str:
    """Recent customers, each with a link to preview the site as them."""
    customers = state().crm.store.list_customers(limit=100)
    return render_template("crm/operator.html", customers=customers, **asset_urls())
