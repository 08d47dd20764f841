"""`crm-templates migrate`: SQLite -> search cluster -> SQLite keeps every record, re-runs are no-ops."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from crm_templates import Crm
from crm_templates.cli import main
from crm_templates.migrate import migrate
from crm_templates.model import Entry
from crm_templates.storage import Store, open_store

ENTRIES = 1234  # several batches at batch_size=100


def snapshot(store: Store) -> dict[str, Any]:
    """Every record of a store, in a backend-independent, comparable form."""
    return {
        "entities": store.list_entities(),
        "customers": sorted(store.list_customers(limit=10_000), key=lambda c: c.id),
        "entries": sorted(store.iter_entries(batch_size=300), key=lambda e: e.id),
    }


@pytest.fixture
def source(tmp_path: Path) -> Store:
    """A SQLite file with entities (one with pipelines), customers and updated entries."""
    crm = Crm(open_store(f"sqlite:///{tmp_path / 'source.db'}"))
    crm.ensure_entity(
        slug="deal",
        fields=[
            {"key": "amount", "type": "number"},
            {"key": "tags", "type": "multiselect", "options": ["a", "b"]},
            {"key": "meta", "type": "json"},
            {"key": "won", "type": "boolean"},
        ],
        pipelines=[{"slug": "sales", "stages": [{"slug": "new"}, {"slug": "won"}]}],
    )
    crm.ensure_entity(slug="note", entityMode="data", fields=[{"key": "text"}])
    alice = crm.create_customer("alice@example.com", first_name="Alice")
    anon = crm.create_customer()
    for n in range(ENTRIES):
        who = alice.id if n % 2 else anon.id
        crm.add_field_value(slug="note", fieldKey="text", value=f"note {n}", referenceId=who)
    deals = crm.bind(alice.id)
    deals.set_fields(slug="deal", fields={"amount": 10.5, "tags": ["a", "b"], "won": False})
    deals.set_fields(slug="deal", fields={"meta": {"nested": [1, None, "x"]}, "won": True})
    deals.move_to_stage(slug="deal", stageSlug="won")
    crm.flush()
    return crm.store


def test_sqlite_to_search_to_sqlite_round_trip(
    source: Store,
    search_store_factory: Callable[..., Store],
    tmp_path: Path,
) -> None:
    middle = search_store_factory()
    first = migrate(source, middle, batch_size=100, progress=False)
    assert first.ok, first.summary()
    assert (first.entities.copied, first.customers.copied, first.entries.copied) == (
        2,
        2,
        ENTRIES + 1,
    )
    back = open_store(f"sqlite:///{tmp_path / 'back.db'}")
    second = migrate(middle, back, batch_size=100, progress=False)
    assert second.ok, second.summary()

    original = snapshot(source)
    assert snapshot(middle) == original
    assert snapshot(back) == original
    deal = next(e for e in original["entries"] if e.entity == "deal")
    assert isinstance(deal, Entry) and deal.version == 3  # created, merged into, moved
    back.close()


def test_rerun_is_idempotent(source: Store, search_store_factory: Callable[..., Store]) -> None:
    target = search_store_factory()
    migrate(source, target, batch_size=500, progress=False)
    again = migrate(source, target, batch_size=500, progress=False)
    assert again.ok, again.summary()
    assert (again.entities.copied, again.customers.copied, again.entries.copied) == (0, 0, 0)
    assert (again.entities.skipped, again.customers.skipped, again.entries.skipped) == (
        2,
        2,
        ENTRIES + 1,
    )
    assert target.count_entries() == ENTRIES + 1


def test_an_interrupted_copy_is_completed_by_a_rerun(source: Store, tmp_path: Path) -> None:
    target = open_store(f"sqlite:///{tmp_path / 'target.db'}")
    target.insert_entries(list(source.iter_entries())[:300])  # as if cut off mid-way
    report = migrate(source, target, batch_size=100, progress=False)
    assert report.ok, report.summary()
    assert (report.entries.copied, report.entries.skipped) == (ENTRIES + 1 - 300, 300)
    assert snapshot(target) == snapshot(source)
    target.close()


def test_cli_migrates_and_verifies(
    source: Store,
    search_store_factory: Callable[..., Any],
    search_url: str,
    tmp_path: Path,
) -> None:
    target = search_store_factory()
    source_url = source.url
    url = f"{search_url}?prefix={target.prefix}"
    result = CliRunner().invoke(
        main, ["migrate", "--from", source_url, "--to", url, "--batch-size", "200", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output
    assert target.count_entries() == ENTRIES + 1


def test_cli_refuses_a_non_empty_target_then_merges_with_exit_3_when_counts_differ(
    source: Store, tmp_path: Path
) -> None:
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    target = open_store(target_url)
    extra = Entry(id="zzz", entity="note", reference_type="customer", reference_id="x")
    target.insert_entries([extra])  # the target holds something the source does not
    target.close()
    args = ["migrate", "--from", source.url, "--to", target_url, "--no-progress"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1
    assert "already holds 1 entries; nothing copied. Pass --merge" in refused.output
    assert open_store(target_url).count_entries() == 1  # nothing copied
    result = CliRunner().invoke(main, [*args, "--merge"])
    assert result.exit_code == 3
    assert "entries: the source has 1235 but the target has 1236" in result.output


def test_cli_refuses_the_same_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(main, ["migrate", "--from", url, "--to", url])
    assert result.exit_code == 2
    assert "same store" in result.output
