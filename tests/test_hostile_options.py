"""Hostile *options* (not field values) escape only as CrmError and change nothing, on every
backend (issue 9 item 1's kind: slugs, keys and ids with lone surrogates, option containers
nested thousands deep, numbers too long to print — each once escaped as UnicodeEncodeError,
RecursionError or ValueError from the store or from a message's repr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crm_templates import Crm, CrmError


def deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


SURROGATE = "no\ud800tes"
HUGE = 10**5000

CASES: dict[str, Callable[[Crm, Crm], Any]] = {
    "slug-surrogate-read": lambda crm, v: v.get_field(slug=SURROGATE, fieldKey="t"),
    "slug-surrogate-write": lambda crm, v: v.set_field(slug=SURROGATE, fieldKey="t", value=1),
    "key-surrogate": lambda crm, v: v.get_field(slug="notes", fieldKey="t\ud800"),
    "reference-id-surrogate": lambda crm, v: v.set_field(
        slug="notes", fieldKey="t", value="x", referenceId="a\ud800"
    ),
    "entry-id-surrogate": lambda crm, v: v.set_relation(
        slug="notes", relationKey="r", targetEntryId="x", entryId="a\ud800"
    ),
    "target-surrogate": lambda crm, v: v.set_relation(
        slug="notes", relationKey="r", targetEntryId="a\ud800"
    ),
    "get-entry-surrogate": lambda crm, v: crm.get_entry("a\ud800"),
    "get-customer-surrogate": lambda crm, v: crm.get_customer("a\ud800"),
    "update-entry-surrogate": lambda crm, v: crm.update_entry("a\ud800", {"t": "x"}),
    "delete-entry-surrogate": lambda crm, v: crm.delete_entry("a\ud800"),
    "fields-3000-deep": lambda crm, v: v.set_fields(slug="notes", fields=deep(3000)),
    "field-key-3000-deep": lambda crm, v: v.get_field(slug="notes", fieldKey=deep(3000)),
    "slug-3000-deep": lambda crm, v: v.get_field(slug=deep(3000), fieldKey="t"),
    "field-map-3000-deep": lambda crm, v: v.move_to_entity(
        fromSlug="notes", toSlug="other", fieldMap=deep(3000)
    ),
    "ensure-fields-3000-deep": lambda crm, v: crm.ensure_entity(slug="x", fields=deep(3000)),
    "slug-huge-int": lambda crm, v: v.get_field(slug=HUGE, fieldKey="t"),
    "key-huge-int": lambda crm, v: v.set_field(slug="notes", fieldKey=HUGE, value=1),
    "limit-huge-int": lambda crm, v: v.get_entries(slug="notes", limit=HUGE),
    "entry-id-huge-int": lambda crm, v: v.set_relation(
        slug="notes", relationKey="r", targetEntryId="x", entryId=HUGE
    ),
}


@pytest.fixture
def crm(store: Any) -> Iterator[Crm]:
    service = Crm(store)
    service.ensure_entity(
        slug="notes",
        entityMode="data",
        fields=[{"key": "t"}, {"key": "r", "type": "multi_reference", "target_entity": "notes"}],
    )
    service.ensure_entity(slug="other", entityMode="data", fields=[{"key": "t"}])
    service.bind("c1").set_field(slug="notes", fieldKey="t", value="kept")
    yield service
    service.close()


def snapshot(crm: Crm) -> tuple[Any, ...]:
    return (
        sorted(e.id for e in crm.store.iter_entries()),
        [e.to_dict() for e in crm.store.iter_entries()],
        crm.store.list_entities(),
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_options_raise_only_crm_errors_and_change_nothing(crm: Crm, case: str) -> None:
    before = snapshot(crm)
    try:
        result = CASES[case](crm, crm.bind("c1"))
    except CrmError as exc:
        str(exc)  # the message itself must be printable
    else:
        # A read of nothing is fine (an id that names nothing); writes must not succeed.
        assert not (isinstance(result, dict) and result.get("changed")), result
    assert snapshot(crm) == before


# --- found by attacking the first version (issue 9) -------------------------------------------

MORE: dict[str, Callable[[Crm, Crm], Any]] = {
    "create-values-3000-deep": lambda crm, v: v.create_entry(
        {"slug": "notes", "values": deep(3000)}
    ),
    "create-values-huge-int": lambda crm, v: v.create_entry({"slug": "notes", "values": HUGE}),
    "int-option-name": lambda crm, v: v.get_entries({10: 1, "slug": "notes"}),
    "huge-int-option-name": lambda crm, v: v.get_entries({HUGE: 2, "slug": "notes"}),
    "alias-pair-3000-deep": lambda crm, v: v.get_field(
        {"slug": "notes", "fieldKey": deep(3000), "field_key": deep(2999)}
    ),
    "fields-item-keys-3000-deep": lambda crm, v: v.set_fields(
        slug="notes", fields=[{"fieldKey": deep(3000), "field_key": deep(2999), "value": 1}]
    ),
    "bucket-size-10**400": lambda crm, v: crm.ensure_entity(
        slug="y",
        fields=[{"key": "n", "type": "number", "reporting_config": {"bucket_size": 10**400}}],
    ),
    "bucket-size-nan": lambda crm, v: crm.ensure_entity(
        slug="y",
        fields=[{"key": "n", "type": "number", "reporting_config": {"bucket_size": float("nan")}}],
    ),
    "baseline-inf": lambda crm, v: crm.ensure_entity(
        slug="y",
        fields=[
            {"key": "n", "type": "number", "reporting_config": {"baseline": {"min": float("-inf")}}}
        ],
    ),
    "probability-10**400": lambda crm, v: crm.ensure_entity(
        slug="y", pipelines=[{"slug": "p", "stages": [{"slug": "s", "probability": 10**400}]}]
    ),
    "validation-rules-surrogate": lambda crm, v: crm.ensure_entity(
        slug="y", fields=[{"key": "n", "validation_rules": {"a": "\ud800"}}]
    ),
    "entity-name-surrogate": lambda crm, v: crm.ensure_entity(slug="y", name="N\ud800"),
    "field-label-surrogate": lambda crm, v: crm.ensure_entity(
        slug="y", fields=[{"key": "n", "label": "L\ud800"}]
    ),
    "option-surrogate": lambda crm, v: crm.ensure_entity(
        slug="y",
        fields=[{"key": "n", "type": "select", "options": [{"value": "a", "label": "\ud800"}]}],
    ),
    "stage-name-surrogate": lambda crm, v: crm.ensure_entity(
        slug="y", pipelines=[{"slug": "p", "stages": [{"slug": "s", "name": "S\ud800"}]}]
    ),
    "team-id-surrogate": lambda crm, v: crm.ensure_entity(
        slug="y", fields=[{"key": "n", "visible_to_team_ids": ["t\ud800"]}]
    ),
    "slug-trailing-newline": lambda crm, v: crm.ensure_entity(slug="y\n"),
    "key-trailing-newline": lambda crm, v: crm.ensure_entity(slug="y", fields=[{"key": "k\n"}]),
    "reference-type-trailing-newline": lambda crm, v: v.set_field(
        slug="notes", fieldKey="t", value="x", referenceType="customer\n", referenceId="c1"
    ),
    "update-entry-huge-id": lambda crm, v: crm.update_entry(10**30, {}),  # type: ignore[arg-type]
    "update-entry-list-id": lambda crm, v: crm.update_entry(["a"], {}),  # type: ignore[arg-type]
    "update-entry-list-values": lambda crm, v: crm.update_entry(
        crm.store.find_entries("notes", "customer", "c1", limit=1)[0].id,
        [1, 2],  # type: ignore[arg-type]
    ),
    "create-customer-huge-int": lambda crm, v: crm.create_customer(HUGE),  # type: ignore[arg-type]
    "create-customer-3000-deep": lambda crm, v: crm.create_customer(deep(3000)),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", sorted(MORE))
def test_more_hostile_options_raise_only_crm_errors_and_change_nothing(crm: Crm, case: str) -> None:
    before = snapshot(crm)
    customers = crm.store.count_customers()
    with pytest.raises(CrmError) as info:
        MORE[case](crm, crm.bind("c1"))
    str(info.value)
    assert snapshot(crm) == before
    assert crm.store.count_customers() == customers


@pytest.mark.parametrize("kind", ["multi_reference", "multiselect"])
def test_huge_lists_are_refused_quickly(crm: Crm, kind: str) -> None:
    import time

    field: dict[str, Any] = {"key": "many", "type": kind}
    field.update(
        {"target_entity": "notes"}
        if kind == "multi_reference"
        else {"options": [f"o{i}" for i in range(2000)]}
    )
    crm.ensure_entity(slug="lists", entityMode="data", fields=[field])
    values = [f"o{i % 2000}" if kind == "multiselect" else f"id{i}" for i in range(50_000)]
    started = time.monotonic()
    with pytest.raises(CrmError, match="at most 1,000"):
        crm.bind("c1").set_field(slug="lists", fieldKey="many", value=values)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    "value",
    [deep(3000), HUGE, [HUGE], "\ud800", {"a": deep(3000)}, ["\ud800"]],
    ids=[
        "list-3000-deep",
        "int-5000-digits",
        "list-of-huge-int",
        "surrogate",
        "dict-deep",
        "list-surrogate",
    ],
)
def test_renderers_never_raise_on_values_built_in_a_template(value: Any) -> None:
    import renderers

    for ftype in [
        "text", "textarea", "rich_text", "email", "phone", "url", "number", "date", "datetime",
        "boolean", "select", "multiselect", "color", "image", "file", "json", "reference",
        "multi_reference",
    ]:  # fmt: skip
        field = {"type": ftype, "key": "k", "options": ["a"]}
        html = renderers.render(value, field)
        str(html).encode("utf-8")  # sendable in a page
        renderers.render_text(value, field).encode("utf-8")
