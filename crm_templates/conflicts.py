"""Retrying a read-modify-write that lost an optimistic-concurrency race (issue 14, item 3).

The service does every read-modify-write as *read, then compare-and-set on the entry's
version*; on the search backend another process can win between the two, and the store raises
`ConflictError`. `retry_conflicts` runs the attempt again after a **full-jitter exponential
backoff** (AWS Architecture Blog, "Exponential Backoff And Jitter": sleep a uniform random time
in ``[0, min(cap, base * 2**n))`` after the n-th conflict), bounded by **time**, not by a count:
it gives up only when ``deadline`` seconds have passed since the first attempt, raising the same
`ConflictError` as before (its message names the time, the attempts and the setting).

Why time and not a count: a count of 10 ran out under 6 processes × 100 forced writes on one
entry (1 `ConflictError` in 600); how many attempts a write needs grows with the number of
writers, while how long a caller is willing to wait does not.

The deadline is a store setting, ``conflict_deadline`` (seconds, default `DEFAULT_DEADLINE` =
10): the search backend takes it as a store URL option (``opensearch://host:9200?
conflict_deadline=30``) and holds it as ``ElasticsearchStore.conflict_deadline``; `deadline_of`
reads it from any store (the default where a store has none). The loop is stdlib only: SPEC §2
allows the core no dependencies beyond value validation, and it is a dozen lines (tenacity or
backoff would also cost a call-site object on every write, the hot path of B2).

`STATS` counts conflicts, attempts that failed and the time slept, per process: the B10
benchmark reads them to show where the time goes under contention.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import ConflictError, CrmValidationError

T = TypeVar("T")

#: Seconds a conflicting write keeps retrying before `ConflictError` (the store setting's default).
DEFAULT_DEADLINE = 10.0
#: First backoff ceiling (seconds): about one round trip to a cluster on the same network.
BASE = 0.002
#: Largest backoff ceiling (seconds): with 8 writers on one entry the winners need ~8 attempt
#: times of a few ms each, so a loser waiting up to this long is back before they are done.
CAP = 0.05


@dataclass
class ConflictStats:
    """Per-process counters (thread-safe): conflicts seen, calls that gave up, seconds slept."""

    conflicts: int = 0
    gave_up: int = 0
    slept: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, conflicts: int = 0, gave_up: int = 0, slept: float = 0.0) -> None:
        with self._lock:
            self.conflicts += conflicts
            self.gave_up += gave_up
            self.slept += slept

    def snapshot(self) -> dict[str, float]:
        """``{conflicts, gave_up, slept}`` as plain numbers (``slept`` in seconds)."""
        with self._lock:
            return {"conflicts": self.conflicts, "gave_up": self.gave_up, "slept": self.slept}

    def reset(self) -> None:
        with self._lock:
            self.conflicts = self.gave_up = 0
            self.slept = 0.0


STATS = ConflictStats()

# True while `retry_conflicts` runs an attempt: a store may then report a refused
# compare-and-set as a conflict at once instead of spending a round trip to tell a real
# conflict from a spurious one, since the caller re-reads and retries either way.
_RETRYING: ContextVar[bool] = ContextVar("crm_retrying_conflicts", default=False)


def retrying() -> bool:
    """True inside an attempt run by `retry_conflicts` (the whole read-modify-write is retried
    on `ConflictError`, so a store need not double-check a refused compare-and-set)."""
    return _RETRYING.get()


def backoff(n: int, base: float = BASE, cap: float = CAP) -> float:
    """The full-jitter sleep (seconds) after the ``n``-th conflict (n = 0 for the first)."""
    return random.uniform(0.0, min(cap, base * 2 ** min(n, 32)))


def retry_conflicts(
    attempt: Callable[[], T],
    deadline: float = DEFAULT_DEADLINE,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``attempt()``, run again after a jittered backoff each time it raises `ConflictError`.

    ``attempt`` must be a whole read-modify-write (it re-reads what it changes). Other errors
    propagate at once. After ``deadline`` seconds (monotonic clock, from the first attempt) the
    last conflict becomes `ConflictError` "gave up after … s and N attempts …"; a deadline of 0
    makes one attempt. The first attempt costs no clock read.
    """
    token = _RETRYING.set(True)
    try:
        return _retry(attempt, deadline, sleep)
    finally:
        _RETRYING.reset(token)


def _retry(attempt: Callable[[], T], deadline: float, sleep: Callable[[float], None]) -> T:
    try:
        return attempt()
    except ConflictError:
        pass
    start = time.monotonic()
    n = 0
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= deadline:
            STATS.add(conflicts=1, gave_up=1)
            raise ConflictError(
                f"gave up after {elapsed:.1f} s and {n + 1} attempts: other writers kept "
                "changing the same entries; retry the operation (the store's conflict_deadline "
                f"is {deadline:g} s)"
            ) from None
        pause = min(backoff(n), deadline - elapsed)
        STATS.add(conflicts=1, slept=pause)
        sleep(pause)
        n += 1
        try:
            return attempt()
        except ConflictError:
            continue


def rounds(
    deadline: float = DEFAULT_DEADLINE, *, sleep: Callable[[float], None] = time.sleep
) -> Iterator[int]:
    """Round numbers 0, 1, 2, … for a hand-written compare-and-set loop, same rule as
    `retry_conflicts`: before every round after the first, the full-jitter backoff; no new round
    once ``deadline`` seconds have passed since the first (the loop then reports its failure).
    Each round after the first counts as a conflict in `STATS`.

    Used where a conflict is not an exception but a refused write (the search backend's
    security records: token claims, rate-limit hits, session generations).
    """
    yield 0
    start = time.monotonic()
    n = 0
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= deadline:
            STATS.add(conflicts=1, gave_up=1)
            return
        pause = min(backoff(n), deadline - elapsed)
        STATS.add(conflicts=1, slept=pause)
        sleep(pause)
        n += 1
        yield n


def deadline_of(store: object) -> float:
    """The store's ``conflict_deadline`` (the search backend's setting), else the default.

    Not part of the `Store` interface: a read-only view must refuse every backend extra, and a
    store whose writes never conflict (SQLite) has no use for it.
    """
    value = getattr(store, "conflict_deadline", DEFAULT_DEADLINE)
    return value if isinstance(value, float) else DEFAULT_DEADLINE


def parse_deadline(value: object) -> float:
    """A ``conflict_deadline`` setting (seconds, from a URL query or a keyword) as a float.

    Raises `CrmValidationError` naming the setting unless it is a finite number ≥ 0.
    """
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise CrmValidationError(
            f"conflict_deadline must be a number of seconds >= 0 (default {DEFAULT_DEADLINE:g}); "
            f"got {value!r}"
        )
    return seconds
