"""The one place that builds absolute URLs and decides which host names the server answers for.

Absolute links — above all the sign-in link that goes out by email — must never be built from
request headers an attacker controls (issue 8, item 2: ``POST /auth/sign-in`` with
``Host: attacker.example`` mailed the victim a link to the attacker's host). The rule:

1. ``CRM_BASE_URL`` set (``https://shop.example`` or ``https://shop.example/crm``): every
   absolute URL is that base plus the app-relative path. The request's Host is not used.
2. Else the request's host, only when it matches Flask's ``TRUSTED_HOSTS`` (werkzeug's rules:
   exact name, or ``.example.com`` for example.com and every subdomain; an entry with ``:port``
   must also match the port, which werkzeug alone ignores). With ``TRUSTED_HOSTS`` set, a
   request for any other host or port is answered by `refuse_untrusted_host` with a plain 400
   and a log line.
3. Neither: `external_url` raises `NoPublicAddress` and the caller refuses (the sign-in form
   answers 400 and logs what the operator must set).

``crm-templates serve`` on a loopback interface trusts the loopback names with its port
(`trust_loopback`); ``create_app`` used directly (tests, a WSGI server) trusts nothing until
configured. ``X-Forwarded-Host`` is never read here: werkzeug only uses it behind ``ProxyFix``,
and then the forwarded host is what ``TRUSTED_HOSTS`` checks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request, url_for
from werkzeug.exceptions import SecurityError

log = logging.getLogger("crm_templates.server")

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# werkzeug's own shape of a Host value: a name or IPv4, or a bracketed IPv6, then a port.
_HOST = re.compile(r"(\.?[a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::([0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class NoPublicAddress(Exception):
    """Neither ``CRM_BASE_URL`` nor a trusted request host: no absolute URL can be built."""


def check_base_url(value: Any) -> str | None:
    """``CRM_BASE_URL`` validated at start-up: ``None`` when unset, else the URL without a
    trailing slash. Raises ValueError unless it is an ``http(s)://host[:port][/path]`` URL
    without credentials, query or fragment."""
    if value is None or value == "":
        return None
    hint = "set it to the site's public address, like https://shop.example"
    if not isinstance(value, str) or any(c.isspace() or ord(c) < 0x20 for c in value):
        raise ValueError(f"CRM_BASE_URL must be a URL without spaces; got {value!r}: {hint}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"CRM_BASE_URL {value!r} is not a valid URL ({exc}): {hint}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"CRM_BASE_URL must start with https:// or http://; got {value!r}")
    if not parts.hostname:
        raise ValueError(f"CRM_BASE_URL has no host name: {value!r}: {hint}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"CRM_BASE_URL must not contain a user name or password: {value!r}")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(f"CRM_BASE_URL must not have a query or fragment: {value!r}")
    return value.rstrip("/")


def check_trusted_hosts(value: Any) -> list[str] | None:
    """``TRUSTED_HOSTS`` (a list, or a comma-separated string from ``CRM_TRUSTED_HOSTS``)
    validated at start-up: lower-cased names, ``None`` when empty. Raises ValueError for an
    entry that is not a host name with an optional port (a URL, a path, spaces)."""
    if value is None:
        return None
    entries: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    if not isinstance(entries, (list, tuple, set, frozenset)) and not isinstance(value, str):
        raise ValueError(f"TRUSTED_HOSTS must be a list of host names; got {value!r}")
    hosts: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"TRUSTED_HOSTS entries must be strings; got {entry!r}")
        name = entry.strip().lower()
        if not name:
            continue
        if _HOST.fullmatch(name) is None:
            raise ValueError(
                f"TRUSTED_HOSTS entry {entry!r} is not a host name: give names like "
                "'shop.example', '.shop.example' (every subdomain) or 'localhost:8000', "
                "without http:// or a path"
            )
        hosts.append(name)
    # An empty list would make werkzeug accept every host: "nothing trusted" is None.
    return hosts or None


def init_urls(app: Flask) -> None:
    """Validate ``CRM_BASE_URL`` and ``TRUSTED_HOSTS`` and install the host check, first of
    all request hooks (nothing else should run for a host the server does not serve)."""
    app.config["CRM_BASE_URL"] = check_base_url(app.config.get("CRM_BASE_URL"))
    app.config["TRUSTED_HOSTS"] = check_trusted_hosts(app.config.get("TRUSTED_HOSTS"))
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_untrusted_host)


def trust_loopback(app: Flask, host: str, port: int | None) -> None:
    """``serve`` on a loopback interface: trust the loopback names (and ``host``) on ``port``,
    unless ``TRUSTED_HOSTS`` or ``CRM_BASE_URL`` was configured."""
    config = app.config
    if config.get("TRUSTED_HOSTS") or config.get("CRM_BASE_URL"):
        return
    named = f"[{host}]" if ":" in host else host
    names = dict.fromkeys([*LOOPBACK_NAMES, named.lower()])
    suffix = f":{port}" if port else ""
    config["TRUSTED_HOSTS"] = [name + suffix for name in names]


def missing_address_hint(app: Flask) -> str | None:
    """What the operator must set for links to be mailed, or None when links can be built
    (for a start-up warning)."""
    if app.config.get("CRM_BASE_URL") or app.config.get("TRUSTED_HOSTS"):
        return None
    return (
        "sign-in links cannot be mailed: set CRM_BASE_URL to the site's public address "
        "(like https://shop.example), or CRM_TRUSTED_HOSTS to the host names it is served as"
    )


def refuse_untrusted_host() -> Response | None:
    """before_request: a plain 400 for a Host not in ``TRUSTED_HOSTS`` (Flask found it untrusted
    while matching the URL, so no URL can be built: no templates, no ``url_for``)."""
    if not isinstance(request.routing_exception, SecurityError) and (
        not current_app.config.get("TRUSTED_HOSTS") or trusted_request_host() is not None
    ):
        return None
    # werkzeug matched the name but ignores ports: an entry with a port refuses other ports.
    given = request.environ.get("HTTP_HOST", "")
    log.warning(
        "refused a request for host %r (400): not in TRUSTED_HOSTS %r. If the site is served "
        "under that name, add it to CRM_TRUSTED_HOSTS (behind a proxy, set CRM_BASE_URL: "
        "`serve` on loopback trusts only the loopback names when neither is set)",
        given,
        current_app.config.get("TRUSTED_HOSTS"),
    )
    return Response(
        f"400 Bad Request: this server does not answer for the host name {given!r}.\n",
        status=400,
        mimetype="text/plain",
    )


def _split_host(value: str, default_port: str | None) -> tuple[str, str | None]:
    """``("name", "port")`` of a ``name[:port]`` or ``[v6][:port]`` value, lower-cased."""
    value = value.lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name += "]"
        port = rest[1:] if rest.startswith(":") else None
    else:
        name, _, port = value.partition(":")
    return name, port or default_port


def trusted_request_host() -> str | None:
    """The request's ``host[:port]`` when ``TRUSTED_HOSTS`` lists it (an entry's port, if it has
    one, must match too; werkzeug alone ignores ports), else None. Never reads
    ``CRM_BASE_URL``."""
    trusted = current_app.config.get("TRUSTED_HOSTS")
    if not trusted:
        return None
    try:
        host = request.host
    except SecurityError:
        return None
    if _HOST.fullmatch(host.lower()) is None:
        return None
    name, port = _split_host(host, _DEFAULT_PORTS.get(request.scheme))
    for entry in trusted:
        wanted, wanted_port = _split_host(entry, None)
        if wanted_port is not None and wanted_port != port:
            continue
        if name == wanted or (wanted.startswith(".") and name.endswith(wanted)):
            return host
        if wanted.startswith(".") and name == wanted[1:]:
            return host
    return None


def public_root() -> str:
    """``scheme://host[:port][/prefix]`` of this site, without a trailing slash: from
    ``CRM_BASE_URL``, else the trusted request host. Raises `NoPublicAddress`."""
    base = current_app.config.get("CRM_BASE_URL")
    if base:
        return str(base)
    host = trusted_request_host()
    if host is None:
        raise NoPublicAddress(
            f"CRM_BASE_URL is not set and the request's host {request.environ.get('HTTP_HOST')!r} "
            "is not in TRUSTED_HOSTS"
        )
    return f"{request.scheme}://{host}{request.script_root}"


def external_url(endpoint: str, **values: Any) -> str:
    """The absolute URL of ``endpoint`` (``url_for`` arguments) for use outside this request,
    such as in an email. Raises `NoPublicAddress` when no trusted address is known."""
    path = url_for(endpoint, **values)
    # url_for includes the WSGI script root; the public root already names the prefix.
    root = request.script_root
    if root and path.startswith(root):
        path = path[len(root) :]
    return public_root() + path


def current_url() -> str:
    """The current request's URL as templates see it (``request.url``): under
    ``CRM_BASE_URL`` when set, else as the browser asked for it (only ever shown back to
    that same browser; pages are never cached)."""
    base = current_app.config.get("CRM_BASE_URL")
    if not base:
        return request.url
    query = request.query_string.decode("latin-1")
    return f"{base}{request.path}" + (f"?{query}" if query else "")


def own_origins() -> set[str]:
    """``scheme://host[:port]`` values a same-origin ``Origin`` header may name: the request's
    own (what the browser used) and ``CRM_BASE_URL``'s (behind a TLS proxy the app sees http)."""
    origins = set()
    try:
        origins.add(f"{request.scheme}://{request.host}".lower())
    except SecurityError:
        pass
    base = current_app.config.get("CRM_BASE_URL")
    if base:
        parts = urlsplit(base)
        netloc = parts.netloc.lower()
        if netloc.endswith(f":{_DEFAULT_PORTS[parts.scheme]}"):
            netloc = netloc.rpartition(":")[0]
        origins.add(f"{parts.scheme}://{netloc}")
    return origins
