"""Security records: the rules every backend shares (issue 8; SPEC §8 "tokens, rate limits and
session generations live in the store").

Three kinds of record live in one table (SQLite ``security_records``) or one index
(``<prefix>security``), one record per ``(kind, key)``:

* ``claim`` — a used single-use token or a revoked session id, held until ``expires_at``.
* ``hits`` — the recent hits on one rate-limit key: a list of Unix times, never longer than the
  limit (a refused hit is not recorded, older hits are dropped when a new one is recorded), so a
  record stays small however hard a key is hammered. ``expires_at`` is when its newest hit leaves
  the longest window it was recorded under; after that the whole record is garbage.
* ``generation`` — a session generation counter; never expires.

Keys are opaque strings of 1 to `MAX_KEY_CHARS` characters chosen by the server (for example
``"sign-in:<nonce>"`` or ``"limit:email:<addr>"``). Times are Unix seconds as floats, taken
from the clock of the process that calls the store, so processes sharing a store need clocks in
step (NTP) to within a small fraction of the shortest window.

This module holds only argument checks and list arithmetic; each backend does the atomic part.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from ..errors import CrmValidationError

MAX_KEY_CHARS = 512
CLAIM, HITS, GENERATION = "claim", "hits", "generation"
EXPIRING_KINDS = (CLAIM, HITS)  # the kinds `purge_security_records` may delete


def check_key(key: Any) -> str:
    """``key`` if it is a string of 1 to `MAX_KEY_CHARS` characters, else `CrmValidationError`."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        shown = f"{len(key)} characters" if isinstance(key, str) else repr(key)
        raise CrmValidationError(
            f"security record keys must be strings of 1 to {MAX_KEY_CHARS} characters; got {shown}"
        )
    return key


def check_time(value: Any, name: str) -> float:
    """``value`` as a float if it is a finite number (Unix seconds), else `CrmValidationError`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CrmValidationError(f"{name} must be a finite number of Unix seconds; got {value!r}")
    return float(value)


def check_window(window: Any) -> float:
    """``window`` as a float if it is a finite number of seconds > 0, else `CrmValidationError`."""
    if (
        isinstance(window, bool)
        or not isinstance(window, int | float)
        or not math.isfinite(window)
        or window <= 0
    ):
        raise CrmValidationError(f"a rate-limit window must be seconds > 0; got {window!r}")
    return float(window)


def check_limit(limit: Any) -> int:
    """``limit`` if it is a whole number >= 0, else `CrmValidationError`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise CrmValidationError(f"a rate limit must be a whole number >= 0; got {limit!r}")
    return limit


def now_or(now: Any) -> float:
    """``now`` checked, or the current Unix time when it is None."""
    return time.time() if now is None else check_time(now, "now")


def recent(hits: Iterable[float], now: float, window: float) -> list[float]:
    """The hits within the last ``window`` seconds before ``now`` (the window is half-open:
    a hit exactly ``window`` seconds old has left it)."""
    start = now - window
    return [at for at in hits if at > start]


def next_hits(
    hits: Iterable[float], expires_at: float | None, now: float, limit: int, window: float
) -> tuple[list[float], float] | None:
    """The record after one more hit at ``now``: ``(hits, expires_at)``, or None when ``limit``
    hits already fall within the window (then nothing is recorded)."""
    kept = recent(hits, now, window)
    if len(kept) >= limit:
        return None
    kept.append(now)
    return kept, max(expires_at or 0.0, now + window)
