"""The contention workload of issue 14 item 3: N processes forcing writes on ONE entry.

Used by B10 (`benchmarks.b10_contention`) and by the concurrency suite
(tests/test_contention_processes.py), so both run exactly the same thing.

`prepare(url)` makes a data entity ``hot`` with fields ``p0..p15`` (number) and ``s0..s15``
(text), one entry for customer ``cus_hot`` (the contended one) and one for ``cus_other`` (must
not change). `run(url, processes, writes)` starts ``processes`` real processes
(``python -m benchmarks.contention URL INDEX WRITES``, cwd = the repository root, so they run
this checkout's code), lets them all start at once, and returns their reports. Process ``i``
makes ``writes`` forced ``SetCrmFields`` of ``{p<i>: n, s<i>: "<i>:<n>"}`` for n = 0 … writes-1,
so the exact final state is known: `problems()` lists every way the store differs from it.

Every successful forced write bumps the entry's version by exactly one (compare-and-set on the
search backend, ``version = version + 1`` on SQLite), so ``version == 1 + processes × writes``
counts the applied writes (the increment-like check), and the last value of every process's
keys proves no write was overwritten by a stale read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from crm_templates import Crm, open_store

SLUG = "hot"
HOT = "cus_hot"
OTHER = "cus_other"
MAX_PROCESSES = 16
ROOT = Path(__file__).resolve().parent.parent


def prepare(url: str) -> None:
    """The entity and the two customers' entries (the store must be empty)."""
    with Crm(open_store(url)) as crm:
        crm.ensure_entity(
            slug=SLUG,
            entityMode="data",
            fields=[{"key": f"p{i}", "type": "number"} for i in range(MAX_PROCESSES)]
            + [{"key": f"s{i}"} for i in range(MAX_PROCESSES)],
        )
        crm.bind(HOT).create_entry(slug=SLUG, values={"p0": -1})
        crm.bind(OTHER).create_entry(slug=SLUG, values={"p0": -2, "s0": "other"})


def problems(url: str, processes: int, writes: int) -> list[str]:
    """How the store differs from the exact state `processes` × `writes` writes must leave."""
    found: list[str] = []
    with Crm(open_store(url)) as crm:
        store = crm.store
        hot = store.find_entries(SLUG, "customer", HOT, limit=None)
        if len(hot) != 1:
            return [f"{HOT} has {len(hot)} entries; expected 1 (forced writes merge into it)"]
        entry = hot[0]
        last = writes - 1
        want: dict[str, Any] = {}
        for i in range(processes):
            want[f"p{i}"] = float(last)
            want[f"s{i}"] = f"{i}:{last}"
        if processes == 0 or writes == 0:
            want["p0"] = -1.0
        for key, value in sorted(want.items()):
            got = entry.values.get(key)
            if got != value:
                found.append(f"{key} = {got!r}; expected {value!r} (a lost update)")
        extra = sorted(set(entry.values) - set(want))
        if extra:
            found.append(f"unexpected keys {extra}")
        if entry.version != 1 + processes * writes:
            found.append(
                f"version {entry.version}; expected {1 + processes * writes} "
                "(one per applied write)"
            )
        other = store.find_entries(SLUG, "customer", OTHER, limit=None)
        if [e.values for e in other] != [{"p0": -2.0, "s0": "other"}]:
            found.append(f"{OTHER}'s entries changed: {[e.values for e in other]}")
    return found


def run(
    url: str,
    processes: int,
    writes: int,
    *,
    asynchronous: bool = False,
    profile_dir: str | None = None,
) -> dict[str, Any]:
    """Run the workload; ``{seconds, wall, writes, errors, reports}``.

    ``asynchronous``: the writes are ``async: true`` (queued on each process's background
    writer, sent in ``_bulk`` batches), drained with ``flush()``; errors are then the writer's
    recorded failures.

    ``seconds`` is the longest worker's own time from the go signal to its last write (all get
    the signal within microseconds); ``wall`` also counts closing the stores and the processes'
    exit, which is not write throughput (a third of a 1-process run's wall time when profiled).

    Raises RuntimeError when a worker crashes (its stderr in the message).
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    mode = "async" if asynchronous else "sync"
    args = [sys.executable, "-m", "benchmarks.contention", url, "", str(writes), mode]
    if profile_dir:
        args.append(profile_dir)
    workers = []
    for i in range(processes):
        args[4] = str(i)
        workers.append(
            subprocess.Popen(
                list(args),
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for w in workers:  # each has opened its store and made one read when it says so
            assert w.stdout is not None
            line = w.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a worker did not start: {line!r} {w.communicate()[1]}")
        start = time.perf_counter()
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        reports = []
        for w in workers:
            out, err = w.communicate(timeout=900)
            if w.returncode != 0:
                raise RuntimeError(f"a worker failed (exit {w.returncode}): {err[-3000:]}")
            reports.append(json.loads(out))
        wall = time.perf_counter() - start
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    return {
        "seconds": max((r["seconds"] for r in reports), default=0.0),
        "wall": wall,
        "writes": processes * writes,
        "errors": sum(len(r["errors"]) for r in reports),
        "reports": reports,
    }


def _worker(url: str, index: int, writes: int, mode: str, profile_dir: str | None) -> None:
    from crm_templates.conflicts import STATS

    crm = Crm(open_store(url))
    view = crm.bind(HOT)
    view.get_fields(slug=SLUG, fieldKeys=["p0"])  # warm the schema cache and the connection
    requests = _count_requests(crm.store)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")
    profiler = None
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    errors: list[str] = []
    STATS.reset()
    start = time.perf_counter()
    slowest = 0.0
    options = {"force": True, "async": mode == "async"}
    for n in range(writes):
        t = time.perf_counter()
        try:
            view.set_fields(
                slug=SLUG, fields={f"p{index}": n, f"s{index}": f"{index}:{n}"}, **options
            )
        except Exception as exc:  # a report, not a crash: the caller counts errors
            errors.append(f"{type(exc).__name__}: {exc}")
        slowest = max(slowest, time.perf_counter() - t)
    crm.flush()
    errors += [f.error for f in crm.failed_writes]
    seconds = time.perf_counter() - start
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(Path(profile_dir or ".") / f"worker{index}.prof"))
    crm.close()
    print(
        json.dumps(
            {
                "index": index,
                "seconds": seconds,
                "slowest": slowest,
                "errors": errors,
                "requests": dict(requests),
                **STATS.snapshot(),
            }
        )
    )


def _count_requests(store: Any) -> dict[str, int]:
    """Count the HTTP requests a search store sends, by kind (search, index, get, …)."""
    counts: dict[str, int] = {}
    client = getattr(store, "client", None)
    if client is None:
        return counts
    for node in client.transport.node_pool.all():
        pool = node.pool
        urlopen = pool.urlopen

        def counted(method: str, url: str, *a: Any, _open: Any = urlopen, **kw: Any) -> Any:
            parts = url.split("?")[0].split("/")
            kind = next((p for p in parts if p.startswith("_")), "other")
            counts[f"{method} {kind}"] = counts.get(f"{method} {kind}", 0) + 1
            return _open(method, url, *a, **kw)

        pool.urlopen = counted
    return counts


if __name__ == "__main__":
    _worker(
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        sys.argv[4],
        sys.argv[5] if len(sys.argv) > 5 else None,
    )
