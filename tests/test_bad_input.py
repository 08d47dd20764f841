"""Bad input: every function x every class of bad input → the documented error, store unchanged."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

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


class Case(NamedTuple):
    """One bad call and its nearest valid call: ``good`` differs from ``bad`` only in the one
    thing that is broken, so the matrix proves the error comes from that thing."""

    function: str
    label: str
    bad: dict[str, Any]
    error: type
    good: dict[str, Any]


def cases() -> list[Case]:
    out: list[Case] = []

    def case(
        name: str, label: str, bad: dict[str, Any], error: type, good: dict[str, Any] | None = None
    ) -> None:
        out.append(Case(name, label, bad, error, VALID[name] if good is None else good))

    for name, spec in FUNCTIONS.items():
        valid = VALID[name]
        for req in spec.required:
            case(name, f"missing {req}", _without(valid, req), MissingOptionError)
        case(name, "unknown option", {**valid, "slgu": "x"}, UnknownOptionError)
    for name in SLUGGED:
        case(name, "unknown slug", {**VALID[name], "slug": "nope"}, UnknownEntityError)
    case(
        "MoveCrmToEntity",
        "unknown fromSlug",
        {**VALID["MoveCrmToEntity"], "fromSlug": "nope"},
        UnknownEntityError,
    )
    case(
        "EnsureCrmEntity",
        "bad slug",
        {"slug": "Not A Slug"},
        CrmValidationError,
        {"slug": "not-a-slug"},
    )
    for name in HAS_FIELD_KEY:
        case(name, "unknown field", {**VALID[name], "fieldKey": "nope"}, UnknownFieldError)
    for name in HAS_REF:
        base = VALID[name]
        # The valid sibling names the seeded customer explicitly.
        good = {**base, "referenceType": "customer", "referenceId": "cus_1"}
        for label, rtype, rid in [
            ("referenceType with spaces", "my type", "r1"),
            ("referenceType not a string", 5, "r1"),
            ("referenceId too long", "customer", "x" * 513),
            ("referenceId with braces", "customer", "{bad}"),
            ("referenceId with quote", "customer", 'a"b'),
            ("referenceId not a string", "customer", 12),
            ("referenceId empty", "customer", ""),
        ]:
            bad = {**base, "referenceType": rtype, "referenceId": rid}
            case(name, label, bad, CrmValidationError, good)
    for name in HAS_ASYNC:
        case(name, "async not a boolean", {**VALID[name], "async": "yes"}, CrmValidationError)
    # (field, bad value, the nearest valid value, label)
    bad_values = [
        ("text", "x" * 10_001, "x" * 10_000, "oversize string"),
        ("num", math.nan, 1.5, "NaN"),
        ("num", math.inf, 1e300, "infinity"),
        ("num", "12kg", "12", "non-numeric string"),
        ("num", True, 1, "boolean for number"),
        ("when", "15/03/2026", "2026-03-15", "non-ISO date"),
        ("at", "yesterday", "2026-03-15T10:30:00Z", "non-ISO datetime"),
        ("flag", "maybe", "true", "not a boolean"),
        ("pick", "c", "b", "select value not an option"),
        ("tags", ["x", "z"], ["x", "y"], "multiselect not a subset"),
        ("tags", "x", ["x"], "multiselect not a list"),
        ("tint", "red", "#ff0000", "colour name"),
        ("tint", "#12345", "#123456", "bad hex"),
        ("mail", "not-an-email", "walker@example.com", "invalid email"),
        ("tel", "call me", "+1 650 253 0000", "invalid phone"),
        ("link", "javascript:alert(1)", "https://example.com/", "javascript URL"),
        ("link", "/relative", "https://example.com/relative", "relative URL"),
        ("pic", "data:image/png;base64,xx", "https://example.com/a.png", "data URL image"),
        ("doc", "//evil.example/x", "https://evil.example/x", "protocol-relative file"),
        ("blob", {"big": "x" * 11_000}, {"big": "x" * 5_000}, "oversize JSON"),
        ("blob", {"n": math.nan}, {"n": 1}, "JSON with NaN"),
        ("blob", "{not json", '{"not": "json"}', "invalid JSON text"),
        ("rich", 5, "<p>5</p>", "rich text not a string"),
        ("city", "missing-id", "PLACE", "reference to a missing entry"),
        ("near", ["missing-id"], ["PLACE"], "multi_reference to a missing entry"),
        ("city", 7, "PLACE", "reference not a string"),
    ]
    for name in HAS_VALUE:
        for key, value, good_value, label in bad_values:
            at = {**VALID[name], "fieldKey": key}
            case(
                name,
                label,
                {**at, "value": value},
                CrmValidationError,
                {**at, "value": good_value},
            )
    for key, value, good_value, label in bad_values:
        for name, option in (("SetCrmFields", "fields"), ("CreateCrmEntry", "values")):
            case(
                name,
                label,
                {**VALID[name], option: {key: value}},
                CrmValidationError,
                {**VALID[name], option: {key: good_value}},
            )
    things = VALID["MoveCrmToEntity"]
    for name, label, bad, error, *good in [
        ("GetCrmEntries", "limit zero", {**VALID["GetCrmEntries"], "limit": 0}, CrmValidationError, {**VALID["GetCrmEntries"], "limit": 1}),
        ("GetCrmFieldValues", "limit text", {**VALID["GetCrmFieldValues"], "limit": "5"}, CrmValidationError, {**VALID["GetCrmFieldValues"], "limit": 5}),
        ("GetCrmFields", "fieldKeys not a list", {**VALID["GetCrmFields"], "fieldKeys": "text"}, CrmValidationError),
        ("SetCrmFields", "fields not a list or mapping", {**VALID["SetCrmFields"], "fields": 3}, CrmValidationError),
        ("SetCrmField", "force not a boolean", {**VALID["SetCrmField"], "force": "yes"}, CrmValidationError, {**VALID["SetCrmField"], "force": True}),
        ("CreateCrmEntry", "title too long", {**VALID["CreateCrmEntry"], "title": "t" * 10_001}, CrmValidationError, {**VALID["CreateCrmEntry"], "title": "t" * 10_000}),
        ("CreateCrmEntry", "values not a mapping", {**VALID["CreateCrmEntry"], "values": ["x"]}, CrmValidationError),
        ("CreateCrmEntry", "undeclared key", {**VALID["CreateCrmEntry"], "values": {"zz": 1}}, UnknownFieldError),
        ("CreateCrmEntry", "unknown stage", {**VALID["CreateCrmEntry"], "stageSlug": "zz"}, CrmValidationError, {**VALID["CreateCrmEntry"], "stageSlug": "s2"}),
        ("SetCrmRelation", "relation on a text field", {**VALID["SetCrmRelation"], "relationKey": "text"}, CrmValidationError),
        ("SetCrmRelation", "target missing", {**VALID["SetCrmRelation"], "targetEntryId": "nope"}, CrmValidationError),
        ("SetCrmRelation", "entryId missing", {**VALID["SetCrmRelation"], "entryId": "nope"}, CrmValidationError, {**VALID["SetCrmRelation"], "entryId": "THING"}),
        ("MoveCrmToStage", "unknown stage", {**VALID["MoveCrmToStage"], "stageSlug": "zz"}, CrmValidationError),
        ("MoveCrmToPipeline", "unknown pipeline", {**VALID["MoveCrmToPipeline"], "pipelineSlug": "zz"}, CrmValidationError),
        ("MoveCrmLead", "allEntries not a boolean", {**VALID["MoveCrmLead"], "allEntries": 1}, CrmValidationError, {**VALID["MoveCrmLead"], "allEntries": True}),
        ("MoveCrmToEntity", "fieldMap empty", {**things, "fieldMap": {}}, CrmValidationError),
        ("MoveCrmToEntity", "toSlug equal to fromSlug", {**things, "toSlug": "things", "fieldMap": {"text": "text"}}, CrmValidationError),
        ("MoveCrmToEntity", "allEntries not a boolean", {**things, "allEntries": "yes"}, CrmValidationError, {**things, "allEntries": True}),
        ("MoveCrmToEntity", "fieldMap unknown target key", {**things, "fieldMap": {"text": "zz"}}, UnknownFieldError),
        ("MoveCrmToEntity", "removeFromOld not a boolean", {**things, "removeFromOld": "y"}, CrmValidationError, {**things, "removeFromOld": True}),
        ("ReassignCrmReference", "bad fromReferenceId", {**VALID["ReassignCrmReference"], "fromReferenceId": "[x]"}, CrmValidationError),
        ("EnsureCrmEntity", "fields not a list", {"slug": "newthing", "fields": "a,b"}, CrmValidationError),
        ("EnsureCrmEntity", "unknown field type", {"slug": "newthing", "fields": [{"key": "a", "type": "money"}]}, CrmValidationError, {"slug": "newthing", "fields": [{"key": "a", "type": "number"}]}),
    ]:  # fmt: skip
        case(name, label, bad, error, good[0] if good else None)
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


def with_ids(options: Any, ids: dict[str, str]) -> Any:
    """``options`` with the placeholders PLACE and THING replaced by seeded entry ids."""
    if isinstance(options, dict):
        return {k: with_ids(v, ids) for k, v in options.items()}
    if isinstance(options, list):
        return [with_ids(v, ids) for v in options]
    return ids.get(options, options) if isinstance(options, str) else options


# Through a view (templates, page backends) every reassign but the session's own visitor's is
# refused, so the matrix calls ReassignCrmReference as trusted Python code does: on the service.
TRUSTED = {"ReassignCrmReference"}


def test_matrix_covers_every_function() -> None:
    assert {c.function for c in CASES} == set(FUNCTIONS)
    assert len(CASES) > 300
    assert all(repr(c.good) != repr(c.bad) for c in CASES)  # repr: True == 1


@pytest.mark.parametrize("case", CASES, ids=[f"{c.function}-{c.label}" for c in CASES])
def test_bad_input_is_rejected_and_changes_nothing(crm: Crm, seeded: Crm, case: Case) -> None:
    caller = crm if case.function in TRUSTED else seeded
    thing = seeded.get_entries(slug="things")[0].id
    ids = {"PLACE": seeded.place_id, "THING": thing}  # type: ignore[attr-defined]
    before = snapshot(seeded)
    with pytest.raises(case.error) as caught:
        caller.call(case.function, with_ids(case.bad, ids))
    message = str(caught.value)
    assert len(message) > 20, f"{case.label}: message too terse to act on: {message!r}"
    seeded.flush()
    assert snapshot(seeded) == before, f"{case.function} with {case.label} changed the store"

    # The valid baseline: the same call with the one broken thing mended succeeds, so the
    # error above came from that thing and not from the rest of the call.
    result = caller.call(case.function, with_ids(case.good, ids))
    spec = FUNCTIONS[case.function]
    assert result != spec.failure_value(""), f"valid baseline of {case.label}: {result!r}"
    if spec.kind == "write":
        assert result["ok"] is True, f"valid baseline of {case.label}: {result!r}"


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
