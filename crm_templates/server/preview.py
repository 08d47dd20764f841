"""Operator previews (SPEC §8; issue 8, fault 6): the one place that decides what a preview is.

An operator opens any page with ``?preview_customer=ID``. The session remembers the preview
(``session["crm_preview"]`` = the customer id), so the page's own links and forms stay in it
without carrying the parameter. While it is set:

* every page GET renders as that customer through `preview_crm`, a read-only view of the
  service (`Crm.bind` with ``read_only=True``; the rules are in `crm_templates.access`): the
  CRM write functions answer ``{ok: False, error: 'preview'}``, the service's other writes and
  every writing `Store` method raise `PreviewError` (a page backend that lets it escape gets a
  403 page naming the refused write);
* every request that could change something (POST and the other unsafe methods, form or
  JSON) is refused with 403 "previews are read-only" before any view runs: page backends, and
  the site's sign-in and sign-out forms too, so the preview's forms never write, neither for
  the customer nor as the operator's own session. Only leaving the preview and the operator's
  own routes (``/operator/…``: sign-out) get through;
* every HTML answer carries a banner naming the customer, with a "Leave preview" button
  (``POST /_crm/preview/leave``, CSRF-protected).

The preview ends when the operator leaves it or signs out (operator sign-in and sign-out drop
it), and at the first request after the session stops being an operator's otherwise. Pages
shown in a preview carry CSRF tokens of their own (`PREVIEW_CSRF_KEY`) that the CSRF check
never accepts, so a form left open in a preview tab cannot write after the preview ended.
``crm-templates render`` uses `preview_crm` too.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from flask import Blueprint, Flask, abort, g, redirect, render_template, request, session
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response as BaseResponse

from ..model import Customer
from ..service import Crm
from .customers import SESSION_PREVIEW, is_operator
from .security import UNSAFE_METHODS, is_same_site_url
from .state import state

PARAM = "preview_customer"
# The session key of the CSRF token that pages shown in a preview carry (never accepted).
PREVIEW_CSRF_KEY = "crm_preview_csrf_token"
READ_ONLY = (
    "Previews are read-only: this was not sent and nothing was saved. Use the banner's "
    "“Leave preview” button to use the site as yourself."
)
# Blueprints an operator may still post to while previewing: leaving it, operator sign-out.
LET_THROUGH = frozenset({"crm_preview", "crm_operator", "crm_api"})
# Endpoints whose POST never writes (the admin's playground renders read-only): they work in a
# preview too. Added with `allow_in_preview` by the module defining the view.
READ_ONLY_POSTS: set[str] = set()

bp = Blueprint("crm_preview", __name__, url_prefix="/_crm/preview")
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def _customer(customer_id: str) -> Customer | None:
    customer = state().crm.get_customer(customer_id)
    if customer is not None:
        g.crm_previewed = customer  # the banner goes on whatever this request answers
    return customer


def previewed_customer() -> Customer | None:
    """The customer this page request previews as, or None when it is no preview.

    ``?preview_customer=ID`` starts (or switches) a preview for operators: 403 for anyone
    else, 404 for an unknown customer. Without it the session's remembered preview applies,
    and is forgotten when the session is no longer an operator's.
    """
    wanted = request.args.get(PARAM)
    if wanted is not None:
        if not is_operator():
            abort(403, "Previewing as a customer needs an operator sign-in (/operator/sign-in).")
        customer = _customer(wanted)
        if customer is None:
            abort(404, f"There is no customer {wanted!r} to preview.")
        session[SESSION_PREVIEW] = customer.id
        return customer
    remembered = session.get(SESSION_PREVIEW)
    if remembered is None:
        return None
    if not is_operator() or not isinstance(remembered, str):
        session.pop(SESSION_PREVIEW, None)
        return None
    customer = _customer(remembered)
    if customer is None:
        session.pop(SESSION_PREVIEW, None)
        abort(404, f"The previewed customer {remembered!r} no longer exists; the preview ended.")
    return customer


def in_preview() -> bool:
    """True while this request is shown in a preview (decided by `decide_preview`)."""
    return g.get("crm_previewed") is not None


def decide_preview() -> None:
    """before_request: settle whether this request is in a preview, for every route, so the
    banner (and the way out) is on every HTML answer — pages, errors, sign-in and operator
    pages — and a remembered preview of a session that is no operator's any more is dropped."""
    if request.args.get(PARAM) is not None or session.get(SESSION_PREVIEW) is not None:
        previewed_customer()


def preview_crm(customer: Customer) -> Crm:
    """The service as ``customer``, read-only, installed as this request's Crm (``g.crm``):
    what page backends (``page.crm``) and templates use in a preview."""
    crm = state().crm.bind(customer.id, read_only=True)
    g.crm = crm
    return crm


def allow_in_preview(endpoint: str) -> None:
    """Let ``endpoint``'s POST through `refuse_writes`: only for a view that writes nothing
    (its CSRF check still applies)."""
    READ_ONLY_POSTS.add(endpoint)


def refuse_writes() -> None:
    """before_request: 403 for every unsafe request of an operator who is previewing (the
    remembered preview or ``?preview_customer=``), except `LET_THROUGH` and `READ_ONLY_POSTS`
    — admin writes included: a previewing operator writes nothing until leaving the preview
    (the banner on every admin page says so and has the way out)."""
    if (
        request.method not in UNSAFE_METHODS
        or request.blueprint in LET_THROUGH
        or request.endpoint in READ_ONLY_POSTS
    ):
        return
    wanted = request.args.get(PARAM) or session.get(SESSION_PREVIEW)
    if isinstance(wanted, str) and is_operator():
        _customer(wanted)
        abort(403, READ_ONLY)


def install(app: Flask) -> None:
    """Register the blueprint, and run `decide_preview` and `refuse_writes` right after the
    host check and before the CSRF check: a previewing operator's post is answered "previews
    are read-only", whatever its token."""
    app.register_blueprint(bp)
    hooks = app.before_request_funcs.setdefault(None, [])
    at = 1 if hooks and hooks[0].__name__ == "refuse_untrusted_host" else 0
    hooks[at:at] = [decide_preview, refuse_writes]


def _plain_url() -> str:
    """This request's path and query without the preview parameter."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != PARAM]
    return request.path + (f"?{urlencode(args)}" if args else "")


@bp.after_app_request
def add_banner(response: BaseResponse) -> BaseResponse:
    """after_request: the preview banner right after ``<body>`` of every HTML answer given
    in a preview (pages, and the error pages refusing a write)."""
    customer = g.get("crm_previewed")
    if customer is None or response.mimetype != "text/html" or response.direct_passthrough:
        return response
    html = response.get_data(as_text=True)
    banner = render_template("crm/preview_banner.html", customer=customer, next_url=_plain_url())
    match = _BODY_TAG.search(html)
    at = match.end() if match else 0
    response.set_data(html[:at] + banner + html[at:])
    return response


@bp.route("/leave", methods=["POST"])
def leave() -> ResponseReturnValue:
    """End the preview and go back to the page (``next``, a path of this site)."""
    session.pop(SESSION_PREVIEW, None)
    wanted = request.form.get("next")
    target = wanted if isinstance(wanted, str) and wanted and is_same_site_url(wanted) else "/"
    return redirect(target, code=303)
