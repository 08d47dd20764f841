"""Faults found by the issue-13 attack review of the REST API, each a test of the whole kind:

- API answers (customer data, authorised by a header) carried no ``Cache-Control``, so a
  shared cache could store one client's answer and give it to another: every answer but the
  public description is ``no-store``.
- Repeated ``Authorization``/``EF-Access-Key`` lines arrive joined with commas from a real WSGI
  server, so "several lines with the same key" (accepted on the test client) was a 401 under
  ``crm-templates serve``, with a misleading message for lines that differ.
- ``OPTIONS`` on a path no operation serves answered 200 (Flask's automatic answer for the
  catch-all route), without a key, instead of the API's 404.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import pytest

from crm_templates import Crm, open_store
from crm_templates.api_keys import create_key
from crm_templates.errors import ConflictError, StaleEntryError
from tests.admin_world import BACKENDS, CRM_YAML, PAGES
from tests.api_world import API, ApiWorld, assert_error, make_api_world
from tests.test_serve import Served


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> ApiWorld:
    """The API world (no store rule is at stake here: one backend)."""
    return make_api_world(tmp_path, "sqlite", request)


def test_every_api_answer_is_no_store_but_the_public_description(world: ApiWorld) -> None:
    made = world.post("/entities/deals/entries", {"reference_id": world.ann.id, "title": "A"})
    entry = made.get_json()["id"]
    answers = {
        "list": world.get("/entities/deals/entries?include_customer=true"),
        "entry": world.get(f"/entries/{entry}"),
        "customer": world.get(f"/customers/{world.ann.id}/entries"),
        "entities": world.get("/entities"),
        "alias header": world.client.get(
            API + f"/entries/{entry}", headers={"EF-Access-Key": world.read}
        ),
        "created": made,
        "updated": world.put(f"/entries/{entry}", {"title": "B"}),
        "head": world.client.head(API + "/entities", headers=world.headers()),
        "options": world.client.options(API + "/entities", headers=world.headers()),
        "401": world.client.get(API + "/entities"),
        "404": world.get("/entries/nope"),
    }
    for kind, response in answers.items():
        assert response.status_code < 500, kind
        assert response.headers.get("Cache-Control") == "no-store", (kind, response.headers)
    for public in ("/openapi.json", "/docs"):
        response = world.client.get(API + public)
        assert response.status_code == 200
        assert "no-store" not in response.headers.get("Cache-Control", ""), public


def test_options_and_trace_on_paths_no_operation_serves(world: ApiWorld) -> None:
    for path in ("/nope", "/", "/entities/deals/nope", "/entries/x/y/z"):
        for headers in ({}, world.headers()):
            response = world.client.open(API + path, method="OPTIONS", headers=headers)
            assert_error(response, 404)
    # A real path: OPTIONS is the automatic answer, after the key check like any read.
    assert_error(world.client.options(API + "/entities"), 401, "Authorization")
    allowed = world.client.options(API + "/entities", headers=world.headers())
    assert allowed.status_code == 200
    assert {"GET", "POST"} <= {m.strip() for m in allowed.headers["Allow"].split(",")}
    # Methods no route takes on a real path: 405 naming the ones it does.
    trace = world.client.open(API + "/entities", method="TRACE", headers=world.headers())
    assert_error(trace, 405)
    assert {m.strip() for m in trace.headers["Allow"].split(",")} == {"GET", "POST"}


@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_EF_ACCESS_KEY"])
def test_repeated_header_lines_as_a_wsgi_server_joins_them(world: ApiWorld, header: str) -> None:
    """PEP 3333 servers hand the app repeated lines as one comma-joined value."""

    def value(key: str) -> str:
        return f"Bearer {key}" if header == "HTTP_AUTHORIZATION" else key

    same = world.client.get(
        API + "/entities", environ_base={header: f"{value(world.read)}, {value(world.read)}"}
    )
    assert same.status_code == 200, same.get_json()
    differ = world.client.get(
        API + "/entities", environ_base={header: f"{value(world.read)},{value(world.write)}"}
    )
    body = assert_error(differ, 401, "Authorization")
    assert "different" in body["message"] and world.write not in str(body)


def _raw(port: int, lines: list[str]) -> tuple[str, str]:
    request = "\r\n".join(
        ["GET /api/crm/entities HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close", *lines]
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall((request + "\r\n\r\n").encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return head.split("\r\n", 1)[0], head


@pytest.mark.slow
def test_repeated_lines_and_no_store_on_the_real_server(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    for name, text in PAGES.items():
        (site / "pages" / name).write_text(text)
    (site / "crm.yaml").write_text(CRM_YAML)
    (site / "instance").mkdir()
    with Crm(open_store(f"sqlite:///{site / 'instance' / 'crm.db'}")) as crm:
        _, key = create_key(crm.store, name="raw", scope="read")
        _, other = create_key(crm.store, name="other", scope="read")
    served = Served(site, None)
    try:
        status, head = _raw(served.port, [f"Authorization: Bearer {key}"] * 2)
        assert " 200 " in status, head
        assert "Cache-Control: no-store" in head.split("\r\n"), head
        status, _ = _raw(served.port, [f"EF-Access-Key: {key}", f"EF-Access-Key: {key}"])
        assert " 200 " in status
        status, _ = _raw(served.port, [f"EF-Access-Key: {key}", f"EF-Access-Key: {other}"])
        assert " 401 " in status
    finally:
        served.stop()


@pytest.fixture(params=BACKENDS)
def both(request: pytest.FixtureRequest, tmp_path: Path) -> ApiWorld:
    """The API world, once per backend."""
    return make_api_world(tmp_path, request.param, request)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reference_id": ""}, "reference_id"),
        ({"reference_id": "x" * 5000}, "reference_id"),
        ({"reference_id": "x", "reference_type": "a b"}, "reference_type"),
        ({"reference_id": "x", "title": "\ud800"}, "title"),
        ({"reference_id": "x", "pipeline_id": "nope"}, "pipeline_id"),
        ({"reference_id": "x", "pipeline_id": ""}, "pipeline_id"),
        ({"reference_id": "x", "stage_id": "nope"}, "stage_id"),
    ],
)
def test_entry_refusals_name_the_body_field(
    both: ApiWorld, body: dict[str, object], field: str
) -> None:
    """The core's refusals of an entry's title, reference or placement name the field the
    client sent (they answered 422 with ``errors: {}``); nothing is written."""
    before = len(both.get("/entities/deals/entries?per_page=100").get_json()["data"])
    got = assert_error(both.post("/entities/deals/entries", body), 422, field)
    assert set(got["errors"]) == {field}, got
    assert len(both.get("/entities/deals/entries?per_page=100").get_json()["data"]) == before


def test_entry_title_refusal_on_update_names_the_field(both: ApiWorld) -> None:
    made = both.post("/entities/deals/entries", {"reference_id": both.ann.id, "title": "A"})
    entry = made.get_json()["id"]
    assert_error(both.put(f"/entries/{entry}", {"title": "\ud800"}), 422, "title")
    assert both.get(f"/entries/{entry}").get_json()["title"] == "A"


def _entry(crm: Any) -> str:
    crm.ensure_entity({"slug": "deals", "fields": [{"key": "note", "type": "text"}]})
    return str(crm.create_entry({"slug": "deals", "referenceId": "cus_a"})["id"])


def test_delete_at_a_version_is_atomic_in_the_store(crm: Any) -> None:
    """``DELETE /entries/{id}`` with If-Match was check-then-delete: an update landing between
    the two was deleted with the entry. The store now deletes only at the version seen."""
    entry = _entry(crm)
    crm.update_entry(entry, {"note": "someone else's edit"})  # version 1 → 2
    with pytest.raises(ConflictError):
        crm.store.delete_entry_at_version(entry, 1)
    with pytest.raises(StaleEntryError):
        crm.delete_entry(entry, expected_version=1)
    assert crm.get_entry(entry).values["note"] == "someone else's edit"  # nothing deleted
    assert crm.delete_entry(entry, expected_version=2) is True
    assert crm.get_entry(entry) is None
    assert crm.store.delete_entry_at_version(entry, 2) is False  # gone: not a conflict
    assert crm.delete_entry(entry, expected_version=2) is False


def test_delete_at_a_version_inside_a_batch(crm: Any) -> None:
    """The Elasticsearch store buffers writes in `batch()`; the conditional delete checks the
    buffered version there (SQLite has no batch: the same call applies at once)."""
    entry = _entry(crm)
    batch = getattr(crm.store, "batch", None)
    context = batch() if batch is not None else contextlib.nullcontext()
    with context:
        crm.update_entry(entry, {"note": "buffered"})
        with pytest.raises(ConflictError):
            crm.store.delete_entry_at_version(entry, 1)
        assert crm.store.delete_entry_at_version(entry, 2) is True
    assert crm.get_entry(entry) is None


def test_api_delete_with_if_match(both: ApiWorld) -> None:
    made = both.post("/entities/deals/entries", {"reference_id": both.ann.id, "title": "A"})
    entry = made.get_json()["id"]
    both.put(f"/entries/{entry}", {"title": "B"})  # version 2
    assert_error(both.delete(f"/entries/{entry}", headers={"If-Match": '"1"'}), 409, "If-Match")
    assert both.get(f"/entries/{entry}").status_code == 200
    assert both.delete(f"/entries/{entry}", headers={"If-Match": '"2"'}).status_code == 200
    assert_error(both.delete(f"/entries/{entry}", headers={"If-Match": '"2"'}), 404)


def test_empty_ids_are_absent_not_a_failure(store: Any) -> None:
    """Found by the local schemathesis run: ``POST /entities`` with ``slug: ""`` and
    ``fields`` answered 500 on Elasticsearch (its client raises ValueError for an empty
    document id). No record has an empty id: every lookup by one is "none"."""
    assert store.get_entity("") is None
    assert store.get_entry("") is None
    assert store.get_customer("") is None
    assert store.delete_entry("") is False
    assert store.delete_entity("") is False
    assert store.delete_entry_at_version("", 1) is False


@pytest.mark.parametrize("extra", [{"fields": []}, {"preset": "deals"}, {"pipelines": []}, {}])
def test_create_entity_with_an_empty_slug_is_422(both: ApiWorld, extra: dict[str, Any]) -> None:
    before = [e["slug"] for e in both.get("/entities").get_json()["data"]]
    assert_error(both.post("/entities", {"slug": "", **extra}), 422, "slug")
    assert [e["slug"] for e in both.get("/entities").get_json()["data"]] == before
