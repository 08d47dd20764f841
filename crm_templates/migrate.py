"""Copy everything between stores: ``crm-templates migrate --from URL --to URL`` (SPEC §9).

Entities, customers and entries are copied through the `Store` interface only, so any backend
pair works. Records keep their ids, timestamps and versions. Re-running is safe: a record whose
id already exists in the target is left alone (counted as ``skipped`` when it is identical,
``differing`` when the target holds another state of it), so an interrupted copy can simply be
run again. At the end the totals of both stores are compared.

Security records (used sign-in tokens, revoked session ids, rate-limit hits and session
generations; issue 8) are not copied: the `Store` interface cannot list them, and they are
short-lived state of a running server. The target starts with none, so a revoked session or a
used token from before the move could be accepted again until it expires; rotate the server's
secret key when switching stores if that matters (every session then signs in again).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TypeVar

import click

from .errors import CrmValidationError, DuplicateError
from .model import Entry
from .storage import open_store
from .storage.base import Store

T = TypeVar("T")


@dataclass
class Tally:
    """What happened to one kind of record."""

    copied: int = 0
    skipped: int = 0  # already in the target, identical
    differing: int = 0  # already in the target, in another state (left as it is)


@dataclass
class MigrationReport:
    """The outcome of `migrate`: per-kind tallies, both stores' totals, and any problems."""

    entities: Tally = field(default_factory=Tally)
    customers: Tally = field(default_factory=Tally)
    entries: Tally = field(default_factory=Tally)
    source_counts: dict[str, int] = field(default_factory=dict)
    target_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed and both stores hold as many records of each kind."""
        return not self.problems and self.source_counts == self.target_counts

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"{kind}: {t.copied} copied, {t.skipped} already there, {t.differing} differing"
            for kind, t in (
                ("entities", self.entities),
                ("customers", self.customers),
                ("entries", self.entries),
            )
        ]
        lines.append(
            "totals: "
            + ", ".join(
                f"{kind} {self.source_counts.get(kind)} -> {self.target_counts.get(kind)}"
                for kind in self.source_counts
            )
        )
        return "\n".join(lines + self.problems)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _counts(store: Store) -> dict[str, int]:
    return {
        "entities": len(store.list_entities()),
        "customers": store.count_customers(),
        "entries": store.count_entries(),
    }


def migrate(
    source: Store, target: Store, batch_size: int = 500, progress: bool = True
) -> MigrationReport:
    """Copy every entity, customer and entry from ``source`` into ``target``; returns a report."""
    from tqdm import tqdm

    if batch_size < 1:
        raise CrmValidationError(f"batch_size must be at least 1; got {batch_size!r}")
    report = MigrationReport()

    for entity in source.list_entities():
        existing = target.get_entity(entity.slug)
        if existing is None:
            target.create_entity(entity)
            report.entities.copied += 1
        elif existing == entity:
            report.entities.skipped += 1
        else:
            report.entities.differing += 1

    total_customers = source.count_customers()
    with tqdm(
        total=total_customers, unit="customer", desc="customers", disable=not progress
    ) as bar:
        for offset in range(0, total_customers, batch_size):
            for customer in source.list_customers(limit=batch_size, offset=offset):
                existing_customer = target.get_customer(customer.id)
                if existing_customer is None:
                    try:
                        target.create_customer(customer)
                        report.customers.copied += 1
                    except DuplicateError as exc:
                        report.problems.append(f"customer {customer.id!r} not copied: {exc}")
                elif existing_customer == customer:
                    report.customers.skipped += 1
                else:
                    report.customers.differing += 1
                bar.update(1)

    with tqdm(
        total=source.count_entries(), unit="entry", desc="entries", disable=not progress
    ) as bar:
        for chunk in _chunks(source.iter_entries(batch_size=batch_size), batch_size):
            present = target.get_entries_by_ids([e.id for e in chunk])
            missing: list[Entry] = []
            for e in chunk:
                if e.id not in present:
                    missing.append(e)
                elif present[e.id] == e:
                    report.entries.skipped += 1
                else:
                    report.entries.differing += 1
            target.insert_entries(missing)
            report.entries.copied += len(missing)
            bar.update(len(chunk))

    report.source_counts = _counts(source)
    report.target_counts = _counts(target)
    for kind, count in report.source_counts.items():
        if report.target_counts[kind] != count:
            report.problems.append(
                f"{kind}: the source has {count} but the target has {report.target_counts[kind]}"
            )
    return report


@click.command("migrate")
@click.option("--from", "source_url", required=True, help="Store URL to copy from.")
@click.option("--to", "target_url", required=True, help="Store URL to copy into.")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Records per read and per bulk write.",
)
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def migrate_command(source_url: str, target_url: str, batch_size: int, progress: bool) -> None:
    """Copy entities, customers and entries from one store to another, then verify counts.

    Ids, timestamps and versions are kept; records already in the target are left alone, so
    the command can be re-run after an interruption. Exit status 1 when the counts differ.
    """
    if source_url == target_url:
        raise click.UsageError("--from and --to name the same store")
    source = open_store(source_url)
    try:
        target = open_store(target_url)
        try:
            report = migrate(source, target, batch_size=batch_size, progress=progress)
        finally:
            target.close()
    finally:
        source.close()
    click.echo(report.summary())
    if not report.ok:
        raise click.ClickException(
            f"migration from {source.url} to {target.url} is incomplete: "
            + "; ".join(report.problems)
        )
    click.echo(f"ok: {target.url} holds everything {source.url} holds")


__all__ = ["MigrationReport", "Tally", "migrate", "migrate_command"]
