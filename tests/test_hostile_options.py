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
