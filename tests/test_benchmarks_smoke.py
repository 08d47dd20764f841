"""Every benchmark still runs (issue 14): a benchmark broken by a change elsewhere — B8 called
the admin's cursor helper with an old signature and failed in `python -m benchmarks.run` only —
is caught here, at the small ``--quick`` sizes. The ratios are not judged here (the machine
running the tests is not quiet; the targets are checked by `python -m benchmarks.run`, see
docs/explanation/benchmarks.md). B7 and M1 have their own tests."""

from __future__ import annotations

import importlib
import math

import pytest

from benchmarks.run import MODULES

CHECKED_ELSEWHERE = {"B7", "M1"}  # tests/test_admin_reports.py, tests/test_memory.py
SLOW = {"B10"}  # about 10 s: processes against the search server and SQLite


@pytest.mark.parametrize(
    "bench_id",
    [
        pytest.param(b, marks=[pytest.mark.slow] if b in SLOW else [])
        for b in MODULES
        if b not in CHECKED_ELSEWHERE
    ],
)
def test_the_benchmark_runs_at_its_quick_size(bench_id: str) -> None:
    outcome = importlib.import_module(MODULES[bench_id]).run(True)
    assert outcome["id"] == bench_id
    assert isinstance(outcome["ok"], bool)
    assert math.isfinite(outcome["ratio"]) and outcome["ratio"] > 0, outcome
