"""The REST API's one error shape (issue 13, item 2): every refusal under /api/crm — the
API's own, the core's, werkzeug's (404, 405, 413, malformed bodies) — is
``{message, errors}`` with the right status, never HTML and never a 500 for client input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api_world import API, ApiWorld, assert_error, make_api_world


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> ApiWorld:
    """The API world on SQLite (the shapes do not depend on the backend)."""
    return make_api_world(tmp_path, "sqlite", request)


def test_unknown_paths_and_methods(world: ApiWorld) -> None:
    for path in ("/nothing", "/entities/deals/nothing", "", "/entries/a/b/c"):
        assert_error(world.get(path), 404)
        assert_error(world.post(path, {}), 404)
    response = world.client.patch(API + "/entities", headers=world.headers(), json={})
    assert_error(response, 405)
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]
    assert_error(world.delete("/entities"), 405)
    # Outside the API, the site keeps its own (HTML) error pages.
    assert world.client.get("/nothing-here").mimetype == "text/html"


def test_bodies(world: ApiWorld) -> None:
    path = API + "/entities/deals/entries"
    headers = world.headers()
    # Malformed JSON: 400. Not JSON: 415. No body: 415.
    bad = world.client.post(path, data="{oops", content_type="application/json", headers=headers)
    assert_error(bad, 400, "body")
    assert_error(world.client.post(path, data="a=b", headers=headers), 415)
    assert_error(world.client.post(path, headers=headers), 415)
    assert_error(world.client.post(path, data="x", content_type="text/plain", headers=headers), 415)
    # JSON of the wrong shape: 422 naming the place.
    assert_error(world.post("/entities/deals/entries", []), 422, "body")
    assert_error(world.post("/entities/deals/entries", {"reference_id": 5}), 422, "reference_id")
    assert_error(world.post("/entities/deals/entries", {"reference_id": "c", "x": 1}), 422, "x")
    deep = "[" * 5000 + "]" * 5000
    deep_answer = world.client.post(
        path, data=deep, content_type="application/json", headers=headers
    )
    assert deep_answer.status_code in (400, 422)
    assert_error(deep_answer, deep_answer.status_code)


def test_body_over_the_cap_is_413(world: ApiWorld) -> None:
    limit = world.app.config["CRM_MAX_BODY"]
    body = '{"reference_id": "c", "title": "' + "x" * limit + '"}'
    before = world.crm.store.count_entries("deals")
    response = world.client.post(
        API + "/entities/deals/entries",
        data=body,
        content_type="application/json",
        headers=world.headers(),
    )
    assert_error(response, 413)
    assert str(limit) in response.get_json()["message"]
    assert world.crm.store.count_entries("deals") == before


def test_core_refusals_are_422_or_409(world: ApiWorld) -> None:
    assert_error(world.post("/entities", {"slug": "Bad Slug"}), 422, "slug")
    assert_error(world.post("/entities", {"slug": "deals"}), 422, "slug")
    assert_error(world.post("/entities/deals/fields", {"key": "n", "type": "nope"}), 422)
    # A field entries hold: 409 until confirmed.
    assert_error(world.delete("/fields/deals:amount"), 409, "confirm")
    assert world.delete("/fields/deals:amount?confirm=true").status_code == 200
    assert_error(world.get("/fields/deals:amount"), 404)
    assert_error(world.delete("/fields/deals:amount?confirm=maybe"), 422, "confirm")


def test_unexpected_failures_are_500_in_the_shape(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not client input: a store that breaks. The answer still has the shape and no details.
    world.app.config["PROPAGATE_EXCEPTIONS"] = False
    world.app.testing = False

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(type(world.crm.store), "list_entities", broken)
    response = world.get("/entities")
    body = assert_error(response, 500)
    assert "secret" not in response.get_data(as_text=True) and body["errors"] == {}


def test_api_in_a_plain_flask_app(tmp_path: Path) -> None:
    # An app with crm_templates.flask.CrmTemplates installs the API with init_api (documented).
    from flask import Flask

    from crm_templates.api_keys import create_key
    from crm_templates.flask import CrmTemplates
    from crm_templates.server.api import init_api

    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="plain", CRM_STORE_URL=f"sqlite:///{tmp_path / 'crm.db'}")
    crm = CrmTemplates(app)
    init_api(app)
    try:
        service = crm.service
        service.ensure_entity(slug="notes", fields=[{"key": "text"}])
        _, key = create_key(service.store, name="app", scope="write")
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        made = client.post(
            API + "/entities/notes/entries",
            json={"reference_id": "u1", "values": {"text": "hi"}},
            headers=headers,
        )
        assert made.status_code == 201, made.get_json()
        listed = client.get(API + "/entities/notes/entries", headers=headers).get_json()
        assert [e["values_flat"] for e in listed["data"]] == [{"text": "hi"}]
        assert_error(client.get(API + "/entities/notes/entries"), 401)
        assert_error(client.get(API + "/nope", headers=headers), 404)
        assert client.get("/nope").mimetype == "text/html"  # the app's own 404 stays
        assert client.get(API + "/docs").status_code == 200
    finally:
        crm.close(app)
