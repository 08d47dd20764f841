"""B2: synchronous SetCrmField with force (SQLite) vs a raw single-row UPDATE + COMMIT.

Throughput ratio = ours / raw; target ≥ 0.7× (issue 14). Both sides use a WAL database file with
synchronous=NORMAL, and the raw side pre-serialises its JSON (it does strictly less work).
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


def run(quick: bool | None = None) -> dict[str, Any]:
    quick = quick_default() if quick is None else quick
    ops, rounds = (300, 9) if quick else (500, 31)  # many short rounds
    with tempfile.TemporaryDirectory() as tmp:
        crm = tracker_crm(str(Path(tmp) / "ours.db"))
        view = crm.bind("cus_1")
        entry_id = view.set_field(slug="bench", fieldKey="n", value=0)["id"]
        conn = raw_connection(str(Path(tmp) / "ours.db"))
        payloads = [dumps({"n": float(i)}) for i in range(ops)]

        def ours() -> None:
            for i in range(ops):
                view.set_field(slug="bench", fieldKey="n", value=i, force=True)

        def raw() -> None:
            for i in range(ops):
                conn.execute("BEGIN")
                conn.execute(
                    "UPDATE entries SET values_json = ?, updated_at = ? WHERE id = ?",
                    (payloads[i], "2026-01-01T00:00:00.000000Z", entry_id),
                )
                conn.execute("COMMIT")

        # Each side starts from an empty WAL and pays the checkpoint of its own writes.
        settle = checkpoint(conn)
        t_ours, t_raw = interleave(ours, raw, rounds, reset=settle, settle=settle)
        conn.close()
        crm.close()
    ratio = t_raw / t_ours  # throughput ratio
    return result(
        "B2",
        "sync SetCrmField force (SQLite) vs raw UPDATE+COMMIT",
        ratio,
        "≥ 0.7× throughput",
        ratio >= 0.7,
        ours_ops_per_s=round(ops / t_ours),
        raw_ops_per_s=round(ops / t_raw),
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
