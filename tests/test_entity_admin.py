"""Editing entity definitions in the core (issue 12, item 2): `crm_templates.entity_admin` and
the store queries behind it (`crm_templates.storage.entity_queries`), on every backend.

Every edit is checked to leave the entries exactly as they were (values, pipeline, stage,
version): the admin edits definitions, never entries.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from crm_templates import Crm, open_store
from crm_templates import entity_admin as ea
from crm_templates.errors import CrmValidationError, UnknownEntityError, UnknownFieldError
from crm_templates.model import Entry

ROOT = Path(__file__).resolve().parent.parent


def entries_snapshot(crm: Crm) -> dict[str, Entry]:
    """Every entry of every entity, by id (compared whole: values, stage, version …)."""
    return {e.id: e for e in crm.store.iter_entries()}


@pytest.fixture
def world(crm: Crm) -> Crm:
    """deals (crm mode: amount, note, kind, owner→people) with three entries; people (data)."""
    assert crm.ensure_entity(slug="people", entityMode="data", fields=[{"key": "name"}])["ok"]
    assert crm.ensure_entity(
        slug="deals",
        fields=[
            {"key": "amount", "type": "number"},
            {"key": "note"},
            {"key": "kind", "type": "select", "options": ["a", "b"]},
            {"key": "owner", "type": "reference", "target_entity": "people"},
        ],
    )["ok"]
    ann = crm.create_entry(slug="people", values={"name": "Ann"}, referenceId="c1")["id"]
    crm.create_entry(
        slug="deals", values={"amount": 5, "note": "x", "owner": ann}, referenceId="c1"
    )
    crm.create_entry(slug="deals", values={"amount": 7, "kind": "a"}, referenceId="c2")
    crm.create_entry(slug="deals", values={"note": "only a note"}, referenceId="c2")
    crm.move_to_stage(slug="deals", stageSlug="won", referenceId="c1")
    return crm


def version(crm: Crm, slug: str = "deals") -> int:
    entity = crm.store.get_entity(slug)
    assert entity is not None
    return entity.version


# --- store queries (contract, every backend) ------------------------------------------------


def test_store_counts_entries_holding_a_field(world: Crm) -> None:
    store = world.store
    assert store.count_entries_with_field("deals", "amount") == 2
    assert store.count_entries_with_field("deals", "note") == 2
    assert store.count_entries_with_field("deals", "kind") == 1
    assert store.count_entries_with_field("deals", "nothing") == 0
    assert store.count_entries_with_field("people", "amount") == 0  # per entity


def test_store_counts_entries_by_field_in_one_pass(world: Crm) -> None:
    assert world.store.count_entries_by_field("deals") == {
        "amount": 2,
        "note": 2,
        "kind": 1,
        "owner": 1,
    }
    assert world.store.count_entries_by_field("people") == {"name": 1}
    assert world.store.count_entries_by_field("none-such") == {}


def test_store_counts_entries_by_stage(world: Crm) -> None:
    entity = world.get_entity("deals")
    stages = {s.slug: s.id for s in entity.pipelines[0].stages}
    assert world.store.count_entries_by_stage("deals") == {stages["new"]: 2, stages["won"]: 1}
    assert world.store.count_entries_by_stage("people") == {None: 1}
    assert world.store.count_entries_by_stage("none-such") == {}


def test_store_reports_every_entity_version(world: Crm) -> None:
    assert world.store.entity_versions() == {e.slug: e.version for e in world.store.list_entities()}
    before = version(world)
    ea.update_entity(world, "deals", before, name="Deals")
    assert world.store.entity_versions()["deals"] == before + 1


def test_store_counts_see_writes_buffered_in_a_batch(world: Crm) -> None:
    store = world.store
    newest = store.find_entries("deals", "customer", "c2", limit=1)[0]
    with store.batch():
        store.update_entry(replace(newest, values={"amount": 1}, stage_id=None), newest.version)
        assert store.count_entries_with_field("deals", "amount") == 3
        assert store.count_entries_with_field("deals", "note") == 1
        assert store.count_entries_by_stage("deals").get(None) == 1
        assert store.count_entries_by_field("deals") == {
            "amount": 3,
            "note": 1,
            "kind": 1,
            "owner": 1,
        }


# --- entities -------------------------------------------------------------------------------


def test_create_entity_validates_like_ensure(world: Crm) -> None:
    entity = ea.create_entity(world, "tickets", name="Tickets", color="#ABC", mode="crm")
    assert world.get_entity("tickets") == entity
    assert entity.color == "#abc" and entity.singular_name == "Tickets"
    assert [p.slug for p in entity.pipelines] == ["default"]  # as EnsureCrmEntity does
    with pytest.raises(ea.InvalidEdit, match="already exists") as taken:
        ea.create_entity(world, "tickets")
    assert taken.value.input == "slug"
    with pytest.raises(ea.InvalidEdit, match=r"slug must match") as bad:
        ea.create_entity(world, "Bad Slug")
    assert bad.value.input == "slug"
    # The same message EnsureCrmEntity gives for the same colour.
    with pytest.raises(CrmValidationError) as ensured:
        world.ensure_entity(slug="other", color="red; x")
    with pytest.raises(ea.InvalidEdit) as edited:
        ea.create_entity(world, "other", color="red; x")
    assert str(edited.value) == str(ensured.value) and edited.value.input == "color"
    assert world.store.get_entity("other") is None


def test_update_entity_changes_attributes_and_keeps_entries(world: Crm) -> None:
    before = entries_snapshot(world)
    v = version(world)
    stored = ea.update_entity(
        world, "deals", v, name="Big deals", singular_name="Deal", icon="💼", color="teal"
    )
    assert stored.version == v + 1
    entity = world.get_entity("deals")
    assert (entity.name, entity.singular_name, entity.plural_name, entity.icon, entity.color) == (
        "Big deals",
        "Deal",
        "Big deals",
        "💼",
        "teal",
    )
    assert entries_snapshot(world) == before


def test_stale_version_is_refused_and_nothing_changes(world: Crm) -> None:
    v = version(world)
    ea.update_entity(world, "deals", v, name="First")
    definition = world.store.get_entity("deals")
    for edit in (
        lambda: ea.update_entity(world, "deals", v, name="Second"),
        lambda: ea.add_field(world, "deals", v, {"key": "late"}),
        lambda: ea.update_field(world, "deals", v, "note", {"label": "Late"}),
        lambda: ea.remove_field(world, "deals", v, "kind", confirm=True),
        lambda: ea.add_stage(world, "deals", v, "default", {"slug": "late"}),
        lambda: ea.move_stage(world, "deals", v, "default", "won", "up"),
    ):
        with pytest.raises(ea.StaleEntityError, match="changed by someone else") as stale:
            edit()
        assert stale.value.current == v + 1
    assert world.store.get_entity("deals") == definition


def test_a_racing_writer_between_read_and_write_is_caught(world: Crm) -> None:
    # The store's compare-and-set is the guard: a write that lands after the version check.
    entity = world.store.get_entity("deals")
    assert entity is not None
    world.store.update_entity(entity, entity.version)  # someone else's edit
    with pytest.raises(ea.StaleEntityError):
        ea._commit(world, entity, entity)


def test_bad_versions_are_invalid_input(world: Crm) -> None:
    for bad in ("", "x", None, 0, True, "-1"):
        with pytest.raises(ea.InvalidEdit) as exc:
            ea.update_entity(world, "deals", bad, name="x")
        assert exc.value.input == "version"
    assert ea.update_entity(world, "deals", str(version(world)), name="ok").name == "ok"
    with pytest.raises(UnknownEntityError):
        ea.update_entity(world, "nope", 1, name="x")


def test_mode_crm_to_data_is_refused_while_entries_exist(world: Crm) -> None:
    before = entries_snapshot(world)
    with pytest.raises(ea.InvalidEdit, match="3 entries") as exc:
        ea.update_entity(world, "deals", version(world), mode="data")
    assert exc.value.input == "mode"
    assert world.get_entity("deals").mode == "crm"
    empty = ea.create_entity(world, "empty")
    assert ea.update_entity(world, "empty", empty.version, mode="data").pipelines == ()
    assert entries_snapshot(world) == before


def test_mode_data_to_crm_adds_the_default_pipeline_and_keeps_entries(world: Crm) -> None:
    before = entries_snapshot(world)
    stored = ea.update_entity(world, "people", version(world, "people"), mode="crm")
    assert stored.mode == "crm" and [p.slug for p in stored.pipelines] == ["default"]
    assert entries_snapshot(world) == before  # they stay on no stage until moved
    with pytest.raises(ea.InvalidEdit, match="'crm' or 'data'"):
        ea.update_entity(world, "people", stored.version, mode="other")


# --- fields ---------------------------------------------------------------------------------


def test_add_field_validates_with_parse_field(world: Crm) -> None:
    before = entries_snapshot(world)
    v = version(world)
    stored = ea.add_field(
        world,
        "deals",
        v,
        {
            "key": "stage_note",
            "label": "Stage note",
            "type": "select",
            "options": [{"value": "x", "label": "X"}],
            "uiEditable": False,
            "reportingConfig": {"aggregationType": "categorical", "preferredChart": "pie"},
        },
    )
    f = stored.fields[-1]
    assert (f.key, f.ui_editable, f.reporting_config and f.reporting_config.preferred_chart) == (
        "stage_note",
        False,
        "pie",
    )
    cases = {
        "key": {"key": "bad key"},
        "type": {"key": "t", "type": "nope"},
        "options": {"key": "s", "type": "select"},
        "reporting_config": {"key": "r", "reporting_config": {"bucket_size": -1}},
        "target_entity": {"key": "ref", "type": "reference", "target_entity": "missing"},
        "validation_rules": {"key": "v", "validation_rules": "not json object"},
    }
    for expected_input, definition in cases.items():
        with pytest.raises(ea.InvalidEdit) as exc:
            ea.add_field(world, "deals", stored.version, definition)
        assert exc.value.input == expected_input, (definition, str(exc.value))
    with pytest.raises(ea.InvalidEdit, match="already has a field") as taken:
        ea.add_field(world, "deals", stored.version, {"key": "amount"})
    assert taken.value.input == "key"
    assert version(world) == stored.version  # none of the refused ones was written
    assert entries_snapshot(world) == before


def test_update_field_changes_label_options_lock_and_reporting(world: Crm) -> None:
    before = entries_snapshot(world)
    stored = ea.update_field(
        world,
        "deals",
        version(world),
        "kind",
        {
            "label": "Kind of deal",
            "options": ["a", "b", "c"],
            "ui_editable": False,
            "reporting_config": {"aggregation_type": "categorical", "preferred_chart": "bar"},
            "validation_rules": {"required": True},
        },
    )
    kind = next(f for f in stored.fields if f.key == "kind")
    assert kind.label == "Kind of deal" and [o.value for o in kind.options] == ["a", "b", "c"]
    assert not kind.ui_editable and kind.validation_rules == {"required": True}
    assert [f.key for f in stored.fields] == ["amount", "note", "kind", "owner"]  # order kept
    stored = ea.update_field(world, "deals", stored.version, "kind", {"reporting_config": None})
    assert next(f for f in stored.fields if f.key == "kind").reporting_config is None
    with pytest.raises(ea.InvalidEdit, match="changeable"):
        ea.update_field(world, "deals", stored.version, "kind", {"key": "renamed"})
    with pytest.raises(UnknownFieldError):
        ea.update_field(world, "deals", stored.version, "nope", {"label": "x"})
    assert entries_snapshot(world) == before


def test_type_change_with_values_is_refused_unless_safe(world: Crm) -> None:
    before = entries_snapshot(world)
    v = version(world)
    with pytest.raises(ea.InvalidEdit, match=r"2 entries hold values of field 'amount'") as exc:
        ea.update_field(world, "deals", v, "amount", {"type": "text"})
    assert exc.value.input == "type"
    with pytest.raises(ea.InvalidEdit, match="target cannot change") as ref:
        ea.update_field(world, "deals", v, "owner", {"target_entity": "deals"})
    assert ref.value.input == "target_entity"
    assert version(world) == v
    # Safe: every stored string stays a valid text/textarea value.
    stored = ea.update_field(world, "deals", v, "note", {"type": "textarea"})
    stored = ea.update_field(
        world, "deals", stored.version, "kind", {"type": "text", "options": None}
    )
    assert {f.key: f.type for f in stored.fields}["kind"] == "text"
    # No values held: any change.
    stored = ea.add_field(world, "deals", stored.version, {"key": "fresh", "type": "number"})
    stored = ea.update_field(world, "deals", stored.version, "fresh", {"type": "boolean"})
    assert {f.key: f.type for f in stored.fields}["fresh"] == "boolean"
    assert entries_snapshot(world) == before


def test_removing_a_held_field_needs_confirmation_with_the_count(world: Crm) -> None:
    before = entries_snapshot(world)
    v = version(world)
    with pytest.raises(ea.ConfirmationRequired, match="2 entries hold") as exc:
        ea.remove_field(world, "deals", v, "amount")
    assert exc.value.count == 2
    assert version(world) == v and "amount" in world.get_entity("deals").field_keys
    removal = ea.remove_field(world, "deals", v, "amount", confirm=True)
    assert removal.values_kept == 2 and "amount" not in removal.entity.field_keys
    # The values stay in the entries: re-adding the key shows them again.
    assert entries_snapshot(world) == before
    assert world.store.count_entries_with_field("deals", "amount") == 2
    assert world.store.count_entries_by_field("deals")["amount"] == 2
    with pytest.raises(
        ea.InvalidEdit, match="2 entries hold a value kept under 'amount'"
    ) as misfit:
        ea.add_field(world, "deals", removal.entity.version, {"key": "amount", "type": "boolean"})
    assert misfit.value.input == "type"
    again = ea.add_field(
        world, "deals", removal.entity.version, {"key": "amount", "type": "number"}
    )
    assert sorted(world.get_field_values(slug="deals", fieldKey="amount", referenceId="c1")) == [5]
    # A field nobody holds goes at once.
    fresh = ea.add_field(world, "deals", again.version, {"key": "unused"})
    assert ea.remove_field(world, "deals", fresh.version, "unused").values_kept == 0


# --- pipelines and stages -------------------------------------------------------------------


def test_stages_add_update_reorder_and_entries_stay(world: Crm) -> None:
    before = entries_snapshot(world)
    entity = world.get_entity("deals")
    won = next(s for s in entity.pipelines[0].stages if s.slug == "won")
    stored = ea.add_stage(
        world,
        "deals",
        entity.version,
        "default",
        {"slug": "review", "name": "Review", "color": "#7c3aed", "probability": 60},
    )
    assert [s.slug for s in stored.pipelines[0].stages] == [
        "new",
        "active",
        "won",
        "lost",
        "review",
    ]
    stored = ea.update_stage(
        world,
        "deals",
        stored.version,
        "default",
        "won",
        {"name": "Closed won", "color": "green", "probability": 100, "semantic_status": "won"},
    )
    changed = next(s for s in stored.pipelines[0].stages if s.slug == "won")
    assert (changed.id, changed.position, changed.name, changed.probability) == (
        won.id,
        won.position,
        "Closed won",
        100,
    )
    stored = ea.move_stage(world, "deals", stored.version, "default", "review", "up")
    stored = ea.reorder_stages(
        world, "deals", stored.version, "default", ["review", "new", "active", "won", "lost"]
    )
    stages = stored.pipelines[0].stages
    assert [(s.slug, s.position) for s in stages] == [
        ("review", 0),
        ("new", 1),
        ("active", 2),
        ("won", 3),
        ("lost", 4),
    ]
    assert world.get_entity("deals").pipelines[0].stages == stages
    for bad in (["new"], ["review", "new", "active", "won", "won"], "review"):
        with pytest.raises(ea.InvalidEdit, match="every stage"):
            ea.reorder_stages(world, "deals", stored.version, "default", bad)  # type: ignore[arg-type]
    with pytest.raises(ea.InvalidEdit, match="already the first"):
        ea.move_stage(world, "deals", stored.version, "default", "review", "up")
    with pytest.raises(ea.InvalidEdit) as prob:
        ea.update_stage(world, "deals", stored.version, "default", "won", {"probability": 101})
    assert prob.value.input == "probability"
    with pytest.raises(ea.InvalidEdit) as status:
        ea.update_stage(world, "deals", stored.version, "default", "won", {"semantic_status": "x"})
    assert status.value.input == "semantic_status"
    with pytest.raises(ea.InvalidEdit, match="already has a stage") as dup:
        ea.add_stage(world, "deals", stored.version, "default", {"slug": "won"})
    assert dup.value.input == "slug"
    assert entries_snapshot(world) == before


def test_removing_a_stage_with_entries_is_refused(world: Crm) -> None:
    before = entries_snapshot(world)
    v = version(world)
    with pytest.raises(ea.InvalidEdit, match="2 entries sit in stage 'new'"):
        ea.remove_stage(world, "deals", v, "default", "new")
    with pytest.raises(ea.InvalidEdit, match="1 entry sits in stage 'won'"):
        ea.remove_stage(world, "deals", v, "default", "won")
    stored = ea.remove_stage(world, "deals", v, "default", "active")
    assert [(s.slug, s.position) for s in stored.pipelines[0].stages] == [
        ("new", 0),
        ("won", 1),
        ("lost", 2),
    ]
    assert entries_snapshot(world) == before


def test_pipelines_add_rename_remove(world: Crm) -> None:
    before = entries_snapshot(world)
    v = version(world)
    stored = ea.add_pipeline(
        world, "deals", v, {"slug": "renewals", "name": "Renewals", "stages": [{"slug": "due"}]}
    )
    assert [p.slug for p in stored.pipelines] == ["default", "renewals"]
    with pytest.raises(ea.InvalidEdit, match="already has a pipeline") as dup:
        ea.add_pipeline(
            world, "deals", stored.version, {"slug": "renewals", "stages": [{"slug": "a"}]}
        )
    assert dup.value.input == "slug"
    stored = ea.update_pipeline(world, "deals", stored.version, "renewals", name="Renewal cycle")
    assert stored.pipelines[1].name == "Renewal cycle"
    with pytest.raises(ea.InvalidEdit, match="3 entries sit in pipeline 'default'"):
        ea.remove_pipeline(world, "deals", stored.version, "default")
    stored = ea.remove_pipeline(world, "deals", stored.version, "renewals")
    with pytest.raises(ea.InvalidEdit, match="only pipeline"):
        ea.remove_pipeline(world, "deals", stored.version, "default")
    with pytest.raises(ea.InvalidEdit, match="data mode"):
        ea.add_pipeline(
            world, "people", version(world, "people"), {"slug": "p", "stages": [{"slug": "a"}]}
        )
    assert entries_snapshot(world) == before


# --- caches ---------------------------------------------------------------------------------


def test_the_editing_service_sees_its_edit_at_once(world: Crm) -> None:
    assert world.get_entity("deals").name == "deals"  # cached now
    ea.update_entity(world, "deals", version(world), name="Renamed")
    assert world.get_entity("deals").name == "Renamed"


def test_another_process_sees_the_edit_after_refresh(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    editor = Crm(open_store(url))
    reader = Crm(open_store(url), entity_cache_seconds=3600)  # another process's service
    try:
        editor.ensure_entity(slug="notes", fields=[{"key": "text"}])
        assert reader.get_entity("notes").field_keys == ["text"]
        ea.add_field(editor, "notes", version(editor, "notes"), {"key": "mood"})
        assert reader.get_entity("notes").field_keys == ["text"]  # its cache, until…
        reader.refresh_entities()
        assert reader.get_entity("notes").field_keys == ["text", "mood"]
        assert reader.set_field(slug="notes", fieldKey="mood", value="ok", referenceId="c")["ok"]
    finally:
        editor.close()
        reader.close()


def test_the_core_module_imports_no_web_layer() -> None:
    code = "import json, sys, crm_templates.entity_admin; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    loaded = set(json.loads(out))
    assert not loaded & {"flask", "jinja2", "renderers", "crm_templates.server"}
