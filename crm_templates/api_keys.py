"""API keys for the CRM REST API (issue 13, item 3): making, listing, revoking and checking them.

A key looks like ``crm_live_3f9a1c2b7d40e615_<43 URL-safe characters>``: the recognisable
`KEY_PREFIX`, the 16 hex characters of the key's id (``key_3f9a1c2b7d40e615``; not secret,
shown in lists and logs) and 32 random bytes from `secrets.token_urlsafe` (the secret).
Because the id travels inside the key, checking a key is one store read (the record with that
id) and one hash compare; no scan, no cache, so a revoked key is refused by every process
sharing the store from the next request on.

**Stored as a hash, a fast one.** The store keeps only ``sha256:<hex>`` of the whole key
(`hash_key`). A slow password KDF (scrypt, as for operator passwords) protects *guessable*
secrets; a key holds 256 random bits, which no amount of hashing speed makes guessable, so a
fast hash is as safe and keeps each API request cheap. It is unkeyed (not HMAC with a server
secret) because the CLI and every server process share only the store, and a pepper kept in
the same store would add nothing. Hashes are compared with `hmac.compare_digest` (constant
time).

**Scopes** (`SCOPES`): ``"read"`` allows reads, ``"write"`` allows writes and reads.

**Rate limit**: each key has ``rate_limit`` requests per minute (`DEFAULT_RATE_LIMIT` unless
given). Requests are counted in the store in fixed one-minute windows aligned to the clock
(``window_start = floor(now / 60) * 60``), one atomic counter per key
(`Store.hit_api_key_window`), so every server process sharing the store shares the limit. A
request over the limit gets `ApiRateLimited` with ``retry_after`` = whole seconds until the
next window. A fixed window lets a client send up to twice the limit across a window boundary;
that is the documented price of one small counter per key.

**last_used_at** is written with the first request of each window (the counter says which),
so it is exact to within a minute and costs at most one extra write per key per minute.

Errors: `ApiAuthError` and its four kinds carry an HTTP ``status`` and a message safe to show
to the client (never the key). `ApiKeyNotFoundError` for an unknown id in `revoke_key`;
`CrmValidationError` for a bad name, scope or rate limit.

This is the core: no Flask, no Jinja2 (SPEC §2).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
import unicodedata
from typing import Any

from .errors import CrmError, CrmUsageError, CrmValidationError, DuplicateError, EntryNotFoundError
from .storage.api_keys import ApiKey
from .storage.base import Store

#: The scopes a key may have; ``"write"`` implies ``"read"`` (issue 13, item 3).
SCOPES = ("read", "write")
#: Every key starts with this, so secret scanners and people can recognise one.
KEY_PREFIX = "crm_live_"
ID_PREFIX = "key_"
#: Hex characters of the id's random part (64 bits: collisions are refused, not expected).
ID_HEX = 16
#: How many characters of the key `ApiKey.prefix` keeps: `KEY_PREFIX` and 8 of the id.
SHOWN_PREFIX = len(KEY_PREFIX) + 8
#: Requests per minute a key may make when created without ``rate_limit``.
DEFAULT_RATE_LIMIT = 600
#: The largest ``rate_limit`` accepted (requests per minute).
MAX_RATE_LIMIT = 1_000_000
#: The length of the rate-limit window (seconds).
WINDOW = 60
MAX_NAME = 100
#: Anything longer than this cannot be a key: refused before any parsing or store read.
MAX_KEY_CHARS = 200
_ID_RE = re.compile(rf"^{ID_PREFIX}[0-9a-f]{{{ID_HEX}}}$")
_KEY_RE = re.compile(rf"^{KEY_PREFIX}([0-9a-f]{{{ID_HEX}}})_([A-Za-z0-9_-]{{43}})$")


class ApiKeyNotFoundError(EntryNotFoundError):
    """No API key has that id."""


class ApiAuthError(CrmError):
    """A request's API key was refused. ``status`` is the HTTP status to answer with,
    ``retry_after`` whole seconds to wait (429 only, else None); the message is safe to show
    to the client (it never holds the key)."""

    status = 401
    retry_after: int | None = None


class ApiKeyMissing(ApiAuthError):
    """No key was sent (401)."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "this request needs an API key: send it as 'Authorization: Bearer <key>' "
            "(or 'EF-Access-Key: <key>')"
        )


class ApiKeyInvalid(ApiAuthError):
    """The key is unknown, malformed or revoked (401). One message for all three, so a caller
    cannot tell which (no oracle)."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "the API key is not valid (unknown, malformed or revoked)")


class ApiKeyScopeError(ApiAuthError):
    """The key is valid but lacks the scope the request needs (403)."""

    status = 403


class ApiRateLimited(ApiAuthError):
    """The key made more than its ``rate_limit`` requests this minute (429)."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def hash_key(key: str) -> str:
    """The stored form of ``key``: ``"sha256:"`` and the hex SHA-256 of its UTF-8 bytes (see
    the module docstring for why a fast unkeyed hash is right for random keys)."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_scope(scope: Any) -> str:
    """``scope`` if it is one of `SCOPES`, else `CrmValidationError` naming them."""
    if not isinstance(scope, str) or scope not in SCOPES:
        raise CrmValidationError(f"an API key scope is one of {', '.join(SCOPES)}; got {scope!r}")
    return scope


def check_name(name: Any) -> str:
    """``name`` trimmed if it is text of 1 to `MAX_NAME` characters without control
    characters, else `CrmValidationError`."""
    if not isinstance(name, str):
        raise CrmValidationError("an API key name must be text")
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise CrmValidationError(f"an API key name has 1 to {MAX_NAME} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise CrmValidationError("an API key name cannot contain control characters")
    return name


def check_rate_limit(rate_limit: Any) -> int:
    """``rate_limit`` if it is a whole number from 1 to `MAX_RATE_LIMIT` (requests per
    minute), else `CrmValidationError`."""
    if (
        isinstance(rate_limit, bool)
        or not isinstance(rate_limit, int)
        or not 1 <= rate_limit <= MAX_RATE_LIMIT
    ):
        raise CrmValidationError(
            f"an API key's rate limit is a whole number of requests per minute from 1 to "
            f"{MAX_RATE_LIMIT}; got {rate_limit!r}"
        )
    return rate_limit


def allows(key: ApiKey, scope: str) -> bool:
    """Whether ``key``'s scope covers ``scope`` (``write`` covers ``read``)."""
    return key.scope == scope or key.scope == "write"


def create_key(
    store: Store, *, name: str, scope: str, rate_limit: int | None = None
) -> tuple[ApiKey, str]:
    """Make and store a new key; ``(key, secret)`` where ``secret`` is the whole key string
    to hand to the client — the only time it exists: the store keeps its hash.

    ``rate_limit`` is requests per minute (default `DEFAULT_RATE_LIMIT`).
    `CrmValidationError` for a bad name, scope or rate limit; nothing is stored then.
    """
    name, scope = check_name(name), check_scope(scope)
    limit = check_rate_limit(DEFAULT_RATE_LIMIT if rate_limit is None else rate_limit)
    for _ in range(3):  # a 64-bit id collision is astronomically unlikely; retry anyway
        body = secrets.token_hex(ID_HEX // 2)
        secret = f"{KEY_PREFIX}{body}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            id=ID_PREFIX + body,
            name=name,
            scope=scope,
            created_at=time.time(),
            last_used_at=None,
            revoked_at=None,
            rate_limit=limit,
            prefix=secret[:SHOWN_PREFIX],
        )
        try:
            store.create_api_key(key, hash_key(secret))
        except DuplicateError:
            continue
        return key, secret
    raise DuplicateError("could not find an unused API key id; try again")  # pragma: no cover


def list_keys(store: Store, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every key, oldest first; without the revoked ones when ``include_revoked`` is False.
    Never a secret or hash."""
    keys = store.list_api_keys()
    return keys if include_revoked else [k for k in keys if not k.revoked]


def _is_id(key_id: Any) -> bool:
    return isinstance(key_id, str) and _ID_RE.match(key_id) is not None


def get_key(store: Store, key_id: str) -> ApiKey:
    """The key with this id; `ApiKeyNotFoundError` when there is none."""
    record = store.get_api_key(key_id) if _is_id(key_id) else None
    if record is None:
        raise ApiKeyNotFoundError(f"there is no API key {key_id!r}")
    return record.key


def revoke_key(store: Store, key_id: str) -> ApiKey:
    """Revoke the key with this id: from the next request on, every process refuses it. The
    key as revoked (revoking it again keeps the first ``revoked_at``).
    `ApiKeyNotFoundError` when there is no such key."""
    key = store.revoke_api_key(key_id, time.time()) if _is_id(key_id) else None
    if key is None:
        raise ApiKeyNotFoundError(f"there is no API key {key_id!r}")
    return key


def parse_key_id(secret: str) -> str | None:
    """The key id a well-formed key string names (``key_…``), or None when it is malformed."""
    if len(secret) > MAX_KEY_CHARS:
        return None
    match = _KEY_RE.match(secret)
    return None if match is None else ID_PREFIX + match.group(1)


def authenticate(
    store: Store, secret: str | None, *, scope: str, now: float | None = None
) -> ApiKey:
    """The key ``secret`` is, if it may make one more request needing ``scope`` at ``now``
    (Unix seconds, default the current time); the request is counted against its rate limit.

    Raises `ApiKeyMissing` (None or empty), `ApiKeyInvalid` (malformed, unknown, wrong secret
    or revoked — one message), `ApiRateLimited` (over ``rate_limit`` this minute; counted
    before the scope check, so a key hammering with the wrong scope is limited too),
    `ApiKeyScopeError` (``read`` key on a ``write`` request). `CrmUsageError` when ``scope``
    itself is not one of `SCOPES` (a bug in the caller).
    """
    if scope not in SCOPES:
        raise CrmUsageError(f"authenticate: scope is one of {', '.join(SCOPES)}; got {scope!r}")
    if secret is None or secret == "":
        raise ApiKeyMissing()
    key_id = parse_key_id(secret) if isinstance(secret, str) else None
    if key_id is None:
        raise ApiKeyInvalid()
    record = store.get_api_key(key_id)
    if record is None:
        raise ApiKeyInvalid()
    if not hmac.compare_digest(record.secret_hash.encode(), hash_key(secret).encode()):
        raise ApiKeyInvalid()
    key = record.key
    if key.revoked:
        raise ApiKeyInvalid()
    at = time.time() if now is None else float(now)
    window_start = int(at // WINDOW) * WINDOW
    count = store.hit_api_key_window(key.id, window_start, key.rate_limit)
    if count == 1:
        store.touch_api_key(key.id, at)
    if count > key.rate_limit:
        retry = max(1, math.ceil(window_start + WINDOW - at))
        raise ApiRateLimited(
            f"this API key may make {key.rate_limit} requests a minute; retry in {retry} s",
            retry,
        )
    if not allows(key, scope):
        raise ApiKeyScopeError(
            f"this API key has the {key.scope!r} scope; this request needs {scope!r}"
        )
    return key


__all__ = [
    "DEFAULT_RATE_LIMIT",
    "KEY_PREFIX",
    "SCOPES",
    "ApiAuthError",
    "ApiKey",
    "ApiKeyInvalid",
    "ApiKeyMissing",
    "ApiKeyNotFoundError",
    "ApiKeyScopeError",
    "ApiRateLimited",
    "allows",
    "authenticate",
    "check_name",
    "check_rate_limit",
    "check_scope",
    "create_key",
    "get_key",
    "hash_key",
    "list_keys",
    "parse_key_id",
    "revoke_key",
]
