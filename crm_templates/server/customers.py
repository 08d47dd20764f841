"""The session customer (SPEC §8): who the current visitor is, and the Crm bound to them.

The signed session cookie holds ``customer_id`` (and ``signed_in`` once the visitor proved an
email). A visitor who only reads gets no customer record; the first CRM write creates an
anonymous one through the provider given to `Crm.bind`, and the session remembers it.
"""

from __future__ import annotations

from flask import g, has_request_context, session

from ..model import Customer
from ..service import Crm
from .state import state

SESSION_CUSTOMER = "customer_id"
SESSION_SIGNED_IN = "signed_in"
SESSION_OPERATOR = "operator"
SESSION_VISITOR = "crm_visitor"  # the anonymous customer this session created


def current_customer() -> Customer | None:
    """The session's customer record (looked up once per request), or None."""
    if "crm_customer" not in g:
        customer = None
        cid = session.get(SESSION_CUSTOMER)
        if isinstance(cid, str):
            customer = state().crm.get_customer(cid)
            if customer is None:
                # The store was reset or the customer deleted: start over as a new visitor.
                session.pop(SESSION_CUSTOMER, None)
                session.pop(SESSION_SIGNED_IN, None)
        g.crm_customer = customer
    customer = g.crm_customer
    return customer if isinstance(customer, Customer) else None


def is_signed_in() -> bool:
    """True once the visitor signed in with an email link (a known customer)."""
    return current_customer() is not None and bool(session.get(SESSION_SIGNED_IN))


def is_operator() -> bool:
    """True for an operator session (``/operator/sign-in``)."""
    return session.get(SESSION_OPERATOR) is True


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


def attach_customer(customer: Customer, *, signed_in: bool) -> None:
    """Make ``customer`` the session's customer (sign-in)."""
    session[SESSION_CUSTOMER] = customer.id
    session[SESSION_SIGNED_IN] = signed_in
    session.permanent = True
    g.crm_customer = customer
    g.pop("crm", None)


def detach_customer() -> None:
    """Forget the session's customer (sign-out); the next write starts a new anonymous one."""
    session.pop(SESSION_CUSTOMER, None)
    session.pop(SESSION_SIGNED_IN, None)
    session.pop(SESSION_VISITOR, None)
    g.crm_customer = None
    g.pop("crm", None)
