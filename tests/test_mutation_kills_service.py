"""Tests written for mutants of crm_templates/service.py that survived its targeted tests
(issue 10, item 1; tools/mutation.py, notes in /work/notes/mut-service.md). They pin the
service's write semantics: which entry a write lands on, what ``force``, ``allEntries`` and
``removeFromOld`` change, the guard on the service's own writes. Customer data is always
written for two customers, and each test checks the other one is untouched.

The service semantics do not depend on the backend (the store contract tests cover that), so
these run on one real SQLite file each (the ``sqlite_crm`` fixture) to stay fast.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from crm_templates import Crm, CrmValidationError, PreviewError
from crm_templates.model import entity_from_dict, entity_to_dict

SCHEMA: list[dict[str, Any]] = [
    {"slug": "companies", "entityMode": "data", "fields": [{"key": "name"}]},
    {
        "slug": "notes",
        "entityMode": "data",
        "fields": [
            {"key": "text"},
            {"key": "mood"},
            {"key": "score", "type": "number"},
            {"key": "employer", "type": "reference", "target_entity": "companies"},
            {"key": "clients", "type": "multi_reference", "target_entity": "companies"},
        ],
    },
    {
        "slug": "deals",
        "fields": [{"key": "name"}],
        "pipelines": [
            {"slug": "sales", "stages": [{"slug": "open"}, {"slug": "won"}]},
            {"slug": "support", "stages": [{"slug": "asked"}, {"slug": "answered"}]},
        ],
    },
]


@pytest.fixture
def svc(sqlite_crm: Crm) -> Crm:
    """The service over a SQLite file with SCHEMA and customers ``cus_a`` and ``cus_b``."""
    for entity in SCHEMA:
        sqlite_crm.ensure_entity(entity)
    return sqlite_crm


def notes(crm: Crm, customer: str) -> list[dict[str, Any]]:
    """A customer's notes entries' values, newest first."""
    return [e.values for e in crm.get_entries(slug="notes", referenceId=customer, limit=200)]


# --- the guard on the service's own writes (``_writes``) ----------------------------------------

GUARDED = ("update_entry", "delete_entry", "create_customer", "update_customer")


@pytest.mark.parametrize("name", GUARDED)
def test_guarded_writes_keep_their_name_signature_and_docs(name: str) -> None:
    """The preview guard is invisible to callers: ``help(Crm.update_entry)`` and the error
    message name the method, its parameters are the method's own, and the guard marks it as a
    write (``crm_writes``: what the preview's classification test relies on)."""
    member = getattr(Crm, name)
    assert member.__name__ == name
    assert member.__doc__ and member.__doc__ == member.__wrapped__.__doc__
    assert "self" in inspect.signature(member).parameters
    assert list(inspect.signature(member).parameters)[1:] != ["args", "kwargs"]
    assert member.crm_writes is True


def test_guarded_writes_name_the_method_in_a_preview(svc: Crm) -> None:
    entry = svc.create_entry(slug="notes", values={"text": "a"}, referenceId="cus_a")
    preview = svc.bind("cus_a", read_only=True)
    with pytest.raises(PreviewError, match=r"Crm\.update_entry\(\)"):
        preview.update_entry(entry["id"], {"text": "b"})
    assert notes(svc, "cus_a") == [{"text": "a"}]


# --- relations ----------------------------------------------------------------------------------


def company(crm: Crm, name: str) -> str:
    """A shared companies entry (site reference); its id."""
    made = crm.create_entry(
        slug="companies", values={"name": name}, referenceType="site", referenceId="directory"
    )
    return str(made["id"])


@pytest.mark.parametrize("key", ["employer", "clients"])
def test_a_relation_on_a_customer_without_entries_creates_one_and_says_so(
    svc: Crm, key: str
) -> None:
    """SetCrmRelation with no entry to act on creates one: ``{ok: True, id, changed: True}``,
    a truthy result (``{% if SetCrmRelation(...) %}`` sees success), and only for that
    customer."""
    acme = company(svc, "Acme")
    result = svc.set_relation(
        slug="notes", relationKey=key, targetEntryId=acme, referenceId="cus_a"
    )
    assert result["ok"] is True and bool(result) is True
    assert result["changed"] is True
    entry = svc.get_entry(result["id"])
    assert entry is not None and entry.reference_id == "cus_a"
    assert entry.values == {key: acme if key == "employer" else [acme]}
    assert notes(svc, "cus_a") == [entry.values]
    assert notes(svc, "cus_b") == []
    # The same call again changes nothing and still succeeds.
    again = svc.set_relation(slug="notes", relationKey=key, targetEntryId=acme, referenceId="cus_a")
    assert (again["ok"], again["id"], again["changed"]) == (True, result["id"], False)


# --- which entry a SetCrmField(s) write lands on ------------------------------------------------


def holder_and_newest(crm: Crm, customer: str, newer: int) -> tuple[str, str]:
    """A notes entry holding ``score`` with ``newer`` entries holding only ``text`` above it;
    (holder id, newest id)."""
    view = crm.bind(customer)
    holder = view.add_field_value(slug="notes", fieldKey="score", value=1)["id"]
    newest = holder
    for i in range(newer):
        newest = view.add_field_value(slug="notes", fieldKey="text", value=f"{customer}-{i}")["id"]
    return holder, newest


def test_set_fields_force_merges_into_the_newest_entry_and_plain_into_the_holder(
    svc: Crm,
) -> None:
    """``force: true`` on SetCrmFields (the issue's example: once ignored unnoticed) merges
    into the newest entry; without it, into the entry already holding a key. Customer A writes
    with force, B without, on the same shape of data."""
    a_holder, a_newest = holder_and_newest(svc, "cus_a", 2)
    b_holder, b_newest = holder_and_newest(svc, "cus_b", 2)
    fields = [{"fieldKey": "score", "value": 5}, {"fieldKey": "mood", "value": "ok"}]
    forced = svc.bind("cus_a").set_fields(slug="notes", fields=fields, force=True)
    plain = svc.bind("cus_b").set_fields(slug="notes", fields=fields)
    assert (forced["id"], forced["created"]) == (a_newest, False)
    assert (plain["id"], plain["created"]) == (b_holder, False)
    assert svc.get_entry(a_newest).values == {"text": "cus_a-1", "score": 5.0, "mood": "ok"}
    assert svc.get_entry(a_holder).values == {"score": 1.0}
    assert svc.get_entry(b_holder).values == {"score": 5.0, "mood": "ok"}
    assert svc.get_entry(b_newest).values == {"text": "cus_b-1"}
    # Each read sees its own customer's value.
    assert svc.bind("cus_a").get_field(slug="notes", fieldKey="score") == 5.0
    assert svc.bind("cus_b").get_field(slug="notes", fieldKey="score") == 5.0
    assert svc.bind("cus_a").get_field_values(slug="notes", fieldKey="score") == [5.0, 1.0]
    assert svc.bind("cus_b").get_field_values(slug="notes", fieldKey="score") == [5.0]


@pytest.mark.parametrize(("newer", "lands_on"), [(99, "holder"), (100, "newest")])
def test_the_holder_scan_reaches_exactly_the_newest_hundred_entries(
    svc: Crm, newer: int, lands_on: str
) -> None:
    """Without ``force`` SetCrmFields looks for a holder among the newest 100 entries
    (``SCAN_DEPTH``): the 100th is found, the 101st is not (the write goes to the newest).
    The other customer's entries, newer than all of these, never count."""
    holder, newest = holder_and_newest(svc, "cus_a", newer)
    other_holder, _ = holder_and_newest(svc, "cus_b", 1)
    result = svc.bind("cus_a").set_fields(slug="notes", fields={"score": 9})
    assert result["id"] == (holder if lands_on == "holder" else newest)
    assert svc.get_entry(holder).values == {"score": 9.0 if lands_on == "holder" else 1.0}
    assert svc.get_entry(other_holder).values == {"score": 1.0}


# --- where a new entry is placed ----------------------------------------------------------------


def stage_slugs(crm: Crm, entry_id: str) -> tuple[str | None, str | None]:
    """(pipeline slug, stage slug) of an entry of ``deals``."""
    entry = crm.get_entry(entry_id)
    assert entry is not None
    for pipeline in crm.get_entity("deals").pipelines:
        for stage in pipeline.stages:
            if (pipeline.id, stage.id) == (entry.pipeline_id, entry.stage_id):
                return pipeline.slug, stage.slug
    return entry.pipeline_id, entry.stage_id


def test_naming_only_a_pipeline_places_a_new_entry_on_its_first_stage(svc: Crm) -> None:
    """CreateCrmEntry and MoveCrmToEntity with ``pipelineSlug`` and no stage land on that
    pipeline's first stage; with neither, the entity's first pipeline's first stage."""
    a, b = svc.bind("cus_a"), svc.bind("cus_b")
    made = a.create_entry(slug="deals", values={"name": "x"}, pipelineSlug="support")
    assert stage_slugs(svc, made["id"]) == ("support", "asked")
    plain = b.create_entry(slug="deals", values={"name": "y"})
    assert stage_slugs(svc, plain["id"]) == ("sales", "open")
    a.set_field(slug="notes", fieldKey="text", value="lead of a")
    moved = a.move_to_entity(
        fromSlug="notes", toSlug="deals", fieldMap={"text": "name"}, pipelineSlug="support"
    )
    assert stage_slugs(svc, moved["id"]) == ("support", "asked")
    assert svc.get_entry(moved["id"]).values == {"name": "lead of a"}
    assert [e.values for e in b.get_entries(slug="deals")] == [{"name": "y"}]


def test_a_stored_definition_that_breaks_the_mode_rules_gets_no_placement(svc: Crm) -> None:
    """The store hands back any definition it holds (another tool, an older version may have
    written it): a data-mode entity's entries never sit in a pipeline even if the definition
    lists one, and a CRM-mode entity without pipelines gets entries without one, not an
    error."""
    template = entity_to_dict(svc.get_entity("deals"))
    odd = {
        "ledger": {**template, "id": "ent_ledger", "slug": "ledger", "mode": "data"},
        "bare": {**template, "id": "ent_bare", "slug": "bare", "pipelines": []},
    }
    for definition in odd.values():
        svc.store.create_entity(entity_from_dict(definition))
    for slug, customer in (("ledger", "cus_a"), ("bare", "cus_b")):
        made = svc.bind(customer).create_entry(slug=slug, values={"name": slug})
        entry = svc.get_entry(made["id"])
        assert entry is not None and entry.reference_id == customer
        assert (entry.pipeline_id, entry.stage_id) == (None, None)


# --- SetCrmFields' item errors --------------------------------------------------------------------


def test_a_misspelt_fields_item_key_gets_a_suggestion(svc: Crm) -> None:
    with pytest.raises(
        CrmValidationError, match=r"unknown key 'fieldKy'\. Did you mean 'fieldKey'\?"
    ):
        svc.set_fields(
            slug="notes", fields=[{"fieldKy": "text", "value": "x"}], referenceId="cus_a"
        )
    with pytest.raises(CrmValidationError, match=r"unknown key 1\. Accepted: fieldKey"):
        svc.set_fields(slug="notes", fields=[{1: "text", "value": "x"}], referenceId="cus_a")
    assert notes(svc, "cus_a") == []


# --- ReassignCrmReference: one entity or every one ------------------------------------------------


@pytest.mark.parametrize("slug", ["notes", "*"])
def test_reassign_moves_the_named_entity_or_every_one(svc: Crm, slug: str) -> None:
    """``slug: 'notes'`` moves only the visitor's notes onto the customer; ``'*'`` moves its
    entries of every entity. The other customer's entries never move."""
    visitor, b = svc.bind("cus_visitor"), svc.bind("cus_b")
    visitor.set_field(slug="notes", fieldKey="text", value="from the visit")
    visitor.create_entry(slug="deals", values={"name": "visit deal"})
    b.set_field(slug="notes", fieldKey="text", value="bob's")
    result = svc.reassign_reference(
        slug=slug,
        fromReferenceType="customer",
        fromReferenceId="cus_visitor",
        toReferenceId="cus_a",
    )
    assert result == {"ok": True, "migrated": 1 if slug == "notes" else 2, "merged": False}
    a = svc.bind("cus_a")
    assert a.get_field(slug="notes", fieldKey="text") == "from the visit"
    moved_deals = [e.values for e in a.get_entries(slug="deals")]
    left_deals = [e.values for e in visitor.get_entries(slug="deals")]
    if slug == "notes":
        assert (moved_deals, left_deals) == ([], [{"name": "visit deal"}])
    else:
        assert (moved_deals, left_deals) == ([{"name": "visit deal"}], [])
    assert notes(svc, "cus_visitor") == []
    assert notes(svc, "cus_b") == [{"text": "bob's"}]


def test_reassign_onto_a_customer_with_entries_reports_merged(svc: Crm) -> None:
    """Kills `merged = merged or consolidated` -> `and`: when the target already holds entries
    of the entity, the visitor's entries are consolidated into its newest one and the answer
    says ``merged: True`` (ReassignCrmReference's docstring, SPEC §5)."""
    visitor, a = svc.bind("cus_visitor"), svc.bind("cus_a")
    a.set_field(slug="notes", fieldKey="text", value="the customer's")
    visitor.set_field(slug="notes", fieldKey="text", value="from the visit")
    result = svc.reassign_reference(
        slug="*",
        fromReferenceType="customer",
        fromReferenceId="cus_visitor",
        toReferenceId="cus_a",
    )
    assert result == {"ok": True, "migrated": 1, "merged": True}
    assert a.get_field(slug="notes", fieldKey="text") == "the customer's"
    assert notes(svc, "cus_visitor") == []


# --- Crm.listing_query / listing_answer (issue 14: planned listings) --------------------------


def test_listing_query_takes_only_the_two_listing_functions(svc: Crm) -> None:
    from crm_templates.errors import CrmUsageError

    view = svc.bind("cus_a")
    view.add_field_value(slug="notes", fieldKey="text", value="a1")
    entries = view.listing_query("GetCrmEntries", {"slug": "notes", "limit": 3})
    values = view.listing_query("GetCrmFieldValues", slug="notes", fieldKey="text")
    assert entries is not None and values is not None
    assert (entries.entity, entries.reference_id, entries.key, entries.limit) == (
        "notes", "cus_a", None, 3
    )  # fmt: skip
    assert (values.key, values.limit) == ("text", 50)
    found = svc.store.find_entries("notes", "customer", "cus_a", has_key="text", limit=50)
    assert svc.listing_answer(values, found) == ["a1"]
    assert svc.listing_answer(entries, found) == found
    for wrong in ("GetCrmField", "getCrmEntries", "SetCrmField", ""):
        with pytest.raises(CrmUsageError, match="GetCrmEntries or GetCrmFieldValues"):
            view.listing_query(wrong, {"slug": "notes"})
    assert svc.bind().listing_query("GetCrmEntries", {"slug": "notes"}) is None  # no customer
    with pytest.raises(CrmValidationError, match="limit"):
        view.listing_query("GetCrmEntries", {"slug": "notes", "limit": 0})
