"""The CRM REST API (issue 13; SPEC §11): JSON resources under ``/api/crm/`` in the seed
platform's shape — entity presets, entities → pipelines → stages, fields, entries (filters,
``page`` and ``cursor`` pagination, stage moves) and a customer's entries — over the same
service and core modules as templates and the admin.

Authentication: every route except ``/api/crm/openapi.json`` and ``/api/crm/docs`` needs an API
key (``Authorization: Bearer <key>`` or the platform's ``EF-Access-Key: <key>``), checked by
`crm_templates.server.api_auth.authenticate_request` with scope ``read`` for GET/HEAD and
``write`` for everything else. Cookies are never looked at, so CSRF does not apply (the
server's CSRF and same-origin checks skip ``/api/crm/``); a browser session alone gets 401.
Every write is recorded in the audit trail with the actor ``apikey:<key id>``.

Errors: one shape, ``{"message", "errors": {field: [..]}}`` (`errors`), for every status —
also werkzeug's 404/405/413 and anything unexpected (500, logged) — under ``/api/crm``.

Installing: `init_api(app)` registers the blueprint and the JSON error handlers. The page
server calls it (``CRM_API`` defaults to on); an app using `crm_templates.flask.CrmTemplates`
calls ``init_api(app)`` itself after the extension (the Flask integration does not import the
server package).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from ... import events
from ...api_keys import ApiAuthError
from ...errors import CrmError
from ...service import Crm
from ..api_auth import authenticate_request, challenge_headers
from .errors import ApiError, error_response, from_crm_error, from_http_exception, log
from .spec import PREFIX

bp = Blueprint("crm_api", __name__, url_prefix=PREFIX, static_folder="static")

#: Paths (below PREFIX) anyone may read: the API's description.
PUBLIC = frozenset({"/openapi.json", "/docs"})
#: Every status an API answer may have besides success.
ERROR_STATUSES = (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503)


def is_api_path(path: str | None = None) -> bool:
    """True for ``/api/crm`` and everything below it (this request's path by default)."""
    path = request.path if path is None else path
    return path == PREFIX or path.startswith(PREFIX + "/")


def _public() -> bool:
    rest = request.path[len(PREFIX) :]
    return rest in PUBLIC or request.endpoint == "crm_api.static"


@bp.before_request
def authenticate() -> ResponseReturnValue | None:
    """Check the API key for the route's scope (see the module docstring)."""
    if _public() or request.endpoint == "crm_api.no_such_route":
        return None
    scope = "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"
    try:
        g.crm_api_key = authenticate_request(crm().store, request, scope=scope)
    except ApiAuthError as exc:
        field = "Authorization" if exc.status in (401, 403) else "API key"
        return error_response(
            int(exc.status), str(exc), {field: [str(exc)]}, challenge_headers(exc)
        )
    # The entry signals and webhooks name the key as the author of this request's changes
    # (`crm_templates.events`), not the customer an entry belongs to.
    g.crm_api_actor = events.enter_actor(events.Actor("api_key", g.crm_api_key.id))
    return None


@bp.teardown_request
def stop_acting(exc: BaseException | None) -> None:
    """Undo `authenticate`'s actor: the thread serves other requests next."""
    token = g.pop("crm_api_actor", None)
    if token is not None:
        events.leave_actor(token)


@bp.after_request
def never_stored(response: Response) -> Response:
    """``Cache-Control: no-store`` on every answer but the public description.

    An API answer holds customer data and is authorised by a header a shared cache does not
    know to key on (``EF-Access-Key``; RFC 9111 §3.5 protects only ``Authorization``), so
    without this a proxy could store one client's answer and hand it to another (found in the
    issue-13 attack review)."""
    if not _public():
        response.headers["Cache-Control"] = "no-store"
    return response


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: The catch-all also takes these, so that Flask's automatic answer to them (200 with an
#: ``Allow`` of the catch-all's own methods, without a key) never answers a path no
#: operation serves.
_CATCH_ALL_METHODS = (*_METHODS, "OPTIONS", "TRACE")


@bp.route(
    "/",
    defaults={"rest": ""},
    methods=_CATCH_ALL_METHODS,
    strict_slashes=False,
    provide_automatic_options=False,
)
@bp.route("/<path:rest>", methods=_CATCH_ALL_METHODS, provide_automatic_options=False)
def no_such_route(rest: str) -> Response:
    """Everything under ``/api/crm`` that no operation serves: 405 (with ``Allow``) when the
    path takes other methods, else 404 — the API's own answer, so that no site page or other
    route (and none of their CSRF rules) ever answers below ``/api/crm``. ``OPTIONS`` on a
    path an operation serves is Flask's automatic answer (after the key check); on any other
    path it is 404 like every method."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in _METHODS:
        try:
            endpoint, _ = adapter.match(method=method)
        except HTTPException:
            continue
        if endpoint != "crm_api.no_such_route":
            allowed.append(method)
    if allowed:
        raise ApiError(405, None, None, {"Allow": ", ".join(allowed)})
    raise ApiError(404)


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return exc.response()


@bp.errorhandler(CrmError)
def _crm_error(exc: CrmError) -> Response:
    return from_crm_error(exc).response()


def crm() -> Crm:
    """The app's trusted service."""
    service: Crm = current_app.extensions["crm_templates"].crm
    return service


def actor() -> str:
    """The audit actor of this request: ``apikey:<key id>``."""
    key = g.get("crm_api_key")
    return f"apikey:{key.id}" if key is not None else "apikey:unknown"


def record(action: str, **kwargs: Any) -> None:
    """Record a successful write in the audit trail with this request's key as the actor."""
    from ... import audit

    audit.record(crm().store, actor(), action, **kwargs)


def _json_errors(app: Flask) -> None:
    """Answer werkzeug's and unexpected errors under ``/api/crm`` in the error shape, and
    leave every other path to the handler registered before (the site's error pages)."""
    spec = app.error_handler_spec[None]
    for status in ERROR_STATUSES:
        before = next(iter(spec.get(status, {}).values()), None)

        def handle(
            exc: Exception, _status: int = status, _before: Callable[..., Any] | None = before
        ) -> Any:
            if not is_api_path():
                return _before(exc) if _before is not None else exc
            if isinstance(exc, HTTPException) and _status != 500:
                return from_http_exception(exc)
            original = getattr(exc, "original_exception", None) or exc
            log.error("error answering %s %s", request.method, request.path, exc_info=original)
            return error_response(500, "Something went wrong on our side.")

        app.register_error_handler(status, handle)


def init_api(app: Flask) -> None:
    """Register the API on ``app`` (after the app's own error handlers, which it wraps)."""
    from . import sessions

    app.register_blueprint(bp)
    _json_errors(app)
    sessions.install(app)  # no cookie session under /api/crm (sessions.py)


# The views register their operations on `bp` when imported (one module per concern).
from . import customers, docs, entities, entries  # noqa: E402,F401

__all__ = ["PREFIX", "bp", "init_api", "is_api_path"]
