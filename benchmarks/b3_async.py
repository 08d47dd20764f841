"""B3: async AddCrmFieldValue drained (SQLite) vs a raw executemany insert of the same rows.

Ours: submit N async writes and flush. Raw: one executemany of N pre-built row tuples in a
transaction. Throughput ratio = ours / raw; target ≥ 0.7× (issue 14).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    checkpoint,
    dumps,
    interleave,
    quick_default,
    raw_connection,
    result,
    tracker_crm,
)
from crm_templates.ids import new_id, utc_now

COLUMNS = (
    "id, entity, reference_type, reference_id, title, pipeline_id, stage_id, values_json, "
    "created_at, updated_at, version"
)


def run(quick: bool | None = None) -> dict[str, Any]:
    quick = quick_default() if quick is None else quick
    ops, rounds = (2000, 5) if quick else (5000, 15)
    with tempfile.TemporaryDirectory() as tmp:
        crm = tracker_crm(str(Path(tmp) / "ours.db"))
        view = crm.bind("cus_1")
        conn = raw_connection(str(Path(tmp) / "ours.db"))
        now = utc_now()

        def ours() -> None:
            for i in range(ops):
                view.add_field_value({"slug": "bench", "fieldKey": "n", "value": i, "async": True})
            view.flush()

        def raw() -> None:
            rows = [
                (new_id(), "bench", "customer", "cus_2", "", None, None, dumps({"n": float(i)}),
                 now, now, 1)
                for i in range(ops)
            ]  # fmt: skip
            conn.execute("BEGIN")
            conn.executemany(
                f"INSERT INTO entries ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows
            )
            conn.execute("COMMIT")

        # Each side starts from an empty WAL and pays the checkpoint of its own writes.
        settle = checkpoint(conn)
        t_ours, t_raw = interleave(ours, raw, rounds, reset=settle, settle=settle)
        assert crm.failed_writes == []
        conn.close()
        crm.close()
    ratio = t_raw / t_ours
    return result(
        "B3",
        "async AddCrmFieldValue drained (SQLite) vs raw executemany",
        ratio,
        "≥ 0.7× throughput",
        ratio >= 0.7,
        ours_ops_per_s=round(ops / t_ours),
        raw_ops_per_s=round(ops / t_raw),
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
