"""The Crm service: every function of SPEC §5 with its options, aliases, returns and rules."""

from __future__ import annotations

from typing import Any

import pytest

from crm_templates import (
    FUNCTIONS,
    Crm,
    CrmValidationError,
    EntryNotFoundError,
    MissingOptionError,
    UnknownEntityError,
    UnknownFieldError,
    UnknownFunctionError,
    UnknownOptionError,
    WriteResult,
)

WT = "weight-tracker"
WEIGHT_TRACKER: dict[str, Any] = {
    "slug": WT,
    "name": "Weight Tracker",
    "fields": [
        {"key": "current_weight", "type": "number", "label": "Current weight"},
        {"key": "goal_weight", "type": "number"},
        {"key": "last_checkin", "type": "date"},
        {"key": "note", "type": "text"},
        {"key": "weighin_history", "type": "json"},
    ],
    "pipelines": [
        {
            "slug": "progress",
            "name": "Progress",
            "stages": [
                {"slug": "starting", "name": "Starting"},
                {"slug": "in-progress", "name": "In Progress", "semantic_status": "active"},
                {"slug": "goal-reached", "name": "Goal Reached", "semantic_status": "won"},
            ],
        }
    ],
}


@pytest.fixture
def wt(crm: Crm) -> Crm:
    """The service with the weight-tracker entity, bound to customer cus_1."""
    crm.ensure_entity(WEIGHT_TRACKER)
    return crm.bind("cus_1")


@pytest.fixture
def sales(crm: Crm) -> Crm:
    """Leads and deals (two pipelines sharing a stage slug), cities and properties."""
    crm.ensure_entity(
        slug="leads",
        fields=[
            {"key": "name", "type": "text"},
            {"key": "email", "type": "email"},
            {"key": "budget", "type": "number"},
        ],
        pipelines=[
            {"slug": "inbound", "stages": [{"slug": "new"}, {"slug": "qualified"}]},
            {"slug": "outbound", "stages": [{"slug": "new"}, {"slug": "contacted"}]},
        ],
    )
    crm.ensure_entity(
        slug="deals",
        fields=[{"key": "contact", "type": "text"}, {"key": "value", "type": "number"}],
        pipelines=[
            {
                "slug": "sales",
                "stages": [
                    {"slug": "proposal"},
                    {"slug": "won", "semantic_status": "won", "probability": 100},
                ],
            }
        ],
    )
    crm.ensure_entity(slug="cities", entityMode="data", fields=[{"key": "name"}])
    crm.ensure_entity(
        slug="properties",
        entity_mode="data",
        fields=[
            {"key": "city", "type": "reference", "target_entity": "cities"},
            {"key": "nearby", "type": "multi_reference", "targetEntity": "cities"},
        ],
    )
    return crm.bind("cus_1")


# --- the function table ---------------------------------------------------------------------


def test_function_table_covers_all_seventeen_functions() -> None:
    assert len(FUNCTIONS) == 17
    for spec in FUNCTIONS.values():
        assert callable(getattr(Crm, spec.method))


@pytest.mark.parametrize("name", [*FUNCTIONS, *(s.camel_name for s in FUNCTIONS.values())])
def test_call_dispatches_both_spellings(crm: Crm, name: str) -> None:
    with pytest.raises(MissingOptionError):
        crm.call(name)


def test_call_unknown_function_suggests() -> None:
    from crm_templates import open_store

    with pytest.raises(UnknownFunctionError, match="Did you mean 'getCrmField'"):
        Crm(open_store("sqlite:///:memory:")).call("getCrmFeild")


# --- EnsureCrmEntity --------------------------------------------------------------------------


def test_ensure_creates_then_is_idempotent(crm: Crm) -> None:
    first = crm.ensure_entity(WEIGHT_TRACKER)
    assert first["ok"] and first["created"] is True
    assert first["slug"] == WT and first["id"].startswith("ent_")
    assert first["fields_added"] == [f["key"] for f in WEIGHT_TRACKER["fields"]]
    again = crm.ensure_entity(WEIGHT_TRACKER)
    assert again["created"] is False and again["id"] == first["id"]
    assert again["fields_added"] == [] and len(again["fields_skipped"]) == 5
    entity = crm.get_entity(WT)
    assert entity.name == "Weight Tracker" and entity.mode == "crm"
    assert [s.slug for s in entity.pipelines[0].stages] == [
        "starting",
        "in-progress",
        "goal-reached",
    ]


def test_ensure_never_overwrites_settings_only_adds_missing(crm: Crm) -> None:
    crm.ensure_entity(WEIGHT_TRACKER)
    result = crm.ensure_entity(
        slug=WT,
        name="Renamed",
        fields=[
            {"key": "current_weight", "type": "text"},
            {"key": "height", "type": "number"},
        ],
        pipelines=[{"slug": "extra", "stages": [{"slug": "one"}]}],
    )
    assert result["fields_added"] == ["height"]
    assert result["fields_skipped"] == ["current_weight"]
    assert result["pipelines_added"] == ["extra"]
    entity = crm.get_entity(WT)
    assert entity.name == "Weight Tracker"
    assert {f.key: f.type for f in entity.fields}["current_weight"] == "number"
    assert [p.slug for p in entity.pipelines] == ["progress", "extra"]


def test_ensure_crm_mode_without_pipelines_gets_default(crm: Crm) -> None:
    crm.ensure_entity(slug="tickets")
    entity = crm.get_entity("tickets")
    assert entity.pipelines[0].slug == "default"
    assert [s.semantic_status for s in entity.pipelines[0].stages] == [
        "open",
        "active",
        "won",
        "lost",
    ]


def test_ensure_accepts_camel_case_nested_keys(crm: Crm) -> None:
    crm.ensure_entity(
        crmEntitySlug="metrics",
        singularName="Metric",
        pluralName="Metrics",
        icon="chart",
        color="#AABBCC",
        entityMode="data",
        fields=[
            {
                "key": "score",
                "type": "number",
                "uiEditable": False,
                "reportingConfig": {
                    "aggregationType": "numeric",
                    "baseline": {"min": 0, "max": 10},
                    "bucketSize": 2,
                    "preferredChart": "histogram",
                },
            },
            {"key": "tier", "type": "select", "options": ["a", {"value": "b", "label": "Bee"}]},
        ],
    )
    entity = crm.get_entity("metrics")
    assert (entity.singular_name, entity.plural_name, entity.color) == (
        "Metric",
        "Metrics",
        "#aabbcc",
    )
    score = entity.fields[0]
    assert score.ui_editable is False
    assert score.reporting_config is not None
    assert score.reporting_config.bucket_size == 2.0
    assert score.reporting_config.baseline_max == 10.0
    assert entity.fields[1].option_label("b") == "Bee"
    assert entity.pipelines == ()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"slug": "Bad Slug"}, "slug must match"),
        ({"slug": "x", "fields": [{"key": "a", "type": "nope"}]}, "unknown type 'nope'"),
        ({"slug": "x", "fields": [{"key": "a b"}]}, "key must match"),
        ({"slug": "x", "fields": [{"key": "a"}, {"key": "a"}]}, "declared twice"),
        ({"slug": "x", "fields": [{"key": "s", "type": "select"}]}, "options list"),
        ({"slug": "x", "fields": [{"key": "r", "type": "reference"}]}, "target_entity"),
        ({"slug": "x", "fields": [{"key": "a", "colour": 1}]}, "unknown key 'colour'"),
        (
            {"slug": "x", "fields": [{"key": "a", "reporting_config": {"bucket_size": 0}}]},
            "bucket_size",
        ),
        (
            {"slug": "x", "fields": [{"key": "a", "reporting_config": {"preferred_chart": "x"}}]},
            "preferred_chart",
        ),
        ({"slug": "x", "entityMode": "other"}, "entityMode"),
        ({"slug": "x", "entityMode": "data", "pipelines": [{"slug": "p", "stages": [{"slug": "s"}]}]}, "data mode"),
        ({"slug": "x", "pipelines": [{"slug": "p", "stages": []}]}, "non-empty stages"),
        ({"slug": "x", "pipelines": [{"slug": "p", "stages": [{"slug": "s", "probability": 101}]}]}, "probability"),
        ({"slug": "x", "pipelines": [{"slug": "p", "stages": [{"slug": "s", "semantic_status": "meh"}]}]}, "semantic_status"),
        ({"slug": "x", "color": "reddish"}, "CSS colour"),
    ],
)  # fmt: skip
def test_ensure_rejects_bad_definitions(crm: Crm, options: dict[str, Any], match: str) -> None:
    with pytest.raises(CrmValidationError, match=match):
        crm.ensure_entity(options)
    assert crm.list_entities() == []


# --- options, aliases, references ---------------------------------------------------------------


def test_dict_kwargs_and_both_are_merged(wt: Crm) -> None:
    wt.set_field({"slug": WT, "fieldKey": "note"}, value="a")
    assert wt.get_field({"slug": WT}, field_key="note") == "a"
    assert wt.get_field(crm_entity_slug=WT, fieldKey="note") == "a"
    assert wt.get_field({"crmEntitySlug": WT, "field_key": "note"}) == "a"


def test_unknown_option_names_accepted_ones(wt: Crm) -> None:
    with pytest.raises(UnknownOptionError, match=r"'fieldKy'.*Did you mean 'fieldKey'.*Accepted"):
        wt.get_field(slug=WT, fieldKy="note")


def test_conflicting_aliases_are_an_error(wt: Crm) -> None:
    with pytest.raises(UnknownOptionError, match="different values"):
        wt.get_field({"slug": WT, "crmEntitySlug": "other", "fieldKey": "note"})


def test_missing_required_option_is_a_type_error(wt: Crm) -> None:
    with pytest.raises(TypeError, match="requires the option 'fieldKey'"):
        wt.get_field(slug=WT)
    with pytest.raises(MissingOptionError, match="'value'"):
        wt.set_field(slug=WT, fieldKey="note")


def test_unknown_slug_and_key_are_type_errors_with_suggestions(wt: Crm) -> None:
    with pytest.raises(UnknownEntityError, match="Did you mean 'weight-tracker'") as exc:
        wt.get_field(slug="weight-trackr", fieldKey="note")
    assert isinstance(exc.value, TypeError)
    with pytest.raises(UnknownFieldError, match="Declared keys: current_weight"):
        wt.set_field(slug=WT, fieldKey="weight", value=1)


def test_reference_defaults_and_explicit_reference(wt: Crm) -> None:
    wt.set_field(slug=WT, fieldKey="note", value="mine")
    wt.set_field(slug=WT, fieldKey="note", value="order", referenceType="order", referenceId="o-1")
    wt.set_field(slug=WT, fieldKey="note", value="other", reference_id="cus_2")
    assert wt.get_field(slug=WT, fieldKey="note") == "mine"
    assert (
        wt.get_field(slug=WT, fieldKey="note", referenceType="order", referenceId="o-1") == "order"
    )
    assert wt.get_field(slug=WT, fieldKey="note", referenceId="cus_2") == "other"
    entry = wt.get_entries(slug=WT, reference_type="order", reference_id="o-1")[0]
    assert (entry.reference_type, entry.reference_id) == ("order", "o-1")


def test_non_customer_reference_requires_id(wt: Crm) -> None:
    with pytest.raises(MissingOptionError, match="referenceId is required"):
        wt.get_field(slug=WT, fieldKey="note", referenceType="order")


def test_reads_without_customer_are_empty_writes_are_errors(crm: Crm) -> None:
    crm.ensure_entity(WEIGHT_TRACKER)
    assert crm.get_field(slug=WT, fieldKey="note") is None
    assert crm.get_fields(slug=WT, fieldKeys=["note"]) == {"note": None}
    assert crm.get_entries(slug=WT) == []
    assert crm.get_field_values(slug=WT, fieldKey="note") == []
    assert crm.clear_entries(slug=WT) == {"ok": True, "deleted": 0}
    with pytest.raises(MissingOptionError, match="no current customer"):
        crm.set_field(slug=WT, fieldKey="note", value="x")


def test_customer_provider_creates_on_first_write_only(crm: Crm) -> None:
    crm.ensure_entity(WEIGHT_TRACKER)
    made: list[str] = []

    def provider(create: bool) -> str | None:
        if create and not made:
            made.append(crm.create_customer().id)
        return made[0] if made else None

    view = crm.bind(provider)
    assert view.get_field(slug=WT, fieldKey="note") is None
    assert made == []
    view.set_field(slug=WT, fieldKey="note", value="hi")
    assert len(made) == 1
    assert crm.get_customer(made[0]) is not None
    assert view.get_field(slug=WT, fieldKey="note") == "hi"
    assert view.customer_id == made[0]


# --- reads and writes -------------------------------------------------------------------------


def test_set_and_get_field_round_trip_with_coercion(wt: Crm) -> None:
    result = wt.set_field(slug=WT, fieldKey="current_weight", value="82.5")
    assert isinstance(result, WriteResult)
    assert result["ok"] is True and result["created"] is True and result["id"]
    assert str(result) == "" and result.__html__() == ""
    assert wt.get_field(slug=WT, fieldKey="current_weight") == 82.5
    second = wt.set_field(slug=WT, fieldKey="goal_weight", value=75)
    assert second["created"] is False and second["id"] == result["id"]


@pytest.mark.parametrize(
    ("key", "value", "kind"), [("n", 0, float), ("t", "", str), ("b", False, bool)]
)
def test_falsy_values_are_values(crm: Crm, key: str, value: Any, kind: type) -> None:
    crm.ensure_entity(
        slug="flags",
        entityMode="data",
        fields=[{"key": "n", "type": "number"}, {"key": "t"}, {"key": "b", "type": "boolean"}],
    )
    view = crm.bind("cus_1")
    view.set_field(slug="flags", fieldKey=key, value=value)
    got = view.get_field(slug="flags", fieldKey=key)
    assert got == value and type(got) is kind
    assert view.get_fields(slug="flags", fieldKeys=[key]) == {key: value}


def test_get_field_reads_newest_entry_holding_the_key(wt: Crm) -> None:
    wt.add_field_value(slug=WT, fieldKey="current_weight", value=90)
    wt.add_field_value(slug=WT, fieldKey="note", value="latest entry, other key")
    assert wt.get_field(slug=WT, fieldKey="current_weight") == 90.0


def test_get_fields_missing_keys_are_none(wt: Crm) -> None:
    wt.set_fields(slug=WT, fields={"current_weight": 80, "note": "x"})
    assert wt.get_fields(slug=WT, fieldKeys=["current_weight", "note", "goal_weight"]) == {
        "current_weight": 80.0,
        "note": "x",
        "goal_weight": None,
    }


def test_get_fields_rejects_non_list(wt: Crm) -> None:
    with pytest.raises(CrmValidationError, match="fieldKeys must be a non-empty list"):
        wt.get_fields(slug=WT, fieldKeys="note")


def test_set_field_updates_entry_holding_key_not_newest(wt: Crm) -> None:
    holder = wt.add_field_value(slug=WT, fieldKey="current_weight", value=90)["id"]
    newest = wt.add_field_value(slug=WT, fieldKey="note", value="n")["id"]
    result = wt.set_field(slug=WT, fieldKey="current_weight", value=85)
    assert result["id"] == holder and result["created"] is False
    entries = {e.id: e for e in wt.get_entries(slug=WT)}
    assert entries[holder].values == {"current_weight": 85.0}
    assert entries[newest].values == {"note": "n"}


def test_set_field_scan_is_limited_to_newest_hundred(wt: Crm) -> None:
    old = wt.add_field_value(slug=WT, fieldKey="current_weight", value=90)["id"]
    for i in range(100):
        wt.add_field_value(slug=WT, fieldKey="note", value=str(i))
    newest = wt.get_entries(slug=WT, limit=1)[0].id
    result = wt.set_field(slug=WT, fieldKey="current_weight", value=70)
    assert result["id"] == newest
    assert wt.store.get_entry(old).values == {"current_weight": 90.0}


def test_set_field_force_merges_into_newest(wt: Crm) -> None:
    holder = wt.add_field_value(slug=WT, fieldKey="current_weight", value=90)["id"]
    newest = wt.add_field_value(slug=WT, fieldKey="note", value="n")["id"]
    result = wt.set_field(slug=WT, fieldKey="current_weight", value=60, force=True)
    assert result["id"] == newest
    assert wt.store.get_entry(newest).values == {"note": "n", "current_weight": 60.0}
    assert wt.store.get_entry(holder).values == {"current_weight": 90.0}
    assert wt.get_field(slug=WT, fieldKey="current_weight") == 60.0


def test_set_field_force_creates_when_none(wt: Crm) -> None:
    assert wt.set_field(slug=WT, fieldKey="note", value="x", force=True)["created"] is True


def test_set_fields_list_and_mapping_forms(wt: Crm) -> None:
    a = wt.set_fields(
        slug=WT,
        fields=[{"fieldKey": "current_weight", "value": 80}, {"fieldKey": "note", "value": "a"}],
    )
    b = wt.set_fields({"slug": WT, "fields": {"goal_weight": 70}})
    assert a["created"] is True and b["id"] == a["id"]
    assert len(wt.get_entries(slug=WT)) == 1
    assert wt.get_fields(slug=WT, fieldKeys=["current_weight", "goal_weight", "note"]) == {
        "current_weight": 80.0,
        "goal_weight": 70.0,
        "note": "a",
    }


@pytest.mark.parametrize("fields", [[], {}, "note=1", [{"fieldKey": "note"}], [1]])
def test_set_fields_rejects_bad_shapes(wt: Crm, fields: Any) -> None:
    with pytest.raises(CrmValidationError):
        wt.set_fields(slug=WT, fields=fields)
    assert wt.get_entries(slug=WT) == []


def test_set_fields_is_all_or_nothing(wt: Crm) -> None:
    with pytest.raises(CrmValidationError, match="current_weight"):
        wt.set_fields(slug=WT, fields={"note": "ok", "current_weight": "heavy"})
    assert wt.get_entries(slug=WT) == []


def test_add_field_value_history_and_values(wt: Crm) -> None:
    ids = [
        wt.add_field_value(slug=WT, fieldKey="current_weight", value=w)["id"] for w in (90, 85, 80)
    ]
    assert len(set(ids)) == 3
    assert wt.get_field_values(slug=WT, fieldKey="current_weight") == [80.0, 85.0, 90.0]
    assert wt.get_field_values(slug=WT, fieldKey="current_weight", limit=2) == [80.0, 85.0]
    assert wt.get_field_values(slug=WT, fieldKey="goal_weight") == []


@pytest.mark.parametrize("limit", [0, -1, 1.5, "10", True])
def test_limit_must_be_positive_int(wt: Crm, limit: Any) -> None:
    with pytest.raises(CrmValidationError, match="limit"):
        wt.get_entries(slug=WT, limit=limit)


def test_limit_defaults_to_50_and_caps_at_200(wt: Crm) -> None:
    wt.store.insert_entries(
        [wt._new_entry(wt._schema(WT), ("customer", "cus_1"), {"note": str(i)}) for i in range(230)]
    )
    assert len(wt.get_entries(slug=WT)) == 50
    assert len(wt.get_entries(slug=WT, limit=500)) == 200
    assert len(wt.get_field_values(slug=WT, fieldKey="note", limit=1000)) == 200


def test_create_entry_title_values_and_placement(sales: Crm) -> None:
    result = sales.create_entry(slug="leads", title="Ann", values={"name": "Ann", "budget": "10"})
    assert result == {"ok": True, "id": result["id"], "created": True}
    entry = sales.get_entry(result["id"])
    leads = sales.get_entity("leads")
    assert entry.title == "Ann" and entry.values == {"name": "Ann", "budget": 10.0}
    assert entry.pipeline_id == leads.pipelines[0].id
    assert entry.stage_id == leads.pipelines[0].stages[0].id
    second = sales.create_entry(slug="leads", pipelineSlug="outbound", stageSlug="contacted")
    placed = sales.get_entry(second["id"])
    assert placed.pipeline_id == leads.pipelines[1].id
    assert placed.stage_id == leads.pipelines[1].stages[1].id
    third = sales.create_entry(slug="leads", stage_id=leads.pipelines[1].stages[0].id)
    assert sales.get_entry(third["id"]).pipeline_id == leads.pipelines[1].id


def test_create_entry_in_data_mode_has_no_stage(sales: Crm) -> None:
    entry = sales.get_entry(sales.create_entry(slug="cities", values={"name": "Oslo"})["id"])
    assert entry.pipeline_id is None and entry.stage_id is None
    with pytest.raises(CrmValidationError, match="no pipeline"):
        sales.create_entry(slug="cities", pipelineSlug="x")


def test_entries_expose_values_flat(wt: Crm) -> None:
    wt.set_field(slug=WT, fieldKey="note", value="x")
    entry = wt.get_entries(slug=WT)[0]
    assert entry.values_flat == entry.values == {"note": "x"}
    assert entry.to_dict()["values_flat"] == {"note": "x"}


def test_clear_entries(wt: Crm) -> None:
    for w in (1, 2, 3):
        wt.add_field_value(slug=WT, fieldKey="current_weight", value=w)
    wt.add_field_value(slug=WT, fieldKey="note", value="keep", referenceId="cus_2")
    assert wt.clear_entries(slug=WT) == {"ok": True, "deleted": 3}
    assert wt.get_entries(slug=WT) == []
    assert wt.get_field(slug=WT, fieldKey="note", referenceId="cus_2") == "keep"


# --- relations --------------------------------------------------------------------------------


def test_relations_reference_and_multi_reference(sales: Crm) -> None:
    oslo = sales.create_entry(slug="cities", title="Oslo", referenceType="site", referenceId="c")[
        "id"
    ]
    bergen = sales.create_entry(
        slug="cities", title="Bergen", referenceType="site", referenceId="c"
    )["id"]
    prop = sales.create_entry(slug="properties")["id"]
    assert sales.set_relation(slug="properties", relationKey="city", targetEntryId=oslo) == {
        "ok": True,
        "id": prop,
        "changed": True,
    }
    sales.set_relation(slug="properties", relationKey="city", targetEntryId=bergen)
    assert sales.get_entry(prop).values["city"] == bergen
    for target in (oslo, bergen, oslo):
        sales.set_relation(slug="properties", relation_key="nearby", target_entry_id=target)
    assert sales.get_entry(prop).values["nearby"] == [oslo, bergen]
    removed = sales.remove_relation(slug="properties", relationKey="nearby", targetEntryId=oslo)
    assert removed["changed"] is True
    assert sales.get_entry(prop).values["nearby"] == [bergen]
    sales.remove_relation(slug="properties", relationKey="city", targetEntryId=oslo)
    assert sales.get_entry(prop).values["city"] == bergen
    sales.remove_relation(slug="properties", relationKey="city", targetEntryId=bergen)
    assert sales.get_entry(prop).values["city"] is None


def test_relation_on_given_entry_id(sales: Crm) -> None:
    oslo = sales.create_entry(slug="cities", title="Oslo")["id"]
    older = sales.create_entry(slug="properties")["id"]
    sales.create_entry(slug="properties")
    result = sales.set_relation(
        slug="properties", relationKey="city", targetEntryId=oslo, entryId=older
    )
    assert result["id"] == older
    assert sales.get_entry(older).values["city"] == oslo


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"relationKey": "missing", "targetEntryId": "x"}, UnknownFieldError, "declares no field"),
        ({"relationKey": "city", "targetEntryId": "nope"}, EntryNotFoundError, "not an entry of 'cities'"),
        ({"relationKey": "city", "targetEntryId": "TARGET", "entryId": "nope"}, EntryNotFoundError, "entryId"),
    ],
)  # fmt: skip
def test_relation_errors(sales: Crm, options: dict[str, Any], error: type, match: str) -> None:
    oslo = sales.create_entry(slug="cities", title="Oslo")["id"]
    options = {k: (oslo if v == "TARGET" else v) for k, v in options.items()}
    with pytest.raises(error, match=match):
        sales.set_relation(slug="properties", **options)
    assert sales.get_entries(slug="properties") == []


def test_relation_key_must_be_a_reference_field(sales: Crm) -> None:
    with pytest.raises(CrmValidationError, match="relations need a reference"):
        sales.set_relation(slug="leads", relationKey="name", targetEntryId="x")


def test_reference_values_must_exist_in_target_entity(sales: Crm) -> None:
    lead = sales.create_entry(slug="leads")["id"]
    with pytest.raises(EntryNotFoundError, match="not an entry of 'cities'"):
        sales.set_field(slug="properties", fieldKey="city", value=lead)
    with pytest.raises(EntryNotFoundError):
        sales.create_entry(slug="properties", values={"nearby": ["missing"]})


# --- pipelines --------------------------------------------------------------------------------


def test_move_lead_by_slugs_and_ids(sales: Crm) -> None:
    sales.create_entry(slug="leads")
    leads = sales.get_entity("leads")
    out = leads.pipelines[1]
    result = sales.move_lead(slug="leads", pipelineSlug="outbound", stageSlug="contacted")
    assert result == {
        "ok": True,
        "moved": 1,
        "totalMatched": 1,
        "pipeline_id": out.id,
        "stage_id": out.stages[1].id,
    }
    by_id = sales.move_lead(slug="leads", pipeline_id=out.id, stage_id=out.stages[0].id)
    assert by_id["stage_id"] == out.stages[0].id
    assert sales.get_entries(slug="leads")[0].stage_id == out.stages[0].id


def test_move_only_newest_unless_all_entries(sales: Crm) -> None:
    first = sales.create_entry(slug="leads")["id"]
    second = sales.create_entry(slug="leads")["id"]
    result = sales.move_to_stage(slug="leads", stageSlug="qualified")
    assert (result["moved"], result["totalMatched"]) == (1, 2)
    qualified = sales.get_entity("leads").pipelines[0].stages[1].id
    assert sales.get_entry(second).stage_id == qualified
    assert sales.get_entry(first).stage_id != qualified
    result = sales.move_to_stage(slug="leads", stageSlug="qualified", allEntries=True)
    assert (result["moved"], result["totalMatched"]) == (2, 2)
    assert sales.get_entry(first).stage_id == qualified


def test_move_to_stage_ambiguous_slug_asks_for_pipeline(sales: Crm) -> None:
    sales.create_entry(slug="leads", pipelineSlug="inbound", stageSlug="qualified")
    with pytest.raises(CrmValidationError, match=r"several pipelines.*pipelineSlug"):
        sales.move_to_stage(slug="leads", stageSlug="new")
    result = sales.move_to_stage(slug="leads", stageSlug="new", pipelineSlug="outbound")
    assert result["pipeline_id"] == sales.get_entity("leads").pipelines[1].id


def test_move_to_pipeline_lands_on_first_stage_or_given(sales: Crm) -> None:
    sales.create_entry(slug="leads")
    out = sales.get_entity("leads").pipelines[1]
    assert (
        sales.move_to_pipeline(slug="leads", pipelineSlug="outbound")["stage_id"]
        == out.stages[0].id
    )
    got = sales.move_to_pipeline(slug="leads", pipelineSlug="outbound", stageSlug="contacted")
    assert got["stage_id"] == out.stages[1].id


@pytest.mark.parametrize(
    ("method", "options", "error", "match"),
    [
        ("move_to_stage", {}, MissingOptionError, "stageSlug"),
        ("move_to_pipeline", {}, MissingOptionError, "pipelineSlug"),
        ("move_lead", {}, MissingOptionError, "pipeline"),
        ("move_to_stage", {"stageSlug": "nope"}, CrmValidationError, "no stage 'nope'"),
        ("move_to_pipeline", {"pipelineSlug": "nope"}, CrmValidationError, "no pipeline 'nope'"),
        ("move_lead", {"pipelineSlug": "inbound", "stageSlug": "contacted"}, CrmValidationError, "no stage"),
        ("move_to_stage", {"stageSlug": "qualified", "allEntries": "yes"}, CrmValidationError, "allEntries"),
    ],
)  # fmt: skip
def test_move_errors(
    sales: Crm, method: str, options: dict[str, Any], error: type, match: str
) -> None:
    entry = sales.create_entry(slug="leads")["id"]
    before = sales.get_entry(entry)
    with pytest.raises(error, match=match):
        getattr(sales, method)(slug="leads", **options)
    assert sales.get_entry(entry) == before


def test_move_in_data_mode_returns_error_result(sales: Crm) -> None:
    sales.create_entry(slug="cities")
    result = sales.move_to_stage(slug="cities", stageSlug="x")
    assert result["ok"] is False and result["moved"] == 0 and "data mode" in result["error"]


def test_move_without_entries_reports_nothing_moved(sales: Crm) -> None:
    result = sales.move_to_stage(slug="leads", stageSlug="qualified")
    assert result["ok"] is False and result["moved"] == 0 and result["totalMatched"] == 0


def test_move_to_entity_copies_mapped_fields(sales: Crm) -> None:
    lead = sales.create_entry(slug="leads", title="Ann", values={"name": "Ann", "budget": 5000})[
        "id"
    ]
    result = sales.move_to_entity(
        fromSlug="leads",
        toSlug="deals",
        fieldMap={"name": "contact", "budget": "value", "email": "contact"},
        stageSlug="won",
    )
    assert result["ok"] is True and result["moved"] == 2 and result["removed_from_old"] is False
    deal = sales.get_entry(result["id"])
    assert deal.entity == "deals" and deal.title == "Ann"
    assert deal.values == {"contact": "Ann", "value": 5000.0}
    assert deal.stage_id == sales.get_entity("deals").pipelines[0].stages[1].id
    assert sales.get_entry(lead) is not None


def test_move_to_entity_remove_from_old(sales: Crm) -> None:
    lead = sales.create_entry(slug="leads", values={"name": "Bo"})["id"]
    result = sales.move_to_entity(
        from_slug="leads", to_slug="deals", field_map={"name": "contact"}, remove_from_old=True
    )
    assert result["removed_from_old"] is True
    assert sales.get_entry(lead) is None


@pytest.mark.parametrize(
    ("field_map", "error"),
    [({}, CrmValidationError), ({"nope": "contact"}, UnknownFieldError), ({"name": "nope"}, UnknownFieldError)],
)  # fmt: skip
def test_move_to_entity_validates_field_map(sales: Crm, field_map: Any, error: type) -> None:
    sales.create_entry(slug="leads", values={"name": "Bo"})
    with pytest.raises(error):
        sales.move_to_entity(fromSlug="leads", toSlug="deals", fieldMap=field_map)
    assert sales.get_entries(slug="deals") == []


def test_move_to_entity_type_mismatch_writes_nothing(sales: Crm) -> None:
    sales.create_entry(slug="leads", values={"name": "not a number"})
    with pytest.raises(CrmValidationError, match="value"):
        sales.move_to_entity(fromSlug="leads", toSlug="deals", fieldMap={"name": "value"})
    assert sales.get_entries(slug="deals") == []
    assert len(sales.get_entries(slug="leads")) == 1


def test_move_to_entity_without_source(sales: Crm) -> None:
    result = sales.move_to_entity(fromSlug="leads", toSlug="deals", fieldMap={"name": "contact"})
    assert result["ok"] is False and result["moved"] == 0


# ReassignCrmReference (merge semantics, the rule for views): tests/test_reassign.py.


# --- async, preview ---------------------------------------------------------------------------


def test_async_writes_return_pending_and_apply_in_order(wt: Crm) -> None:
    results = [
        wt.add_field_value({"slug": WT, "fieldKey": "current_weight", "value": w, "async": True})
        for w in range(1, 21)
    ]
    assert all(r["ok"] and r["pending"] for r in results)
    wt.set_field(slug=WT, fieldKey="note", value="last", async_=True)
    assert wt.flush(timeout=30)
    assert wt.get_field_values(slug=WT, fieldKey="current_weight", limit=200) == [
        float(w) for w in range(20, 0, -1)
    ]
    assert wt.get_field(slug=WT, fieldKey="note") == "last"
    assert wt.failed_writes == []


def test_async_validation_errors_raise_immediately(wt: Crm) -> None:
    with pytest.raises(CrmValidationError):
        wt.set_field(slug=WT, fieldKey="current_weight", value="x", **{"async": True})
    with pytest.raises(CrmValidationError, match="async must be true or false"):
        wt.set_field(slug=WT, fieldKey="note", value="x", **{"async": "yes"})


def test_async_failure_is_logged_and_kept(wt: Crm, caplog: pytest.LogCaptureFixture) -> None:
    wt.ensure_entity(slug="cities", entityMode="data", fields=[{"key": "name"}])
    wt.ensure_entity(
        slug="homes",
        entityMode="data",
        fields=[{"key": "city", "type": "reference", "target_entity": "cities"}],
    )
    city = wt.create_entry(slug="cities", values={"name": "Oslo"})["id"]
    entry = wt.create_entry(slug="homes")["id"]
    blocker = wt.store.get_entry(entry)
    wt.store.delete_entry(entry)  # the queued relation's entry vanishes before it is applied
    wt.set_relation(
        slug="homes", relationKey="city", targetEntryId=city, entryId=blocker.id, **{"async": True}
    )
    wt.add_field_value(slug=WT, fieldKey="note", value="still applied", **{"async": True})
    assert wt.flush(timeout=30)
    failures = wt.failed_writes
    assert len(failures) == 1
    assert failures[0].function == "SetCrmRelation"
    assert failures[0].payload["targetEntryId"] == city
    assert "EntryNotFoundError" in failures[0].error
    assert "SetCrmRelation failed" in caplog.text and city in caplog.text
    assert wt.get_field(slug=WT, fieldKey="note") == "still applied"


def test_read_only_view_never_writes(wt: Crm) -> None:
    wt.set_field(slug=WT, fieldKey="note", value="before")
    preview = wt.bind("cus_1", read_only=True)
    assert preview.get_field(slug=WT, fieldKey="note") == "before"
    for method, options in [
        ("set_field", {"fieldKey": "note", "value": "x"}),
        ("set_fields", {"fields": {"note": "x"}}),
        ("add_field_value", {"fieldKey": "note", "value": "x"}),
        ("create_entry", {}),
        ("clear_entries", {}),
        ("move_to_stage", {"stageSlug": "goal-reached"}),
    ]:
        result = getattr(preview, method)(slug=WT, **options)
        assert (result["ok"], result["error"], result["preview"]) == (False, "preview", True)
        assert result["message"].startswith("previews are read-only:")
    assert wt.get_field(slug=WT, fieldKey="note") == "before"
    assert len(wt.get_entries(slug=WT)) == 1


# --- customers, admin helpers -----------------------------------------------------------------


def test_customers_email_unique_and_normalised(crm: Crm) -> None:
    from crm_templates import DuplicateError

    ann = crm.create_customer("Ann@Example.COM", first_name="Ann")
    assert ann.email == "ann@example.com" and ann.id.startswith("cus_")
    assert crm.find_customer("ANN@example.com") == ann
    with pytest.raises(DuplicateError):
        crm.create_customer("ann@example.com")
    with pytest.raises(CrmValidationError):
        crm.create_customer("not-an-email")
    anon = crm.create_customer()
    assert anon.email is None and anon.name == ""


def test_update_entry_respects_ui_editable(crm: Crm) -> None:
    crm.ensure_entity(
        slug="acct",
        entityMode="data",
        fields=[{"key": "plan"}, {"key": "balance", "type": "number", "ui_editable": False}],
    )
    view = crm.bind("cus_1")
    entry = view.create_entry(slug="acct", values={"plan": "a", "balance": 1})["id"]
    with pytest.raises(CrmValidationError, match="not editable"):
        view.update_entry(entry, {"balance": 5}, respect_ui_editable=True)
    updated = view.update_entry(entry, {"plan": "b"}, title="T", respect_ui_editable=True)
    assert updated.values == {"plan": "b", "balance": 1.0} and updated.title == "T"
    assert view.update_entry(entry, {"balance": 7}).values["balance"] == 7.0


def test_entries_for_reference_spans_entities(sales: Crm) -> None:
    sales.create_entry(slug="leads")
    sales.create_entry(slug="deals")
    assert {e.entity for e in sales.entries_for_reference("customer", "cus_1")} == {
        "leads",
        "deals",
    }
