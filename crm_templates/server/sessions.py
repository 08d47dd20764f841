"""Server-side session state kept in the store (issue 8, items 4 and 5), so it holds across
restarts, processes and machines: session revocation and generations, single-use sign-in
tokens and rate limits.

The session cookie stays a signed cookie, but a *signed-in* customer's or an operator's part of
it is only honoured while the store agrees:

- signing in gives that part a random session id and records the current generation of its
  owner (``customer:<id>`` or ``operator``);
- each request that asks who the customer or operator is checks, once, that the session id is
  not revoked (``session-revoked:<sid>``, a claimed token) and that the generation is still
  current; otherwise that part of the session is dropped — a new anonymous visitor, or an
  operator signed out;
- sign-out revokes the session id until the cookie could have expired anyway; "sign out
  everywhere" bumps the owner's generation, ending every session signed in before.

Anonymous visitors carry no session id: serving them costs no store read beyond the customer
lookup (benchmark B5).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from flask import current_app, g, session

from ..storage.base import Store

REVOKED = "session-revoked:"
OPERATOR_GENERATION = "operator"
# Claims outlive what they guard by this much (seconds): itsdangerous accepts a token up to a
# second past its max_age (whole-second timestamps), and servers sharing a store may disagree
# on the time by a little; a claim that expired first would let a used link work again.
CLAIM_MARGIN = 300.0


def operator_fingerprint() -> str | None:
    """A keyed digest of the configured operator password (or its hash), kept in an operator
    session: changing the password ends every operator session signed in with the old one
    (a leaked password's cookies do not outlive the rotation). None when operators are off."""
    config = current_app.config
    secret = config.get("CRM_OPERATOR_PASSWORD_HASH") or config.get("CRM_OPERATOR_PASSWORD")
    if not secret:
        return None
    return fingerprint(str(secret))


def fingerprint(secret: str) -> str:
    """A keyed digest (the app's secret key) of an operator's password secret — the bootstrap
    password or hash, or an account's password hash (issue 12): a session keeps it, and is
    honoured only while the account's secret is still the same."""
    raw = current_app.secret_key or ""
    key = raw.encode() if isinstance(raw, str) else bytes(raw)
    return hmac.new(key, b"crm-operator:" + secret.encode(), hashlib.sha256).hexdigest()


def customer_generation_key(customer_id: str) -> str:
    """The store key of a customer's session generation."""
    return f"customer:{customer_id}"


@dataclass(frozen=True)
class SessionSlot:
    """One signed-in part of the cookie: the session keys of its id and generation."""

    sid_key: str
    generation_key: str


CUSTOMER = SessionSlot("customer_sid", "customer_generation")
OPERATOR = SessionSlot("operator_sid", "operator_generation")


def _store() -> Store:
    from .state import state

    return state().crm.store


def start(slot: SessionSlot, owner: str) -> None:
    """Give ``slot`` a fresh session id (never reuse one from before sign-in) and the current
    generation of ``owner`` (a generation key)."""
    session[slot.sid_key] = secrets.token_urlsafe(24)
    session[slot.generation_key] = _store().session_generation(owner)
    session.permanent = True
    g.pop(f"crm_session_ok:{slot.sid_key}", None)


def is_current(slot: SessionSlot, owner: str) -> bool:
    """True when ``slot``'s session id is not revoked and its generation is ``owner``'s current
    one (one store read, `Store.session_state`, once per request: never cached across
    requests, so a revocation by any process counts from the next request)."""
    cache = f"crm_session_ok:{slot.sid_key}"
    if cache in g:
        return bool(g.get(cache))
    sid = session.get(slot.sid_key)
    generation = session.get(slot.generation_key)
    ok = False
    if isinstance(sid, str) and isinstance(generation, int):
        revoked, current = _store().session_state(REVOKED + sid, owner)
        ok = not revoked and current == generation
    setattr(g, cache, ok)
    return ok


def forget(slot: SessionSlot) -> None:
    """Drop ``slot``'s keys from the cookie (no store write)."""
    session.pop(slot.sid_key, None)
    session.pop(slot.generation_key, None)
    g.pop(f"crm_session_ok:{slot.sid_key}", None)


def revoke(slot: SessionSlot) -> None:
    """End this browser's ``slot`` session server-side: a copy of the cookie is refused from
    now on, in every process, until it would have expired anyway."""
    sid = session.get(slot.sid_key)
    if isinstance(sid, str):
        lifetime = current_app.permanent_session_lifetime.total_seconds()
        _store().claim_token(REVOKED + sid, expires_at=time.time() + lifetime + CLAIM_MARGIN)
    forget(slot)


def bump(owner: str) -> int:
    """End every session of ``owner`` signed in so far (sign out everywhere)."""
    return _store().bump_session_generation(owner)


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` hits per key within ``window`` seconds, counted in the store, so every
    process of a site shares one count (issue 8, item 5)."""

    store: Store
    name: str
    limit: int
    window: float

    def hit(self, key: str) -> bool:
        """Record a hit; False (and not recorded) when ``key`` is over its limit."""
        return self.store.hit_rate_limit(f"{self.name}:{key}", self.limit, self.window)

    def exceeded(self, key: str) -> bool:
        """True when ``key`` already has ``limit`` hits in the window (nothing recorded)."""
        return self.store.count_rate_hits(f"{self.name}:{key}", self.window) >= self.limit

    def clear(self, key: str) -> None:
        """Forget ``key``'s hits."""
        self.store.clear_rate_hits(f"{self.name}:{key}")


@dataclass
class Housekeeping:
    """Deletes expired claims and stale rate-limit hits from the store, at most once per
    ``every`` seconds per process (the store's operations are correct without it; it only
    keeps the records from piling up)."""

    store: Store
    every: float = 3600.0
    _due: float = 0.0

    def now_and_then(self) -> None:
        """Purge if the last purge of this process is ``every`` seconds ago (or never ran)."""
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + self.every
        self.store.purge_security_records()


@dataclass(frozen=True)
class SingleUseTokens:
    """Nonces of sign-in links, each usable once, remembered in the store until the link
    would have expired anyway."""

    store: Store
    name: str = "sign-in"

    def is_used(self, nonce: str) -> bool:
        """True when ``nonce`` was used already."""
        return self.store.is_token_claimed(f"{self.name}:{nonce}")

    def use(self, nonce: str, expires_at: float) -> bool:
        """Mark ``nonce`` used until `CLAIM_MARGIN` seconds past ``expires_at`` (Unix time,
        when the link stops working); False when it already was."""
        return self.store.claim_token(f"{self.name}:{nonce}", expires_at + CLAIM_MARGIN)
