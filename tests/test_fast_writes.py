"""AddCrmFieldValue's fast path (`crm_templates.fast_writes`, issue 14 B3) answers exactly what
the general path does: the same result, the same stored entry, the same error and message for
bad input (raised at once in the caller, async or not), and no customer sees another's values.

The general path's answer is taken by switching the shortcut off for the same call on the same
service (``fast_writes.add_field_value`` answering None means "not mine").
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_templates import Crm, fast_writes, open_store
from crm_templates.model import Stage
from crm_templates.storage import sqlite as sqlite_module

DATA = "tracker"
STAGED = "deals"
LINKED = "notes"

CASES: list[dict[str, Any]] = [
    {"slug": DATA, "fieldKey": "n", "value": 3},
    {"slug": DATA, "fieldKey": "n", "value": 3, "async": True},
    {"slug": DATA, "fieldKey": "n", "value": 2.5, "async": False},
    {"slug": DATA, "fieldKey": "n", "value": "7"},
    {"slug": DATA, "fieldKey": "n", "value": None, "async": True},
    {"slug": DATA, "fieldKey": "n", "value": "abc", "async": True},
    {"slug": DATA, "fieldKey": "n", "value": float("nan"), "async": True},
    {"slug": DATA, "fieldKey": "n", "value": True},
    {"slug": DATA, "fieldKey": "n", "value": [1], "async": True},
    {"slug": DATA, "fieldKey": "s", "value": 'héllo \u2028 "q"', "async": True},
    {"slug": DATA, "fieldKey": "s", "value": 5},
    {"slug": DATA, "fieldKey": "s", "value": "x" * 200_000, "async": True},
    {"slug": DATA, "fieldKey": "nope", "value": 1, "async": True},
    {"slug": "missing", "fieldKey": "n", "value": 1, "async": True},
    {"slug": 5, "fieldKey": "n", "value": 1},
    {"slug": DATA, "fieldKey": ["n"], "value": 1},
    {"slug": DATA, "fieldKey": "n"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "extra": 1},
    {"slug": DATA, "field_key": "n", "value": 1, "async": True},
    {"slug": DATA, "fieldKey": "n", "value": 1, "async": "yes"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "async": 1},
    {"slug": DATA, "fieldKey": "n", "value": 1, "referenceType": "order", "async": True},
    {"slug": DATA, "fieldKey": "n", "value": 1, "referenceType": "order", "referenceId": "o-1"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "referenceType": "b a d", "referenceId": "o"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "referenceId": "", "async": True},
    {"slug": DATA, "fieldKey": "n", "value": 1, "referenceId": "a{b}", "async": True},
    {"slug": DATA, "fieldKey": "n", "value": 1, "referenceId": 5},
    {"slug": DATA, "fieldKey": "n", "value": 1, "referenceId": "cus_other", "async": True},
    {"slug": STAGED, "fieldKey": "amount", "value": 10, "async": True},
    {"slug": LINKED, "fieldKey": "deal", "value": "not-an-entry", "async": True},
    {"slug": LINKED, "fieldKey": "text", "value": "t", "async": True},
]


def _crm(path: Path) -> Crm:
    crm = Crm(open_store(f"sqlite:///{path}"))
    crm.ensure_entity(slug=DATA, entityMode="data", fields=[{"key": "n", "type": "number"},
                                                            {"key": "s"}])  # fmt: skip
    crm.ensure_entity(
        slug=STAGED,
        entityMode="crm",
        fields=[{"key": "amount", "type": "number"}],
        pipelines=[{"slug": "sales", "stages": [{"slug": "new"}, {"slug": "won"}]}],
    )
    crm.ensure_entity(
        slug=LINKED,
        entityMode="data",
        fields=[{"key": "text"}, {"key": "deal", "type": "reference", "targetEntity": STAGED}],
    )
    return crm


def _outcome(view: Crm, options: dict[str, Any]) -> tuple[Any, ...]:
    """What one call did: its result (the new id masked) and the entry written, or its error."""
    try:
        result = view.add_field_value(dict(options))
    except Exception as exc:  # the error is part of the answer compared
        return ("raised", type(exc).__name__, str(exc))
    view.flush()
    written = dict(result)
    entry = view.store.get_entries_by_ids([written.pop("id")]) if "id" in written else {}
    rows = [
        (e.entity, e.reference_type, e.reference_id, e.values, e.title, e.pipeline_id,
         e.stage_id, e.version, e.created_at == e.updated_at)
        for e in entry.values()
    ]  # fmt: skip
    return ("returned", type(result).__name__, written, rows)


def _general(monkeypatch: pytest.MonkeyPatch, view: Crm, options: dict[str, Any]) -> tuple:
    with monkeypatch.context() as m:
        m.setattr(fast_writes, "add_field_value", lambda crm, options: None)
        return _outcome(view, options)


@pytest.mark.parametrize("options", CASES, ids=range(len(CASES)))
@pytest.mark.parametrize("binding", ["cus_1", None, "read_only"])
def test_fast_path_answers_what_the_general_path_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], binding: str | None
) -> None:
    crm = _crm(tmp_path / "crm.db")
    try:
        view = crm.bind("cus_1", read_only=binding == "read_only") if binding else crm
        crm.get_entity(DATA), crm.get_entity(STAGED), crm.get_entity(LINKED)  # cached: fast
        assert _outcome(view, options) == _general(monkeypatch, view, options)
        assert crm.failed_writes == []
    finally:
        crm.close()


def test_the_fast_path_takes_the_common_calls_and_leaves_the_rest(tmp_path: Path) -> None:
    """The shortcut is really taken for the benchmark's call (else the test above proves
    nothing about it) and declines what needs the general path."""
    crm = _crm(tmp_path / "crm.db")
    try:
        view = crm.bind("cus_1")
        common = {"slug": DATA, "fieldKey": "n", "value": 1, "async": True}
        assert fast_writes.add_field_value(view, common) is None  # definition not cached yet
        crm.get_entity(DATA), crm.get_entity(LINKED)
        taken = fast_writes.add_field_value(view, common)
        assert taken is not None and taken["pending"] is True
        assert fast_writes.add_field_value(view, {**common, "referenceId": "cus_2"}) is not None
        declined = [
            {**common, "fieldKey": "nope"},
            {**common, "field_key": "n"},
            {**common, "async": 1},
            {**common, "slug": LINKED, "fieldKey": "text"},  # reference fields: store check
        ]
        for options in declined:
            assert fast_writes.add_field_value(view, options) is None, options
        assert fast_writes.add_field_value(crm, common) is None  # no customer to default to
        assert fast_writes.add_field_value(crm.bind("cus_1", read_only=True), common) is None
        assert fast_writes.add_field_value(crm.bind(lambda create: "cus_9"), common) is None
        view.flush()
    finally:
        crm.close()


def test_two_customers_see_only_their_own_fast_writes(tmp_path: Path) -> None:
    crm = _crm(tmp_path / "crm.db")
    try:
        crm.get_entity(DATA)
        a, b = crm.bind("cus_a"), crm.bind("cus_b")
        for i in range(50):
            a.add_field_value({"slug": DATA, "fieldKey": "n", "value": i, "async": True})
            b.add_field_value({"slug": DATA, "fieldKey": "n", "value": 100 + i, "async": True})
        a.flush()
        assert a.get_field_values(slug=DATA, fieldKey="n", limit=200) == [
            float(i) for i in reversed(range(50))
        ]
        assert b.get_field_values(slug=DATA, fieldKey="n", limit=200) == [
            float(100 + i) for i in reversed(range(50))
        ]
    finally:
        crm.close()


def test_the_default_stage_follows_an_edited_pipeline(tmp_path: Path) -> None:
    """The cached default placement is keyed by the entity definition: a new first stage is
    where the next fast write lands."""
    crm = _crm(tmp_path / "crm.db")
    try:
        view = crm.bind("cus_1")
        options = {"slug": STAGED, "fieldKey": "amount", "value": 1}
        crm.get_entity(STAGED)
        first = view.add_field_value(dict(options))["id"]
        # An admin edit (as `entity_admin` makes it): a new first stage, a new version.
        old = crm.get_entity(STAGED)
        sales = old.pipelines[0]
        lead = Stage(id="stg_lead", slug="lead", name="Lead", position=0)
        edited = replace(old, pipelines=(replace(sales, stages=(lead, *sales.stages)),))
        crm.store.update_entity(edited, old.version)
        crm.forget_entity(STAGED)
        entity = crm.get_entity(STAGED)
        second = view.add_field_value(dict(options))["id"]
        entries = crm.store.get_entries_by_ids([first, second])
        stages = {s.id: s.slug for p in entity.pipelines for s in p.stages}
        assert stages[entries[second].stage_id] == "lead"
        assert entries[first].stage_id != entries[second].stage_id
    finally:
        crm.close()


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.lists(st.integers())
)


@given(st.dictionaries(st.text(), _scalars, max_size=3))
def test_encoding_one_value_equals_the_encoder(values: dict[str, Any]) -> None:
    assert sqlite_module._encode_values(values) == sqlite_module._encode(values)


def test_a_subclass_overriding_a_step_takes_the_general_path(tmp_path: Path) -> None:
    class Clocked(Crm):
        def _now(self) -> str:
            return "2001-02-03T04:05:06.000000Z"

    crm = Clocked(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    try:
        crm.ensure_entity(slug=DATA, entityMode="data", fields=[{"key": "n", "type": "number"}])
        crm.get_entity(DATA)
        options = {"slug": DATA, "fieldKey": "n", "value": 1, "referenceId": "c1", "async": True}
        made = crm.add_field_value(options)
        crm.flush()
        entry = crm.store.get_entries_by_ids([made["id"]])[made["id"]]
        assert entry.created_at == entry.updated_at == "2001-02-03T04:05:06.000000Z"
    finally:
        crm.close()
