"""The REST API's description (issue 13, item 5): the OpenAPI 3.1 document at
/api/crm/openapi.json names exactly the routes Flask serves under /api/crm, with their
methods; its schemas are valid JSON Schema 2020-12 and are the ones the routes validate with;
the reference page /api/crm/docs renders from vendored assets under the server's CSP."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from werkzeug.serving import make_server

from crm_templates.server.api.spec import OPERATIONS
from tests.api_world import API, ApiWorld, make_api_world

# Routes that describe the API rather than being part of it (public, not in the document).
DESCRIPTION = {"/openapi.json", "/docs", "/static/<path:filename>", "/", "/<path:rest>"}


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> ApiWorld:
    """The API world on SQLite."""
    return make_api_world(tmp_path, "sqlite", request)


def _document(world: ApiWorld) -> dict[str, Any]:
    response = world.client.get(API + "/openapi.json")
    assert response.status_code == 200
    return dict(response.get_json())


def test_document_lists_exactly_the_served_routes(world: ApiWorld) -> None:
    document = _document(world)
    assert document["openapi"] == "3.1.0"
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    served = set()
    for rule in world.app.url_map.iter_rules():
        if not rule.rule.startswith(API + "/") or rule.rule[len(API) :] in DESCRIPTION:
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served
    assert len(served) == len(OPERATIONS) == 29
    # Every path parameter is declared; every operation answers errors in the one shape.
    for path, item in document["paths"].items():
        for method, op in item.items():
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (path, method)
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}
            assert {"401", "403", "429", "500"} <= set(op["responses"]), (path, method)


def test_schemas_are_valid_and_are_the_routes_own(world: ApiWorld) -> None:
    document = _document(world)
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    by_id = {op["operationId"]: op for item in document["paths"].values() for op in item.values()}
    for operation in OPERATIONS:
        described = by_id[operation.operation_id]
        if operation.body is not None:
            assert described["requestBody"]["content"]["application/json"]["schema"] == (
                operation.body
            )
            Draft202012Validator.check_schema(operation.body)
        queries = {p["name"]: p["schema"] for p in described["parameters"] if p["in"] == "query"}
        assert queries == operation.query
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["efAccessKey"] == {
        **schemes["efAccessKey"],
        "in": "header",
        "name": "EF-Access-Key",
    }


def test_answers_match_their_schemas(world: ApiWorld) -> None:
    # A sample of real answers, checked against the document's own response schemas.
    document = _document(world)
    components = document["components"]["schemas"]

    def check(path: str, name: str) -> None:
        response = world.get(path)
        assert response.status_code == 200, response.get_json()
        resolved = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": components}}
        Draft202012Validator(resolved).validate(response.get_json())

    check("/entities", "EntityList")
    check("/entities/deals/entries?include_customer=true", "EntryList")
    check(f"/customers/{world.ann.id}/entries", "CustomerEntries")
    check("/entity-presets", "PresetList")


class _Live:
    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def live(world: ApiWorld) -> Iterator[_Live]:
    """The world's app on a free loopback port."""
    server = _Live(world.app)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.browser
def test_reference_page_renders_under_the_csp(live: _Live, page: Any) -> None:
    from playwright.sync_api import expect

    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(live.url + API + "/docs")
    expect(
        page.locator(".opblock-summary-path", has_text="/api/crm/entities/{slug}/entries").first
    ).to_be_visible()
    expect(page.locator(".opblock-tag", has_text="Entries")).to_be_visible()
    assert requested and all(
        url.startswith(live.url) or url.startswith("data:") for url in requested
    )
    html = page.content()
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
