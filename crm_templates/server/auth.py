"""Email magic-link sign-in for visitors (``/auth``).

1. ``POST /auth/sign-in`` (email): rate-limited per address and per client IP; mails a link
   holding a token signed with the app's secret key (itsdangerous), valid for
   ``CRM_SIGN_IN_MAX_AGE`` seconds. The answer is the same whether or not the address is known.
2. ``GET /auth/verify?token=…``: checks signature and age, refuses a token whose nonce was
   already used (single use), finds or creates the customer with that email, moves the
   anonymous visitor's entries of *this* session onto them, and redirects.
3. ``POST /auth/sign-out`` (CSRF-protected) forgets the session's customer.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request
from flask.typing import ResponseReturnValue
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from ..errors import CrmValidationError, DuplicateError
from ..model import Customer
from .customers import attach_customer, current_customer, detach_customer
from .security import is_same_site_url
from .state import MailMessage, state

bp = Blueprint("crm_auth", __name__, url_prefix="/auth")
_SALT = "crm-templates.sign-in"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=_SALT)


def _safe_next(value: Any) -> str:
    return value if isinstance(value, str) and is_same_site_url(value) and value else "/"


def _link(token: str) -> str:
    from flask import url_for

    base = current_app.config["CRM_BASE_URL"]
    if base:
        # Behind a proxy the Host header is not trustworthy enough to put into an email.
        return base.rstrip("/") + url_for("crm_auth.verify", token=token)
    return url_for("crm_auth.verify", token=token, _external=True)


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    """The sign-in form; on POST, mail a sign-in link."""
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("crm/sign_in.html", next=next_url, error=None, email="")
    server = state()
    raw = request.form.get("email", "")
    try:
        email = server.crm.normalise_email(raw.strip())
    except CrmValidationError:
        body = render_template(
            "crm/sign_in.html",
            next=next_url,
            email=raw,
            error="Please enter a valid email address, like name@example.com.",
        )
        return Response(body, status=400)
    ip = request.remote_addr or "unknown"
    if not server.sign_in_per_email.hit(email) or not server.sign_in_per_ip.hit(ip):
        abort(429, "Too many sign-in emails were requested. Please wait a few minutes.")
    token = _serializer().dumps({"e": email, "n": secrets.token_urlsafe(16), "next": next_url})
    link = _link(token)
    minutes = current_app.config["CRM_SIGN_IN_MAX_AGE"] // 60
    server.mailer(
        MailMessage(
            to=email,
            subject="Your sign-in link",
            body=f"Open this link to sign in (valid for {minutes} minutes, once):\n\n{link}\n",
            link=link,
        )
    )
    return render_template("crm/sign_in_sent.html", email=email, minutes=minutes)


def _find_or_create(email: str) -> Customer:
    crm = state().crm
    found = crm.find_customer(email)
    if found is not None:
        return found
    try:
        return crm.create_customer(email)
    except DuplicateError:  # a concurrent verify created it first
        again = crm.find_customer(email)
        assert again is not None
        return again


@bp.route("/verify")
def verify() -> ResponseReturnValue:
    """Check the link's token, sign the session in, bring the visitor's entries along."""
    max_age = current_app.config["CRM_SIGN_IN_MAX_AGE"]
    try:
        data, issued = _serializer().loads(
            request.args.get("token", ""), max_age=max_age, return_timestamp=True
        )
    except SignatureExpired:
        abort(400, "This sign-in link has expired. Please request a new one.")
    except BadData:
        abort(400, "This sign-in link is not valid. Please request a new one.")
    if not isinstance(data, dict) or not isinstance(data.get("e"), str):
        abort(400, "This sign-in link is not valid. Please request a new one.")
    server = state()
    if not server.used_tokens.use(str(data.get("n")), issued.timestamp() + max_age):
        abort(400, "This sign-in link was already used. Please request a new one.")
    customer = _find_or_create(data["e"])
    visitor = current_customer()
    if visitor is not None and visitor.email is None and visitor.id != customer.id:
        # Only this session's own anonymous visitor is moved (SPEC §5 ReassignCrmReference).
        server.crm.reassign_reference(
            slug="*",
            fromReferenceType="customer",
            fromReferenceId=visitor.id,
            toReferenceId=customer.id,
        )
    attach_customer(customer, signed_in=True)
    return redirect(_safe_next(data.get("next")), code=303)


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> ResponseReturnValue:
    """Forget the session's customer and go home."""
    detach_customer()
    return redirect(_safe_next(request.form.get("next")), code=303)
