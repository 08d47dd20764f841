"""The Store contract: the same tests, unchanged, against every backend (see conftest BACKENDS)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from crm_templates import ConflictError, DuplicateError, EntryNotFoundError
from crm_templates.ids import new_id, utc_now
from crm_templates.model import Customer, Entry
from crm_templates.schema import build_entity, parse_fields


def make_entry(entity: str = "deals", ref: str = "cus_1", **values: Any) -> Entry:
    now = utc_now()
    return Entry(
        id=new_id(),
        entity=entity,
        reference_type="customer",
        reference_id=ref,
        values=values,
        created_at=now,
        updated_at=now,
    )


def test_entity_create_get_list(store: Any) -> None:
    entity = build_entity(
        "deals", fields=parse_fields([{"key": "amount", "type": "number"}]), pipelines=[]
    )
    store.create_entity(entity)
    got = store.get_entity("deals")
    assert got == entity
    assert [e.slug for e in store.list_entities()] == ["deals"]
    assert store.get_entity("nope") is None


def test_entity_duplicate_create_fails(store: Any) -> None:
    entity = build_entity("deals", fields=[], pipelines=[])
    store.create_entity(entity)
    with pytest.raises(DuplicateError):
        store.create_entity(build_entity("deals", fields=[], pipelines=[]))


def test_entity_update_is_compare_and_set(store: Any) -> None:
    entity = build_entity("deals", fields=[], pipelines=[])
    store.create_entity(entity)
    stored = store.update_entity(replace(entity, name="Deals!"), entity.version)
    assert stored.version == entity.version + 1
    assert store.get_entity("deals").name == "Deals!"
    with pytest.raises(ConflictError):
        store.update_entity(replace(entity, name="stale"), entity.version)
    assert store.get_entity("deals").name == "Deals!"


def test_entity_delete(store: Any) -> None:
    store.create_entity(build_entity("deals", fields=[], pipelines=[]))
    assert store.delete_entity("deals") is True
    assert store.get_entity("deals") is None
    assert store.delete_entity("deals") is False


def test_customers(store: Any) -> None:
    a = Customer(id="cus_a", email="a@example.com", first_name="Ann", created_at=utc_now())
    b = Customer(id="cus_b", created_at=utc_now())
    store.create_customer(a)
    store.create_customer(b)
    assert store.get_customer("cus_a") == a
    assert store.get_customer_by_email("a@example.com") == a
    assert store.get_customer_by_email("b@example.com") is None
    assert store.count_customers() == 2
    assert {c.id for c in store.list_customers()} == {"cus_a", "cus_b"}
    with pytest.raises(DuplicateError):
        store.create_customer(Customer(id="cus_c", email="a@example.com", created_at=utc_now()))
    store.update_customer(replace(b, email="b@example.com"))
    assert store.get_customer_by_email("b@example.com").id == "cus_b"
    with pytest.raises(DuplicateError):
        store.update_customer(replace(b, email="a@example.com"))
    assert store.get_customer("cus_b").email == "b@example.com"


def test_insert_and_get_by_ids(store: Any) -> None:
    entries = [make_entry(amount=i) for i in range(3)]
    store.insert_entries(entries)
    got = store.get_entries_by_ids([e.id for e in entries] + ["missing"])
    assert got == {e.id: e for e in entries}
    assert store.get_entry(entries[0].id) == entries[0]
    assert store.get_entry("missing") is None


def test_find_entries_newest_first_and_filters(store: Any) -> None:
    first = make_entry(amount=1)
    second = make_entry(note="x")
    other_ref = make_entry(ref="cus_2", amount=3)
    other_entity = make_entry(entity="leads", amount=4)
    store.insert_entries([first, second, other_ref, other_entity])
    assert [e.id for e in store.find_entries("deals", "customer", "cus_1")] == [
        second.id,
        first.id,
    ]
    assert [e.id for e in store.find_entries("deals", "customer", "cus_1", has_key="amount")] == [
        first.id
    ]
    assert [e.id for e in store.find_entries("deals", "customer", "cus_1", limit=1)] == [second.id]
    assert [e.id for e in store.find_entries("deals", "customer", "cus_1", offset=1)] == [first.id]
    assert {e.id for e in store.find_entries(None, "customer", "cus_1")} == {
        first.id,
        second.id,
        other_entity.id,
    }
    assert len(store.find_entries("deals", limit=None)) == 3


def test_same_timestamp_ties_break_on_id(store: Any) -> None:
    now = utc_now()
    entries = [replace(make_entry(n=i), created_at=now, updated_at=now) for i in range(5)]
    store.insert_entries(list(reversed(entries)))
    assert [e.id for e in store.find_entries("deals", "customer", "cus_1")] == [
        e.id for e in reversed(entries)
    ]


def test_has_key_counts_stored_null_and_dotted_keys(store: Any) -> None:
    a = make_entry(**{"a.b": None})
    b = make_entry(**{"a": 1})
    store.insert_entries([a, b])
    assert [e.id for e in store.find_entries("deals", "customer", "cus_1", has_key="a.b")] == [a.id]


def test_latest_values_newest_holder_per_key(store: Any) -> None:
    store.insert_entries([make_entry(a=1, b=1)])
    store.insert_entries([make_entry(a=2)])
    store.insert_entries([make_entry(c=0, d=False, e="")])
    got = store.latest_values("deals", "customer", "cus_1", ["a", "b", "c", "d", "e", "zz"])
    assert got == {"a": 2, "b": 1, "c": 0, "d": False, "e": ""}
    assert store.latest_values("deals", "customer", "nobody", ["a"]) == {}


def test_values_round_trip_types(store: Any) -> None:
    values = {
        "n": 1.5,
        "s": "héllo <b>",
        "b": True,
        "l": ["x", "y"],
        "j": {"nested": [1, {"k": None}]},
        "z": None,
    }
    e = make_entry(**values)
    store.insert_entries([e])
    assert store.get_entry(e.id).values == values


def test_update_entry_compare_and_set(store: Any) -> None:
    e = make_entry(a=1)
    store.insert_entries([e])
    stored = store.update_entry(replace(e, values={"a": 2}, stage_id="s1"), e.version)
    assert stored.version == e.version + 1
    again = store.get_entry(e.id)
    assert again.values == {"a": 2}
    assert again.stage_id == "s1"
    assert again.version == stored.version
    with pytest.raises(ConflictError):
        store.update_entry(replace(e, values={"a": 3}), e.version)
    assert store.get_entry(e.id).values == {"a": 2}
    store.delete_entry(e.id)
    with pytest.raises(EntryNotFoundError):
        store.update_entry(replace(stored, values={"a": 4}), stored.version)


def test_update_can_move_reference(store: Any) -> None:
    e = make_entry(a=1)
    store.insert_entries([e])
    store.update_entry(replace(e, reference_id="cus_9"), e.version)
    assert store.find_entries("deals", "customer", "cus_1") == []
    assert [x.id for x in store.find_entries("deals", "customer", "cus_9")] == [e.id]


def test_delete_entries_and_counts(store: Any) -> None:
    store.insert_entries([make_entry(a=1), make_entry(a=2), make_entry(ref="cus_2", a=3)])
    store.insert_entries([make_entry(entity="leads", a=1)])
    assert store.count_entries() == 4
    assert store.count_entries("deals") == 3
    assert store.count_entries("deals", "customer", "cus_1") == 2
    assert store.delete_entries("deals", "customer", "cus_1") == 2
    assert store.count_entries("deals") == 1
    assert store.count_entries("leads") == 1
    assert store.delete_entries("deals") == 1
    assert store.count_entries() == 1


def test_iter_entries_all_in_order(store: Any) -> None:
    entries = [make_entry(i=i) for i in range(23)]
    store.insert_entries(entries)
    store.insert_entries([make_entry(entity="leads")])
    assert [e.id for e in store.iter_entries("deals", batch_size=5)] == [e.id for e in entries]
    assert sum(1 for _ in store.iter_entries(batch_size=7)) == 24


def test_batch_reads_see_own_writes_and_commit(store: Any) -> None:
    e = make_entry(a=1)
    with store.batch():
        store.insert_entries([e])
        assert [x.id for x in store.find_entries("deals", "customer", "cus_1")] == [e.id]
        store.update_entry(replace(e, values={"a": 2}), e.version)
        assert store.latest_values("deals", "customer", "cus_1", ["a"]) == {"a": 2}
    assert store.get_entry(e.id).values == {"a": 2}


def test_batch_that_raises_applies_nothing(store: Any) -> None:
    e = make_entry(a=1)
    with pytest.raises(RuntimeError), store.batch():
        store.insert_entries([e])
        raise RuntimeError("boom")
    assert store.get_entry(e.id) is None
