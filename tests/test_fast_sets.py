"""SetCrmField/SetCrmFields' fast path for forced writes (`crm_templates.fast_writes.set_field`
and ``set_fields``, issue 14 B2) answers exactly what the general path does: the same result,
the same stored entries, the same error and message for bad input, the same events when a
receiver is connected (it then steps aside), previews refused, and no customer sees another's
values.

The general path's answer is taken by switching the shortcut off for the same call on an
identical second database (``fast_writes.set_field`` answering None means "not mine").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crm_templates import Crm, events, fast_writes, open_store
from crm_templates.ids import new_id
from crm_templates.model import Entry
from crm_templates.storage.base import Store

DATA = "tracker"
STAGED = "deals"
LINKED = "notes"

# One call per row: (method, options passed as a mapping or as keywords, options).
SET_CASES: list[dict[str, Any]] = [
    {"slug": DATA, "fieldKey": "n", "value": 3, "force": True},
    {"slug": DATA, "fieldKey": "n", "value": 2.5, "force": True, "async": False},
    {"slug": DATA, "fieldKey": "n", "value": "7", "force": True},
    {"slug": DATA, "fieldKey": "n", "value": None, "force": True},
    {"slug": DATA, "fieldKey": "n", "value": -0.0, "force": True},
    {"slug": DATA, "fieldKey": "n", "value": "abc", "force": True},
    {"slug": DATA, "fieldKey": "n", "value": float("nan"), "force": True},
    {"slug": DATA, "fieldKey": "n", "value": True, "force": True},
    {"slug": DATA, "fieldKey": "n", "value": [1], "force": True},
    {"slug": DATA, "fieldKey": "s", "value": 'héllo \u2028 "q"', "force": True},
    {"slug": DATA, "fieldKey": "s", "value": 5, "force": True},
    {"slug": DATA, "fieldKey": "s", "value": "x" * 200_000, "force": True},
    {"slug": DATA, "fieldKey": "s", "value": "\ud800", "force": True},
    {"slug": DATA, "fieldKey": "nope", "value": 1, "force": True},
    {"slug": "missing", "fieldKey": "n", "value": 1, "force": True},
    {"slug": 5, "fieldKey": "n", "value": 1, "force": True},
    {"slug": DATA, "fieldKey": ["n"], "value": 1, "force": True},
    {"slug": DATA, "fieldKey": "n", "force": True},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "extra": 1},
    {"slug": DATA, "field_key": "n", "value": 1, "force": True},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": "yes"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": 1},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": False},
    {"slug": DATA, "fieldKey": "n", "value": 1},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "async": True},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "async": 0},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceType": "order"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceType": "order",
     "referenceId": "o-1"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceType": "order",
     "referenceId": "o-new"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceType": "b a d",
     "referenceId": "o"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceType": 5,
     "referenceId": "o"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceId": ""},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceId": "a{b}"},
    {"slug": DATA, "fieldKey": "n", "value": "abc", "force": True, "referenceId": "a{b}"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceId": 5},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceId": None},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceId": "cus_2"},
    {"slug": DATA, "fieldKey": "n", "value": 1, "force": True, "referenceId": "cus_new"},
    {"slug": STAGED, "fieldKey": "amount", "value": 10, "force": True},
    {"slug": LINKED, "fieldKey": "deal", "value": "not-an-entry", "force": True},
    {"slug": LINKED, "fieldKey": "text", "value": "t", "force": True},
]  # fmt: skip

SETS_CASES: list[dict[str, Any]] = [
    {"slug": DATA, "fields": {"n": 1, "s": "a"}, "force": True},
    {"slug": DATA, "fields": {"n": None}, "force": True},
    {"slug": DATA, "fields": [{"fieldKey": "n", "value": 2}, {"fieldKey": "s", "value": "b"}],
     "force": True},
    {"slug": DATA, "fields": [{"fieldKey": "n", "value": 2}, {"fieldKey": "n", "value": 3}],
     "force": True},
    {"slug": DATA, "fields": [{"field_key": "n", "value": 2}], "force": True},
    {"slug": DATA, "fields": [{"fieldKey": ["n"], "value": 2}], "force": True},
    {"slug": DATA, "fields": [{"fieldKey": 5, "value": 2}], "force": True},
    {"slug": DATA, "fields": [{"fieldKey": "n"}], "force": True},
    {"slug": DATA, "fields": [{"fieldKey": "n", "value": 1, "x": 2}], "force": True},
    {"slug": DATA, "fields": [["n", 1]], "force": True},
    {"slug": DATA, "fields": ({"fieldKey": "n", "value": 2},), "force": True},
    {"slug": DATA, "fields": {}, "force": True},
    {"slug": DATA, "fields": [], "force": True},
    {"slug": DATA, "fields": "n", "force": True},
    {"slug": DATA, "fields": {"n": "abc", "nope": 1}, "force": True},
    {"slug": DATA, "fields": {"nope": 1, "n": "abc"}, "force": True},
    {"slug": DATA, "fields": {"n": 1, "s": 5}, "force": True},
    {"slug": DATA, "fields": {5: 1}, "force": True},
    {"slug": DATA, "fields": {"n": 1}, "force": True, "async": True},
    {"slug": DATA, "fields": {"n": 1}, "force": "yes"},
    {"slug": DATA, "fields": {"n": 1}},
    {"slug": DATA, "fields": {"n": 1}, "force": True, "referenceId": "cus_2"},
    {"slug": DATA, "fields": {"n": 1}, "force": True, "referenceId": "cus_new"},
    {"slug": DATA, "fields": {"n": 1}, "force": True, "referenceType": "b a d",
     "referenceId": "o"},
    {"slug": DATA, "fields": {"n": 1}, "force": True, "referenceId": "a{b}"},
    {"slug": DATA, "fields": {"n": 1}, "force": True, "referenceId": ""},
    {"slug": "missing", "fields": {"n": 1}, "force": True},
    {"slug": LINKED, "fields": {"text": "t"}, "force": True},
    {"slug": STAGED, "fields": {"amount": 4}, "force": True},
]  # fmt: skip

BINDINGS = ["cus_1", "trusted", "read_only", "provider"]


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
    # Something to merge into for most references the cases name (not cus_new, not o-new).
    for ref_type, ref_id in (("customer", "cus_1"), ("customer", "cus_2"), ("order", "o-1")):
        for slug, values in ((DATA, {"n": 0, "s": "old"}), (STAGED, {"amount": 1}),
                             (LINKED, {"text": "old"})):  # fmt: skip
            crm.create_entry(slug=slug, values=values, referenceType=ref_type, referenceId=ref_id)
    # Entries under references the service refuses, put there behind its back: a forced write
    # naming one must still raise the reference error rather than merge into them.
    for ref_type, ref_id in (("customer", "a{b}"), ("b a d", "o"), ("customer", "")):
        crm.store.insert_entries([Entry(new_id(), DATA, ref_type, ref_id, {"n": 0.0})])
    for slug in (DATA, STAGED, LINKED):
        crm.get_entity(slug)  # cached, so the shortcut may take the call
    return crm


def _view(crm: Crm, binding: str) -> Crm:
    if binding == "trusted":
        return crm
    if binding == "provider":
        return crm.bind(lambda create: "cus_1")
    return crm.bind("cus_1", read_only=binding == "read_only")


def _state(crm: Crm) -> list[tuple[Any, ...]]:
    """Every entry, oldest first, without ids and times (they differ between databases)."""
    rows = []
    for entry in crm.store.iter_entries():
        rows.append((entry.entity, entry.reference_type, entry.reference_id, entry.values,
                     entry.title, entry.pipeline_id is not None, entry.stage_id is not None,
                     entry.version, entry.created_at == entry.updated_at))  # fmt: skip
    return rows


def _outcome(crm: Crm, view: Crm, call: Callable[[], Any]) -> tuple[Any, ...]:
    """What one call did: its result (the id as the entry's position, oldest first) and every
    stored entry, or its error."""
    order = [e.id for e in crm.store.iter_entries()]
    try:
        result = call()
    except Exception as exc:  # the error is part of the answer compared
        return ("raised", type(exc).__name__, str(exc), _state(crm))
    written = dict(result)
    if "id" in written:
        ident = written.pop("id")
        written["at"] = order.index(ident) if ident in order else "new"
    return ("returned", type(result).__name__, written, _state(crm))


def _both(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    binding: str,
    call: Callable[[Crm], Any],
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The outcome with the shortcut, then without it, each on a fresh identical database."""
    outcomes = []
    for name, shortcut in (("fast", True), ("general", False)):
        crm = _crm(tmp_path / f"{name}.db")
        try:
            with monkeypatch.context() as m:
                if not shortcut:
                    m.setattr(fast_writes, method, lambda crm, options, kwargs: None)
                view = _view(crm, binding)
                outcomes.append(_outcome(crm, view, functools.partial(call, view)))
            crm.flush()
            assert crm.failed_writes == []
        finally:
            crm.close()
    return outcomes[0], outcomes[1]


@pytest.mark.parametrize("options", SET_CASES, ids=range(len(SET_CASES)))
@pytest.mark.parametrize("binding", BINDINGS)
@pytest.mark.parametrize("as_keywords", [False, True], ids=["mapping", "keywords"])
def test_set_field_fast_path_answers_what_the_general_path_answers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    binding: str,
    as_keywords: bool,
) -> None:
    if as_keywords and any(type(k) is not str for k in options):
        pytest.fail("keyword cases need string option names")

    def call(view: Crm) -> Any:
        return view.set_field(**options) if as_keywords else view.set_field(dict(options))

    fast, general = _both(tmp_path, monkeypatch, "set_field", binding, call)
    assert fast == general


@pytest.mark.parametrize("options", SETS_CASES, ids=range(len(SETS_CASES)))
@pytest.mark.parametrize("binding", BINDINGS)
def test_set_fields_fast_path_answers_what_the_general_path_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], binding: str
) -> None:
    fast, general = _both(
        tmp_path, monkeypatch, "set_fields", binding, lambda view: view.set_fields(dict(options))
    )
    assert fast == general


def test_mapping_and_keywords_together_take_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keywords win over the mapping (parse_options' rule): the shortcut leaves such a call to
    the general path, which folds them."""
    crm = _crm(tmp_path / "crm.db")
    try:
        view = crm.bind("cus_1")
        both = ({"slug": DATA, "fieldKey": "n", "value": 1, "force": True}, {"value": 9})
        assert fast_writes.set_field(view, both[0], both[1]) is None
        result = view.set_field(both[0], **both[1])
        assert crm.get_entries_by_ids([result["id"]])[result["id"]].values["n"] == 9.0
        empty_mapping = fast_writes.set_field(
            view, {}, {"slug": DATA, "fieldKey": "n", "value": 1, "force": True}
        )
        assert empty_mapping is None
    finally:
        crm.close()


def test_the_fast_path_takes_the_common_calls_and_leaves_the_rest(tmp_path: Path) -> None:
    """The shortcut is really taken for the benchmark's calls (else the tests above prove
    nothing about it), writes what it answers, and declines what needs the general path."""
    crm = _crm(tmp_path / "crm.db")
    try:
        view = crm.bind("cus_1")
        newest = crm.store.find_entries(DATA, "customer", "cus_1", limit=1)[0]
        common = {"slug": DATA, "fieldKey": "n", "value": 5, "force": True}
        assert fast_writes.set_field(view, None, common) == newest.id
        assert fast_writes.set_field(view, common, {}) == newest.id
        many = {"slug": DATA, "fields": {"n": 6, "s": "z"}, "force": True}
        assert fast_writes.set_fields(view, many, {}) == newest.id
        listed = {**many, "fields": [{"fieldKey": "n", "value": 7}]}
        assert fast_writes.set_fields(view, None, listed) == newest.id
        stored = crm.store.get_entry(newest.id)
        assert stored is not None and stored.values == {"n": 7.0, "s": "z"}
        assert stored.version == newest.version + 4
        assert fast_writes.set_field(view, None, {**common, "referenceId": "cus_2"}) is not None
        declined = [
            {**common, "fieldKey": "nope"},
            {**common, "fieldKey": 5},
            {**common, "slug": 5},
            {**common, "field_key": "n"},
            {**common, "force": 1},
            {**common, "force": False},
            {**common, "async": True},
            {**common, "async": 0},
            {**common, "referenceId": "cus_new"},  # no entry yet: the general path creates it
            {**common, "referenceType": "order"},  # no default reference for an order
            {**common, "referenceType": 5, "referenceId": "o-1"},
            {**common, "referenceId": 5},
            {**common, "slug": LINKED, "fieldKey": "text"},  # reference fields: store check
        ]
        for options in declined:
            assert fast_writes.set_field(view, None, options) is None, options
        for fields in ({}, {"nope": 1}, {5: 1}, [{"fieldKey": "n"}], [["n", 1]], "n", (),
                       [{"fieldKey": ["n"], "value": 1}]):  # fmt: skip
            assert fast_writes.set_fields(view, None, {**many, "fields": fields}) is None, fields
        assert fast_writes.set_fields(view, None, {**many, "slug": LINKED}) is None
        assert fast_writes.set_field(crm, None, common) is None  # no customer to default to
        assert fast_writes.set_field(crm.bind("cus_1", read_only=True), None, common) is None
        assert fast_writes.set_field(crm.bind(lambda create: "cus_1"), None, common) is None
        assert crm.store.get_entry(newest.id) == stored  # declining wrote nothing
    finally:
        crm.close()


def test_a_stale_or_uncached_definition_takes_the_general_path(tmp_path: Path) -> None:
    crm = _crm(tmp_path / "crm.db")
    try:
        view = crm.bind("cus_1")
        common = {"slug": DATA, "fieldKey": "n", "value": 5, "force": True}
        crm.forget_entity(DATA)
        assert fast_writes.set_field(view, None, common) is None
        crm.get_entity(DATA)
        assert fast_writes.set_field(view, None, common) is not None
        crm._shared.cache_seconds = 0.0  # every cached definition is too old now
        assert fast_writes.set_field(view, None, common) is None
    finally:
        crm.close()


def test_a_store_that_may_conflict_takes_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shortcut runs the merge once, outside `retry_conflicts`: only for a store that says
    its merge never conflicts (the search backend's default merge compare-and-sets)."""
    assert Store.merges_without_conflicts is False
    crm = _crm(tmp_path / "crm.db")
    try:
        view = crm.bind("cus_1")
        assert crm.store.merges_without_conflicts is True
        assert view.store.merges_without_conflicts is True
        assert crm.bind("cus_1", read_only=True).store.merges_without_conflicts is False
        common = {"slug": DATA, "fieldKey": "n", "value": 5, "force": True}
        monkeypatch.setattr(type(crm.store), "merges_without_conflicts", False)
        assert fast_writes.set_field(view, None, common) is None
        result = view.set_field(common)  # the general path still merges
        assert result["created"] is False
    finally:
        crm.close()


def test_a_subclass_overriding_a_step_takes_the_general_path(tmp_path: Path) -> None:
    class Clocked(Crm):
        def _now(self) -> str:
            return "2001-02-03T04:05:06.000000Z"

    crm = Clocked(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    try:
        crm.ensure_entity(slug=DATA, entityMode="data", fields=[{"key": "n", "type": "number"}])
        options = {"slug": DATA, "fieldKey": "n", "value": 1, "referenceId": "c1", "force": True}
        crm.set_field(options)  # creates the first entry
        made = crm.set_field(options)  # merges: the subclass's clock, not utc_now
        entry = crm.store.get_entry(made["id"])
        assert entry is not None and entry.updated_at == "2001-02-03T04:05:06.000000Z"
        merged = crm.set_fields(slug=DATA, fields={"n": 2}, referenceId="c1", force=True)
        assert made["id"] == merged["id"]
        entry = crm.store.get_entry(made["id"])
        assert entry is not None and entry.updated_at == "2001-02-03T04:05:06.000000Z"
        assert entry.version == 3
    finally:
        crm.close()


def test_with_a_receiver_connected_the_events_are_the_general_paths(tmp_path: Path) -> None:
    """Somebody wants the store's events: the shortcut steps aside, so every forced write still
    sends ``entry.updated`` with its changes and actor (and the first one ``entry.created``)."""
    crm = _crm(tmp_path / "crm.db")
    seen: list[events.EntryEvent] = []

    def receiver(sender: Any, event: events.EntryEvent) -> None:
        seen.append(event)

    events.entry_updated.connect(receiver, sender=crm.store, weak=False)
    events.entry_created.connect(receiver, sender=crm.store, weak=False)
    try:
        view = crm.bind("cus_1")
        common = {"slug": DATA, "fieldKey": "n", "value": 5, "force": True}
        assert fast_writes.set_field(view, None, common) is None
        assert fast_writes.set_fields(view, None, {"slug": DATA, "fields": {"n": 1},
                                                   "force": True}) is None  # fmt: skip
        first = view.set_field(common)
        view.set_fields(slug=DATA, fields={"n": 6, "s": "x"}, force=True)
        crm.bind("cus_new").set_field(common)
        assert [(e.name, e.entry_id == first["id"], e.reference_id, dict(e.changes),
                 str(e.actor)) for e in seen] == [
            ("entry.updated", True, "cus_1", {"n": 5.0}, "customer cus_1"),
            ("entry.updated", True, "cus_1", {"n": 6.0, "s": "x"}, "customer cus_1"),
            ("entry.created", False, "cus_new", {"n": 5.0}, "customer cus_new"),
        ]  # fmt: skip
    finally:
        events.entry_updated.disconnect(receiver, sender=crm.store)
        events.entry_created.disconnect(receiver, sender=crm.store)
        crm.close()
    assert fast_writes.set_field is not None


def test_two_customers_see_only_their_own_forced_writes(tmp_path: Path) -> None:
    crm = _crm(tmp_path / "crm.db")
    try:
        a, b = crm.bind("cus_a"), crm.bind("cus_b")
        a.set_field(slug=DATA, fieldKey="n", value=-1, force=True)  # first entries: general
        b.set_field(slug=DATA, fieldKey="n", value=-1, force=True)
        common = {"slug": DATA, "fieldKey": "n", "force": True}
        assert fast_writes.set_field(a, None, {**common, "value": 0}) is not None  # taken
        for i in range(20):
            a.set_field(slug=DATA, fieldKey="n", value=i, force=True)
            b.set_fields(slug=DATA, fields={"n": 100 + i, "s": f"b{i}"}, force=True)
        assert a.get_fields(slug=DATA, fieldKeys=["n", "s"]) == {"n": 19.0, "s": None}
        assert b.get_fields(slug=DATA, fieldKeys=["n", "s"]) == {"n": 119.0, "s": "b19"}
        assert [e.values for e in a.get_entries(slug=DATA)] == [{"n": 19.0}]
        assert [e.values for e in b.get_entries(slug=DATA)] == [{"n": 119.0, "s": "b19"}]
        assert crm.bind("cus_1").get_field(slug=DATA, fieldKey="n") == 0.0  # untouched
    finally:
        crm.close()


# --- service lines CI's sampled mutation run drew (tools/mutation.py selects this file) ------


def test_add_field_value_with_mapping_and_keywords_takes_the_keywords(tmp_path: Path) -> None:
    """Keywords win over the mapping: the AddCrmFieldValue shortcut, which reads only the
    mapping, must leave such a call to the general path."""
    crm = _crm(tmp_path / "crm.db")
    try:
        view = crm.bind("cus_1")
        made = view.add_field_value({"slug": DATA, "fieldKey": "n", "value": 1}, value=9)
        entry = crm.store.get_entry(made["id"])
        assert entry is not None and entry.values == {"n": 9.0}
    finally:
        crm.close()


def test_moving_to_another_entity_and_removing_reports_each_deleted_source(
    tmp_path: Path,
) -> None:
    crm = _crm(tmp_path / "crm.db")
    deleted: list[events.EntryEvent] = []

    def receiver(sender: Any, event: events.EntryEvent) -> None:
        deleted.append(event)

    events.entry_deleted.connect(receiver, sender=crm.store, weak=False)
    try:
        view = crm.bind("cus_1")
        sources = [e.id for e in crm.store.find_entries(DATA, "customer", "cus_1", limit=None)]
        moved = view.move_to_entity(
            fromSlug=DATA, toSlug=LINKED, fieldMap={"s": "text"}, removeFromOld=True,
            allEntries=True,
        )  # fmt: skip
        assert moved["ok"] and moved["removed_from_old"] is True
        assert sorted(e.entry_id for e in deleted) == sorted(sources)
        assert {(e.name, e.reference_id) for e in deleted} == {("entry.deleted", "cus_1")}
    finally:
        events.entry_deleted.disconnect(receiver, sender=crm.store)
        crm.close()
