"""Entries in and out of the admin (issue 11, item 5): the CLI's export and import as a
download and an upload, on both backends, through the same core (`crm_templates.transfer`)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from tests.admin_world import (
    BACKENDS,
    csrf_token,
    customer_client,
    make_admin_app,
    operator_client,
    seed_two_customers,
)

EXPORT = "/admin/entities/deals/export.csv"
IMPORT = "/admin/entities/deals/import"


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_admin_app(tmp_path, request.param, request)
    yield application
    application.extensions["crm"].close()


@pytest.fixture
def other(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A second app with the same entities and an empty store (SQLite)."""
    application = make_admin_app(tmp_path / "other", "sqlite", request)
    yield application
    application.extensions["crm"].close()


def deals(app: Any) -> dict[str, Any]:
    """Deals by reference id: {reference_id: (title, values)}."""
    store = app.extensions["crm"].crm.store
    return {e.reference_id: (e.title, e.values) for e in store.iter_entries("deals")}


def upload(client: Any, text: str, name: str = "deals.csv", **form: str) -> Any:
    data = {"csrf_token": csrf_token(client, IMPORT), **form}
    data["file"] = (io.BytesIO(text.encode()), name)  # type: ignore[assignment]
    return client.post(IMPORT, data=data, content_type="multipart/form-data")


def test_only_operators_download_and_upload(app: Any) -> None:
    seed_two_customers(app)
    anonymous = app.test_client()
    assert anonymous.get(EXPORT).status_code == 302
    assert anonymous.get(IMPORT).status_code == 302
    customer = customer_client(app, "ann@example.com")
    assert customer.get(EXPORT).status_code == 403
    assert customer.get(IMPORT).status_code == 403


def test_the_download_holds_every_entry_with_formula_escaping(app: Any) -> None:
    ann, bob = seed_two_customers(app)
    crm = app.extensions["crm"].crm
    crm.create_entry(slug="deals", values={"note": "=HYPERLINK(1)"}, referenceId=ann.id)
    client = operator_client(app)
    response = client.get(EXPORT)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="deals.csv"'
    assert response.headers["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert sorted(r["reference_id"] for r in rows) == sorted([ann.id, ann.id, bob.id])
    assert "'=HYPERLINK(1)" in [r["note"] for r in rows]
    jsonl = client.get("/admin/entities/deals/export.jsonl")
    assert jsonl.status_code == 200 and len(jsonl.get_data(as_text=True).splitlines()) == 3
    assert client.get("/admin/entities/deals/export.xlsx").status_code == 404
    assert client.get("/admin/entities/nope/export.csv").status_code == 404


def test_a_download_uploads_into_another_store_exactly(app: Any, other: Any) -> None:
    seed_two_customers(app)
    exported = operator_client(app).get(EXPORT).get_data(as_text=True)
    client = operator_client(other)
    dry = upload(client, exported, dry_run="1")
    assert dry.status_code == 200
    assert "Dry run: nothing was written." in dry.get_data(as_text=True)
    assert deals(other) == {}
    done = upload(client, exported)
    assert done.status_code == 200, done.get_data(as_text=True)
    assert deals(other) == deals(app)  # both customers' deals, each on its own reference


def test_a_bad_row_is_reported_with_its_line_and_nothing_is_written(app: Any) -> None:
    seed_two_customers(app)
    before = deals(app)
    client = operator_client(app)
    text = "reference_type,reference_id,amount\ncustomer,cus_x,5\ncustomer,cus_y,lots\n"
    response = upload(client, text)
    assert response.status_code == 422
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    problems = [li.get_text(" ", strip=True) for li in page.select("#import-errors li")]
    assert len(problems) == 1, problems
    assert problems[0].startswith("Line 3, column amount") and "got 'lots'" in problems[0]
    assert deals(app) == before
    assert upload(client, "x", name="deals.txt").status_code == 422  # format unknown
    latin1 = client.post(
        IMPORT,
        data={
            "csrf_token": csrf_token(client, IMPORT),
            "file": (io.BytesIO("amount\n5 €\n".encode("cp1252")), "deals.csv"),
        },
        content_type="multipart/form-data",
    )
    assert latin1.status_code == 422 and "not UTF-8" in latin1.get_data(as_text=True)
    assert deals(app) == before


def test_a_real_import_is_audited_and_csrf_is_required(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seed_two_customers(app)
    client = operator_client(app)
    text = "reference_type,reference_id,amount,note\ncustomer,cus_new,7,imported\n"
    refused = client.post(
        IMPORT,
        data={"file": (io.BytesIO(text.encode()), "deals.csv")},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 400
    assert "cus_new" not in deals(app)
    caplog.set_level(logging.INFO, logger="crm_templates.audit")
    done = upload(client, text)
    assert done.status_code == 200, done.get_data(as_text=True)
    assert deals(app)["cus_new"][1] == {"amount": 7, "note": "imported"}
    lines = [r.getMessage() for r in caplog.records if r.name == "crm_templates.audit"]
    assert len(lines) == 1 and lines[0].startswith("entries.import by operator entity=deals")
