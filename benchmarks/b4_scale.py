"""B4: GetCrmField latency at 1,000,000 entries vs the same at 10,000 (SQLite); target ≤ 1.5×.

Both databases hold 10 entries per customer (so the large one has 100,000 customers); each
lookup is for a random customer. Rows are bulk-loaded with sqlite3, then indexed by the store.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import dumps, interleave, quick_default, raw_connection, result, tracker_crm
from crm_templates.ids import new_id, utc_now

PER_CUSTOMER = 10
COLUMNS = (
    "id, entity, reference_type, reference_id, title, pipeline_id, stage_id, values_json, "
    "created_at, updated_at, version"
)


def build(path: str, total: int) -> int:
    crm = tracker_crm(path)
    crm.close()
    conn = raw_connection(path)
    customers = total // PER_CUSTOMER
    batch: list[tuple[Any, ...]] = []
    conn.execute("BEGIN")
    for c in range(customers):
        for k in range(PER_CUSTOMER):
            now = utc_now()
            values = {"n": float(k)} if k % 2 == 0 else {"s": f"v{k}"}
            batch.append((new_id(), "bench", "customer", f"cus_{c}", "", None, None, dumps(values),
                          now, now, 1))  # fmt: skip
        if len(batch) >= 50_000:
            conn.executemany(
                f"INSERT INTO entries ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", batch
            )
            batch.clear()
    conn.executemany(f"INSERT INTO entries ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", batch)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return customers


def run(quick: bool | None = None) -> dict[str, Any]:
    quick = quick_default() if quick is None else quick
    small_n, large_n = (10_000, 100_000 if quick else 1_000_000)
    lookups, rounds = (500, 5) if quick else (2000, 7)
    with tempfile.TemporaryDirectory() as tmp:
        small_path, large_path = str(Path(tmp) / "small.db"), str(Path(tmp) / "large.db")
        small_customers = build(small_path, small_n)
        large_customers = build(large_path, large_n)
        rng = random.Random(4)
        small = tracker_crm(small_path)
        large = tracker_crm(large_path)
        small_ids = [f"cus_{rng.randrange(small_customers)}" for _ in range(lookups)]
        large_ids = [f"cus_{rng.randrange(large_customers)}" for _ in range(lookups)]

        def probe(crm: Any, ids: list[str]) -> None:
            for cid in ids:
                assert crm.get_field(slug="bench", fieldKey="n", referenceId=cid) == 8.0

        t_large, t_small = interleave(
            lambda: probe(large, large_ids), lambda: probe(small, small_ids), rounds
        )
        small.close()
        large.close()
    ratio = t_large / t_small
    return result(
        "B4",
        f"GetCrmField at {large_n:,} entries vs {small_n:,}",
        ratio,
        "≤ 1.5× latency",
        ratio <= 1.5,
        large_us=round(t_large / lookups * 1e6, 1),
        small_us=round(t_small / lookups * 1e6, 1),
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
