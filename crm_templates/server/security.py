"""Request guards shared by the blueprints: CSRF and same-origin checks, body cap, headers.

Rate limits and single-use tokens live in the store (`sessions`); absolute URLs and trusted
hosts in `urls`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, request
from flask_wtf.csrf import CSRFProtect, validate_csrf
from wtforms import ValidationError

from .urls import own_origins

csrf = CSRFProtect()

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Inline scripts and styles are refused; renderers and the stage badge put bounded values into
# style attributes (a colour swatch's validated hex code, a thumbnail's size from an int option,
# a stage colour re-serialised by the CSS colour parser), so only style *attributes* are
# allowed inline.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Powerful browser features no CRM page needs, refused for the page and every frame in it.
# Only names Chromium and Firefox recognise: an unknown one is reported as a console error.
DEFAULT_PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "hid",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "serial",
        "usb",
    )
)
# Sign-in, operator and admin answers carry tokens, passwords' outcomes and other customers'
# data: no cache (shared or the browser's back/forward store) may keep them.
NO_STORE_PREFIXES = ("/auth/", "/operator/", "/admin/")
# Public assets (the site's static/ and the server's own stylesheet and icon) may be embedded
# from any origin (Cross-Origin-Resource-Policy: cross-origin): the admin playground shows a
# rendered page in a sandboxed frame with an opaque origin (issue 12, item 7), which
# ``same-origin`` would leave without the site's stylesheet. Everything else stays same-origin.
PUBLIC_ASSET_PREFIXES = ("/static/", "/_crm/static/")


def same_origin(url: str | None) -> bool:
    """True when ``url`` (an Origin or Referer header) names this server's scheme and host, or
    ``CRM_BASE_URL``'s (`urls.own_origins`)."""
    if not url:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return f"{parts.scheme}://{parts.netloc}".lower() in own_origins()


def is_same_site_url(url: str) -> bool:
    """True for a path on this site (``/x``) or an absolute URL to this host; never ``//host``."""
    if not isinstance(url, str) or "\\" in url or any(ord(c) < 0x20 for c in url):
        return False
    if url.startswith("/"):
        return not url.startswith("//")
    return same_origin(url)


def check_request() -> None:
    """before_request: body cap (413), then CSRF (400) or same-origin for JSON (403).

    The cap is checked before the body is read: from ``Content-Length``, or — for a chunked
    body, which has none — by reading at most the cap here. werkzeug stops such a body at the
    cap without an error, so a form or JSON body cut short would otherwise reach the page as
    if it were complete. (``crm-templates serve`` has waitress refuse both kinds even earlier.)
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and limit is not None and request.content_length > limit:
        abort(413)
    if (
        limit is not None
        and request.content_length is None
        and "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        # Cached, so the form parser and page.data read these bytes again.
        and len(request.get_data(cache=True, parse_form_data=False)) >= limit
    ):
        # The stream ends at the cap, so a body of exactly the cap counts as too large.
        abort(413)
    if request.method not in UNSAFE_METHODS or request.blueprint == "crm_api":
        return  # the API authenticates by key, never by cookie: CSRF does not apply
    if request.is_json:
        # A JSON body cannot come from a plain HTML form, and browsers preflight
        # cross-origin JSON; still require proof that this site sent it.
        header = request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token")
        if header:
            try:
                validate_csrf(header)
            except ValidationError as exc:
                abort(400, f"The CSRF token is invalid: {exc}")
            return
        origin = request.headers.get("Origin") or request.headers.get("Referer")
        if not same_origin(origin):
            abort(
                403,
                "JSON requests must come from this site: send an Origin (or Referer) header "
                "for this host, or an X-CSRFToken header.",
            )
        return
    csrf.protect()


def _no_store(path: str, status: int) -> bool:
    """Whether a response must not be cached anywhere: private areas and every error."""
    return status >= 400 or (path + "/").startswith(NO_STORE_PREFIXES)


def security_headers(response: Response) -> Response:
    """after_request: CSP and friends on every response, including errors and static files.

    ``Cache-Control: no-store`` on everything under ``/auth``, ``/operator`` and ``/admin``
    and on every error answer (issue 8, item 11); pages set their own ``private, no-store``.
    """
    config = current_app.config
    headers = response.headers
    path, status = request.path, response.status_code
    public = status < 400 and path.startswith(PUBLIC_ASSET_PREFIXES)
    # Each header unless the view set it. One pass over the response's headers for the names
    # (Headers.setdefault scans them twice per header: 17 µs of every request; issue 13 B9).
    present = {name.lower() for name, _ in headers.items()}
    for name, value in (
        ("Content-Security-Policy", config["CRM_CONTENT_SECURITY_POLICY"]),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "cross-origin" if public else "same-origin"),
        ("Permissions-Policy", config.get("CRM_PERMISSIONS_POLICY", DEFAULT_PERMISSIONS_POLICY)),
    ):
        if name.lower() not in present:
            headers.add(name, value)
    if _no_store(path, status):
        headers["Cache-Control"] = "no-store"
    if request.is_secure and "strict-transport-security" not in present:
        headers.add("Strict-Transport-Security", "max-age=31536000")
    return response


def init_security(app: Flask) -> None:
    """Install CSRF protection (checked by `check_request`), the guards and the headers."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    app.before_request(check_request)
    app.after_request(security_headers)
