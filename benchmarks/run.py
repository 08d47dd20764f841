"""Run every benchmark and print one table of ratios: ``python -m benchmarks.run [--quick]``.

Each benchmark module has ``run(quick) -> dict`` and compares against a baseline measured in
the same process (SPEC §10), so the ratios mean something on a noisy machine. ``--markdown``
prints the table in the format of docs/explanation/benchmarks.md; ``--only B2,B3`` picks benchmarks.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from typing import Any

MODULES = {
    "B1": "benchmarks.b1_render",
    "B1m": "benchmarks.b1m_render",
    "B2": "benchmarks.b2_set_field",
    "B3": "benchmarks.b3_async",
    "B4": "benchmarks.b4_scale",
    "B5": "benchmarks.b5_server",
    "B6": "benchmarks.b6_roundtrips",
    "B7": "benchmarks.b7_reports",
    "B8": "benchmarks.b8_entries_page",
    "B9": "benchmarks.b9_api",
    "M1": "benchmarks.m1_memory",
    "B10": "benchmarks.b10_contention",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print a Markdown table (docs/explanation/benchmarks.md)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. B2,B3")
    args = parser.parse_args(argv)
    by_upper = {name.upper(): name for name in MODULES}  # --only b1m or B1M finds B1m
    wanted = [
        by_upper.get(w.strip().upper(), w.strip()) for w in args.only.split(",") if w.strip()
    ] or list(MODULES)
    results: list[dict[str, Any]] = []
    for bench_id in wanted:
        try:
            module = importlib.import_module(MODULES[bench_id])
        except ModuleNotFoundError as exc:
            if exc.name != MODULES[bench_id]:
                raise
            print(f"{bench_id}: not written yet", file=sys.stderr)
            continue
        print(f"running {bench_id} …", file=sys.stderr, flush=True)
        try:
            results.append(module.run(args.quick))
        except Exception:
            traceback.print_exc()
            results.append({"id": bench_id, "what": "failed to run", "ratio": float("nan"),
                            "target": "", "ok": False})  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.markdown:
        print("| id | what | measured | target | met |")
        print("|---|---|---|---|---|")
        for r in results:
            print(f"| {r['id']} | {r['what']} | {r['ratio']}× | {r['target']} | "
                  f"{'yes' if r['ok'] else 'no'} |")  # fmt: skip
    else:
        for r in results:
            extra = {k: v for k, v in r.items() if k not in ("id", "what", "ratio", "target", "ok")}
            print(f"{r['id']:3} {r['ratio']:>7}×  target {r['target']:<18} "
                  f"{'OK ' if r['ok'] else 'MISS'}  {r['what']}  {extra}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
