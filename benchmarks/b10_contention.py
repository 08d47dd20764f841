"""B10: 8 processes forcing writes on ONE entry vs 1 process (SPEC §10, issue 14 item 3).

The workload is `benchmarks.contention` (the same one the concurrency suite checks): real
processes, each making forced ``SetCrmFields`` of its own two keys on the same customer's one
entry; all start on one signal. Throughput = applied writes / seconds from the signal to the
last process done. Reported ratio = throughput of 8 processes / throughput of 1 process, on the
search backend (the headline) and on a SQLite file (in the details). There is no target beyond
**zero errors and zero lost updates** (`contention.problems` checks the exact final state after
every run): ``ok`` is exactly that.

Sizes: 200 writes per process on the search backend (the issue's 8 × 200); 2,000 on SQLite,
where 8 × 200 finish in about 0.1 s and the start signal's skew would dominate. Three rounds of
(1 process, 8 processes), alternated, each on a fresh store; the ratio is of the summed times.
Details: conflicts, backoff sleep and HTTP requests per applied write in the 8-process runs (from
each worker's `crm_templates.conflicts.STATS` and its connection pool), and the slowest write.

Runs against ``CRM_TEST_ELASTICSEARCH_URL`` when set, else an osmem-server started for the run.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from benchmarks import contention
from benchmarks.b6_roundtrips import cluster_url
from benchmarks.harness import quick_default, result

PROCESSES = 8


def measure(make_url: Any, writes: int, rounds: int, processes: int = PROCESSES) -> dict[str, Any]:
    """Alternate 1-process and N-process runs on fresh stores; throughputs and details."""
    time = {1: 0.0, processes: 0.0}
    applied = {1: 0, processes: 0}
    errors: list[str] = []
    problems: list[str] = []
    conflicts = slept = 0.0
    requests = 0
    slowest = 0.0
    for _ in range(rounds):
        for n in (1, processes):
            url = make_url()
            contention.prepare(url)
            outcome = contention.run(url, n, writes)
            time[n] += outcome["seconds"]
            applied[n] += outcome["writes"]
            errors += [e for r in outcome["reports"] for e in r["errors"]]
            problems += contention.problems(url, n, writes)
            if n == processes:
                for r in outcome["reports"]:
                    conflicts += r["conflicts"]
                    slept += r["slept"]
                    requests += sum(r["requests"].values())
                    slowest = max(slowest, r["slowest"])
    one = applied[1] / time[1]
    many = applied[processes] / time[processes]
    done = applied[processes]
    return {
        "ratio": many / one,
        "one_per_s": round(one, 1),
        "many_per_s": round(many, 1),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "problems": problems[:3],
        "conflicts_per_write": round(conflicts / done, 2),
        "sleep_ms_per_write": round(1000 * slept / done, 2),
        "requests_per_write": round(requests / done, 2),
        "slowest_write_s": round(slowest, 3),
    }


def run(quick: bool = False) -> dict[str, Any]:
    rounds = 1 if quick else 3
    with cluster_url() as base:
        search = measure(
            lambda: f"{base}?prefix=b10{uuid.uuid4().hex[:8]}_", 50 if quick else 200, rounds
        )
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = measure(
            lambda: f"sqlite:///{Path(tmp) / uuid.uuid4().hex}.db", 200 if quick else 2000, rounds
        )
    ok = all(not r["errors"] and not r["problems"] for r in (search, sqlite))
    return result(
        "B10",
        f"{PROCESSES} processes forcing writes on one entry vs 1 process: search "
        f"{search['many_per_s']:.0f} vs {search['one_per_s']:.0f} writes/s, SQLite "
        f"{sqlite['ratio']:.2f}× ({sqlite['many_per_s']:.0f} vs {sqlite['one_per_s']:.0f}); "
        f"errors {search['errors'] + sqlite['errors']}, lost updates "
        f"{len(search['problems']) + len(sqlite['problems'])}",
        search["ratio"],
        "reported; 0 errors, 0 lost",
        ok,
        search={k: v for k, v in search.items() if k != "ratio"},
        sqlite_ratio=round(sqlite["ratio"], 3),
        sqlite={k: v for k, v in sqlite.items() if k != "ratio"},
    )


if __name__ == "__main__":
    print(run(quick_default() or "--quick" in sys.argv))
