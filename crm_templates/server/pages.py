"""Serving a site's pages: routing, page backends (``handle(request, page)``), errors.

A request for ``/weight/checkin`` runs ``pages/weight/checkin.py`` (if present) and then
renders ``pages/weight/checkin.html`` in the sandboxed environment with the session customer,
or, in an operator preview, with the previewed customer read-only (`.preview`).
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    request,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from ..errors import CrmValidationError, PreviewError
from ..extension import PagePrefetch, fold_entity_refresh, prefetch_page
from ..functions import BY_NAME
from ..model import Customer
from ..service import Crm
from .admin_theme import is_admin_path, render_admin_error
from .bodies import request_data
from .builtin_pages import base_context, render_builtin
from .customers import (
    current_customer,
    is_signed_in,
    preload_customer,
    request_crm,
    session_customer_id,
    session_visitor_id,
)
from .preview import preview_crm
from .security import is_same_site_url
from .site import PageRoute
from .state import state
from .urls import current_url

log = logging.getLogger("crm_templates.server")

bp = Blueprint("crm_pages", __name__)
# The server's own stylesheet for its pages (sign-in, errors, preview banner).
assets = Blueprint("crm_assets", __name__, static_folder="static", static_url_path="/_crm/static")


class RequestView:
    """What templates see as ``request``: plain copies, never Flask's request object.

    Templates run sandboxed; the real request would hand them the WSGI environ, the session
    interface and the app. ``path`` and ``method`` are taken at once; ``url`` (`urls.current_url`),
    ``args`` and ``form`` (a dict of the form fields, for a POST) are copied from the current
    request the first time a template reads them, then kept (issue 14, B5: most pages never
    read them, and building ``url`` alone costs tens of microseconds). Given to the
    constructor, they are used as they are.
    """

    __slots__ = ("_args", "_form", "_url", "method", "path")

    def __init__(
        self,
        path: str,
        method: str,
        url: str | None = None,
        args: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        self.method = method
        self._url = url
        self._args = args
        self._form = form

    @classmethod
    def current(cls) -> RequestView:
        """A view of the current Flask request (its form, for a POST, read when first asked)."""
        return cls(request.path, request.method)

    @property
    def url(self) -> str:
        """The request's URL as templates see it (`urls.current_url`)."""
        if self._url is None:
            self._url = current_url()
        return self._url

    @property
    def args(self) -> dict[str, str]:
        """The query string's arguments (the first value of each)."""
        if self._args is None:
            self._args = request.args.to_dict()
        return self._args

    @property
    def form(self) -> dict[str, str]:
        """A POST's form fields (the first value of each); empty for other methods."""
        if self._form is None:
            self._form = request.form.to_dict() if self.method == "POST" else {}
        return self._form

    def _fields(self) -> tuple[str, str, str, dict[str, str], dict[str, str]]:
        return (self.path, self.method, self.url, self.args, self.form)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestView):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable dicts inside, as before

    def __repr__(self) -> str:
        path, method, url, args, form = self._fields()
        return (
            f"RequestView(path={path!r}, method={method!r}, url={url!r}, args={args!r}, "
            f"form={form!r})"
        )


class Variables:
    """``var`` in templates: the page variables by attribute or key.

    Not a dict, so ``{{ var.items }}`` is the variable called ``items`` rather than
    ``dict.items``; a missing name is undefined, as for any template variable.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values


@dataclass
class Page:
    """The second argument of a page backend's ``handle(request, page)``.

    CRM functions are attributes under their seed names (``page.SetCrmFields({...})``,
    ``page.getCrmField(...)``) bound to the session customer; ``page.crm`` is the same service
    with the snake_case methods. In an operator preview both are bound to the previewed
    customer and read-only (`crm_templates.access`), and ``page.customer`` is that customer.
    """

    crm: Crm
    path: str
    previewed: Customer | None = None  # the customer an operator previews as
    variables: dict[str, Any] = field(default_factory=dict)
    status: int = 200  # of the rendered template, e.g. 422 when a form has errors
    response: BaseResponse | None = None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name in BY_NAME:
            return functools.partial(self.crm.call, name)
        raise AttributeError(
            f"page has no attribute {name!r}; CRM functions are page.SetCrmField(...) etc., "
            "page.crm has the snake_case methods"
        )

    @property
    def preview(self) -> bool:
        """True in an operator preview: every write is refused."""
        return self.previewed is not None

    @property
    def customer(self) -> Customer | None:
        """The session's customer (the previewed one in a preview), or None for a visitor who
        has not written anything yet."""
        return self.previewed if self.previewed is not None else current_customer()

    @property
    def visitor_id(self) -> str | None:
        """The anonymous customer this session started as (None in a preview): the one
        ``fromReferenceId`` ReassignCrmReference accepts from page backends."""
        return None if self.previewed is not None else session_visitor_id()

    @property
    def customer_id(self) -> str | None:
        """The current customer's id (without creating one)."""
        return self.crm.customer_id

    @property
    def is_customer(self) -> bool:
        """True once the visitor signed in with an email link (in a preview: the previewed
        customer has an email)."""
        if self.previewed is not None:
            return bool(self.previewed.email)
        return is_signed_in()

    @property
    def data(self) -> dict[str, Any]:
        """The request body as a dict: a form's fields, or a JSON object (`bodies.request_data`).

        Malformed or too deeply nested JSON and non-object JSON answer 400, another body type
        415 — the backend never sees them.
        """
        return request_data()

    def set_variable(self, key: str, value: Any) -> None:
        """Make ``value`` available to the template as ``{{ var.<key> }}``."""
        self.variables[key] = value

    def abort(self, status: int, message: str | None = None) -> NoReturn:
        """Stop here and answer with the server's error page (``page.abort(404)``)."""
        abort(status, message)

    def json(self, data: Any, status: int = 200) -> Response:
        """Answer with JSON instead of rendering the template."""
        response = jsonify(data)
        response.status_code = status
        self.response = response
        return response

    def redirect(self, url: str, status: int | None = None) -> BaseResponse:
        """Answer with a redirect to a URL of this site (303 after a POST, else 302)."""
        if not is_same_site_url(url):
            raise ValueError(f"page.redirect only goes to this site's URLs ('/path'); got {url!r}")
        code = status or (303 if request.method == "POST" else 302)
        response = redirect(url, code=code)
        self.response = response
        return response


def _error_page(status: int, message: str, details: str | None = None) -> Response:
    """An error as JSON (for JSON clients) or the server's HTML error page."""
    if request.is_json or request.accept_mimetypes.best == "application/json":
        body: dict[str, Any] = {"ok": False, "status": status, "error": message}
        if details:
            body["details"] = details
        response = jsonify(body)
    else:
        # The admin's and the operator pages' errors in the admin theme; the site's in its look.
        html = render_admin_error(status, message, details) if is_admin_path() else None
        if html is None:
            html = render_builtin("error", status=status, message=message, details=details)
        response = Response(html, mimetype="text/html")
    response.status_code = status
    return response


_MESSAGES = {
    400: "The request could not be understood.",
    403: "You are not allowed to see this page.",
    404: "There is no page at this address.",
    405: "This page does not accept that kind of request.",
    413: "The request is too large.",
    409: "This changed while you were looking at it. Reload and try again.",
    415: "This page does not accept that kind of request body.",
    422: "A value was not accepted.",
    429: "Too many requests. Please wait a few minutes and try again.",
    500: "Something went wrong on our side. Please try again.",
}


def register_error_pages(app: Flask) -> None:
    """HTML (or JSON) pages for every HTTP error the server answers with."""

    def handle(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = _MESSAGES.get(status, exc.name)
        description = exc.description
        # Our own aborts carry a message meant for the visitor; werkzeug's defaults do not.
        if description and description != type(exc).description:
            message = description
        if status == 413:
            limit = current_app.config["MAX_CONTENT_LENGTH"]
            message = f"The request body is larger than the {limit // 1024} KB this site accepts."
        response = _error_page(status, message)
        if status == 405 and isinstance(exc.response, Response):
            response.headers["Allow"] = exc.response.headers.get("Allow", "")
        elif status == 405:
            response.headers["Allow"] = "GET, HEAD"
        return response

    for code in (400, 403, 404, 405, 409, 413, 415, 422, 429):
        app.register_error_handler(code, handle)

    def internal(exc: Exception) -> Response:
        original = getattr(exc, "original_exception", None) or exc
        log.error("error serving %s", request.path, exc_info=original)
        details = "".join(traceback.format_exception(original)) if current_app.debug else None
        return _error_page(500, _MESSAGES[500], details)

    app.register_error_handler(500, internal)


def _run_backend(route: PageRoute, page: Page) -> BaseResponse | None:
    assert route.backend is not None
    try:
        module = state().site.backend(route.backend)
        result = module.handle(request, page)
    except HTTPException:
        raise
    except PreviewError as exc:
        # A preview refused a write the backend did not expect to fail: say which one.
        log.info("page backend %s in a preview: %s", route.backend, exc)
        return _error_page(
            403, f"This page tried to write during a preview and was stopped: {exc}."
        )
    except CrmValidationError as exc:
        # A value the core refused (most often the visitor's input passed straight through):
        # the visitor's request was bad, not the server — 400 with the core's message.
        log.warning("page backend %s: a value was refused: %s", route.backend, exc)
        return _error_page(400, f"A value was not accepted: {exc}")
    except Exception as exc:
        log.error("page backend %s failed", route.backend, exc_info=exc)
        details = "".join(traceback.format_exception(exc)) if current_app.debug else None
        return _error_page(500, _MESSAGES[500], details)
    if isinstance(result, BaseResponse):
        return result
    return page.response


@bp.route("/", defaults={"path": ""}, methods=["GET", "POST"])
@bp.route("/<path:path>", methods=["GET", "POST"])
def serve(path: str) -> BaseResponse:
    """Serve the page for ``/path``: backend first (GET and POST), then the template."""
    server = state()
    url = "/" + path
    route = server.site.route(url)
    if route is None:
        if not url.endswith("/") and server.site.route(url + "/") is not None:
            return redirect(url + "/", code=308)
        abort(404)
    # Decided before this view (preview.decide_preview); writes in a preview were refused.
    preview = g.get("crm_previewed")
    if preview is not None:
        preview_crm(preview)
    return _serve_page(route, preview)


def _serve_page(route: PageRoute, preview: Customer | None) -> BaseResponse:
    if request.method == "POST" and route.backend is None:
        abort(405)
    # An entity edited by another process (the admin) is seen now, not after the cache time:
    # before a page backend runs; else in the page's one store round trip, with the session
    # customer's record and the template's compiled reads (issue 14, item 3).
    prefetched: PagePrefetch | None = None
    if route.backend is not None or route.template is None:
        state().crm.refresh_entities()
    elif preview is None:
        template = state().env.get_template(route.template)
        cid = session_customer_id()
        prefetched = prefetch_page(template, state().crm, cid)
        preload_customer(cid, prefetched.customer)
    page = Page(crm=request_crm(), path=route.url, previewed=preview)
    if route.backend is not None:
        answer = _run_backend(route, page)
        if answer is not None:
            return answer
    if route.template is None:
        log.error("page backend %s answered nothing and has no template", route.backend)
        return _error_page(500, _MESSAGES[500])
    context = base_context(
        page.customer,
        is_customer=page.is_customer,
        preview=preview is not None,
        variables=Variables(page.variables),
    )
    template = state().env.get_template(route.template)
    with fold_entity_refresh(prefetched):
        html = template.render(context)
    response = Response(html, status=page.status, mimetype="text/html")
    # Pages show one customer's data: never keep them in shared caches.
    response.headers["Cache-Control"] = "private, no-store"
    return response


def render_as(app: Flask, url: str, customer_id: str) -> tuple[int, str]:
    """``(status, body)`` of a GET of ``url`` as ``customer_id``, read-only (``crm-templates
    render``): the page backend runs, writes are refused as in a preview, no banner."""
    with app.test_request_context(url):
        server = state()
        route = server.site.route(url)
        if route is None:
            return 404, f"no page at {url!r}; pages: {', '.join(server.site.urls)}"
        customer = server.crm.get_customer(customer_id)
        if customer is None:
            return 404, f"no customer {customer_id!r}"
        preview_crm(customer)
        response = _serve_page(route, customer)
        return response.status_code, response.get_data(as_text=True)
