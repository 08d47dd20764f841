"""The REST API's definition routes (issue 13, item 1), on both backends: entity presets,
entities, pipelines, stages (with reorder) and fields, edited through the admin's core
operations (`crm_templates.entity_admin`) with their rules, versions as ETags, audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_templates import audit
from tests.admin_world import BACKENDS
from tests.api_world import ApiWorld, assert_error, make_api_world


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> ApiWorld:
    """The API world, once per backend."""
    return make_api_world(tmp_path, request.param, request)


def _actions(world: ApiWorld) -> list[str]:
    return [r.action for r in audit.records(world.crm.store, limit=100)[0]]


def test_presets(world: ApiWorld) -> None:
    data = world.get("/entity-presets", key=world.read).get_json()["data"]
    assert {p["slug"] for p in data} == {"leads", "contacts", "deals"}
    deals = next(p for p in data if p["slug"] == "deals")
    assert deals["fields"] and deals["pipelines"]


def test_entities_crud(world: ApiWorld) -> None:
    listed = world.get("/entities").get_json()["data"]
    assert [e["slug"] for e in listed] == ["deals", "profile"]
    deals = world.get("/entities/deals")
    assert deals.headers["ETag"] == f'"{deals.get_json()["version"]}"'
    assert [f["id"] for f in deals.get_json()["fields"]] == [
        "deals:amount",
        "deals:note",
        "deals:score",
    ]
    # Create plain, and from a preset.
    made = world.post("/entities", {"slug": "tickets", "name": "Tickets", "mode": "data"})
    assert made.status_code == 201 and made.get_json()["mode"] == "data"
    assert made.headers["Location"] == "/api/crm/entities/tickets"
    leads = world.post("/entities", {"slug": "leads", "preset": "leads"})
    assert leads.status_code == 201
    assert leads.get_json()["fields"] and leads.get_json()["pipelines"]
    assert_error(world.post("/entities", {"slug": "leads", "preset": "leads"}), 422, "slug")
    assert_error(world.post("/entities", {"slug": "x", "preset": "nope"}), 422)
    # Update: keys left out are kept; a stale If-Match is 409.
    version = world.get("/entities/tickets").get_json()["version"]
    changed = world.put(
        "/entities/tickets", {"color": "#ff0000"}, headers={"If-Match": f'"{version}"'}
    )
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["name"] == "Tickets" and changed.get_json()["color"] == "#ff0000"
    stale = world.put("/entities/tickets", {"name": "Old"}, headers={"If-Match": f'"{version}"'})
    assert_error(stale, 409, "If-Match")
    assert_error(world.put("/entities/tickets", {"color": "not a colour"}), 422, "color")
    assert_error(world.put("/entities/ghost", {"name": "x"}), 404)
    # Delete: an empty entity goes; one with entries needs confirm=true.
    assert world.delete("/entities/tickets").get_json() == {"deleted": True, "id": "tickets"}
    assert_error(world.get("/entities/tickets"), 404)
    assert_error(world.delete("/entities/profile"), 409, "confirm")
    assert world.crm.store.count_entries("profile") == 2
    assert world.delete("/entities/profile?confirm=true").status_code == 200
    assert world.crm.store.get_entity("profile") is None
    assert world.crm.store.count_entries("profile") == 0
    assert _actions(world)[:4] == [
        "entity.delete",
        "entity.delete",
        "entity.update",
        "entity.create",
    ]


def test_entity_targeted_by_a_reference_is_not_deleted(world: ApiWorld) -> None:
    field = {"key": "deal", "type": "reference", "target_entity": "deals"}
    assert world.post("/entities/profile/fields", field).status_code == 201
    assert_error(world.delete("/entities/deals?confirm=true"), 422)
    assert world.crm.store.get_entity("deals") is not None


def test_pipelines_and_stages(world: ApiWorld) -> None:
    (sales,) = world.get("/entities/deals/pipelines").get_json()["data"]
    assert [s["slug"] for s in sales["stages"]] == ["new", "won", "lost"]
    pipeline = world.post(
        "/entities/deals/pipelines",
        {"slug": "renewals", "name": "Renewals", "stages": [{"slug": "due", "name": "Due"}]},
    )
    assert pipeline.status_code == 201, pipeline.get_json()
    pid = pipeline.get_json()["id"]
    assert world.get(f"/pipelines/{pid}").get_json()["slug"] == "renewals"
    renamed = world.put(f"/pipelines/{pid}", {"name": "Renewal desk"})
    assert renamed.get_json()["name"] == "Renewal desk"
    # Stages: add, read, update, reorder (by ids), remove.
    stage = world.post(
        f"/pipelines/{pid}/stages", {"slug": "done", "name": "Done", "semantic_status": "won"}
    )
    assert stage.status_code == 201, stage.get_json()
    sid = stage.get_json()["id"]
    assert world.get(f"/stages/{sid}").get_json()["semantic_status"] == "won"
    updated = world.put(f"/stages/{sid}", {"probability": 90, "color": "#00ff00"})
    assert updated.get_json()["probability"] == 90 and updated.get_json()["name"] == "Done"
    assert_error(world.put(f"/stages/{sid}", {"probability": 300}), 422)
    listed = world.get(f"/pipelines/{pid}/stages").get_json()["data"]
    order = [s["id"] for s in reversed(listed)]
    reordered = world.put("/stages/reorder", {"pipeline_id": pid, "order": order})
    assert reordered.status_code == 200, reordered.get_json()
    assert [s["id"] for s in reordered.get_json()["stages"]] == order
    assert_error(world.put("/stages/reorder", {"pipeline_id": pid, "order": order[:1]}), 422)
    assert_error(world.put("/stages/reorder", {"pipeline_id": "pip_none", "order": order}), 404)
    assert world.delete(f"/stages/{sid}").status_code == 200
    assert_error(world.get(f"/stages/{sid}"), 404)
    # A stage entries sit in is not removed; the last pipeline of a CRM entity neither.
    new_stage = sales["stages"][0]["id"]
    assert_error(world.delete(f"/stages/{new_stage}"), 422)
    assert world.delete(f"/pipelines/{pid}").status_code == 200
    assert_error(world.get(f"/pipelines/{pid}"), 404)
    assert_error(world.delete(f"/pipelines/{sales['id']}"), 422)
    assert {"stage.reorder", "stage.add", "stage.update", "stage.remove", "pipeline.add"} <= set(
        _actions(world)
    )


def test_fields(world: ApiWorld) -> None:
    made = world.post(
        "/entities/deals/fields",
        {"key": "tier", "label": "Tier", "type": "select", "options": ["gold", "silver"]},
    )
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["id"] == "deals:tier"
    assert made.headers["Location"] == "/api/crm/fields/deals:tier"
    assert [o["value"] for o in made.get_json()["options"]] == ["gold", "silver"]
    assert_error(world.post("/entities/deals/fields", {"key": "tier"}), 422, "key")
    listed = world.get("/entities/deals/fields").get_json()["data"]
    assert [f["key"] for f in listed][-1] == "tier"
    changed = world.put("/fields/deals:tier", {"label": "Level"})
    assert changed.get_json()["label"] == "Level" and changed.get_json()["type"] == "select"
    # A type change that stored values would not fit is refused.
    assert_error(world.put("/fields/deals:note", {"type": "number"}), 422)
    assert world.get("/fields/deals:note").get_json()["type"] == "text"
    assert world.delete("/fields/deals:tier").status_code == 200
    assert_error(world.get("/fields/deals:tier"), 404)
    assert_error(world.get("/fields/no-colon"), 404)
    assert {"field.add", "field.update", "field.remove"} <= set(_actions(world))
