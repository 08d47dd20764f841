"""B8: the admin's entries table 100,000 entries deep vs its first page (SQLite); target ≤ 1.3×.

One entity holds 101,000 entries (bulk-loaded with sqlite3 into a database the store created,
then ANALYZEd). Both sides are the Flask test client's GET of ``/admin/entities/bench/entries``
as a signed-in operator — the whole view: query, rendering with `renderers`, the template — the
first page without a cursor, the deep one with the ``after`` token its "Next page" link would
carry 100,000 entries in (made once, untimed, from the key of the 100,000th entry), in alternating
rounds (medians; see `alternate`). The page shows no total count (a count scans). Keyset
pagination makes both one index seek; an OFFSET scan would make the deep page many times slower.
``--quick``: 21,000 entries, 20,000 deep.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import dumps, quick_default, raw_connection, result
from crm_templates import open_store

CRM_YAML = """\
entities:
  - slug: bench
    name: Bench
    fields:
      - {key: amount, label: Amount, type: number}
      - {key: note, label: Note, type: text}
      - {key: score, label: Score, type: number, ui_editable: false}
    pipelines:
      - slug: sales
        name: Sales
        stages:
          - {slug: new, name: New}
          - {slug: won, name: Won}
"""
PASSWORD = "b8-operator"
COLUMNS = (
    "id, entity, reference_type, reference_id, title, pipeline_id, stage_id, values_json, "
    "created_at, updated_at, version"
)


def build(site: Path, db: Path, total: int) -> None:
    """The site (crm.yaml) and a database with ``total`` entries of ``bench``."""
    from crm_templates import Crm

    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text("<!doctype html><title>B8</title><main></main>")
    (site / "crm.yaml").write_text(CRM_YAML)
    crm = Crm(open_store(f"sqlite:///{db}"))
    crm.ensure_entity(
        slug="bench",
        name="Bench",
        fields=[
            {"key": "amount", "label": "Amount", "type": "number"},
            {"key": "note", "label": "Note"},
            {"key": "score", "label": "Score", "type": "number", "ui_editable": False},
        ],
        pipelines=[
            {"slug": "sales", "name": "Sales", "stages": [{"slug": "new"}, {"slug": "won"}]}
        ],
    )
    entity = crm.get_entity("bench")
    pipeline = entity.pipelines[0]
    stages = [s.id for s in pipeline.stages]
    crm.close()
    conn = raw_connection(str(db))
    conn.execute("BEGIN")
    batch: list[tuple[Any, ...]] = []
    for n in range(total):
        # One entry a second from 2026-01-01, ids in the same order.
        day, rest = divmod(n, 86_400)
        stamp = f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T{rest // 3600:02d}:" \
                f"{rest // 60 % 60:02d}:{rest % 60:02d}.000000Z"  # fmt: skip
        values = {"amount": float(n % 1000), "note": f"note {n}", "score": float(n % 7)}
        batch.append((f"e{n:08d}", "bench", "customer", f"cus_{n % 5000}", f"Deal {n}",
                      pipeline.id, stages[n % 2], dumps(values), stamp, stamp, 1))  # fmt: skip
        if len(batch) >= 50_000:
            conn.executemany(
                f"INSERT INTO entries ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", batch
            )
            batch.clear()
    conn.executemany(f"INSERT INTO entries ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", batch)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def alternate(a: Callable[[], None], b: Callable[[], None], rounds: int) -> tuple[float, float]:
    """Median times of two read-only workloads, run in alternating order round by round.

    Medians, unlike `harness.interleave`'s means: these reads allocate alike and write nothing,
    so the rounds a median drops are the ones another process preempted (this machine is
    shared), and alternating the order cancels any first-or-second effect."""
    times: tuple[list[float], list[float]] = ([], [])
    for n in range(rounds):
        order = ((a, times[0]), (b, times[1])) if n % 2 == 0 else ((b, times[1]), (a, times[0]))
        for fn, sink in order:
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def run(quick: bool | None = None) -> dict[str, Any]:
    quick = quick_default() if quick is None else quick
    depth, total = (20_000, 21_000) if quick else (100_000, 101_000)
    rounds = 30 if quick else 60
    from crm_templates.server import create_app
    from crm_templates.server.admin.entries import cursor_token

    with tempfile.TemporaryDirectory() as tmp:
        site, db = Path(tmp) / "site", Path(tmp) / "crm.db"
        build(site, db, total)
        app = create_app(
            site, f"sqlite:///{db}", TESTING=True, CRM_OPERATOR_PASSWORD=PASSWORD, CRM_SEED=False
        )
        try:
            client = app.test_client()
            page = client.get("/operator/sign-in").get_data(as_text=True)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert token is not None
            signed_in = client.post(
                "/operator/sign-in",
                data={"csrf_token": token.group(1), "password": PASSWORD, "next": "/admin/"},
            )
            assert signed_in.status_code == 303
            # The key of the depth-th entry, newest first (an OFFSET once, untimed).
            conn = raw_connection(str(db))
            key = conn.execute(
                "SELECT created_at, id FROM entries WHERE entity = 'bench' "
                "ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
                (depth - 1,),
            ).fetchone()
            conn.close()
            with app.test_request_context():
                after = cursor_token("bench", "-created", (key[0], key[1]))
            first_url = "/admin/entities/bench/entries"
            deep_url = f"/admin/entities/bench/entries?after={after}"
            first_body = client.get(first_url).get_data(as_text=True)
            deep_body = client.get(deep_url).get_data(as_text=True)
            # Both pages are full, and the deep one starts right after the depth-th entry.
            assert first_body.count('<th scope="row">') == 50
            assert deep_body.count('<th scope="row">') == 50
            assert f">Deal {total - depth - 1}<" in deep_body
            assert f">Deal {total - 1}<" in first_body

            def get(url: str) -> None:
                response = client.get(url)
                assert response.status_code == 200

            t_deep, t_first = alternate(lambda: get(deep_url), lambda: get(first_url), rounds)
        finally:
            app.extensions["crm"].close()
    ratio = t_deep / t_first
    return result(
        "B8",
        f"entries table page {depth:,} deep vs the first ({total:,} entries, SQLite)",
        ratio,
        "≤ 1.3× time",
        ratio <= 1.3,
        deep_ms=round(t_deep * 1000, 2),
        first_ms=round(t_first * 1000, 2),
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
