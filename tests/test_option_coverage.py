"""Every option of every function changes the outcome (issue 10, item 2).

`crm_templates.functions.FUNCTIONS` lists each function's options; this file has one case per
(function, option) — `test_every_option_has_a_case` fails when an option is added without
one — and each case shows the option doing its job: the call with the option (or with one
value of it) and the call without it (or with another value) end differently, and each ends
exactly as documented. Options that are accepted and ignored (``async`` on reads and on
EnsureCrmEntity, ``referenceType``/``referenceId`` on EnsureCrmEntity) show the one thing
they still do: a bad value is refused, and a good one gives the same answer as none.

Each case runs on every backend with the canonical option name, and once more (on SQLite)
with each alias of the option (``field_key``, ``crmEntitySlug``, ``crm_async`` …), so an alias
folded onto the wrong option fails too.

An earlier suite never called SetCrmFields with ``force``: a SetCrmFields that ignored it
passed everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from crm_templates import (
    FUNCTIONS,
    Crm,
    CrmValidationError,
    MissingOptionError,
    UnknownEntityError,
    open_store,
)
from crm_templates.functions import ALIASES
from crm_templates.model import Entry
from tests.crm_world import World, build_world, snapshot

ME = "cus_1"
OTHER = "cus_2"


@dataclass
class T:
    """One case's world: the trusted service, a view bound to ``ME``, and how the option under
    test is spelt in calls."""

    crm: Crm
    world: World
    option: str
    spelling: str
    view: Crm = field(init=False)

    def __post_init__(self) -> None:
        self.view = self.crm.bind(ME)

    def call(self, name: str, options: dict[str, Any], via: Crm | None = None) -> Any:
        """``via.call(name, options)`` (default: the view) with the option under test respelt."""
        options = dict(options)
        if self.option in options and self.spelling != self.option:
            options[self.spelling] = options.pop(self.option)
        return (via or self.view).call(name, options)

    # --- reading the store ---------------------------------------------------------------

    def entries(self, slug: str, ref: tuple[str, str] = ("customer", ME)) -> list[Entry]:
        """The reference's entries of ``slug``, newest first."""
        return self.crm.store.find_entries(slug, *ref, limit=None)

    def values(self, slug: str, ref: tuple[str, str] = ("customer", ME)) -> list[dict[str, Any]]:
        """The values of the reference's entries of ``slug``, newest first."""
        return [dict(e.values) for e in self.entries(slug, ref)]

    def entry(self, ident: str) -> Entry:
        found = self.crm.store.get_entry(ident)
        assert found is not None
        return found

    def place(self, entry: Entry) -> str:
        """``'deals/renewals/won'`` for an entry's pipeline and stage ('' when it has none)."""
        for path, stage_id in self.world.stages.items():
            if (
                stage_id == entry.stage_id
                and self.world.pipelines[path.rsplit("/", 1)[0]] == entry.pipeline_id
            ):
                return path
        assert entry.stage_id is None and entry.pipeline_id is None
        return ""

    def stage_id(self, path: str) -> str:
        return self.world.stages[path]

    def pipeline_id(self, path: str) -> str:
        return self.world.pipelines[path]

    # --- making entries ------------------------------------------------------------------

    def make(self, slug: str, values: dict[str, Any], ref: tuple[str, str] = ("customer", ME),
             title: str = "") -> str:  # fmt: skip
        """A new entry (newer than every entry made before it); its id."""
        result = self.crm.create_entry(
            slug=slug, values=values, title=title, referenceType=ref[0], referenceId=ref[1]
        )
        return str(result["id"])


Case = Callable[[T], None]
CASES: dict[tuple[str, str], Case] = {}


def case(function: str, *options: str) -> Callable[[Case], Case]:
    """Register ``fn`` as the case of each (function, option)."""

    def register(fn: Case) -> Case:
        for option in options:
            assert (function, option) not in CASES, (function, option)
            assert option in FUNCTIONS[function].options, (function, option)
            CASES[(function, option)] = fn
        return fn

    return register


# === references and async, shared by the functions that take them ======================
#
# Reads: three references hold a deal whose note names the reference.

READS: dict[str, tuple[dict[str, Any], Callable[[Any], Any]]] = {
    # function: (options, the note(s) its answer shows)
    "GetCrmEntries": ({"slug": "deals"}, lambda r: [e.values["note"] for e in r]),
    "GetCrmField": ({"slug": "deals", "fieldKey": "note"}, lambda r: r),
    "GetCrmFields": ({"slug": "deals", "fieldKeys": ["note"]}, lambda r: r["note"]),
    "GetCrmFieldValues": ({"slug": "deals", "fieldKey": "note"}, lambda r: r),
}
REFS = {"me": ("customer", ME), "other": ("customer", OTHER), "account": ("account", OTHER)}


def read_world(t: T) -> None:
    for label, ref in REFS.items():
        t.make("deals", {"note": label}, ref)


def read_answer(t: T, function: str, extra: dict[str, Any]) -> Any:
    options, shown = READS[function]
    result = shown(t.call(function, {**options, **extra}))
    return result[0] if isinstance(result, list) and len(result) == 1 else result


def read_reference_id(t: T, function: str) -> None:
    read_world(t)
    assert read_answer(t, function, {"referenceId": OTHER}) == "other"
    assert read_answer(t, function, {}) == "me"


def read_reference_type(t: T, function: str) -> None:
    read_world(t)
    assert read_answer(t, function, {"referenceType": "account", "referenceId": OTHER}) == "account"
    assert read_answer(t, function, {"referenceId": OTHER}) == "other"
    with pytest.raises(MissingOptionError):  # only 'customer' defaults to the current customer
        read_answer(t, function, {"referenceType": "account"})


def read_async(t: T, function: str) -> None:
    read_world(t)
    # Reads are synchronous (the seed): async is accepted, must be a boolean, and ignored.
    assert read_answer(t, function, {"async": True}) == "me"
    assert read_answer(t, function, {"async": False}) == "me"
    with pytest.raises(CrmValidationError, match="async must be true or false"):
        read_answer(t, function, {"async": "yes"})


for _fn in READS:
    case(_fn, "referenceId")(lambda t, fn=_fn: read_reference_id(t, fn))
    case(_fn, "referenceType")(lambda t, fn=_fn: read_reference_type(t, fn))
    case(_fn, "async")(lambda t, fn=_fn: read_async(t, fn))

# Writes: each reference holds the same entries; a write changes only its reference's.


def write_world(t: T) -> None:
    c1, _ = t.world.companies
    for ref in REFS.values():
        t.make("deals", {"note": "old", "partners": [c1], "company": c1}, ref)
        t.make("deals", {"amount": 2}, ref)
        t.make("leads", {"note": "Ann", "amount": 5}, ref)


WRITES: dict[str, Callable[[World], dict[str, Any]]] = {
    "CreateCrmEntry": lambda w: {"slug": "deals", "title": "T"},
    "SetCrmField": lambda w: {"slug": "deals", "fieldKey": "note", "value": "new"},
    "SetCrmFields": lambda w: {"slug": "deals", "fields": {"note": "new"}},
    "AddCrmFieldValue": lambda w: {"slug": "deals", "fieldKey": "note", "value": "new"},
    "ClearCrmEntries": lambda w: {"slug": "deals"},
    "SetCrmRelation": lambda w: {
        "slug": "deals", "relationKey": "partners", "targetEntryId": w.companies[1]},
    "RemoveCrmRelation": lambda w: {
        "slug": "deals", "relationKey": "partners", "targetEntryId": w.companies[0]},
    "MoveCrmLead": lambda w: {"slug": "deals", "pipelineSlug": "renewals"},
    "MoveCrmToStage": lambda w: {"slug": "deals", "stageSlug": "renewal"},
    "MoveCrmToPipeline": lambda w: {"slug": "deals", "pipelineSlug": "renewals"},
    "MoveCrmToEntity": lambda w: {"fromSlug": "leads", "toSlug": "archive",
                                  "fieldMap": {"note": "note"}},
}  # fmt: skip


def touched(t: T, function: str, extra: dict[str, Any]) -> tuple[Any, set[tuple[str, str]]]:
    """(result, the references whose entries the write created, deleted or changed)."""
    before = snapshot(t.crm)["entries"]
    result = t.call(function, {**WRITES[function](t.world), **extra})
    t.crm.flush()
    after = snapshot(t.crm)["entries"]
    refs = {row["reference"] for i, row in after.items() if before.get(i) != row}
    refs |= {row["reference"] for i, row in before.items() if i not in after}
    return result, refs


def write_reference_id(t: T, function: str) -> None:
    write_world(t)
    assert touched(t, function, {"referenceId": OTHER})[1] == {REFS["other"]}
    assert touched(t, function, {})[1] == {REFS["me"]}


def write_reference_type(t: T, function: str) -> None:
    write_world(t)
    got = touched(t, function, {"referenceType": "account", "referenceId": OTHER})
    assert got[1] == {REFS["account"]}
    assert touched(t, function, {"referenceId": OTHER})[1] == {REFS["other"]}


def write_async(t: T, function: str) -> None:
    write_world(t)
    result, refs = touched(t, function, {"async": True})
    assert result["ok"] is True and result["pending"] is True  # queued, applied by the flush
    assert refs == {REFS["me"]}
    assert t.crm.failed_writes == []
    result, refs = touched(t, function, {"referenceId": OTHER})
    assert "pending" not in result and refs == {REFS["other"]}
    with pytest.raises(CrmValidationError, match="async must be true or false"):
        touched(t, function, {"async": "yes"})


for _fn in WRITES:
    case(_fn, "referenceId")(lambda t, fn=_fn: write_reference_id(t, fn))
    case(_fn, "referenceType")(lambda t, fn=_fn: write_reference_type(t, fn))
    case(_fn, "async")(lambda t, fn=_fn: write_async(t, fn))


# === EnsureCrmEntity ===================================================================


def ensure_pair(t: T, extra: dict[str, Any], base: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """The entity made with ``extra`` and the one made without it."""
    t.call("EnsureCrmEntity", {"slug": "with", **(base or {}), **extra})
    t.call("EnsureCrmEntity", {"slug": "without", **(base or {})})
    return t.crm.get_entity("with"), t.crm.get_entity("without")


@case("EnsureCrmEntity", "slug")
def _(t: T) -> None:
    result = t.call("EnsureCrmEntity", {"slug": "made"})
    assert (result["slug"], result["created"]) == ("made", True)
    assert t.crm.get_entity("made").id == result["id"]
    with pytest.raises(UnknownEntityError):
        t.crm.get_entity("other")


@case("EnsureCrmEntity", "name")
def _(t: T) -> None:
    with_, without = ensure_pair(t, {"name": "Big deals"})
    assert (with_.name, with_.singular_name, with_.plural_name) == ("Big deals",) * 3
    assert (without.name, without.singular_name) == ("without", "without")


@case("EnsureCrmEntity", "singularName")
def _(t: T) -> None:
    with_, without = ensure_pair(t, {"singularName": "Deal"}, {"name": "Deals"})
    assert (with_.singular_name, without.singular_name) == ("Deal", "Deals")
    assert with_.plural_name == without.plural_name == "Deals"


@case("EnsureCrmEntity", "pluralName")
def _(t: T) -> None:
    with_, without = ensure_pair(t, {"pluralName": "Dealz"}, {"name": "Deals"})
    assert (with_.plural_name, without.plural_name) == ("Dealz", "Deals")
    assert with_.singular_name == without.singular_name == "Deals"


@case("EnsureCrmEntity", "icon")
def _(t: T) -> None:
    with_, without = ensure_pair(t, {"icon": "star"})
    assert (with_.icon, without.icon) == ("star", None)


@case("EnsureCrmEntity", "color")
def _(t: T) -> None:
    with_, without = ensure_pair(t, {"color": "#123456"})
    assert (with_.color, without.color) == ("#123456", None)


@case("EnsureCrmEntity", "entityMode")
def _(t: T) -> None:
    with_, without = ensure_pair(t, {"entityMode": "data"})
    assert (with_.mode, [p.slug for p in with_.pipelines]) == ("data", [])
    assert (without.mode, [p.slug for p in without.pipelines]) == ("crm", ["default"])


@case("EnsureCrmEntity", "fields")
def _(t: T) -> None:
    with_, without = ensure_pair(t, {"fields": [{"key": "k", "type": "number"}]})
    assert [(f.key, f.type) for f in with_.fields] == [("k", "number")]
    assert without.fields == ()


@case("EnsureCrmEntity", "pipelines")
def _(t: T) -> None:
    with_, without = ensure_pair(t, {"pipelines": [{"slug": "p", "stages": [{"slug": "s"}]}]})
    assert [p.slug for p in with_.pipelines] == ["p"]
    assert [p.slug for p in without.pipelines] == ["default"]


@case("EnsureCrmEntity", "preset")
def _(t: T) -> None:
    with_, without = ensure_pair(t, {"preset": "deals"})
    assert {"name", "value", "expected_close_date"} <= set(with_.field_keys)
    assert [p.slug for p in with_.pipelines] == ["sales"]
    assert (without.fields, [p.slug for p in without.pipelines]) == ((), ["default"])


def ensure_ignored(t: T, good: dict[str, Any], bad: dict[str, Any], message: str) -> None:
    """An option EnsureCrmEntity validates and then ignores."""
    with pytest.raises(CrmValidationError, match=message):
        t.call("EnsureCrmEntity", {"slug": "refused", **bad})
    assert "refused" not in [e.slug for e in t.crm.list_entities()]  # nothing was made
    with_, without = ensure_pair(t, good, {"fields": [{"key": "k"}]})
    assert (list(with_.field_keys), with_.mode) == (list(without.field_keys), without.mode)
    assert (list(with_.field_keys), with_.mode) == (["k"], "crm")


@case("EnsureCrmEntity", "referenceType")
def _(t: T) -> None:
    ensure_ignored(
        t, {"referenceType": "site", "referenceId": "x"}, {"referenceType": "no spaces"},
        "referenceType must match",
    )  # fmt: skip


@case("EnsureCrmEntity", "referenceId")
def _(t: T) -> None:
    ensure_ignored(t, {"referenceId": "cus_9"}, {"referenceId": "{bad}"}, "referenceId may not")


@case("EnsureCrmEntity", "async")
def _(t: T) -> None:
    # Ignored: the entity exists when the call returns, and the result is not "pending".
    result = t.call("EnsureCrmEntity", {"slug": "now", "async": True})
    assert result["created"] is True and "pending" not in result
    assert t.crm.get_entity("now").slug == "now"
    ensure_ignored(t, {"async": True}, {"async": "yes"}, "async must be true or false")


# === CreateCrmEntry ====================================================================


def create(t: T, extra: dict[str, Any]) -> Entry:
    result = t.call("CreateCrmEntry", {"slug": "deals", **extra})
    assert result["created"] is True
    return t.entry(result["id"])


@case("CreateCrmEntry", "slug")
def _(t: T) -> None:
    assert create(t, {"slug": "leads"}).entity == "leads"
    assert create(t, {}).entity == "deals"


@case("CreateCrmEntry", "title")
def _(t: T) -> None:
    assert (create(t, {"title": "Big"}).title, create(t, {}).title) == ("Big", "")


@case("CreateCrmEntry", "values")
def _(t: T) -> None:
    assert create(t, {"values": {"amount": "5"}}).values == {"amount": 5.0}
    assert create(t, {}).values == {}


@case("CreateCrmEntry", "pipelineId", "pipelineSlug", "pipeline")
def _(t: T) -> None:
    by_slug, by_id = "renewals", t.pipeline_id("deals/renewals")
    values = [by_id] if t.option == "pipelineId" else [by_slug] if t.option == "pipelineSlug" \
        else [by_slug, by_id]  # fmt: skip
    for value in values:  # lands on the pipeline's first stage
        assert t.place(create(t, {t.option: value})) == "deals/renewals/renewal"
    assert t.place(create(t, {})) == "deals/sales/proposal"


@case("CreateCrmEntry", "stageId", "stageSlug", "stage")
def _(t: T) -> None:
    by_slug, by_id = "renewal", t.stage_id("deals/renewals/renewal")
    values = [by_id] if t.option == "stageId" else [by_slug] if t.option == "stageSlug" \
        else [by_slug, by_id]  # fmt: skip
    for value in values:  # the pipeline follows the stage
        assert t.place(create(t, {t.option: value})) == "deals/renewals/renewal"
    assert t.place(create(t, {})) == "deals/sales/proposal"


# === reads =============================================================================


@case("GetCrmEntries", "slug")
def _(t: T) -> None:
    t.make("deals", {"note": "d"})
    t.make("leads", {"note": "l"})
    assert [e.entity for e in t.call("GetCrmEntries", {"slug": "leads"})] == ["leads"]
    assert [e.entity for e in t.call("GetCrmEntries", {"slug": "deals"})] == ["deals"]


@case("GetCrmEntries", "limit")
def _(t: T) -> None:
    ids = [t.make("deals", {"amount": n}) for n in range(3)]
    assert [e.id for e in t.call("GetCrmEntries", {"slug": "deals", "limit": 2})] == ids[:0:-1]
    assert [e.id for e in t.call("GetCrmEntries", {"slug": "deals"})] == ids[::-1]


@case("GetCrmField", "slug")
def _(t: T) -> None:
    t.make("deals", {"note": "d"})
    t.make("leads", {"note": "l"})
    assert t.call("GetCrmField", {"slug": "leads", "fieldKey": "note"}) == "l"
    assert t.call("GetCrmField", {"slug": "deals", "fieldKey": "note"}) == "d"


@case("GetCrmField", "fieldKey")
def _(t: T) -> None:
    t.make("deals", {"note": "d", "amount": 3})
    assert t.call("GetCrmField", {"slug": "deals", "fieldKey": "amount"}) == 3.0
    assert t.call("GetCrmField", {"slug": "deals", "fieldKey": "note"}) == "d"


@case("GetCrmFields", "slug")
def _(t: T) -> None:
    t.make("deals", {"note": "d"})
    t.make("leads", {"note": "l"})
    assert t.call("GetCrmFields", {"slug": "leads", "fieldKeys": ["note"]}) == {"note": "l"}
    assert t.call("GetCrmFields", {"slug": "deals", "fieldKeys": ["note"]}) == {"note": "d"}


@case("GetCrmFields", "fieldKeys")
def _(t: T) -> None:
    t.make("deals", {"note": "d", "amount": 3})
    got = t.call("GetCrmFields", {"slug": "deals", "fieldKeys": ["amount", "extra"]})
    assert got == {"amount": 3.0, "extra": None}
    assert t.call("GetCrmFields", {"slug": "deals", "fieldKeys": ["note"]}) == {"note": "d"}


@case("GetCrmFieldValues", "slug")
def _(t: T) -> None:
    t.make("deals", {"note": "d"})
    t.make("leads", {"note": "l"})
    assert t.call("GetCrmFieldValues", {"slug": "leads", "fieldKey": "note"}) == ["l"]
    assert t.call("GetCrmFieldValues", {"slug": "deals", "fieldKey": "note"}) == ["d"]


@case("GetCrmFieldValues", "fieldKey")
def _(t: T) -> None:
    t.make("deals", {"note": "a", "amount": 1})
    t.make("deals", {"note": "b"})
    assert t.call("GetCrmFieldValues", {"slug": "deals", "fieldKey": "amount"}) == [1.0]
    assert t.call("GetCrmFieldValues", {"slug": "deals", "fieldKey": "note"}) == ["b", "a"]


@case("GetCrmFieldValues", "limit")
def _(t: T) -> None:
    for n in range(3):
        t.make("deals", {"amount": n})
    options = {"slug": "deals", "fieldKey": "amount"}
    assert t.call("GetCrmFieldValues", {**options, "limit": 2}) == [2.0, 1.0]
    assert t.call("GetCrmFieldValues", options) == [2.0, 1.0, 0.0]


# === SetCrmField, SetCrmFields, AddCrmFieldValue =======================================


def older_holder(t: T, customer: str) -> tuple[str, str]:
    """An older deal holding ``note`` and a newer one without it: (older, newer)."""
    ref = ("customer", customer)
    return t.make("deals", {"note": "old"}, ref), t.make("deals", {"amount": 2}, ref)


@case("SetCrmField", "slug")
def _(t: T) -> None:
    t.call("SetCrmField", {"slug": "leads", "fieldKey": "note", "value": "l"})
    assert (t.values("leads"), t.values("deals")) == ([{"note": "l"}], [])
    t.call("SetCrmField", {"slug": "deals", "fieldKey": "note", "value": "d"})
    assert t.values("deals") == [{"note": "d"}]


@case("SetCrmField", "fieldKey")
def _(t: T) -> None:
    t.call("SetCrmField", {"slug": "deals", "fieldKey": "extra", "value": "v"})
    assert t.values("deals") == [{"extra": "v"}]
    t.call("SetCrmField", {"slug": "deals", "fieldKey": "note", "value": "v"})
    assert t.values("deals") == [{"extra": "v", "note": "v"}]


@case("SetCrmField", "value")
def _(t: T) -> None:
    t.call("SetCrmField", {"slug": "deals", "fieldKey": "amount", "value": "7"})
    assert t.values("deals") == [{"amount": 7.0}]
    t.call("SetCrmField", {"slug": "deals", "fieldKey": "amount", "value": 8})
    assert t.values("deals") == [{"amount": 8.0}]


def force_case(t: T, function: str, options: dict[str, Any]) -> None:
    """``force`` merges into the newest entry; without it, the entry holding the key is
    updated. The setup makes the two differ: an older entry holds the key, a newer one not."""
    older, newer = older_holder(t, ME)
    forced = t.call(function, {"slug": "deals", **options, "force": True})
    assert (forced["id"], forced["created"]) == (newer, False)
    assert t.entry(newer).values == {"amount": 2.0, "note": "forced"}
    assert t.entry(older).values == {"note": "old"}
    # The same call without force, for another customer with the same two entries.
    older, newer = older_holder(t, OTHER)
    plain = t.call(function, {"slug": "deals", **options, "force": False}, t.crm.bind(OTHER))
    assert (plain["id"], plain["created"]) == (older, False)
    assert t.entry(older).values == {"note": "forced"}
    assert t.entry(newer).values == {"amount": 2.0}
    assert len(t.entries("deals")) == len(t.entries("deals", ("customer", OTHER))) == 2


@case("SetCrmField", "force")
def _(t: T) -> None:
    force_case(t, "SetCrmField", {"fieldKey": "note", "value": "forced"})


@case("SetCrmFields", "force")
def _(t: T) -> None:
    force_case(t, "SetCrmFields", {"fields": [{"fieldKey": "note", "value": "forced"}]})


@case("SetCrmFields", "slug")
def _(t: T) -> None:
    t.call("SetCrmFields", {"slug": "leads", "fields": {"note": "l"}})
    assert (t.values("leads"), t.values("deals")) == ([{"note": "l"}], [])
    t.call("SetCrmFields", {"slug": "deals", "fields": {"note": "d"}})
    assert t.values("deals") == [{"note": "d"}]


@case("SetCrmFields", "fields")
def _(t: T) -> None:
    t.call(
        "SetCrmFields",
        {
            "slug": "deals",
            "fields": [{"fieldKey": "extra", "value": "x"}, {"field_key": "amount", "value": "4"}],
        },
    )
    assert t.values("deals") == [{"extra": "x", "amount": 4.0}]
    t.call("SetCrmFields", {"slug": "deals", "fields": {"note": "n"}})
    assert t.values("deals") == [{"extra": "x", "amount": 4.0, "note": "n"}]


@case("AddCrmFieldValue", "slug")
def _(t: T) -> None:
    t.call("AddCrmFieldValue", {"slug": "leads", "fieldKey": "note", "value": "l"})
    assert (t.values("leads"), t.values("deals")) == ([{"note": "l"}], [])
    t.call("AddCrmFieldValue", {"slug": "deals", "fieldKey": "note", "value": "d"})
    assert t.values("deals") == [{"note": "d"}]


@case("AddCrmFieldValue", "fieldKey")
def _(t: T) -> None:
    t.call("AddCrmFieldValue", {"slug": "deals", "fieldKey": "extra", "value": "e"})
    t.call("AddCrmFieldValue", {"slug": "deals", "fieldKey": "note", "value": "n"})
    assert t.values("deals") == [{"note": "n"}, {"extra": "e"}]


@case("AddCrmFieldValue", "value")
def _(t: T) -> None:
    t.call("AddCrmFieldValue", {"slug": "deals", "fieldKey": "amount", "value": "1.5"})
    t.call("AddCrmFieldValue", {"slug": "deals", "fieldKey": "amount", "value": 2})
    assert t.values("deals") == [{"amount": 2.0}, {"amount": 1.5}]


# === ClearCrmEntries ===================================================================


@case("ClearCrmEntries", "slug")
def _(t: T) -> None:
    t.make("deals", {"note": "d"})
    t.make("leads", {"note": "l"})
    assert t.call("ClearCrmEntries", {"slug": "leads"}) == {"ok": True, "deleted": 1}
    assert (t.values("leads"), t.values("deals")) == ([], [{"note": "d"}])
    assert t.call("ClearCrmEntries", {"slug": "deals"}) == {"ok": True, "deleted": 1}
    assert t.values("deals") == []


# === SetCrmRelation, RemoveCrmRelation =================================================


def linked(t: T) -> tuple[str, str]:
    """An older deal linked to c1 (company and partners) and a newer one without links."""
    c1, _ = t.world.companies
    return t.make("deals", {"company": c1, "partners": [c1]}), t.make("deals", {"amount": 2})


@case("SetCrmRelation", "slug")
def _(t: T) -> None:
    _, c2 = t.world.companies
    t.call("SetCrmRelation", {"slug": "leads", "relationKey": "partners", "targetEntryId": c2})
    assert (t.values("leads"), t.values("deals")) == ([{"partners": [c2]}], [])
    t.call("SetCrmRelation", {"slug": "deals", "relationKey": "partners", "targetEntryId": c2})
    assert t.values("deals") == [{"partners": [c2]}]


@case("SetCrmRelation", "relationKey")
def _(t: T) -> None:
    older, _ = linked(t)
    c1, c2 = t.world.companies
    t.call("SetCrmRelation", {"slug": "deals", "relationKey": "company", "targetEntryId": c2})
    assert t.entry(older).values == {"company": c2, "partners": [c1]}  # replaced
    t.call("SetCrmRelation", {"slug": "deals", "relationKey": "partners", "targetEntryId": c2})
    assert t.entry(older).values == {"company": c2, "partners": [c1, c2]}  # appended


@case("SetCrmRelation", "targetEntryId")
def _(t: T) -> None:
    older, _ = linked(t)
    c1, c2 = t.world.companies
    same = t.call("SetCrmRelation", {"slug": "deals", "relationKey": "partners",
                                     "targetEntryId": c1})  # fmt: skip
    assert (same["changed"], t.entry(older).values["partners"]) == (False, [c1])
    new = t.call("SetCrmRelation", {"slug": "deals", "relationKey": "partners",
                                    "targetEntryId": c2})  # fmt: skip
    assert (new["changed"], t.entry(older).values["partners"]) == (True, [c1, c2])


@case("SetCrmRelation", "entryId")
def _(t: T) -> None:
    older, newer = linked(t)
    c1, c2 = t.world.companies
    options = {"slug": "deals", "relationKey": "partners", "targetEntryId": c2}
    assert t.call("SetCrmRelation", options)["id"] == older  # the entry holding the key
    assert t.entry(older).values["partners"] == [c1, c2]
    assert t.call("SetCrmRelation", {**options, "entryId": newer})["id"] == newer
    assert t.entry(newer).values == {"amount": 2.0, "partners": [c2]}


@case("RemoveCrmRelation", "slug")
def _(t: T) -> None:
    c1, _ = t.world.companies
    t.make("deals", {"partners": [c1]})
    t.make("leads", {"partners": [c1]})
    t.call("RemoveCrmRelation", {"slug": "leads", "relationKey": "partners", "targetEntryId": c1})
    assert (t.values("leads"), t.values("deals")) == ([{"partners": []}], [{"partners": [c1]}])
    t.call("RemoveCrmRelation", {"slug": "deals", "relationKey": "partners", "targetEntryId": c1})
    assert t.values("deals") == [{"partners": []}]


@case("RemoveCrmRelation", "relationKey")
def _(t: T) -> None:
    older, _ = linked(t)
    c1, _ = t.world.companies
    t.call("RemoveCrmRelation", {"slug": "deals", "relationKey": "company", "targetEntryId": c1})
    assert t.entry(older).values == {"company": None, "partners": [c1]}
    t.call("RemoveCrmRelation", {"slug": "deals", "relationKey": "partners", "targetEntryId": c1})
    assert t.entry(older).values == {"company": None, "partners": []}


@case("RemoveCrmRelation", "targetEntryId")
def _(t: T) -> None:
    older, _ = linked(t)
    c1, c2 = t.world.companies
    options = {"slug": "deals", "relationKey": "partners"}
    assert t.call("RemoveCrmRelation", {**options, "targetEntryId": c2})["changed"] is False
    assert t.entry(older).values["partners"] == [c1]
    assert t.call("RemoveCrmRelation", {**options, "targetEntryId": c1})["changed"] is True
    assert t.entry(older).values["partners"] == []


@case("RemoveCrmRelation", "entryId")
def _(t: T) -> None:
    c1, _ = t.world.companies
    older = t.make("deals", {"partners": [c1]})
    newer = t.make("deals", {"partners": [c1]})
    options = {"slug": "deals", "relationKey": "partners", "targetEntryId": c1}
    assert t.call("RemoveCrmRelation", {**options, "entryId": older})["id"] == older
    assert (t.entry(older).values, t.entry(newer).values) == ({"partners": []}, {"partners": [c1]})
    assert t.call("RemoveCrmRelation", options)["id"] == newer  # the newest holding the key
    assert t.entry(newer).values == {"partners": []}


# === the moves =========================================================================

MOVES = ("MoveCrmLead", "MoveCrmToStage", "MoveCrmToPipeline")
# A move each function can make without the option under test.
MOVE_BASE = {
    "MoveCrmLead": {"pipelineSlug": "renewals"},
    "MoveCrmToStage": {"stageSlug": "renewal"},
    "MoveCrmToPipeline": {"pipelineSlug": "renewals"},
}


def two_deals(t: T) -> tuple[str, str]:
    return t.make("deals", {"amount": 1}), t.make("deals", {"amount": 2})


def move_slug(t: T, function: str) -> None:
    t.make("deals", {"amount": 1})
    lead = t.make("leads", {"amount": 1})
    options = {
        "MoveCrmLead": {"pipelineSlug": "funnel", "stageSlug": "qualified"},
        "MoveCrmToStage": {"stageSlug": "qualified"},
        "MoveCrmToPipeline": {"pipelineSlug": "funnel", "stageSlug": "qualified"},
    }
    assert t.call(function, {"slug": "leads", **options[function]})["moved"] == 1
    assert t.place(t.entry(lead)) == "leads/funnel/qualified"
    assert t.place(t.entries("deals")[0]) == "deals/sales/proposal"  # untouched
    with pytest.raises(CrmValidationError, match=r"no stage|no pipeline"):
        t.call(function, {"slug": "deals", **options[function]})


def move_all_entries(t: T, function: str) -> None:
    older, newer = two_deals(t)
    one = t.call(function, {"slug": "deals", **MOVE_BASE[function]})
    assert (one["moved"], one["totalMatched"]) == (1, 2)
    assert [t.place(t.entry(i)) for i in (older, newer)] == [
        "deals/sales/proposal", "deals/renewals/renewal"]  # fmt: skip
    both = t.call(function, {"slug": "deals", "stageSlug": "won", "pipelineSlug": "sales",
                             "allEntries": True})  # fmt: skip
    assert (both["moved"], both["totalMatched"]) == (2, 2)
    assert {t.place(t.entry(i)) for i in (older, newer)} == {"deals/sales/won"}


def pipeline_values(t: T, path: str) -> list[Any]:
    """The values to try for the pipeline option under test: its id and/or its slug."""
    by_id, by_slug = t.pipeline_id(path), path.split("/")[1]
    return {"pipelineId": [by_id], "pipelineSlug": [by_slug]}.get(t.option, [by_slug, by_id])


def stage_values(t: T, path: str) -> list[Any]:
    by_id, by_slug = t.stage_id(path), path.split("/")[2]
    return {"stageId": [by_id], "stageSlug": [by_slug]}.get(t.option, [by_slug, by_id])


def move_pipeline_option(t: T, function: str) -> None:
    deal = t.make("deals", {"amount": 1})
    if function == "MoveCrmToStage":
        # The stage slug 'won' is in both pipelines: the pipeline option picks one.
        for value in pipeline_values(t, "deals/renewals"):
            t.call(function, {"slug": "deals", "stageSlug": "won", t.option: value})
            assert t.place(t.entry(deal)) == "deals/renewals/won"
            t.call(function, {"slug": "deals", "stageSlug": "proposal"})
        with pytest.raises(CrmValidationError, match="in several pipelines"):
            t.call(function, {"slug": "deals", "stageSlug": "won"})
        return
    for value in pipeline_values(t, "deals/renewals"):  # its first stage
        assert t.call(function, {"slug": "deals", t.option: value})["moved"] == 1
        assert t.place(t.entry(deal)) == "deals/renewals/renewal"
        t.call(function, {"slug": "deals", t.option: pipeline_values(t, "deals/sales")[0]})
        assert t.place(t.entry(deal)) == "deals/sales/proposal"


def move_stage_option(t: T, function: str) -> None:
    deal = t.make("deals", {"amount": 1})
    if function == "MoveCrmToPipeline":
        # The stage option picks a stage of the pipeline instead of its first one.
        for value in stage_values(t, "deals/renewals/won"):
            t.call(function, {"slug": "deals", "pipelineSlug": "renewals", t.option: value})
            assert t.place(t.entry(deal)) == "deals/renewals/won"
            t.call(function, {"slug": "deals", "pipelineSlug": "renewals"})
            assert t.place(t.entry(deal)) == "deals/renewals/renewal"
        return
    for value in stage_values(t, "deals/sales/won"):
        extra = {"pipelineSlug": "sales"} if t.option != "stageId" else {}
        assert t.call(function, {"slug": "deals", t.option: value, **extra})["moved"] == 1
        assert t.place(t.entry(deal)) == "deals/sales/won"
        t.call(function, {"slug": "deals", "stageSlug": "renewal"})
        assert t.place(t.entry(deal)) == "deals/renewals/renewal"


for _fn in MOVES:
    case(_fn, "slug")(lambda t, fn=_fn: move_slug(t, fn))
    case(_fn, "allEntries")(lambda t, fn=_fn: move_all_entries(t, fn))
    case(_fn, "pipelineId", "pipelineSlug", "pipeline")(
        lambda t, fn=_fn: move_pipeline_option(t, fn)
    )
    case(_fn, "stageId", "stageSlug", "stage")(lambda t, fn=_fn: move_stage_option(t, fn))


# === MoveCrmToEntity ===================================================================


def to_entity(t: T, extra: dict[str, Any]) -> Any:
    return t.call("MoveCrmToEntity", {"fromSlug": "leads", "toSlug": "archive",
                                      "fieldMap": {"note": "note"}, **extra})  # fmt: skip


@case("MoveCrmToEntity", "fromSlug")
def _(t: T) -> None:
    t.make("leads", {"note": "from a lead"})
    t.make("deals", {"note": "from a deal"})
    to_entity(t, {"fromSlug": "deals"})
    assert t.values("archive") == [{"note": "from a deal"}]
    to_entity(t, {})
    assert t.values("archive") == [{"note": "from a lead"}, {"note": "from a deal"}]


@case("MoveCrmToEntity", "toSlug")
def _(t: T) -> None:
    t.make("leads", {"note": "n"})
    made = to_entity(t, {"toSlug": "deals"})
    assert t.entry(made["id"]).entity == "deals"
    assert (t.values("deals"), t.values("archive")) == ([{"note": "n"}], [])
    assert t.entry(to_entity(t, {})["id"]).entity == "archive"


@case("MoveCrmToEntity", "fieldMap")
def _(t: T) -> None:
    t.make("leads", {"note": "n", "amount": "3"})
    assert to_entity(t, {"fieldMap": {"note": "extra", "amount": "amount"}})["moved"] == 2
    assert to_entity(t, {})["moved"] == 1
    assert t.values("archive") == [{"note": "n"}, {"extra": "n", "amount": 3.0}]


@case("MoveCrmToEntity", "pipelineId", "pipelineSlug", "pipeline")
def _(t: T) -> None:
    t.make("leads", {"note": "n"})
    for value in pipeline_values(t, "deals/renewals"):
        made = to_entity(t, {"toSlug": "deals", t.option: value})
        assert t.place(t.entry(made["id"])) == "deals/renewals/renewal"
    assert t.place(t.entry(to_entity(t, {"toSlug": "deals"})["id"])) == "deals/sales/proposal"


@case("MoveCrmToEntity", "stageId", "stageSlug", "stage")
def _(t: T) -> None:
    t.make("leads", {"note": "n"})
    for value in stage_values(t, "deals/renewals/renewal"):
        made = to_entity(t, {"toSlug": "deals", t.option: value})
        assert t.place(t.entry(made["id"])) == "deals/renewals/renewal"
    assert t.place(t.entry(to_entity(t, {"toSlug": "deals"})["id"])) == "deals/sales/proposal"


@case("MoveCrmToEntity", "removeFromOld")
def _(t: T) -> None:
    lead = t.make("leads", {"note": "n"})
    assert to_entity(t, {})["removed_from_old"] is False
    assert t.crm.store.get_entry(lead) is not None
    assert to_entity(t, {"removeFromOld": True})["removed_from_old"] is True
    assert t.crm.store.get_entry(lead) is None
    assert t.values("archive") == [{"note": "n"}, {"note": "n"}]


@case("MoveCrmToEntity", "allEntries")
def _(t: T) -> None:
    t.make("leads", {"note": "first"})
    t.make("leads", {"note": "second"})
    one = to_entity(t, {})
    assert (one["moved"], len(one["ids"])) == (1, 1)
    assert t.values("archive") == [{"note": "second"}]
    every = to_entity(t, {"allEntries": True})
    assert (every["moved"], len(every["ids"])) == (2, 2)
    assert t.values("archive") == [{"note": "second"}, {"note": "first"}, {"note": "second"}]


# === ReassignCrmReference (the trusted service) ========================================


def reassign(t: T, extra: dict[str, Any]) -> Any:
    options = {"slug": "*", "fromReferenceType": "customer", "fromReferenceId": "visitor",
               "toReferenceId": "cus_new", **extra}  # fmt: skip
    result = t.call("ReassignCrmReference", options, via=t.crm)
    t.crm.flush()
    return result


def visitor_entries(t: T) -> None:
    for ref in (("customer", "visitor"), ("account", "visitor")):
        t.make("deals", {"note": ref[0]}, ref)
        t.make("leads", {"note": ref[0]}, ref)


@case("ReassignCrmReference", "slug")
def _(t: T) -> None:
    visitor_entries(t)
    assert reassign(t, {"slug": "deals"})["migrated"] == 1
    assert t.values("leads", ("customer", "visitor")) == [{"note": "customer"}]
    assert reassign(t, {})["migrated"] == 1  # '*': the leads too
    assert t.values("leads", ("customer", "cus_new")) == [{"note": "customer"}]


@case("ReassignCrmReference", "fromReferenceType")
def _(t: T) -> None:
    visitor_entries(t)
    assert reassign(t, {"fromReferenceType": "account"})["migrated"] == 2
    assert t.values("deals", ("customer", "cus_new")) == [{"note": "account"}]
    assert t.values("deals", ("customer", "visitor")) == [{"note": "customer"}]


@case("ReassignCrmReference", "fromReferenceId")
def _(t: T) -> None:
    visitor_entries(t)
    assert reassign(t, {"fromReferenceId": "nobody"})["migrated"] == 0
    assert t.values("deals", ("customer", "cus_new")) == []
    assert reassign(t, {})["migrated"] == 2
    assert t.values("deals", ("customer", "cus_new")) == [{"note": "customer"}]


@case("ReassignCrmReference", "toReferenceType")
def _(t: T) -> None:
    visitor_entries(t)
    reassign(t, {"toReferenceType": "account", "toReferenceId": "acc_1", "slug": "deals"})
    assert t.values("deals", ("account", "acc_1")) == [{"note": "customer"}]
    reassign(t, {"toReferenceId": "acc_1", "slug": "leads"})
    assert t.values("leads", ("customer", "acc_1")) == [{"note": "customer"}]
    assert t.values("leads", ("account", "acc_1")) == []


@case("ReassignCrmReference", "toReferenceId")
def _(t: T) -> None:
    visitor_entries(t)
    reassign(t, {"toReferenceId": "cus_a", "slug": "deals"})
    reassign(t, {"toReferenceId": "cus_b", "slug": "leads"})
    assert t.values("deals", ("customer", "cus_a")) == [{"note": "customer"}]
    assert t.values("leads", ("customer", "cus_b")) == [{"note": "customer"}]
    assert t.values("leads", ("customer", "cus_a")) == []


@case("ReassignCrmReference", "async")
def _(t: T) -> None:
    visitor_entries(t)
    queued = t.call("ReassignCrmReference", {"slug": "deals", "fromReferenceType": "customer",
                                             "fromReferenceId": "visitor", "toReferenceId": "q",
                                             "async": True}, via=t.crm)  # fmt: skip
    assert queued == {"ok": True, "pending": True}
    t.crm.flush()
    assert t.values("deals", ("customer", "q")) == [{"note": "customer"}]
    now = reassign(t, {"slug": "leads"})
    assert now == {"ok": True, "migrated": 1, "merged": False}
    with pytest.raises(CrmValidationError, match="async must be true or false"):
        reassign(t, {"async": 1})


# === the tests ==========================================================================

PAIRS = [(spec.name, option) for spec in FUNCTIONS.values() for option in spec.options]


def test_every_option_has_a_case() -> None:
    missing = [pair for pair in PAIRS if pair not in CASES]
    assert missing == [], f"options without a case: {missing}"
    assert set(CASES) == set(PAIRS)


# The documented spellings (docs/reference/options.md): the snake_case form of every option,
# ``crmEntitySlug``/``crm_entity_slug`` for ``slug``, ``crm_async`` (the seed's legacy name)
# and ``async_`` (a Python keyword) for ``async``. Written out here, not read from
# `ALIASES`, so an alias folded onto the wrong option cannot move its own test along.
EXTRA_SPELLINGS = {"slug": ["crmEntitySlug", "crm_entity_slug"], "async": ["async_", "crm_async"]}


def spellings(option: str) -> list[str]:
    """The other names an option is accepted under."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", option).lower()
    return sorted({snake, *EXTRA_SPELLINGS.get(option, [])} - {option})


def test_aliases_are_exactly_the_documented_spellings() -> None:
    documented = {alias: o for _, o in PAIRS for alias in spellings(o)}
    assert {a: c for a, c in ALIASES.items() if a != c} == documented


ALIASED = [(fn, option, alias) for fn, option in PAIRS for alias in spellings(option)]


@pytest.mark.parametrize(("function", "option"), PAIRS, ids=[f"{f}-{o}" for f, o in PAIRS])
def test_option_changes_the_outcome(crm: Crm, function: str, option: str) -> None:
    CASES[(function, option)](T(crm, build_world(crm), option, option))


@pytest.fixture
def memory_crm() -> Iterator[Crm]:
    """A Crm over in-memory SQLite (the alias folding does not depend on the backend)."""
    service = Crm(open_store("sqlite:///:memory:"))
    yield service
    service.close()


@pytest.mark.parametrize(
    ("function", "option", "alias"), ALIASED, ids=[f"{f}-{a}" for f, _, a in ALIASED]
)
def test_option_aliases_change_the_outcome_too(
    memory_crm: Crm, function: str, option: str, alias: str
) -> None:
    CASES[(function, option)](T(memory_crm, build_world(memory_crm), option, alias))


@pytest.mark.parametrize("given", [True, False], ids=["entryId", "newest"])
def test_removing_a_link_an_entry_never_held_changes_nothing(crm: Crm, given: bool) -> None:
    # docs/reference/functions.md: "RemoveCrmRelation with nothing to remove returns
    # {ok: True, changed: False}" — also for an entry without the relation key (it used to gain "partners": []).
    world = build_world(crm)
    view = crm.bind(ME)
    entry = view.create_entry(slug="deals", values={"amount": 1})["id"]
    options = {"slug": "deals", "relationKey": "partners", "targetEntryId": world.companies[0]}
    result = view.remove_relation({**options, **({"entryId": entry} if given else {})})
    assert result == {"ok": True, "id": entry, "changed": False}
    stored = crm.store.get_entry(entry)
    assert stored is not None and stored.values == {"amount": 1.0} and stored.version == 1
