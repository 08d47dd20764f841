"""B7: the admin's report page for an entity with 1,000,000 entries vs the raw SQL aggregates
it needs (SQLite); target ≤ 1.5× time.

The entity has six reported fields, one per chart kind: a kpi with a baseline, a histogram
with a ``bucket_size``, a select as pie, a multiselect as bar, a boolean as pie and a date as a
line by month; one entry in ten leaves the fields out (so every chart has "no value" counts).
Rows are bulk-loaded with ``executemany`` in one transaction.

*Ours*: ``GET /admin/entities/bench/reports`` through the real Flask app (operator session,
routing, the store's aggregations, pygal drawing six SVGs, the Jinja page, security headers).
*Baseline*: the hand-written SQL a developer would run for the same numbers, on a plain
``sqlite3`` connection: the entity's entry count and one ``GROUP BY`` statement per chart
(``json_extract`` for scalars, ``json_each`` for the multiselect), each also counting the
entries without a value — no HTML, no charts.

Size: ``CRM_BENCH_B7_ENTRIES`` (default 1,000,000; 100,000 with ``--quick`` /
``CRM_BENCH_QUICK``). Building 1,000,000 rows takes about a minute on a quiet machine.
"""

from __future__ import annotations

import os
import random
import sqlite3
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks.harness import dumps, interleave, quick_default, raw_connection, result

CRM_YAML = """\
entities:
  - slug: bench
    name: Bench
    fields:
      - {key: amount, label: Amount, type: number,
         reporting_config: {preferred_chart: kpi, baseline: {min: 100, max: 900}}}
      - {key: score, label: Score, type: number,
         reporting_config: {preferred_chart: histogram, bucket_size: 10}}
      - {key: stage, label: Stage, type: select, options: [new, open, won, lost],
         reporting_config: {preferred_chart: pie}}
      - {key: tags, label: Tags, type: multiselect, options: [red, green, blue, gold],
         reporting_config: {preferred_chart: bar}}
      - {key: hot, label: Hot, type: boolean, reporting_config: {preferred_chart: pie}}
      - {key: closed_on, label: Closed on, type: date, reporting_config: {preferred_chart: line}}
"""
PASSWORD = "bench-operator"
COLUMNS = (
    "id, entity, reference_type, reference_id, title, pipeline_id, stage_id, values_json, "
    "created_at, updated_at, version"
)
# The baseline: what the page needs, hand-written (scalars by json_extract, the multiselect by
# json_each; the NULL group of each statement is "entries without a value").
BASELINE_SQL = (
    "SELECT COUNT(*) FROM entries WHERE entity = 'bench'",
    "SELECT COUNT(n), SUM(n), AVG(n), MIN(n), MAX(n), SUM(n IS NULL) FROM (SELECT CASE WHEN "
    "json_type(values_json, '$.amount') IN ('integer', 'real') THEN json_extract(values_json, "
    "'$.amount') END AS n FROM entries WHERE entity = 'bench')",
    "SELECT CAST(json_extract(values_json, '$.score') / 10 AS INTEGER) AS b, COUNT(*) "
    "FROM entries WHERE entity = 'bench' GROUP BY b",
    "SELECT json_extract(values_json, '$.stage') AS v, COUNT(*) FROM entries "
    "WHERE entity = 'bench' GROUP BY v",
    "SELECT j.value, COUNT(*) FROM entries e LEFT JOIN json_each(e.values_json, '$.tags') j "
    "WHERE e.entity = 'bench' GROUP BY j.value",
    "SELECT json_extract(values_json, '$.hot') AS v, COUNT(*) FROM entries "
    "WHERE entity = 'bench' GROUP BY v",
    "SELECT strftime('%Y-%m', json_extract(values_json, '$.closed_on')) AS m, COUNT(*) "
    "FROM entries WHERE entity = 'bench' GROUP BY m",
)


def entries_wanted(quick: bool) -> int:
    """How many entries to build (``CRM_BENCH_B7_ENTRIES`` overrides the default)."""
    given = os.environ.get("CRM_BENCH_B7_ENTRIES")
    if given:
        return int(given)
    return 100_000 if quick else 1_000_000


def build(site: Path, store_path: str, total: int) -> Any:
    """The site, an app over a SQLite file (entities created) and ``total`` bulk-loaded rows."""
    from crm_templates.server import create_app

    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text("<!doctype html><title>B7</title><main></main>")
    (site / "crm.yaml").write_text(CRM_YAML)
    app = create_app(
        site,
        f"sqlite:///{store_path}",
        TESTING=True,
        CRM_OPERATOR_PASSWORD=PASSWORD,
        CRM_BASE_URL="http://localhost",
    )
    rng = random.Random(7)
    start = date(2025, 1, 1)
    conn = raw_connection(store_path)
    conn.execute("BEGIN")
    batch: list[tuple[Any, ...]] = []
    sql = f"INSERT INTO entries ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    for i in range(total):
        if i % 10 == 9:
            values: dict[str, Any] = {"note": "nothing reported"}
        else:
            values = {
                "amount": round(rng.uniform(0, 1000), 2),
                "score": rng.randrange(0, 100),
                "stage": rng.choice(("new", "open", "won", "lost")),
                "tags": rng.sample(("red", "green", "blue", "gold"), rng.randrange(0, 3)),
                "hot": rng.random() < 0.3,
                "closed_on": (start + timedelta(days=rng.randrange(730))).isoformat(),
            }
        stamp = f"2026-01-01T00:00:00.{i:06d}Z"
        batch.append((f"e{i:08d}", "bench", "customer", f"cus_{i % 50_000}", "", None, None,
                      dumps(values), stamp, stamp, 1))  # fmt: skip
        if len(batch) >= 50_000:
            conn.executemany(sql, batch)
            batch.clear()
    conn.executemany(sql, batch)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return app


def operator(app: Any) -> Any:
    """A test client signed in as the bootstrap operator."""
    import re

    client = app.test_client()
    form = client.get("/operator/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    response = client.post(
        "/operator/sign-in",
        data={"csrf_token": token.group(1), "password": PASSWORD, "next": "/admin/"},
    )
    assert response.status_code == 303
    return client


def run(quick: bool | None = None) -> dict[str, Any]:
    quick = quick_default() if quick is None else quick
    total = entries_wanted(quick)
    rounds = 3
    with tempfile.TemporaryDirectory() as tmp:
        store_path = str(Path(tmp) / "crm.db")
        began = time.perf_counter()
        app = build(Path(tmp) / "site", store_path, total)
        build_s = time.perf_counter() - began
        client = operator(app)
        conn = sqlite3.connect(store_path)

        def page() -> None:
            response = client.get("/admin/entities/bench/reports")
            assert response.status_code == 200
            assert b"Amount: key figures" in response.data

        def raw() -> None:
            for statement in BASELINE_SQL:
                conn.execute(statement).fetchall()

        page()  # warm both (page cache, compiled templates)
        raw()
        t_page, t_raw = interleave(page, raw, rounds)
        # Where the page's time goes: the store's aggregations alone.
        from crm_templates.reports import build_report

        crm = app.extensions["crm"].crm
        entity = crm.store.get_entity("bench")
        began = time.perf_counter()
        build_report(crm.store, entity)
        t_store = time.perf_counter() - began
        conn.close()
        app.extensions["crm"].close()
    ratio = t_page / t_raw
    return result(
        "B7",
        f"report page at {total:,} entries vs its raw SQL aggregates",
        ratio,
        "≤ 1.5× time",
        ratio <= 1.5,
        page_s=round(t_page, 3),
        raw_sql_s=round(t_raw, 3),
        store_aggregations_s=round(t_store, 3),
        build_s=round(build_s, 1),
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
