"""Issue 9, items 4-8: failure values in pages, relations after newer entries, MoveCrmToEntity,
the seed's options (field_key items, validation_rules, visible_to_team_ids, crm_async, async on
reads) and entity presets. Storage-dependent tests run on every backend (the ``crm`` fixture).
Colours (item 7) are in tests/test_colours.py."""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from crm_templates import (
    FUNCTIONS,
    Crm,
    CrmExtension,
    CrmValidationError,
    UnknownOptionError,
    WriteResult,
    none_as_empty,
    open_store,
)
from crm_templates.lint import lint_templates
from crm_templates.model import entity_from_dict, entity_to_dict
from crm_templates.presets import PRESETS
from crm_templates.server import create_app

# --- shared schema -----------------------------------------------------------------------------

SCHEMA: list[dict[str, Any]] = [
    {"slug": "companies", "entityMode": "data", "fields": [{"key": "name"}]},
    {
        "slug": "people",
        "entityMode": "data",
        "fields": [
            {"key": "name"},
            {"key": "employer", "type": "reference", "target_entity": "companies"},
            {"key": "clients", "type": "multi_reference", "target_entity": "companies"},
            {"key": "note"},
            {"key": "score", "type": "number"},
        ],
    },
    {
        "slug": "leads",
        "fields": [
            {"key": "name"},
            {"key": "budget", "type": "number"},
            {"key": "email", "type": "email"},
        ],
    },
    {
        "slug": "deals",
        "fields": [{"key": "contact"}, {"key": "value", "type": "number"}],
        "pipelines": [{"slug": "sales", "stages": [{"slug": "open"}, {"slug": "won"}]}],
    },
]


@pytest.fixture
def svc(crm: Crm) -> Crm:
    """The service (on every backend) with SCHEMA, bound to customer cus_a."""
    for entity in SCHEMA:
        crm.ensure_entity(entity)
    return crm.bind("cus_a")


def companies(svc: Crm, *names: str) -> list[str]:
    return [
        svc.create_entry(
            slug="companies", values={"name": n}, referenceType="site", referenceId="directory"
        )["id"]
        for n in names
    ]


# === item 4: failed reads and writes in pages ====================================================


def test_write_result_is_falsy_exactly_when_ok_is_false() -> None:
    assert WriteResult(ok=True, id="x")
    assert WriteResult(ok=True, pending=True)
    assert not WriteResult(ok=False, error="boom")
    assert not WriteResult(ok=False, moved=0)
    assert str(WriteResult(ok=False)) == "" and str(WriteResult(ok=True)) == ""
    assert WriteResult(ok=False, error="e") == {"ok": False, "error": "e"}  # still a mapping


def _bare_env(crm: Crm, **env_options: Any) -> SandboxedEnvironment:
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True, **env_options)
    env.install_crm(crm, on_error="log")  # type: ignore[attr-defined]
    return env


IF_WRITE = (
    "{% if SetCrmField(slug=slug, fieldKey=key, value=value) %}saved{% else %}failed{% endif %}"
)


@pytest.mark.parametrize(
    ("slug", "key", "value", "expected"),
    [
        ("people", "score", 5, "saved"),
        ("people", "score", "not a number", "failed"),  # validation error, logged
        ("people", "nope", 1, "failed"),  # unknown key
        ("nope", "score", 1, "failed"),  # unknown entity
    ],
)
def test_if_write_detects_failure_under_log_policy(
    svc: Crm, slug: str, key: str, value: Any, expected: str, caplog: Any
) -> None:
    env = _bare_env(svc)
    with caplog.at_level(logging.ERROR, logger="crm_templates.extension"):
        out = env.from_string(IF_WRITE).render(customer_id="cus_a", slug=slug, key=key, value=value)
    assert out == expected
    assert svc.get_field(slug="people", fieldKey="score") == (5.0 if expected == "saved" else None)


def test_write_results_print_nothing_and_test_true_on_success(svc: Crm) -> None:
    env = _bare_env(svc)
    page = (
        "[{{ SetCrmField(slug='people', fieldKey='note', value='hi') }}]"
        "[{{ SetCrmField(slug='people', fieldKey='score', value='x') }}]"
        "{% set r = AddCrmFieldValue(slug='people', fieldKey='note', value='a', async=true) %}"
        "{{ 'pending' if r and r.pending }}"
        "{% if not MoveCrmToStage(slug='deals', stageSlug='won') %}|nothing to move{% endif %}"
    )
    assert env.from_string(page).render(customer_id="cus_a") == "[][]pending|nothing to move"


def test_preview_write_is_falsy(svc: Crm) -> None:
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(svc.bind("cus_a", read_only=True), on_error="raise")  # type: ignore[attr-defined]
    out = env.from_string(IF_WRITE).render(
        customer_id="cus_a", slug="people", key="note", value="x"
    )
    assert out == "failed"
    assert svc.get_field(slug="people", fieldKey="note") is None


READ_PAGE = (
    "[{{ GetCrmField(slug='people', fieldKey='note') }}]"  # not set
    "[{{ GetCrmField(slug='nope', fieldKey='note') }}]"  # fails, logged
    "[{{ 'people' | crm_field('note') }}]"
)


def test_bare_env_prints_none_as_jinja_does_unless_given_the_finalize(svc: Crm) -> None:
    """The decision for item 4: the extension leaves an application's environment printing as
    Jinja does; ``finalize=none_as_empty`` (what the page server uses) prints None as nothing."""
    assert _bare_env(svc).from_string(READ_PAGE).render(customer_id="cus_a") == (
        "[None][None][None]"
    )
    env = _bare_env(svc, finalize=none_as_empty)
    assert env.from_string(READ_PAGE).render(customer_id="cus_a") == "[][][]"
    svc.set_field(slug="people", fieldKey="score", value=0)
    svc.set_field(slug="people", fieldKey="note", value="")
    kept = env.from_string(
        "[{{ GetCrmField(slug='people', fieldKey='score') }}]{{ false }}{{ [] }}{{ '' }}"
    ).render(customer_id="cus_a")
    assert kept == "[0.0]False[]"  # only None is blanked: 0, False and [] still print


SERVER_PAGES = {
    "read.html": READ_PAGE,
    "write.html": (
        "{% if SetCrmField(slug='people', fieldKey='score', value=request.args.v) %}saved"
        "{% else %}failed{% endif %}:{{ GetCrmField(slug='people', fieldKey='score') }}"
    ),
}


@pytest.fixture
def log_app(tmp_path: Path) -> Iterator[Any]:
    """A page server (real SQLite file) with on_error="log", the production policy."""
    site = tmp_path / "site"
    for name, text in SERVER_PAGES.items():
        path = site / "pages" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (site / "crm.json").write_text(json.dumps({"entities": SCHEMA}))
    app = create_app(site, TESTING=True, CRM_SEED=False, CRM_ON_ERROR="log")
    yield app
    app.extensions["crm"].close()


def test_server_prints_missing_and_failed_reads_as_nothing(log_app: Any) -> None:
    body = log_app.test_client().get("/read").get_data(as_text=True)
    assert body == "[][][]"


def test_server_page_detects_a_failed_write(log_app: Any) -> None:
    client = log_app.test_client()
    assert client.get("/write?v=12").get_data(as_text=True) == "saved:12.0"
    assert client.get("/write?v=twelve").get_data(as_text=True) == "failed:12.0"


# === item 5: relations after a newer entry exists ================================================


def test_remove_relation_keeps_the_other_link_after_a_newer_entry(svc: Crm) -> None:
    """The issue's example: two links, a newer entry without the key, remove one link."""
    acme, globex = companies(svc, "Acme", "Globex")
    for target in (acme, globex):
        svc.set_relation(slug="people", relationKey="clients", targetEntryId=target)
    holder = svc.get_entries(slug="people")[0].id
    svc.add_field_value(slug="people", fieldKey="note", value="newer entry")

    result = svc.remove_relation(slug="people", relationKey="clients", targetEntryId=acme)

    assert result == {"ok": True, "id": holder, "changed": True}
    assert svc.get_field(slug="people", fieldKey="clients") == [globex]
    newest = svc.get_entries(slug="people")[0]
    assert newest.values == {"note": "newer entry"}  # no [] written onto the newer entry


def test_set_relation_adds_to_the_entry_holding_the_key(svc: Crm) -> None:
    acme, globex = companies(svc, "Acme", "Globex")
    svc.set_relation(slug="people", relationKey="clients", targetEntryId=acme)
    holder = svc.get_entries(slug="people")[0].id
    svc.add_field_value(slug="people", fieldKey="note", value="newer")

    result = svc.set_relation(slug="people", relationKey="clients", targetEntryId=globex)

    assert result["id"] == holder
    assert svc.get_field(slug="people", fieldKey="clients") == [acme, globex]
    assert [e.values.get("clients") for e in svc.get_entries(slug="people")] == [
        None,
        [acme, globex],
    ]


def test_reference_field_remove_acts_on_the_holder(svc: Crm) -> None:
    (acme,) = companies(svc, "Acme")
    svc.set_relation(slug="people", relationKey="employer", targetEntryId=acme)
    svc.add_field_value(slug="people", fieldKey="note", value="newer")
    # A remove of another target changes nothing; the holder's link stays readable.
    (other,) = companies(svc, "Other")
    assert (
        svc.remove_relation(slug="people", relationKey="employer", targetEntryId=other)["changed"]
        is False
    )
    assert svc.get_field(slug="people", fieldKey="employer") == acme
    svc.remove_relation(slug="people", relationKey="employer", targetEntryId=acme)
    assert svc.get_field(slug="people", fieldKey="employer") is None


def test_relation_holder_is_found_beyond_the_set_field_scan_depth(svc: Crm) -> None:
    acme, globex = companies(svc, "Acme", "Globex")
    svc.set_relation(slug="people", relationKey="clients", targetEntryId=acme)
    svc.set_relation(slug="people", relationKey="clients", targetEntryId=globex)
    for i in range(101):
        svc.add_field_value(slug="people", fieldKey="score", value=i)
    svc.remove_relation(slug="people", relationKey="clients", targetEntryId=acme)
    assert svc.get_field(slug="people", fieldKey="clients") == [globex]


def test_relation_without_a_holder_uses_the_newest_entry_else_a_new_one(svc: Crm) -> None:
    (acme,) = companies(svc, "Acme")
    first = svc.set_relation(slug="people", relationKey="employer", targetEntryId=acme)
    assert first["changed"] is True and len(svc.get_entries(slug="people")) == 1
    svc.add_field_value(slug="people", fieldKey="note", value="n")
    newest = svc.get_entries(slug="people")[0].id
    result = svc.set_relation(slug="people", relationKey="clients", targetEntryId=acme)
    assert result["id"] == newest


def test_entry_id_still_wins_over_the_holder(svc: Crm) -> None:
    acme, globex = companies(svc, "Acme", "Globex")
    svc.set_relation(slug="people", relationKey="clients", targetEntryId=acme)
    other = svc.add_field_value(slug="people", fieldKey="note", value="n")["id"]
    svc.set_relation(slug="people", relationKey="clients", targetEntryId=globex, entryId=other)
    assert svc.get_entry(other).values["clients"] == [globex]
    assert svc.get_field_values(slug="people", fieldKey="clients") == [[globex], [acme]]


def test_relations_of_two_customers_stay_apart(svc: Crm) -> None:
    acme, globex = companies(svc, "Acme", "Globex")
    a, b = svc.bind("cus_a"), svc.bind("cus_b")
    for view in (a, b):
        view.set_relation(slug="people", relationKey="clients", targetEntryId=acme)
        view.set_relation(slug="people", relationKey="clients", targetEntryId=globex)
        view.add_field_value(slug="people", fieldKey="note", value="newer")
    a.remove_relation(slug="people", relationKey="clients", targetEntryId=acme)
    assert a.get_field(slug="people", fieldKey="clients") == [globex]
    assert b.get_field(slug="people", fieldKey="clients") == [acme, globex]


# === item 6: MoveCrmToEntity ======================================================================


def leads(svc: Crm, *rows: dict[str, Any]) -> list[str]:
    """Lead entries, oldest first."""
    return [
        svc.create_entry(slug="leads", title=str(row.get("name", "")), values=row)["id"]
        for row in rows
    ]


def test_move_to_the_same_entity_is_an_error_and_writes_nothing(svc: Crm) -> None:
    leads(svc, {"name": "Ann"})
    with pytest.raises(CrmValidationError, match="fromSlug and toSlug"):
        svc.move_to_entity(fromSlug="leads", toSlug="leads", fieldMap={"name": "name"})
    assert len(svc.get_entries(slug="leads")) == 1


@pytest.mark.parametrize("field_map", [{}, [], "name", None])
def test_move_field_map_needs_at_least_one_pair(svc: Crm, field_map: Any) -> None:
    leads(svc, {"name": "Ann"})
    with pytest.raises(CrmValidationError, match="fieldMap"):
        svc.move_to_entity(fromSlug="leads", toSlug="deals", fieldMap=field_map)
    assert svc.get_entries(slug="deals") == []


def test_move_all_entries_makes_one_target_per_source_in_order(svc: Crm) -> None:
    leads(
        svc,
        {"name": "Ann", "budget": 100},
        {"name": "Bo"},
        {"name": "Cy", "budget": 300, "email": "cy@example.com"},
    )
    result = svc.move_to_entity(
        fromSlug="leads", toSlug="deals", fieldMap={"name": "contact", "budget": "value"},
        allEntries=True, stageSlug="won",
    )  # fmt: skip
    assert result["ok"] is True and result["moved"] == 5  # fields copied: 2 + 1 + 2
    deals = svc.get_entries(slug="deals")  # newest first
    assert [d.values for d in deals] == [
        {"contact": "Cy", "value": 300.0},
        {"contact": "Bo"},
        {"contact": "Ann", "value": 100.0},
    ]
    assert [d.title for d in deals] == ["Cy", "Bo", "Ann"]
    assert result["ids"] == [d.id for d in deals] and result["id"] == deals[0].id
    won = svc.get_entity("deals").pipelines[0].stages[1].id
    assert {d.stage_id for d in deals} == {won}
    assert len(svc.get_entries(slug="leads")) == 3 and result["removed_from_old"] is False


def test_move_all_entries_with_remove_from_old_deletes_every_moved_source(svc: Crm) -> None:
    leads(svc, {"name": "Ann"}, {"name": "Bo"})
    svc.bind("cus_b").create_entry(slug="leads", values={"name": "other customer"})
    result = svc.move_to_entity(
        fromSlug="leads", toSlug="deals", fieldMap={"name": "contact"},
        all_entries=True, remove_from_old=True,
    )  # fmt: skip
    assert result["removed_from_old"] is True and result["moved"] == 2
    assert svc.get_entries(slug="leads") == []
    assert [d.values["contact"] for d in svc.get_entries(slug="deals")] == ["Bo", "Ann"]
    other = svc.bind("cus_b")
    assert [e.values for e in other.get_entries(slug="leads")] == [{"name": "other customer"}]
    assert other.get_entries(slug="deals") == []


def test_move_without_all_entries_moves_and_removes_only_the_newest(svc: Crm) -> None:
    older, newest = leads(svc, {"name": "Ann"}, {"name": "Bo"})
    result = svc.move_to_entity(
        fromSlug="leads", toSlug="deals", fieldMap={"name": "contact"}, removeFromOld=True
    )
    assert result["moved"] == 1 and result["ids"] == [result["id"]]
    assert [e.id for e in svc.get_entries(slug="leads")] == [older]
    assert svc.get_entry(newest) is None


def test_move_all_entries_is_all_or_nothing(svc: Crm) -> None:
    leads(svc, {"name": "12"}, {"name": "not a number"})
    with pytest.raises(CrmValidationError):
        svc.move_to_entity(
            fromSlug="leads", toSlug="deals", fieldMap={"name": "value"}, allEntries=True,
            removeFromOld=True,
        )  # fmt: skip
    assert svc.get_entries(slug="deals") == []
    assert len(svc.get_entries(slug="leads")) == 2


def test_move_all_entries_async(svc: Crm) -> None:
    leads(svc, {"name": "Ann"}, {"name": "Bo"})
    result = svc.move_to_entity(
        fromSlug="leads", toSlug="deals", fieldMap={"name": "contact"}, allEntries=True,
        crm_async=True,
    )  # fmt: skip
    assert result == {"ok": True, "pending": True}
    svc.flush()
    assert len(svc.get_entries(slug="deals")) == 2


# === item 7: options the seed documents ==========================================================


def test_set_fields_items_accept_field_key(svc: Crm) -> None:
    result = svc.set_fields(
        slug="people",
        fields=[{"field_key": "name", "value": "Ann"}, {"fieldKey": "score", "value": 3}],
    )
    assert result["ok"] is True
    assert svc.get_fields(slug="people", fieldKeys=["name", "score"]) == {
        "name": "Ann",
        "score": 3.0,
    }


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ({"field_key": "name", "fieldKey": "note", "value": "x"}, "both fieldKey and field_key"),
        ({"fieldkey": "name", "value": "x"}, "unknown key 'fieldkey'"),
        ({"fieldKey": "name", "value": "x", "force": True}, "unknown key 'force'"),
        ({"field_key": "name"}, "fieldKey, value"),
        ({"value": "x"}, "fieldKey, value"),
        ("name", "fieldKey, value"),
    ],
)
def test_set_fields_bad_items_write_nothing(svc: Crm, item: Any, match: str) -> None:
    with pytest.raises(CrmValidationError, match=match):
        svc.set_fields(slug="people", fields=[{"fieldKey": "note", "value": "ok"}, item])
    assert svc.get_entries(slug="people") == []


def test_set_fields_field_key_items_from_a_template(svc: Crm) -> None:
    env = _bare_env(svc)
    env.from_string(
        "{% do SetCrmFields({'slug': 'people', "
        "'fields': [{'field_key': 'note', 'value': 'from template'}]}) %}"
    ).render(customer_id="cus_a")
    assert svc.get_field(slug="people", fieldKey="note") == "from template"


RULES = {"required": True, "min": 0, "max": 120, "pattern": "^[0-9]+$", "messages": ["a", "b"]}


def test_validation_rules_and_team_ids_are_stored_and_returned(crm: Crm) -> None:
    result = crm.ensure_entity(
        slug="patients",
        fields=[
            {"key": "age", "type": "number", "validation_rules": RULES,
             "visible_to_team_ids": ["team-1", 7, "team-1"]},
            {"key": "nick", "validationRules": [{"rule": "max_length", "value": 20}],
             "visibleToTeamIds": []},
            {"key": "plain"},
        ],
    )  # fmt: skip
    assert result["created"] is True
    entity = crm.store.get_entity("patients")  # from the store, not the service's cache
    assert entity is not None
    age, nick, plain = entity.fields
    assert age.validation_rules == RULES and age.visible_to_team_ids == ("team-1", 7)
    assert nick.validation_rules == [{"rule": "max_length", "value": 20}]
    assert nick.visible_to_team_ids == ()
    assert plain.validation_rules is None and plain.visible_to_team_ids is None
    stored = entity_to_dict(entity)["fields"]
    assert stored[0]["validation_rules"] == RULES
    assert stored[0]["visible_to_team_ids"] == ["team-1", 7]
    assert "validation_rules" not in stored[2] and "visible_to_team_ids" not in stored[2]
    assert entity_from_dict(entity_to_dict(entity)) == entity


def test_validation_rules_are_copied_not_shared(crm: Crm) -> None:
    rules = {"required": True}
    crm.ensure_entity(slug="x", entityMode="data", fields=[{"key": "a", "validation_rules": rules}])
    rules["required"] = False
    stored = crm.store.get_entity("x")
    assert stored is not None and stored.fields[0].validation_rules == {"required": True}


def _cyclic() -> list[Any]:
    loop: list[Any] = []
    loop.extend([loop, loop])
    return loop


def _deep(n: int) -> Any:
    value: Any = 1
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"validation_rules": "required"}, "JSON object or list"),
        ({"validation_rules": 5}, "JSON object or list"),
        ({"validation_rules": {"max": float("nan")}}, "plain JSON"),
        ({"validation_rules": {"max": float("inf")}}, "plain JSON"),
        ({"validation_rules": {"when": object()}}, "plain JSON"),
        ({"validation_rules": {"x": "y" * 11_000}}, "10 KB"),
        ({"validation_rules": _deep(3000)}, "nested more than 80 levels"),
        ({"validation_rules": _deep(33)}, "nested too deeply"),
        ({"validation_rules": _cyclic()}, "nested more than 80 levels"),  # endless: refused as deep
        ({"validation_rules": {(1, 2): "tuple key"}}, "plain JSON"),
        ({"visible_to_team_ids": "team-1"}, "list of team ids"),
        ({"visible_to_team_ids": [""]}, "team ids"),
        ({"visible_to_team_ids": [True]}, "team ids"),
        ({"visible_to_team_ids": [1.5]}, "team ids"),
        ({"visible_to_team_ids": [{"id": 1}]}, "team ids"),
        ({"visible_to_team_ids": list(range(1001))}, "more than 1000"),
    ],
)
def test_bad_validation_rules_and_team_ids_create_nothing(
    crm: Crm, extra: dict[str, Any], match: str
) -> None:
    with pytest.raises(CrmValidationError, match=match):
        crm.ensure_entity(slug="x", fields=[{"key": "a", **extra}])
    assert crm.list_entities() == []


def test_crm_async_is_the_legacy_name_of_async(svc: Crm) -> None:
    result = svc.call("setCrmField", {"slug": "people", "fieldKey": "note", "value": "queued",
                                      "crm_async": True})  # fmt: skip
    assert result == {"ok": True, "pending": True}
    svc.flush()
    assert svc.get_field(slug="people", fieldKey="note") == "queued"
    with pytest.raises(UnknownOptionError, match="both 'async' and 'crm_async'"):
        svc.set_field({"slug": "people", "fieldKey": "note", "value": "x", "async": True,
                       "crm_async": False})  # fmt: skip


READS = {
    "GetCrmEntries": {"slug": "people"},
    "GetCrmField": {"slug": "people", "fieldKey": "note"},
    "GetCrmFields": {"slug": "people", "fieldKeys": ["note", "score"]},
    "GetCrmFieldValues": {"slug": "people", "fieldKey": "note"},
}


def test_every_read_function_accepts_async() -> None:
    assert sorted(READS) == sorted(n for n, s in FUNCTIONS.items() if s.kind == "read")
    for name in READS:
        assert "async" in FUNCTIONS[name].options


@pytest.mark.parametrize("name", sorted(READS))
@pytest.mark.parametrize("spelling", ["async", "crm_async"])
def test_reads_accept_async_and_ignore_it(svc: Crm, name: str, spelling: str) -> None:
    svc.set_field(slug="people", fieldKey="note", value="n")
    plain = svc.call(name, READS[name])
    assert svc.call(name, {**READS[name], spelling: True}) == plain
    assert svc.call(name, {**READS[name], spelling: False}) == plain
    with pytest.raises(CrmValidationError, match="true or false"):
        svc.call(name, {**READS[name], spelling: "yes"})


def test_reads_with_async_in_a_template(svc: Crm) -> None:
    svc.set_field(slug="people", fieldKey="note", value="n")
    env = _bare_env(svc)
    out = env.from_string(
        "{{ GetCrmField(slug='people', fieldKey='note', async=true) }}"
        "|{{ GetCrmField({'slug': 'people', 'fieldKey': 'note', 'crm_async': false}) }}"
        "|{{ 'people' | crm_field('note', async=true) }}"
        "|{{ GetCrmFields(slug='people', fieldKeys=['note'], async=true).note }}"
        "|{{ GetCrmEntries(slug='people', async=true) | length }}"
    ).render(customer_id="cus_a")
    assert out == "n|n|n|n|1"


def test_ensure_entity_accepts_async_and_reference_options(crm: Crm) -> None:
    result = crm.ensure_entity(
        slug="things", fields=[{"key": "a"}], referenceType="customer", referenceId="cus_1",
        crm_async=True,
    )  # fmt: skip
    assert result["created"] is True and "pending" not in result  # ensured before returning
    assert crm.get_entity("things").field_keys == ["a"]
    with pytest.raises(CrmValidationError, match="true or false"):
        crm.ensure_entity(slug="other", **{"async": "soon"})
    with pytest.raises(CrmValidationError, match="referenceType"):
        crm.ensure_entity(slug="other", referenceType="not valid")
    assert [e.slug for e in crm.list_entities()] == ["things"]


# === item 8: entity presets =====================================================================


@pytest.mark.parametrize("preset", ["leads", "contacts", "deals"])
def test_preset_creates_standard_fields_and_pipeline(crm: Crm, preset: str) -> None:
    result = crm.ensure_entity(slug=f"my-{preset}", preset=preset)
    entity = crm.store.get_entity(f"my-{preset}")
    assert entity is not None
    keys = entity.field_keys
    assert result["created"] is True and result["fields_added"] == keys
    assert {"name", "email", "phone", "company", "source"} <= set(keys)
    if preset != "contacts":
        assert "value" in keys
        assert next(f for f in entity.fields if f.key == "value").type == "number"
    types = {f.key: f.type for f in entity.fields}
    assert types["email"] == "email" and types["phone"] == "phone"
    assert entity.mode == "crm" and len(entity.pipelines) == 1
    stages = entity.pipelines[0].stages
    statuses = [s.semantic_status for s in stages]
    assert statuses.count("won") == 1 and statuses.count("lost") == 1
    assert all(s.probability is not None and 0 <= s.probability <= 100 for s in stages)
    won = next(s for s in stages if s.semantic_status == "won")
    lost = next(s for s in stages if s.semantic_status == "lost")
    assert won.probability == 100 and lost.probability == 0
    assert entity.name == PRESETS[preset]["name"] and entity.color is not None
    # New entries land on the preset pipeline's first stage and move to won.
    view = crm.bind("cus_1")
    entry = view.create_entry(slug=f"my-{preset}", values={"name": "Ann", "email": "a@b.co"})
    assert view.get_entry(entry["id"]).stage_id == stages[0].id
    moved = view.move_to_stage(slug=f"my-{preset}", stageSlug=won.slug)
    assert moved["moved"] == 1


def test_sales_pipeline_of_the_deals_preset(crm: Crm) -> None:
    crm.ensure_entity(slug="deals", preset="deals")
    pipeline = crm.get_entity("deals").pipelines[0]
    assert pipeline.slug == "sales"
    assert [(s.slug, s.semantic_status, s.probability) for s in pipeline.stages] == [
        ("qualified", "open", 20),
        ("proposal", "active", 50),
        ("negotiation", "active", 75),
        ("won", "won", 100),
        ("lost", "lost", 0),
    ]


def test_explicit_fields_and_pipelines_add_to_the_preset(crm: Crm) -> None:
    crm.ensure_entity(
        slug="deals",
        preset="deals",
        name="Opportunities",
        color="rebeccapurple",
        fields=[
            {"key": "value", "type": "number", "label": "Amount (EUR)"},  # replaces the preset's
            {"key": "region", "type": "select", "options": ["north", "south"]},
        ],
        pipelines=[{"slug": "renewals", "stages": [{"slug": "due"}, {"slug": "renewed"}]}],
    )
    entity = crm.store.get_entity("deals")
    assert entity is not None
    assert entity.name == "Opportunities" and entity.color == "rebeccapurple"
    assert entity.singular_name == "Deal"
    assert entity.field_keys[-1] == "region" and entity.field_keys.count("value") == 1
    value = next(f for f in entity.fields if f.key == "value")
    assert value.label == "Amount (EUR)"
    assert [p.slug for p in entity.pipelines] == ["sales", "renewals"]  # the preset's first


def test_preset_is_idempotent_and_only_adds_what_is_missing(crm: Crm) -> None:
    crm.ensure_entity(slug="leads", fields=[{"key": "name", "label": "Full name"}])
    result = crm.ensure_entity(slug="leads", preset="leads")
    entity = crm.store.get_entity("leads")
    assert entity is not None
    assert result["created"] is False and "name" in result["fields_skipped"]
    assert "email" in result["fields_added"] and result["pipelines_added"] == ["leads"]
    assert entity.fields[0].label == "Full name"  # never overwritten
    again = crm.ensure_entity(slug="leads", preset="leads")
    assert again["fields_added"] == [] and again["pipelines_added"] == []


def test_preset_in_data_mode_gives_fields_only(crm: Crm) -> None:
    crm.ensure_entity(slug="people", preset="contacts", entityMode="data")
    entity = crm.get_entity("people")
    assert entity.mode == "data" and entity.pipelines == () and "email" in entity.field_keys


@pytest.mark.parametrize("preset", ["lead", "Deals", "", 5, ["deals"]])
def test_unknown_preset_is_a_clear_error(crm: Crm, preset: Any) -> None:
    with pytest.raises(
        CrmValidationError, match=r"unknown preset .*presets: leads, contacts, deals"
    ):
        crm.ensure_entity(slug="x", preset=preset)
    assert crm.list_entities() == []


def test_preset_from_a_template_and_from_crm_yaml(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "crm.yaml").write_text(
        textwrap.dedent(
            """\
            entities:
              - slug: contacts
                preset: contacts
                fields:
                  - {key: birthday, type: date}
            """
        )
    )
    (site / "pages" / "index.html").write_text(
        "{% do EnsureCrmEntity({'slug': 'deals', 'preset': 'deals'}) %}"
        "{% do SetCrmFields(slug='deals', fields={'name': 'Big', 'value': 5000}) %}"
        "{{ GetCrmField(slug='deals', fieldKey='value') }}"
        "|{{ GetCrmFields(slug='contacts', fieldKeys=['email', 'birthday']) | length }}"
    )
    app = create_app(site, TESTING=True, CRM_SEED=False)
    try:
        assert app.test_client().get("/").get_data(as_text=True) == "5000.0|2"
        crm = app.extensions["crm"].crm
        assert crm.get_entity("contacts").field_keys[-1] == "birthday"
        assert crm.get_entity("contacts").pipelines[0].slug == "lifecycle"
    finally:
        app.extensions["crm"].close()


# === lint knows the new options ==================================================================


def test_lint_accepts_the_new_options_and_knows_preset_keys(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "ok.html").write_text(
        "{% do EnsureCrmEntity({'slug': 'deals', 'preset': 'deals', 'async': false}) %}"
        "{% do SetCrmFields(slug='deals', fields=[{'field_key': 'value', 'value': 1}]) %}"
        "{% do SetCrmField(slug='deals', fieldKey='company', value='x', crm_async=true) %}"
        "{{ GetCrmField(slug='deals', fieldKey='expected_close_date', async=true) }}"
        "{% do MoveCrmToStage(slug='deals', stageSlug='negotiation') %}"
        "{% do MoveCrmToEntity(fromSlug='deals', toSlug='people', fieldMap={'name': 'name'},"
        " allEntries=true, removeFromOld=true) %}"
    )
    problems, checked = lint_templates(pages, SCHEMA)
    assert checked == 1 and problems == []

    (pages / "bad.html").write_text(
        "{% do EnsureCrmEntity({'slug': 'x', 'preset': 'deal'}) %}"
        "{% do SetCrmFields(slug='deals', fields=[{'field_key': 'valeu', 'value': 1}]) %}"
    )
    problems, _ = lint_templates(pages, SCHEMA)
    messages = [p.message for p in problems]
    assert any("unknown preset 'deal'" in m and "did you mean deals" in m for m in messages)
    assert any("has no field 'valeu'" in m for m in messages)


def test_lint_schema_file_with_a_preset(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "p.html").write_text(
        "{{ GetCrmField(slug='leads', fieldKey='phone') }}"
        "{{ GetCrmField(slug='leads', fieldKey='fax') }}"
        "{% do MoveCrmLead(slug='leads', pipelineSlug='leads', stageSlug='contacted') %}"
    )
    problems, _ = lint_templates(pages, [{"slug": "leads", "preset": "leads"}])
    assert len(problems) == 1 and "entity 'leads' has no field 'fax'" in problems[0].message


def test_two_customers_never_see_each_others_moved_or_related_data(tmp_path: Path) -> None:
    """Two customers of one page server on one store: moves with allEntries and relation
    removals of one customer leave the other's entries as they were."""
    store = open_store(f"sqlite:///{tmp_path / 'crm.db'}")
    crm = Crm(store)
    try:
        for entity in SCHEMA:
            crm.ensure_entity(entity)
        a, b = crm.bind("cus_a"), crm.bind("cus_b")
        for view, name in ((a, "Ann"), (b, "Bob")):
            view.create_entry(slug="leads", values={"name": name})
            view.create_entry(slug="leads", values={"name": name + "2"})
        a.move_to_entity(
            fromSlug="leads", toSlug="deals", fieldMap={"name": "contact"}, allEntries=True,
            removeFromOld=True,
        )  # fmt: skip
        assert [e.values["name"] for e in b.get_entries(slug="leads")] == ["Bob2", "Bob"]
        assert b.get_entries(slug="deals") == []
        assert [e.values["contact"] for e in a.get_entries(slug="deals")] == ["Ann2", "Ann"]
    finally:
        crm.close()
