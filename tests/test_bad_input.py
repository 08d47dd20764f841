"""Bad input: every function x every class of bad input → the documented error, store unchanged."""

from __future__ import annotations

import math
from typing import Any

import pytest

from crm_templates import (
    FUNCTIONS,
    Crm,
    CrmValidationError,
    MissingOptionError,
    UnknownEntityError,
    UnknownFieldError,
    UnknownOptionError,
)

SCHEMA: list[dict[str, Any]] = [
    {
        "slug": "things",
        "fields": [
            {"key": "text", "type": "text"},
            {"key": "num", "type": "number"},
            {"key": "when", "type": "date"},
            {"key": "at", "type": "datetime"},
            {"key": "flag", "type": "boolean"},
            {"key": "pick", "type": "select", "options": ["a", "b"]},
            {"key": "tags", "type": "multiselect", "options": ["x", "y"]},
            {"key": "tint", "type": "color"},
            {"key": "mail", "type": "email"},
            {"key": "tel", "type": "phone"},
            {"key": "link", "type": "url"},
            {"key": "pic", "type": "image"},
            {"key": "doc", "type": "file"},
            {"key": "blob", "type": "json"},
            {"key": "rich", "type": "rich_text"},
            {"key": "city", "type": "reference", "target_entity": "places"},
            {"key": "near", "type": "multi_reference", "target_entity": "places"},
        ],
        "pipelines": [{"slug": "p", "stages": [{"slug": "s1"}, {"slug": "s2"}]}],
    },
    {"slug": "places", "entityMode": "data", "fields": [{"key": "name"}]},
]

# A valid call of every function; each bad-input class below breaks one thing about it.
VALID: dict[str, dict[str, Any]] = {
    "EnsureCrmEntity": {"slug": "newthing", "fields": [{"key": "a"}]},
    "CreateCrmEntry": {"slug": "things", "title": "t", "values": {"text": "x"}},
    "GetCrmEntries": {"slug": "things"},
    "GetCrmField": {"slug": "things", "fieldKey": "text"},
    "GetCrmFields": {"slug": "things", "fieldKeys": ["text"]},
    "SetCrmField": {"slug": "things", "fieldKey": "text", "value": "x"},
    "SetCrmFields": {"slug": "things", "fields": {"text": "x"}},
    "AddCrmFieldValue": {"slug": "things", "fieldKey": "text", "value": "x"},
    "GetCrmFieldValues": {"slug": "things", "fieldKey": "text"},
    "ClearCrmEntries": {"slug": "things"},
    "SetCrmRelation": {"slug": "things", "relationKey": "city", "targetEntryId": "PLACE"},
    "RemoveCrmRelation": {"slug": "things", "relationKey": "city", "targetEntryId": "PLACE"},
    "MoveCrmLead": {"slug": "things", "pipelineSlug": "p", "stageSlug": "s2"},
    "MoveCrmToStage": {"slug": "things", "stageSlug": "s2"},
    "MoveCrmToPipeline": {"slug": "things", "pipelineSlug": "p"},
    "MoveCrmToEntity": {"fromSlug": "things", "toSlug": "places", "fieldMap": {"text": "name"}},
    "ReassignCrmReference": {
        "slug": "things",
        "fromReferenceType": "customer",
        "fromReferenceId": "cus_1",
        "toReferenceId": "cus_2",
    },
}

HAS_REF = [n for n, s in FUNCTIONS.items() if "referenceId" in s.options]
HAS_FIELD_KEY = [n for n, s in FUNCTIONS.items() if "fieldKey" in s.options]
HAS_VALUE = [n for n, s in FUNCTIONS.items() if "value" in s.options]
HAS_ASYNC = [n for n, s in FUNCTIONS.items() if "async" in s.options]
SLUGGED = [n for n in FUNCTIONS if "slug" in VALID[n] and n != "EnsureCrmEntity"]


def _without(options: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k != key}


def cases() -> list[tuple[str, str, dict[str, Any], type]]:
    out: list[tuple[str, str, dict[str, Any], type]] = []
    for name, spec in FUNCTIONS.items():
        valid = VALID[name]
        for req in spec.required:
            out.append((name, f"missing {req}", _without(valid, req), MissingOptionError))
        out.append((name, "unknown option", {**valid, "slgu": "x"}, UnknownOptionError))
    for name in SLUGGED:
        out.append((name, "unknown slug", {**VALID[name], "slug": "nope"}, UnknownEntityError))
    out.append(
        (
            "MoveCrmToEntity",
            "unknown fromSlug",
            {**VALID["MoveCrmToEntity"], "fromSlug": "nope"},
            UnknownEntityError,
        )
    )
    out.append(("EnsureCrmEntity", "bad slug", {"slug": "Not A Slug"}, CrmValidationError))
    for name in HAS_FIELD_KEY:
        out.append((name, "unknown field", {**VALID[name], "fieldKey": "nope"}, UnknownFieldError))
    for name in HAS_REF:
        base = VALID[name]
        for label, rtype, rid in [
            ("referenceType with spaces", "my type", "r1"),
            ("referenceType not a string", 5, "r1"),
            ("referenceId too long", "customer", "x" * 513),
            ("referenceId with braces", "customer", "{bad}"),
            ("referenceId with quote", "customer", 'a"b'),
            ("referenceId not a string", "customer", 12),
            ("referenceId empty", "customer", ""),
        ]:
            out.append(
                (
                    name,
                    label,
                    {**base, "referenceType": rtype, "referenceId": rid},
                    CrmValidationError,
                )
            )
    for name in HAS_ASYNC:
        out.append(
            (name, "async not a boolean", {**VALID[name], "async": "yes"}, CrmValidationError)
        )
    bad_values = [
        ("text", "x" * 10_001, "oversize string"),
        ("num", math.nan, "NaN"),
        ("num", math.inf, "infinity"),
        ("num", "12kg", "non-numeric string"),
        ("num", True, "boolean for number"),
        ("when", "15/03/2026", "non-ISO date"),
        ("at", "yesterday", "non-ISO datetime"),
        ("flag", "maybe", "not a boolean"),
        ("pick", "c", "select value not an option"),
        ("tags", ["x", "z"], "multiselect not a subset"),
        ("tags", "x", "multiselect not a list"),
        ("tint", "red", "colour name"),
        ("tint", "#12345", "bad hex"),
        ("mail", "not-an-email", "invalid email"),
        ("tel", "call me", "invalid phone"),
        ("link", "javascript:alert(1)", "javascript URL"),
        ("link", "/relative", "relative URL"),
        ("pic", "data:image/png;base64,xx", "data URL image"),
        ("doc", "//evil.example/x", "protocol-relative file"),
        ("blob", {"big": "x" * 11_000}, "oversize JSON"),
        ("blob", {"n": math.nan}, "JSON with NaN"),
        ("blob", "{not json", "invalid JSON text"),
        ("rich", 5, "rich text not a string"),
        ("city", "missing-id", "reference to a missing entry"),
        ("near", ["missing-id"], "multi_reference to a missing entry"),
        ("city", 7, "reference not a string"),
    ]
    for name in HAS_VALUE:
        for key, value, label in bad_values:
            out.append(
                (name, label, {**VALID[name], "fieldKey": key, "value": value}, CrmValidationError)
            )
    for key, value, label in bad_values:
        out.append(
            (
                "SetCrmFields",
                label,
                {**VALID["SetCrmFields"], "fields": {key: value}},
                CrmValidationError,
            )
        )
        out.append(
            (
                "CreateCrmEntry",
                label,
                {**VALID["CreateCrmEntry"], "values": {key: value}},
                CrmValidationError,
            )
        )
    out += [
        ("GetCrmEntries", "limit zero", {**VALID["GetCrmEntries"], "limit": 0}, CrmValidationError),
        ("GetCrmFieldValues", "limit text", {**VALID["GetCrmFieldValues"], "limit": "5"}, CrmValidationError),
        ("GetCrmFields", "fieldKeys not a list", {**VALID["GetCrmFields"], "fieldKeys": "text"}, CrmValidationError),
        ("SetCrmFields", "fields not a list or mapping", {**VALID["SetCrmFields"], "fields": 3}, CrmValidationError),
        ("SetCrmField", "force not a boolean", {**VALID["SetCrmField"], "force": "yes"}, CrmValidationError),
        ("CreateCrmEntry", "title too long", {**VALID["CreateCrmEntry"], "title": "t" * 10_001}, CrmValidationError),
        ("CreateCrmEntry", "values not a mapping", {**VALID["CreateCrmEntry"], "values": ["x"]}, CrmValidationError),
        ("CreateCrmEntry", "undeclared key", {**VALID["CreateCrmEntry"], "values": {"zz": 1}}, UnknownFieldError),
        ("CreateCrmEntry", "unknown stage", {**VALID["CreateCrmEntry"], "stageSlug": "zz"}, CrmValidationError),
        ("SetCrmRelation", "relation on a text field", {**VALID["SetCrmRelation"], "relationKey": "text"}, CrmValidationError),
        ("SetCrmRelation", "target missing", {**VALID["SetCrmRelation"], "targetEntryId": "nope"}, CrmValidationError),
        ("SetCrmRelation", "entryId missing", {**VALID["SetCrmRelation"], "entryId": "nope"}, CrmValidationError),
        ("MoveCrmToStage", "unknown stage", {**VALID["MoveCrmToStage"], "stageSlug": "zz"}, CrmValidationError),
        ("MoveCrmToPipeline", "unknown pipeline", {**VALID["MoveCrmToPipeline"], "pipelineSlug": "zz"}, CrmValidationError),
        ("MoveCrmLead", "allEntries not a boolean", {**VALID["MoveCrmLead"], "allEntries": 1}, CrmValidationError),
        ("MoveCrmToEntity", "fieldMap empty", {**VALID["MoveCrmToEntity"], "fieldMap": {}}, CrmValidationError),
        ("MoveCrmToEntity", "toSlug equal to fromSlug", {**VALID["MoveCrmToEntity"], "toSlug": "things", "fieldMap": {"text": "text"}}, CrmValidationError),
        ("MoveCrmToEntity", "allEntries not a boolean", {**VALID["MoveCrmToEntity"], "allEntries": "yes"}, CrmValidationError),
        ("MoveCrmToEntity", "fieldMap unknown target key", {**VALID["MoveCrmToEntity"], "fieldMap": {"text": "zz"}}, UnknownFieldError),
        ("MoveCrmToEntity", "removeFromOld not a boolean", {**VALID["MoveCrmToEntity"], "removeFromOld": "y"}, CrmValidationError),
        ("ReassignCrmReference", "bad fromReferenceId", {**VALID["ReassignCrmReference"], "fromReferenceId": "[x]"}, CrmValidationError),
        ("EnsureCrmEntity", "fields not a list", {"slug": "newthing", "fields": "a,b"}, CrmValidationError),
        ("EnsureCrmEntity", "unknown field type", {"slug": "newthing", "fields": [{"key": "a", "type": "money"}]}, CrmValidationError),
    ]  # fmt: skip
    return out


CASES = cases()


def snapshot(crm: Crm) -> tuple[Any, ...]:
    store = crm.store
    return (
        [e.__repr__() for e in store.list_entities()],
        [c.__repr__() for c in store.list_customers(limit=1000)],
        [e.__repr__() for e in store.iter_entries()],
    )


@pytest.fixture
def seeded(crm: Crm) -> Crm:
    """The schema above plus a little data for customer cus_1."""
    for doc in SCHEMA:
        crm.ensure_entity(doc)
    view = crm.bind("cus_1")
    place = view.create_entry(slug="places", values={"name": "Oslo"})["id"]
    view.set_fields(slug="things", fields={"text": "before", "num": 1, "city": place})
    view.add_field_value(slug="things", fieldKey="num", value=2)
    view.place_id = place  # type: ignore[attr-defined]
    return view


def test_matrix_covers_every_function() -> None:
    assert {name for name, *_ in CASES} == set(FUNCTIONS)
    assert len(CASES) > 300


@pytest.mark.parametrize(
    ("function", "label", "options", "error"),
    CASES,
    ids=[f"{c[0]}-{c[1]}" for c in CASES],
)
def test_bad_input_is_rejected_and_changes_nothing(
    seeded: Crm, function: str, label: str, options: dict[str, Any], error: type
) -> None:
    place = seeded.place_id  # type: ignore[attr-defined]
    options = {k: (place if v == "PLACE" else v) for k, v in options.items()}
    before = snapshot(seeded)
    with pytest.raises(error) as caught:
        seeded.call(function, options)
    message = str(caught.value)
    assert len(message) > 20, f"{label}: message too terse to act on: {message!r}"
    seeded.flush()
    assert snapshot(seeded) == before, f"{function} with {label} changed the store"


def test_usage_errors_are_type_errors_and_validation_errors_value_errors() -> None:
    assert issubclass(MissingOptionError, TypeError)
    assert issubclass(UnknownOptionError, TypeError)
    assert issubclass(UnknownEntityError, TypeError)
    assert issubclass(CrmValidationError, ValueError)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_documented_failure_values(name: str) -> None:
    spec = FUNCTIONS[name]
    value = spec.failure_value("boom")
    expected: dict[str, Any] = {
        "GetCrmField": None,
        "GetCrmFields": {},
        "GetCrmEntries": [],
        "GetCrmFieldValues": [],
    }
    assert value == expected.get(name, {"ok": False, "error": "boom"})
