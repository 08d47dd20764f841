"""Shared helpers: interleaved timing rounds and the result shape every benchmark returns.

Machines here are noisy, so every benchmark compares against a baseline measured in the same
process, alternating the two in rounds and taking medians; only the ratio is reported.
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
    ours: Callable[[], None], base: Callable[[], None], rounds: int
) -> tuple[float, float]:
    """Median times of two workloads run alternately, so drift hits both equally."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        for fn, sink in ((ours, a), (base, b)):
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


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
