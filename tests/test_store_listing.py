"""The Store contract's admin queries (issue 12, item 3), the same tests on every backend:
keyset pages of one entity's entries (filters, search, sort), reverse references, stage history.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from crm_templates import CrmValidationError
from crm_templates.ids import new_id
from crm_templates.model import Entry
from crm_templates.stage_history import StageChange
from crm_templates.storage.listing import EntryQuery


def entry(
    n: int,
    *,
    entity: str = "deals",
    ref: str = "cus_a",
    title: str = "",
    stage: str | None = "s_new",
    pipeline: str | None = "p_sales",
    created: str | None = None,
    updated: str | None = None,
    **values: Any,
) -> Entry:
    """Entry number ``n``: created at second ``n`` (unless given), updated in reverse order."""
    created = created or f"2026-01-01T00:00:{n:02d}.000000Z"
    return Entry(
        id=f"e{n:03d}",
        entity=entity,
        reference_type="customer",
        reference_id=ref,
        values=values,
        title=title or f"Entry {n}",
        pipeline_id=pipeline,
        stage_id=stage,
        created_at=created,
        updated_at=updated or f"2026-02-01T00:00:{59 - n:02d}.000000Z",
    )


def walk(store: Any, query: EntryQuery, size: int, between: Any = None) -> list[str]:
    """Every page of ``query``, ``size`` at a time; ``between(page_number)`` runs between pages."""
    seen: list[str] = []
    after = None
    for number in range(1000):
        page = store.list_entries_page(query, after=after, limit=size)
        seen += [e.id for e in page]
        if len(page) < size:
            return seen
        after = query.key_of(page[-1])
        if between is not None:
            between(number)
    raise AssertionError("the walk did not end")


@pytest.mark.parametrize(
    ("sort", "descending"),
    [("created", True), ("created", False), ("updated", True), ("updated", False)],
)
def test_pages_walk_every_entry_once_in_order(store: Any, sort: str, descending: bool) -> None:
    # Entries 20-29 share one created_at, so the id breaks the ties.
    entries = [entry(n) for n in range(20)] + [
        entry(n, created="2026-01-01T00:00:30.000000Z") for n in range(20, 30)
    ]
    store.insert_entries(entries)
    store.insert_entries([entry(99, entity="other")])
    query = EntryQuery("deals", sort=sort, descending=descending)
    expected = sorted(entries, key=query.key_of, reverse=descending)
    for size in (1, 7, 30, 31):
        assert walk(store, query, size) == [e.id for e in expected], size


def test_entries_added_between_pages_never_repeat_or_skip(store: Any) -> None:
    store.insert_entries([entry(n) for n in range(10)])
    query = EntryQuery("deals")  # newest first

    def add(number: int) -> None:
        # Newer than everything shown: sorts before the cursor, so not on later pages.
        store.insert_entries([entry(40 + number)])

    seen = walk(store, query, 3, add)
    assert len(seen) == len(set(seen))
    assert seen == [f"e{n:03d}" for n in range(9, -1, -1)]
    oldest_first = EntryQuery("deals", descending=False)

    def add_old_and_new(number: int) -> None:
        store.insert_entries([entry(60 + number, created=f"2025-01-01T00:00:{number:02d}.0Z")])
        store.insert_entries([entry(70 + number, created=f"2027-01-01T00:00:{number:02d}.0Z")])

    at_start = [
        e.id for e in sorted(store.find_entries("deals", limit=None), key=oldest_first.key_of)
    ]
    seen = walk(store, oldest_first, 4, add_old_and_new)
    assert len(seen) == len(set(seen))
    # Every entry there at the start is seen once, in order; of the added ones, those sorting
    # before the cursor (e06x) are not seen, those after it (e07x) come last.
    assert [i for i in seen if i in at_start] == at_start
    added = seen[len(at_start) :]
    assert added and all(i.startswith("e07") for i in added)


def test_filters_by_stage_pipeline_and_reference(store: Any) -> None:
    store.insert_entries(
        [
            entry(1, stage="s_new"),
            entry(2, stage="s_won"),
            entry(3, stage="s_won", ref="cus_b"),
            entry(4, stage="s_other", pipeline="p_renewals"),
            entry(5, stage=None, pipeline=None),
        ]
    )

    def ids(**filters: Any) -> list[str]:
        return [e.id for e in store.list_entries_page(EntryQuery("deals", **filters), limit=50)]

    assert ids(stage_id="s_won") == ["e003", "e002"]
    assert ids(pipeline_id="p_sales") == ["e003", "e002", "e001"]
    assert ids(pipeline_id="p_renewals") == ["e004"]
    assert ids(reference_type="customer", reference_id="cus_b") == ["e003"]
    assert ids(stage_id="s_won", reference_id="cus_a") == ["e002"]
    assert ids(stage_id="s_nope") == []


def test_search_finds_title_and_values_case_insensitively(store: Any) -> None:
    store.insert_entries(
        [
            entry(1, title="Big Deal", note="quiet"),
            entry(2, title="small", note="Mentions ACME Corp"),
            entry(3, title="other", tags=["red", "Blue"]),
            entry(4, title="numbers", amount=1250.0),
            entry(5, title="wild 100%_*?", note="literal"),
            entry(6, title="plain", note="amount"),  # a key name is not a value
            entry(7, entity="other", title="Big other"),
        ]
    )

    def found(text: str) -> list[str]:
        page = store.list_entries_page(EntryQuery("deals", search=text), limit=50)
        return sorted(e.id for e in page)

    assert found("big") == ["e001"]
    assert found("acme") == ["e002"]
    assert found("blue") == ["e003"]
    assert found("1250") == ["e004"]
    assert found("%_*?") == ["e005"]
    assert found("*") == ["e005"]
    assert found("%") == ["e005"]
    assert found("amount") == ["e006"]
    assert found("nothing like it") == []
    # Search combines with filters and keyset pages.
    store.insert_entries([entry(10 + n, title=f"Acme {n}") for n in range(5)])
    query = EntryQuery("deals", search="ACME", sort="created", descending=False)
    assert walk(store, query, 2) == ["e002", "e010", "e011", "e012", "e013", "e014"]


def test_bad_listing_arguments_are_refused(store: Any) -> None:
    with pytest.raises(CrmValidationError, match="sort must be one of"):
        EntryQuery("deals", sort="title")
    with pytest.raises(CrmValidationError, match="at most 200"):
        EntryQuery("deals", search="x" * 201)
    for limit in (0, 501, True):
        with pytest.raises(CrmValidationError, match="limit"):
            store.list_entries_page(EntryQuery("deals"), limit=limit)
    with pytest.raises(CrmValidationError, match="after"):
        store.list_entries_page(EntryQuery("deals"), after=("x",))  # type: ignore[arg-type]


def test_referencing_entries_finds_scalars_and_lists(store: Any) -> None:
    target = "t_target"
    store.insert_entries(
        [
            entry(1, company=target),
            entry(2, partners=["t_other", target]),
            entry(3, company="t_target_not"),  # a longer id is not a match
            entry(4, note=target),  # not a reference field
            entry(5, entity="leads", company=target),
            entry(6, entity="leads", company="t_other"),
        ]
    )
    fields = [("deals", "company"), ("deals", "partners"), ("leads", "company")]
    found = store.referencing_entries(target, fields)
    assert [e.id for e in found] == ["e005", "e002", "e001"]
    assert store.referencing_entries(target, [("deals", "company")]) == [found[2]]
    assert store.referencing_entries(target, []) == []
    assert len(store.referencing_entries(target, fields, limit=1)) == 1


def change(n: int, entry_id: str = "e001", **overrides: Any) -> StageChange:
    base = StageChange(
        id=new_id("stg_"),
        entry_id=entry_id,
        entity="deals",
        at=f"2026-03-01T00:00:{n:02d}.000000Z",
        from_pipeline_id="p_sales",
        from_stage_id=f"s_{n}",
        to_pipeline_id="p_sales",
        to_stage_id=f"s_{n + 1}",
        actor="system",
    )
    return replace(base, **overrides)


def test_stage_history_is_read_newest_first_per_entry(store: Any) -> None:
    changes = [change(n) for n in (3, 1, 2)]
    store.append_stage_changes(changes)
    store.append_stage_changes([change(5, "e002", actor="customer cus_b", from_stage_id=None)])
    store.append_stage_changes([])
    history = store.stage_history("e001")
    assert [c.at[-10:-8] for c in history] == ["03", "02", "01"]
    assert history[0] == changes[0]
    assert store.stage_history("e001", limit=2) == history[:2]
    (other,) = store.stage_history("e002")
    assert other.actor == "customer cus_b" and other.from_stage_id is None
    assert store.stage_history("nope") == []
    with pytest.raises(CrmValidationError):
        store.stage_history("e001", limit=0)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (EntryQuery("deals"), "ix_entries_entity"),
        (EntryQuery("deals", descending=False), "ix_entries_entity"),
        (EntryQuery("deals", sort="updated"), "ix_entries_entity_updated"),
        (EntryQuery("deals", stage_id="s_won"), "ix_entries_entity_stage"),
    ],
)
def test_sqlite_pages_are_index_seeks_not_scans(
    tmp_path: Any, query: EntryQuery, index: str
) -> None:
    # B8's guarantee, checked without timing: a page after a key is one seek into an index
    # holding that order, with no OFFSET and no sort step.
    import re

    from crm_templates import open_store

    store = open_store(f"sqlite:///{tmp_path / 'crm.db'}")
    try:
        store.insert_entries([entry(n) for n in range(30)])
        statements: list[str] = []
        conn = store._conn()  # type: ignore[attr-defined]
        conn.set_trace_callback(statements.append)
        store.list_entries_page(query, after=query.key_of(entry(10)), limit=5)
        conn.set_trace_callback(None)
        (sql,) = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert "OFFSET" not in sql.upper()
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert re.search(rf"SEARCH entries USING INDEX {index} \(entity=\?.*\)", plan), plan
        assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan
    finally:
        store.close()
