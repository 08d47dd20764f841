"""The REST API's entries and customers routes (issue 13, items 1 and 4), on both backends:
listing with filters, page and cursor, create/read/update/delete, stage moves, ETag/If-Match,
the platform's ``values`` shape, a customer's entries and two-customer isolation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crm_templates import audit
from crm_templates.stage_history import history
from tests.admin_world import BACKENDS
from tests.api_world import ApiWorld, assert_error, make_api_world


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> ApiWorld:
    """The API world, once per backend."""
    return make_api_world(tmp_path, request.param, request)


def _create(world: ApiWorld, customer: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("reference_id", customer.id)
    response = world.post("/entities/deals/entries", body)
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json())


def test_create_entry_from_a_form_conversion(world: ApiWorld) -> None:
    response = world.post(
        "/entities/deals/entries",
        {"reference_id": world.ann.id, "title": "Checkout", "values": {"amount": "42.5"}},
    )
    assert response.status_code == 201
    entry = response.get_json()
    # Values coerced by the core as SetCrmFields does; both shapes answered.
    assert entry["values"] == [{"key": "amount", "value": 42.5}]
    assert entry["values_flat"] == {"amount": 42.5}
    assert entry["reference_type"] == "customer"
    assert entry["stage_id"] == world.crm.get_entity("deals").pipelines[0].stages[0].id
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/api/crm/entries/{entry['id']}"
    stored = world.crm.get_entry(entry["id"])
    assert stored.values == {"amount": 42.5} and stored.title == "Checkout"
    (done,), _ = audit.records(world.crm.store, entry_id=entry["id"])
    assert done.action == "entry.create" and done.operator_id == f"apikey:{world.write_id}"


def test_create_refuses_bad_values_naming_each_field(world: ApiWorld) -> None:
    before = world.crm.store.count_entries("deals")
    response = world.post(
        "/entities/deals/entries",
        {"reference_id": world.ann.id, "values": {"amount": "lots", "nope": 1}},
    )
    body = assert_error(response, 422, "values.amount")
    assert "values.nope" in body["errors"]
    assert world.crm.store.count_entries("deals") == before
    assert_error(world.post("/entities/deals/entries", {"values": {}}), 422, "reference_id")
    assert_error(world.post("/entities/ghosts/entries", {"reference_id": "x"}), 404)


def test_locked_fields_can_be_written_with_a_key(world: ApiWorld) -> None:
    # ui_editable: false keeps the admin's inline edit off; an API key is a script's credential.
    entry = _create(world, world.ann, values={"score": 7})
    assert entry["values_flat"]["score"] == 7
    changed = world.put(f"/entries/{entry['id']}", {"values": {"score": 8}})
    assert changed.status_code == 200 and changed.get_json()["values_flat"]["score"] == 8


def test_get_update_delete_with_etags(world: ApiWorld) -> None:
    entry = _create(world, world.ann, values={"amount": 1})
    path = f"/entries/{entry['id']}"
    got = world.get(path)
    assert got.status_code == 200 and got.headers["ETag"] == '"1"'
    # If-Match with the current version: applied, new ETag.
    ok = world.put(path, {"values": {"note": "hi"}, "title": "T"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == '"2"'
    assert ok.get_json()["values_flat"] == {"amount": 1.0, "note": "hi"}
    # A stale If-Match: 409, nothing changed.
    stale = world.put(path, {"values": {"note": "lost"}}, headers={"If-Match": '"1"'})
    assert_error(stale, 409, "If-Match")
    assert world.crm.get_entry(entry["id"]).values["note"] == "hi"
    # No If-Match: last write wins.
    assert world.put(path, {"values": {"note": "mine"}}).status_code == 200
    # A malformed If-Match: 400.
    assert_error(
        world.put(path, {"values": {}}, headers={"If-Match": "yesterday"}), 400, "If-Match"
    )
    # Delete with a stale version: 409; with the right one: gone.
    assert_error(world.delete(path, headers={"If-Match": '"2"'}), 409, "If-Match")
    assert world.crm.get_entry(entry["id"]) is not None
    gone = world.delete(path, headers={"If-Match": '"3"'})
    assert gone.status_code == 200 and gone.get_json() == {"deleted": True, "id": entry["id"]}
    assert world.crm.get_entry(entry["id"]) is None
    assert_error(world.get(path), 404)
    assert_error(world.delete(path), 404)
    actions = [r.action for r in audit.records(world.crm.store, entry_id=entry["id"])[0]]
    assert actions == ["entry.delete", "entry.update", "entry.update", "entry.create"]


def test_move_stage(world: ApiWorld) -> None:
    entry = _create(world, world.ann)
    stages = world.crm.get_entity("deals").pipelines[0].stages
    path = f"/entries/{entry['id']}/stage"
    moved = world.put(path, {"stage_id": stages[1].id})
    assert moved.status_code == 200 and moved.get_json()["stage_id"] == stages[1].id
    assert moved.headers["ETag"] == '"2"'
    # By slug too (MoveCrmLead's rules); a stale If-Match is refused.
    assert_error(world.put(path, {"stage_id": "lost"}, headers={"If-Match": '"1"'}), 409)
    assert world.put(path, {"stage_id": "lost"}, headers={"If-Match": '"2"'}).status_code == 200
    assert_error(world.put(path, {"stage_id": "nowhere"}), 422, "stage_id")
    changes = history(world.crm, entry["id"])
    assert [c.to_stage_id for c in changes] == [stages[2].id, stages[1].id]
    assert {c.actor for c in changes} == {f"apikey:{world.write_id}"}
    # A data-mode entity's entries have no stage.
    profile = world.crm.get_entries(slug="profile", referenceId=world.ann.id)[0]
    assert_error(world.put(f"/entries/{profile.id}/stage", {"stage_id": "new"}), 422)


def _walk(world: ApiWorld, first: str) -> list[str]:
    seen: list[str] = []
    url: str | None = first
    while url:
        response = world.client.get(url, headers=world.headers())
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        seen += [e["id"] for e in body["data"]]
        if body["has_more"]:
            assert response.headers["Link"] == f'<{body["next_url"]}>; rel="next"'
        url = body["next_url"]
    return seen


def test_cursor_and_page_pagination(world: ApiWorld) -> None:
    made = [_create(world, world.bob, values={"amount": i})["id"] for i in range(7)]
    newest_first = world.crm.store.find_entries("deals", limit=None)
    expected = [e.id for e in newest_first]
    assert _walk(world, "/api/crm/entities/deals/entries?per_page=3") == expected
    first = world.get("/entities/deals/entries").get_json()
    assert first["per_page"] == 25 and first["has_more"] is False and first["next_cursor"] is None
    # page=N gives the same slices.
    page2 = world.get("/entities/deals/entries?per_page=3&page=2").get_json()
    assert [e["id"] for e in page2["data"]] == expected[3:6] and page2["page"] == 2
    assert set(made) <= set(expected)
    # Bad paging parameters: 422 naming them.
    assert_error(world.get("/entities/deals/entries?per_page=101"), 422, "per_page")
    assert_error(world.get("/entities/deals/entries?per_page=0"), 422, "per_page")
    assert_error(world.get("/entities/deals/entries?page=x"), 422, "page")
    assert_error(world.get("/entities/deals/entries?cursor=forged"), 422, "cursor")
    token = first["data"] and page2["next_cursor"]
    assert_error(world.get(f"/entities/deals/entries?page=1&cursor={token}"), 422)
    # A cursor made for one entity is refused on another.
    assert_error(world.get(f"/entities/profile/entries?cursor={token}"), 422, "cursor")


def test_filters(world: ApiWorld) -> None:
    stages = world.crm.get_entity("deals").pipelines[0].stages
    a = _create(world, world.ann, title="Blue whale", values={"amount": 5, "note": "x"})
    world.put(f"/entries/{a['id']}/stage", {"stage_id": stages[1].id})

    def ids(query: str) -> set[str]:
        response = world.get(f"/entities/deals/entries?{query}")
        assert response.status_code == 200, response.get_json()
        return {e["id"] for e in response.get_json()["data"]}

    assert ids(f"stage_id={stages[1].id}") == {a["id"]}
    assert a["id"] in ids(f"pipeline_id={stages[1].id and a['pipeline_id']}")
    assert ids(f"reference_id={world.bob.id}") == {
        e.id for e in world.crm.store.find_entries("deals", "customer", world.bob.id)
    }
    assert ids("reference_type=order") == set()
    assert ids("q=whale") == {a["id"]}
    assert ids("field_key=amount&field_value=5") == {a["id"]}
    assert ids("field_key=amount&field_value=5.0") == {a["id"]}
    assert_error(world.get("/entities/deals/entries?field_key=amount"), 422, "field_key")
    assert_error(world.get("/entities/deals/entries?field_key=nope&field_value=1"), 422)
    with_customer = world.get(f"/entities/deals/entries?reference_id={world.ann.id}"
                              "&include_customer=true").get_json()["data"]  # fmt: skip
    assert with_customer and all(e["customer"]["id"] == world.ann.id for e in with_customer)
    assert all(e["customer"]["email"] == "ann@example.com" for e in with_customer)


def test_customer_entries_show_only_that_customer(world: ApiWorld) -> None:
    _create(world, world.ann, title="Ann extra")
    ann = world.get(f"/customers/{world.ann.id}/entries")
    assert ann.status_code == 200
    body = ann.get_json()
    assert body["customer"]["id"] == world.ann.id and body["has_more"] is False
    assert {e["entity"] for e in body["data"]} == {"deals", "profile"}
    assert all(e["reference_id"] == world.ann.id for e in body["data"])
    assert len(body["data"]) == 3
    bob = world.get(f"/customers/{world.bob.id}/entries").get_json()
    assert all(e["reference_id"] == world.bob.id for e in bob["data"]) and len(bob["data"]) == 2
    assert not {e["id"] for e in bob["data"]} & {e["id"] for e in body["data"]}
    limited = world.get(f"/customers/{world.ann.id}/entries?limit=1").get_json()
    assert len(limited["data"]) == 1 and limited["has_more"] is True
    assert_error(world.get("/customers/cus_nobody/entries"), 404)
