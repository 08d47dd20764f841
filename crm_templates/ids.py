"""Time-ordered identifiers and timestamps.

Entry ids sort in creation order even within one millisecond (a per-process monotonic counter
takes over when the clock does not advance), so "newest" — the greatest ``(created_at, id)`` —
is always well defined. Ids are 32 lowercase hex characters: 12 for the millisecond timestamp,
20 for a random tail; an id made in the same millisecond as the last one adds a random step of
1 to 2**40 to it, so ids stay ordered without being guessable from a neighbour (issue 8).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from typing import Any

_lock = threading.Lock()
_last_ms = 0
_last_tail = 0
_TAIL_MAX = (1 << 80) - 1
# Random bytes are read from the OS in blocks (issue 14, B3): one getrandom() per id cost a
# system call — and, on a thread that shares the interpreter lock with the async writer, a
# lock hand-over — per write. A forked child starts a fresh block, never its parent's.
_POOL_SIZE = 4096
_pool = b""
_pos = 0


def _forget_pool() -> None:
    """In a forked child: a fresh block of randomness, and a fresh lock (another thread of the
    parent may have held it at the fork; it would never be released in the child)."""
    global _pool, _pos, _lock
    _pool, _pos = b"", 0
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _random_int(size: int) -> int:
    """A non-negative int from ``size`` bytes of OS randomness (call with ``_lock`` held)."""
    global _pool, _pos
    start = _pos
    if start + size > len(_pool):
        _pool, start = os.urandom(_POOL_SIZE), 0
    _pos = start + size
    return int.from_bytes(_pool[start : start + size], "big")


def new_id(prefix: str = "") -> str:
    """Return a new time-ordered id, optionally with a prefix such as ``"cus_"``."""
    global _last_ms, _last_tail
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            tail = _last_tail + 1 + _random_int(5)
            if tail > _TAIL_MAX:  # astronomically unlikely: borrow the next millisecond
                ms += 1
                tail = _random_int(10) >> 1
        else:
            # Leave headroom in the tail so same-millisecond increments never overflow.
            tail = _random_int(10) >> 1
        _last_ms, _last_tail = ms, tail
    # The same 32 hex digits as f"{ms:012x}{tail:020x}", in one conversion (half the time).
    return prefix + ((ms << 80) | tail).to_bytes(16, "big").hex()


_second: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """The current time as a sortable ISO 8601 UTC string with microseconds (``...Z``).

    Every write stamps one, so the date-and-seconds prefix is formatted once per second.
    """
    global _second
    micros = time.time_ns() // 1000
    seconds, fraction = divmod(micros, 1_000_000)
    cached = _second  # one read: another thread may replace it, never half of it
    if cached[0] != seconds:
        prefix = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        cached = _second = (seconds, prefix)
    return f"{cached[1]}.{fraction:06d}Z"


def timestamp(value: Any) -> str:
    """A stored timestamp (``created_at``/``updated_at``) from ISO 8601 text or a datetime, in
    `utc_now`'s exact form (UTC, microseconds, ``Z``), so stored timestamps keep sorting as
    text; a naive time is taken as UTC. Raises `CrmValidationError` for anything else (used by
    imports, issue 11)."""
    import fieldtypes

    from .errors import CrmValidationError

    try:
        moment = fieldtypes.utc(value)
    except fieldtypes.InvalidValue as exc:
        raise CrmValidationError(f"expected {exc}") from None
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
