"""Email magic-link sign-in for visitors (``/auth``).

1. ``POST /auth/sign-in`` (email): rate-limited per address and per client IP (counted in the
   store); mails a link holding a token signed with the app's secret key (itsdangerous), valid
   for ``CRM_SIGN_IN_MAX_AGE`` seconds. The link's address comes from `urls.external_url`
   (``CRM_BASE_URL`` or a trusted host), never from a request header; with neither, the form
   answers 400 and the log says what to set. The mail goes out through `mail.deliver` (SMTP
   with ``CRM_MAIL_URL``, else the link is logged). The answer is the same whether or not the
   address is known and whether or not the mail could be sent. The session remembers the
   nonces of the links it asked for.
2. ``GET /auth/verify?token=…`` signs nobody in and uses nothing up (mail scanners fetch links):
   it checks the token and shows "Sign in as a@example.com?", saying whether this browser asked
   for the link, with a button that posts the token back.
3. ``POST /auth/verify`` (CSRF-protected, token in the form): uses the single-use token (in the
   store), finds or creates the customer with that email, moves *this* session's anonymous
   visitor's entries onto them, and signs the session in with a new session id.
4. ``POST /auth/sign-out`` (CSRF) revokes this session in the store;
   ``POST /auth/sign-out-everywhere`` (CSRF) ends every session of the signed-in customer.

Login CSRF (issue 8, item 3): a link an attacker requested for their own address, opened in a
victim's browser, needs the victim to press the button — the page says the link was not asked
for in this browser and that entries saved here would move to that account. Links stay usable
on another device (asked for on a laptop, opened on a phone), hence a warning, not a refusal.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Blueprint, Response, abort, current_app, redirect, request, url_for
from flask import session as flask_session
from flask.typing import ResponseReturnValue
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from ..errors import CrmValidationError, DuplicateError
from ..model import Customer
from .builtin_pages import render_builtin
from .customers import current_customer, is_signed_in, sign_in_customer, sign_out_customer
from .mail import deliver, sign_in_message
from .security import is_same_site_url
from .state import state
from .urls import NoPublicAddress, external_url

log = logging.getLogger("crm_templates.server")
bp = Blueprint("crm_auth", __name__, url_prefix="/auth")
_SALT = "crm-templates.sign-in"
# Session key: nonces of the sign-in links this browser asked for (the newest few).
SESSION_SIGN_IN_REQUESTS = "sign_in_requests"
_REMEMBERED_REQUESTS = 5
NO_ADDRESS = (
    "This site cannot send sign-in links yet: its operator has to set CRM_BASE_URL "
    "(the site's public address). Please try again later."
)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=_SALT)


def _safe_next(value: Any) -> str:
    return value if isinstance(value, str) and is_same_site_url(value) and value else "/"


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    """The sign-in form; on POST, mail a sign-in link."""
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_builtin(
            "sign_in", next=next_url, error=None, email="", action=url_for("crm_auth.sign_in")
        )
    server = state()
    raw = request.form.get("email", "")
    try:
        email = server.crm.normalise_email(raw.strip())
    except CrmValidationError:
        body = render_builtin(
            "sign_in",
            action=url_for("crm_auth.sign_in"),
            next=next_url,
            email=raw,
            error="Please enter a valid email address, like name@example.com.",
        )
        return Response(body, status=400)
    nonce = secrets.token_urlsafe(16)
    token = _serializer().dumps({"e": email, "n": nonce, "next": next_url})
    try:
        link = external_url("crm_auth.verify", token=token)
    except NoPublicAddress as exc:
        log.error(
            "refused to mail a sign-in link: %s. Set CRM_BASE_URL to the site's public "
            "address (like https://shop.example), or CRM_TRUSTED_HOSTS to its host names",
            exc,
        )
        abort(400, NO_ADDRESS)
    server.housekeeping.now_and_then()
    ip = request.remote_addr or "unknown"
    # The client's own limit first: a client over it must not spend other people's
    # per-address quota (one IP could otherwise keep any address from signing in).
    if not server.sign_in_per_ip.hit(ip) or not server.sign_in_per_email.hit(email):
        abort(429, "Too many sign-in emails were requested. Please wait a few minutes.")
    minutes = current_app.config["CRM_SIGN_IN_MAX_AGE"] // 60
    # A failed send is logged (without the token) and answered like a sent one: the page
    # never tells whether an address is known or reachable.
    deliver(server.mailer, sign_in_message(email, link, minutes))
    asked = flask_session.get(SESSION_SIGN_IN_REQUESTS)
    asked = [n for n in asked if isinstance(n, str)] if isinstance(asked, list) else []
    flask_session[SESSION_SIGN_IN_REQUESTS] = [*asked, nonce][-_REMEMBERED_REQUESTS:]
    return render_builtin("sign_in_sent", email=email, minutes=minutes)


def _load(token: Any) -> tuple[dict[str, Any], float]:
    """The token's data and its expiry (Unix time); aborts 400 when invalid, expired or used."""
    max_age = current_app.config["CRM_SIGN_IN_MAX_AGE"]
    if not isinstance(token, str) or not token:
        abort(400, "This sign-in link is not valid. Please request a new one.")
    try:
        data, issued = _serializer().loads(token, max_age=max_age, return_timestamp=True)
    except SignatureExpired:
        abort(400, "This sign-in link has expired. Please request a new one.")
    except BadData:
        abort(400, "This sign-in link is not valid. Please request a new one.")
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("e"), str)
        or not isinstance(data.get("n"), str)
    ):
        abort(400, "This sign-in link is not valid. Please request a new one.")
    if state().sign_in_tokens.is_used(data["n"]):
        abort(400, "This sign-in link was already used. Please request a new one.")
    return data, issued.timestamp() + max_age


def _no_store(response: Response) -> Response:
    # The page's URL holds the token: keep it out of caches and Referer headers.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


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


@bp.get("/verify")
def verify() -> ResponseReturnValue:
    """The confirmation page for a link: "Sign in as …?" (changes nothing, uses nothing up)."""
    token = request.args.get("token", "")
    data, _ = _load(token)
    visitor = current_customer()
    asked = flask_session.get(SESSION_SIGN_IN_REQUESTS)
    body = render_builtin(
        "sign_in_confirm",
        action=url_for("crm_auth.confirm"),
        email=data["e"],
        token=token,
        asked_here=isinstance(asked, list) and data["n"] in asked,
        signed_in_as=visitor.email if visitor is not None and is_signed_in() else None,
        has_visitor=visitor is not None and visitor.email is None,
    )
    return _no_store(Response(body))


@bp.post("/verify")
def confirm() -> ResponseReturnValue:
    """The confirmation's button: use the token, sign in, bring the visitor's entries along."""
    data, expires_at = _load(request.form.get("token"))
    server = state()
    if not server.sign_in_tokens.use(data["n"], expires_at):
        abort(400, "This sign-in link was already used. Please request a new one.")
    customer = _find_or_create(data["e"])
    visitor = current_customer()
    if visitor is not None and visitor.email is None and visitor.id != customer.id:
        # Only this session's own anonymous visitor is moved (SPEC §5 ReassignCrmReference);
        # the sign-in flow is trusted code and calls the service directly.
        server.crm.reassign_reference(
            slug="*",
            fromReferenceType="customer",
            fromReferenceId=visitor.id,
            toReferenceId=customer.id,
        )
    sign_in_customer(customer)
    asked = flask_session.get(SESSION_SIGN_IN_REQUESTS)
    if isinstance(asked, list) and data["n"] in asked:
        flask_session[SESSION_SIGN_IN_REQUESTS] = [n for n in asked if n != data["n"]]
    return redirect(_safe_next(data.get("next")), code=303)


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> ResponseReturnValue:
    """End this browser's session (server-side too) and go to ``next`` (or home)."""
    sign_out_customer()
    return redirect(_safe_next(request.form.get("next")), code=303)


@bp.route("/sign-out-everywhere", methods=["POST"])
def sign_out_everywhere() -> ResponseReturnValue:
    """End every session of the signed-in customer, in every browser and process."""
    sign_out_customer(everywhere=True)
    return redirect(_safe_next(request.form.get("next")), code=303)
