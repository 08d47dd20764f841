"""The session customer (SPEC §8): who the current visitor is, and the Crm bound to them.

The signed session cookie holds ``customer_id`` (and ``signed_in`` once the visitor proved an
email). A visitor who only reads gets no customer record; the first CRM write creates an
anonymous one through the provider given to `Crm.bind`, and the session remembers it.

A signed-in session also carries a session id and its customer's generation (`sessions`): it
is honoured only while the store says neither was revoked (issue 8, item 4). A customer record
with an email is reachable only through such a session — never as an anonymous visitor.
"""

from __future__ import annotations

import hmac

from flask import g, has_request_context, session

from ..model import Customer
from ..operators import BOOTSTRAP_ID, generation_key
from ..service import Crm
from . import sessions
from .state import state

SESSION_CUSTOMER = "customer_id"
SESSION_SIGNED_IN = "signed_in"
SESSION_OPERATOR = "operator"  # the password fingerprint of the signed-in operator
SESSION_OPERATOR_ID = "operator_id"  # which operator (issue 12); absent: the bootstrap one
SESSION_VISITOR = "crm_visitor"  # the anonymous customer this session created
SESSION_PREVIEW = "crm_preview"  # the customer an operator previews (server.preview)


def current_customer() -> Customer | None:
    """The session's customer record (looked up once per request), or None."""
    if "crm_customer" not in g:
        customer = None
        cid = session.get(SESSION_CUSTOMER)
        if isinstance(cid, str):
            signed_in = bool(session.get(SESSION_SIGNED_IN))
            if signed_in and not sessions.is_current(
                sessions.CUSTOMER, sessions.customer_generation_key(cid)
            ):
                customer = None  # signed out here or everywhere: a new visitor from now on
            else:
                customer = _looked_up(cid)
            if customer is not None and customer.email is not None and not signed_in:
                customer = None  # an account needs its email proved, not just its id
            if customer is None:
                # Also when the store was reset or the customer deleted: start over.
                _forget_customer()
        g.crm_customer = customer
    customer = g.crm_customer
    return customer if isinstance(customer, Customer) else None


def session_customer_id() -> str | None:
    """The customer id the session names, unchecked (no store read): what the page server
    prefetches a page for (`crm_templates.extension.prefetch_page`)."""
    cid = session.get(SESSION_CUSTOMER)
    return cid if isinstance(cid, str) else None


def preload_customer(customer_id: str | None, customer: Customer | None) -> None:
    """The record of ``customer_id`` as read in this request's page prefetch: the
    `current_customer` look-up uses it instead of reading it again (issue 14, item 3)."""
    if customer_id is not None:
        g.crm_preloaded_customer = (customer_id, customer)


def _looked_up(customer_id: str) -> Customer | None:
    preloaded = g.pop("crm_preloaded_customer", None)
    if preloaded is not None and preloaded[0] == customer_id:
        found: Customer | None = preloaded[1]
        return found
    return state().crm.get_customer(customer_id)


def is_signed_in() -> bool:
    """True once the visitor signed in with an email link (a known customer)."""
    return current_customer() is not None and bool(session.get(SESSION_SIGNED_IN))


def current_operator_id() -> str | None:
    """The id of the operator this session is signed in as, or None (looked up once per
    request): an account's id (``op_…``), or ``"operator"`` for the bootstrap account of
    ``CRM_OPERATOR_PASSWORD`` (issue 12).

    The session is honoured only while its password fingerprint matches the account's current
    secret (a changed password or a removed account ends it), its session id is not revoked and
    its generation is the account's current one (sign out everywhere, removal).
    """
    if "crm_operator_id" in g:
        cached = g.crm_operator_id
        return cached if isinstance(cached, str) else None
    operator = _check_operator()
    g.crm_operator_id = operator
    return operator


def _check_operator() -> str | None:
    marker = session.get(SESSION_OPERATOR)
    if marker is None:
        return None
    oid = session.get(SESSION_OPERATOR_ID, BOOTSTRAP_ID)  # cookies from before accounts
    fingerprint: str | None = None
    if oid == BOOTSTRAP_ID:
        fingerprint = sessions.operator_fingerprint()
    elif isinstance(oid, str):
        account = state().crm.store.get_operator(oid)
        fingerprint = None if account is None else sessions.fingerprint(account.password_hash)
    if not (
        isinstance(marker, str)
        and isinstance(oid, str)
        and fingerprint is not None
        and hmac.compare_digest(marker, fingerprint)
    ):
        forget_operator()  # another password (since rotated), a removed account, operators off
        return None
    if sessions.is_current(sessions.OPERATOR, generation_key(oid)):
        return oid
    forget_operator()
    return None


def is_operator() -> bool:
    """True for an operator session (``/operator/sign-in``) that is still valid (see
    `current_operator_id`)."""
    return current_operator_id() is not None


def attach_operator(operator_id: str = BOOTSTRAP_ID, secret: str | None = None) -> None:
    """Make this session an operator session (after the password was checked), in a new
    session id: the bootstrap account, or the account ``operator_id`` whose password hash is
    ``secret``."""
    sessions.revoke(sessions.OPERATOR)
    session.pop(SESSION_PREVIEW, None)  # a new operator session starts outside any preview
    if operator_id == BOOTSTRAP_ID:
        session[SESSION_OPERATOR] = sessions.operator_fingerprint()
    else:
        assert secret is not None, "an account's session needs its password hash"
        session[SESSION_OPERATOR] = sessions.fingerprint(secret)
    session[SESSION_OPERATOR_ID] = operator_id
    sessions.start(sessions.OPERATOR, generation_key(operator_id))
    g.crm_operator_id = operator_id


def forget_operator() -> None:
    """Drop the operator part of the session (cookie only), and any preview it had."""
    session.pop(SESSION_OPERATOR, None)
    session.pop(SESSION_OPERATOR_ID, None)
    session.pop(SESSION_PREVIEW, None)
    sessions.forget(sessions.OPERATOR)
    g.crm_operator_id = None


def detach_operator() -> None:
    """Operator sign-out: revoke the operator session in the store, then forget it."""
    sessions.revoke(sessions.OPERATOR)
    forget_operator()


def _provide_customer(create: bool) -> str | None:
    customer = current_customer()
    if customer is None and create:
        customer = state().crm.create_customer()
        session[SESSION_CUSTOMER] = session[SESSION_VISITOR] = customer.id
        session.permanent = True
        g.crm_customer = customer
    return None if customer is None else customer.id


def session_visitor_id() -> str | None:
    """The id of the anonymous customer this session created (templates: ``visitor_id``)."""
    vid = session.get(SESSION_VISITOR)
    return vid if isinstance(vid, str) else None


def _session_visitor() -> str | None:
    """This session's own anonymous visitor, the one reference templates and page backends may
    reassign (issue 8, fault 7): created by this session and still without an email."""
    vid = session_visitor_id()
    visitor = None if vid is None else state().crm.get_customer(vid)
    return vid if visitor is not None and visitor.email is None else None


def _signed_in_customer() -> str | None:
    """The current signed-in customer's id: the only target of a template's reassign."""
    customer = current_customer()
    return customer.id if customer is not None and is_signed_in() else None


def request_crm() -> Crm:
    """The Crm for this request: bound to the session customer (or a preview), cached on g."""
    crm = g.get("crm")
    if crm is None:
        crm = g.crm = state().crm.bind(
            _provide_customer, reassign_from=_session_visitor, reassign_to=_signed_in_customer
        )
    assert isinstance(crm, Crm)
    return crm


def request_crm_or_none() -> Crm | None:
    """`request_crm` inside a request, None outside one (CLI renders, tests of the env)."""
    return request_crm() if has_request_context() else None


def sign_in_customer(customer: Customer) -> None:
    """Make ``customer`` (with a proved email) the session's customer, in a new session id;
    a session id from before (another customer's) is revoked first."""
    sessions.revoke(sessions.CUSTOMER)
    session[SESSION_CUSTOMER] = customer.id
    session[SESSION_SIGNED_IN] = True
    sessions.start(sessions.CUSTOMER, sessions.customer_generation_key(customer.id))
    g.crm_customer = customer
    g.pop("crm", None)


def _forget_customer() -> None:
    session.pop(SESSION_CUSTOMER, None)
    session.pop(SESSION_SIGNED_IN, None)
    session.pop(SESSION_VISITOR, None)
    sessions.forget(sessions.CUSTOMER)
    g.crm_customer = None
    g.pop("crm", None)


def sign_out_customer(*, everywhere: bool = False) -> None:
    """Sign-out: revoke this session in the store (and with ``everywhere``, every session of
    the signed-in customer); the next write starts a new anonymous visitor."""
    customer = current_customer()
    if everywhere and customer is not None and is_signed_in():
        sessions.bump(sessions.customer_generation_key(customer.id))
    sessions.revoke(sessions.CUSTOMER)
    _forget_customer()
