"""The background writer behind ``async: true`` (SPEC §5).

Writes are applied in submission order, in batches (one `Store.batch()` — a transaction or a bulk
request — per batch). A batch that fails is rolled back and replayed one write at a time, so one
bad write cannot take its neighbours down; a write that still fails is logged with its payload
and kept in `failures` (and appended to the optional JSON-lines failure log). `flush()` waits for
everything submitted so far; `close()` drains the queue; the process drains it at exit too.
"""

from __future__ import annotations

import atexit
import collections
import functools
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import events
from .conflicts import deadline_of, retry_conflicts
from .errors import CrmError, StoreUnavailable
from .ids import utc_now
from .model import Entry
from .storage.base import Store

log = logging.getLogger("crm_templates.writer")


@dataclass(slots=True)
class PendingWrite:
    """A queued write: what was asked (for the failure log) and how to apply it.

    Not frozen: one is made per async write, and a frozen dataclass's constructor costs about
    five times as much (issue 14, B3). Nothing changes it after `AsyncWriter.submit`.
    """

    function: str
    payload: dict[str, Any]
    #: How to apply the write alone; None for a write that is nothing but its ``inserts``
    #: (the writer inserts them, sending ``entry.created`` as `actor`'s; no closure to make).
    apply: Callable[[], Any] | None
    #: Set when the write is nothing but inserting these entries: runs of such writes are
    #: inserted together (one executemany / one bulk request) instead of one by one.
    inserts: tuple[Entry, ...] = ()
    #: Who asked for the write (`crm_templates.events.Actor`), for the entry signals the
    #: writer sends for grouped inserts.
    actor: Any = None


@dataclass(frozen=True)
class FailedWrite:
    """A write that could not be applied, with enough detail to replay it by hand."""

    function: str
    payload: dict[str, Any]
    error: str
    failed_at: str


def _close_at_exit(ref: weakref.ref[AsyncWriter]) -> None:
    """Drain a still-open writer when the interpreter exits (a graceful stop loses nothing)."""
    writer = ref()
    if writer is not None:
        writer.close()


# Every writer of this process: a forked child starts each one afresh (`_after_fork`).
_WRITERS: weakref.WeakSet[AsyncWriter] = weakref.WeakSet()


def _writers_after_fork() -> None:
    for writer in list(_WRITERS):
        writer._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_writers_after_fork)


class AsyncWriter:
    """One background thread applying queued writes in order, in batches.

    In a forked child (a pre-forking server that made the service before forking) the writer
    starts afresh: the parent's thread does not exist there, so the child gets its own at its
    first write, and the parent's queued writes stay the parent's (applied once, by it).
    """

    def __init__(
        self,
        store: Store,
        *,
        batch_size: int = 500,
        failure_log: str | Path | None = None,
        retries: int = 3,
        linger: float = 0.005,  # seconds; at most 10 lingers while writes keep arriving
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.linger = linger
        self.failure_log = Path(failure_log) if failure_log else None
        self.retries = retries
        self.failures: collections.deque[FailedWrite] = collections.deque(maxlen=10_000)
        self._queue: collections.deque[PendingWrite] = collections.deque()
        self._cond = threading.Condition()
        self._submitted = 0
        self._done = 0
        self._closing = False
        self._flushing = 0  # callers waiting in flush(): no lingering while there are any
        self._thread: threading.Thread | None = None
        atexit.register(_close_at_exit, weakref.ref(self))
        _WRITERS.add(self)

    def _after_fork(self) -> None:
        """In a forked child: no thread, an empty queue, a new lock (the parent's may have
        been held by one of its threads at the fork)."""
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._submitted = self._done = self._flushing = 0
        self._thread = None

    def submit(self, write: PendingWrite) -> None:
        """Queue a write; it is applied after every write submitted before it."""
        with self._cond:
            if self._closing:
                raise CrmError("the CRM store is closing; async writes are no longer accepted")
            self._queue.append(write)
            self._submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="crm-writer", daemon=True)
                self._thread.start()
            # Wake the writer only when it has something to start on or a full batch to take:
            # waking it on every write while it lingers costs a thread switch per write, and
            # while it applies a batch nobody waits (it looks at the queue before waiting
            # again), so only the write that makes the queue non-empty or full wakes it.
            queued = len(self._queue)
            if queued == 1 or queued == self.batch_size:
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        """How many submitted writes are not applied yet."""
        with self._cond:
            return self._submitted - self._done

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write submitted so far is applied (or failed). False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            if self._done >= target:
                return True
            # Someone is waiting: the writer stops lingering for a fuller batch.
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._done < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
        return True

    def close(self) -> None:
        """Drain the queue and stop the thread."""
        with self._cond:
            if self._closing and self._thread is None:
                return
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                # Linger briefly so a burst of writes becomes one full batch (one transaction,
                # one bulk request) instead of a tiny first batch and a long tail. While writes
                # keep arriving (a slow or busy producer), linger again, up to 10 lingers.
                now = time.monotonic()
                deadline, last_chance = now + self.linger, now + 10 * self.linger
                seen = len(self._queue)
                while (
                    len(self._queue) < self.batch_size and not self._closing and not self._flushing
                ):
                    now = time.monotonic()
                    if now >= deadline:
                        if len(self._queue) == seen or now >= last_chance:
                            break
                        seen, deadline = len(self._queue), now + self.linger
                    self._cond.wait(deadline - now)
                take = min(len(self._queue), self.batch_size)
                batch = [self._queue.popleft() for _ in range(take)]
            try:
                self._apply(batch)
            finally:
                with self._cond:
                    self._done += len(batch)
                    self._cond.notify_all()

    def _insert_run(self, run: list[PendingWrite]) -> None:
        """Insert the entries of consecutive insert-only writes together (one statement or
        bulk request per run, `Store.insert_entries`)."""
        self.store.insert_entries([entry for write in run for entry in write.inserts])
        if events.listening("entry.created", self.store):  # once per run, not per entry
            for write in run:
                for entry in write.inserts:
                    events.note("entry.created", self.store, entry, actor=write.actor)

    def _apply(self, batch: list[PendingWrite]) -> None:
        # Entry signals (crm_templates.events) go out from this thread when the unit around
        # the batch ends, i.e. after the batch committed; a failed batch sends none, and each
        # write replayed below sends its own once it committed.
        for attempt in range(self.retries):
            try:
                with events.unit(), self.store.batch():
                    run: list[PendingWrite] = []
                    for write in batch:
                        if write.inserts:
                            run.append(write)
                            continue
                        if run:
                            self._insert_run(run)
                            run = []
                        assert write.apply is not None  # a write without inserts says how
                        write.apply()
                    if run:
                        self._insert_run(run)
                return
            except StoreUnavailable as exc:  # transient: back off and retry the whole batch
                log.warning("async batch of %d failed (%s); retrying", len(batch), exc)
                time.sleep(0.05 * 2**attempt)
            except Exception:
                break
        # Replay one by one so a single bad write does not lose the others; a write that lost
        # a compare-and-set race to another process (the search backend's `_bulk` reports it
        # only at the end of the batch) is re-read and retried until the store's
        # conflict_deadline, like a synchronous write (issue 14 item 3).
        for write in batch:
            try:
                retry_conflicts(functools.partial(self._replay, write), deadline_of(self.store))
            except Exception as exc:
                self._record(write, exc)

    def _replay(self, write: PendingWrite) -> None:
        # A unit per attempt: a failed attempt's uncommitted changes send no signal.
        with events.unit(), self.store.batch():
            if write.apply is None:
                self._insert_run([write])
            else:
                write.apply()

    def _record(self, write: PendingWrite, exc: BaseException) -> None:
        failed = FailedWrite(
            write.function, write.payload, f"{type(exc).__name__}: {exc}", utc_now()
        )
        self.failures.append(failed)
        log.error(
            "async %s failed and was not applied: %s; payload=%s",
            write.function,
            failed.error,
            json.dumps(write.payload, default=str),
        )
        if self.failure_log is not None:
            try:
                with self.failure_log.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(failed.__dict__, default=str) + "\n")
            except OSError as log_exc:
                log.error("could not append to failure log %s: %s", self.failure_log, log_exc)
