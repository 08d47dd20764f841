"""Shared helpers: interleaved timing rounds and the result shape every benchmark returns.

Machines here are noisy, so every benchmark compares against a baseline measured in the same
process, alternating the two in many short rounds; only the ratio is reported.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import time
from collections.abc import Callable
from typing import Any

from crm_templates import Crm, open_store


def median_seconds(fn: Callable[[], None], rounds: int) -> float:
    """Median wall time of ``fn`` over ``rounds`` runs."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleave(
    ours: Callable[[], None],
    base: Callable[[], None],
    rounds: int,
    reset: Callable[[], None] | None = None,
    settle: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """Mean times of two workloads run alternately, so drift hits both equally.

    The mean, not the median: a median of rounds would drop the rounds that contain a garbage
    collection or a WAL checkpoint, which are real costs of the workload (and fall more on the
    side that allocates more). ``reset`` runs untimed before every measured run and ``settle``
    timed after it: with a WAL checkpoint as both, each side starts from an empty WAL and pays
    for checkpointing its own writes, never the other side's.
    """
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        for fn, sink in ((ours, a), (base, b)):
            if reset is not None:
                reset()
            start = time.perf_counter()
            fn()
            if settle is not None:
                settle()
            sink.append(time.perf_counter() - start)
    return statistics.fmean(a), statistics.fmean(b)


def checkpoint(conn: sqlite3.Connection) -> Callable[[], None]:
    """A reset for `interleave`: empty the WAL so every measured run starts from the same state."""

    def reset() -> None:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    return reset


def result(
    bench_id: str, what: str, ratio: float, target: str, ok: bool, **detail: Any
) -> dict[str, Any]:
    """The record every benchmark's ``run()`` returns (and benchmarks/run.py tabulates)."""
    return {"id": bench_id, "what": what, "ratio": round(ratio, 3), "target": target, "ok": ok,
            **detail}  # fmt: skip


def raw_connection(path: str) -> sqlite3.Connection:
    """A plain sqlite3 connection with the same settings the SQLite store uses."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def tracker_crm(path: str) -> Crm:
    """A Crm over a SQLite file with a one-number-field data entity ``bench``."""
    crm = Crm(open_store(f"sqlite:///{path}"))
    crm.ensure_entity(
        slug="bench", entityMode="data", fields=[{"key": "n", "type": "number"}, {"key": "s"}]
    )
    return crm


def dumps(values: dict[str, Any]) -> str:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def quick_default() -> bool:
    return os.environ.get("CRM_BENCH_QUICK", "") not in ("", "0")
