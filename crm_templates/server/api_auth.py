"""API-key authentication of a request to the CRM REST API (issue 13, item 3).

A client sends its key (`crm_templates.api_keys`) in one of two headers:

* ``Authorization: Bearer <key>`` (RFC 6750). The scheme name is case-insensitive and spaces
  or tabs around the scheme and the key are ignored.
* ``EF-Access-Key: <key>``, the seed platform's header, as an alias (surrounding whitespace
  ignored).

**Both sent:** accepted when they carry the same key; when they differ the request is refused
with 401 (`ApiKeyInvalid`) rather than picking one — a client sending two different keys has a
bug, and silently preferring either could run a write under the wrong key's scope.
An ``Authorization`` header with another scheme (``Basic …``), with no key or with more than
one word after ``Bearer``, several ``Authorization`` or ``EF-Access-Key`` headers that
disagree, and any value longer than `MAX_HEADER` characters are refused the same way (401),
never an error page.

Cookies are never read here: a browser session (customer or operator) authenticates nothing on
the API, and since nothing a browser sends on its own (cookies) is accepted, CSRF does not
apply to key-authenticated requests.

`challenge_headers` gives the response headers each refusal should carry
(``WWW-Authenticate``, ``Retry-After``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from werkzeug.datastructures import EnvironHeaders

from ..api_keys import (
    ApiAuthError,
    ApiKey,
    ApiKeyInvalid,
    ApiKeyScopeError,
    ApiRateLimited,
    authenticate,
)
from ..storage.base import Store

#: A header value longer than this cannot hold a key (keys are under 100 characters).
MAX_HEADER = 1024
ALIAS_HEADER = "EF-Access-Key"
#: The realm named in ``WWW-Authenticate``.
REALM = "crm-api"
_BEARER_RE = re.compile(r"^[ \t]*bearer[ \t]+([^ \t]+)[ \t]*$", re.IGNORECASE)


class _Headers(Protocol):
    def getlist(self, key: str) -> list[str]: ...


class _Request(Protocol):
    @property
    def headers(self) -> Any: ...


def _values(headers: _Headers | Mapping[str, str], name: str) -> list[str]:
    if isinstance(headers, EnvironHeaders):
        # A WSGI environ holds one value per header name (servers join repeated ones), and
        # reading it by name is one dict look-up; getlist would walk the whole environ.
        value = headers.get(name)
        return [] if value is None else [value]
    if hasattr(headers, "getlist"):
        return list(headers.getlist(name))
    wanted = name.lower()
    return [v for k, v in headers.items() if k.lower() == wanted]


def _one(values: list[str], what: str) -> str | None:
    """The single distinct non-blank value among ``values`` (None when there is none).

    A WSGI server hands the app repeated header lines joined into one value with commas
    (PEP 3333 via RFC 9110 §5.3: waitress, gunicorn and werkzeug's own server all do), so each
    value is split on commas first: two lines carrying the same key are one key, as on a test
    client that keeps them apart. No key and no ``Bearer <key>`` credential contains a comma.
    """
    if any(len(v) > MAX_HEADER for v in values):
        raise ApiKeyInvalid()
    distinct = {part.strip(" \t") for v in values for part in v.split(",")} - {""}
    if len(distinct) > 1:
        raise ApiKeyInvalid(f"several {what} headers with different values; send one")
    return distinct.pop() if distinct else None


def key_from_headers(headers: _Headers | Mapping[str, str]) -> str | None:
    """The API key a request's headers carry, or None when they carry none.

    ``headers`` is Werkzeug's `Headers` (or any mapping of header names to values). Raises
    `ApiKeyInvalid` (401) for an ``Authorization`` header that is not ``Bearer <key>``, for
    two headers naming different keys and for values over `MAX_HEADER` characters (see the
    module docstring). Whether the key is real is `authenticate`'s business.
    """
    authorization = _one(_values(headers, "Authorization"), "Authorization")
    alias = _one(_values(headers, ALIAS_HEADER), ALIAS_HEADER)
    bearer = None
    if authorization is not None:
        match = _BEARER_RE.match(authorization)
        if match is None:
            raise ApiKeyInvalid(
                "send the API key as 'Authorization: Bearer <key>'; other Authorization "
                "schemes are not accepted"
            )
        bearer = match.group(1)
    if bearer is not None and alias is not None and bearer != alias:
        raise ApiKeyInvalid(
            f"'Authorization' and '{ALIAS_HEADER}' carry different keys; send one key"
        )
    return bearer if bearer is not None else alias


def authenticate_request(store: Store, request: _Request, *, scope: str) -> ApiKey:
    """The key that authenticates ``request`` (a Flask/Werkzeug request) for ``scope``
    (``"read"`` or ``"write"``); the request is counted against the key's rate limit.

    Raises the `ApiAuthError` kinds of `crm_templates.api_keys.authenticate` (401 missing or
    invalid, 403 scope, 429 rate limit; ``status`` and ``retry_after`` on the exception).
    Reads only the headers: never cookies.
    """
    return authenticate(store, key_from_headers(request.headers), scope=scope)


def challenge_headers(error: ApiAuthError) -> dict[str, str]:
    """The headers a refusal answers with: ``WWW-Authenticate`` (RFC 6750 §3) on 401 and
    403, ``Retry-After`` (seconds) on 429."""
    if isinstance(error, ApiRateLimited):
        return {"Retry-After": str(error.retry_after or 1)}
    if isinstance(error, ApiKeyScopeError):
        return {"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope"'}
    if isinstance(error, ApiKeyInvalid):
        return {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'}
    return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}


__all__ = [
    "ALIAS_HEADER",
    "MAX_HEADER",
    "authenticate_request",
    "challenge_headers",
    "key_from_headers",
]
