"""Copy everything between stores: ``crm-templates migrate --from URL --to URL`` (SPEC §9).

Entities, customers and entries are copied through the `Store` interface only, so any backend
pair works. Records keep their ids, timestamps and versions. A record whose id already exists
in the target is left alone: counted as ``skipped`` when it is identical, ``differing`` (and
named, with the attributes that differ) when the target holds another state of it. At the end
the totals of both stores are compared.

The command refuses a target that already holds records unless ``--merge`` is given (issue 11,
item 6): merging into a store in use is a decision, not a default. With ``--merge`` it copies
only what the target lacks, so it finishes an interrupted migration and a second run changes
nothing. Exit status: 0 the target holds everything the source holds, identical; 1 nothing was
copied (an error, or a non-empty target without ``--merge``); 2 a usage error; 3 copied, but
the target differs from the source (records in another state, or totals that differ).

Security records (used sign-in tokens, revoked session ids, rate-limit hits and session
generations; issue 8) are not copied: the `Store` interface cannot list them, and they are
short-lived state of a running server. The target starts with none, so a revoked session or a
used token from before the move could be accepted again until it expires; rotate the server's
secret key when switching stores if that matters (every session then signs in again).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from itertools import islice
from typing import Any, TypeVar

import click

from .cli_store import require_existing
from .errors import CrmValidationError, DuplicateError
from .model import Entry
from .storage import open_store
from .storage.base import Store

T = TypeVar("T")
EXIT_DIFFERENT = 3
SHOW_DIFFERENT = 20  # records named in the summary; the rest are counted


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
    #: Records the target holds in another state: ``"entry '01…': values, updated_at"``.
    different: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed and both stores hold as many records of each kind."""
        return not self.problems and self.source_counts == self.target_counts

    @property
    def identical(self) -> bool:
        """`ok`, and no record of the target differs from the source's."""
        return self.ok and not self.different

    def summary(self) -> str:
        """Plain lines: per kind what was copied, already there, different; the records that
        differ (at most 20 named); both stores' totals; any problems."""
        lines = [
            f"{kind + ':':<10} {t.copied} copied, {t.skipped} already there (identical), "
            f"{t.differing} different in the target (left as they are)"
            for kind, t in (
                ("entities", self.entities),
                ("customers", self.customers),
                ("entries", self.entries),
            )
        ]
        if self.different:
            lines.append(
                "different in the target (left as they are; the source's state is not copied):"
            )
            lines += [f"  {d}" for d in self.different[:SHOW_DIFFERENT]]
            if len(self.different) > SHOW_DIFFERENT:
                lines.append(f"  ... and {len(self.different) - SHOW_DIFFERENT} more")
        lines.append(
            "totals (source -> target): "
            + ", ".join(
                f"{kind} {self.source_counts.get(kind)} -> {self.target_counts.get(kind)}"
                for kind in self.source_counts
            )
        )
        return "\n".join(lines + self.problems)


def _differences(kind: str, ident: str, source: Any, target: Any) -> str:
    names = [f.name for f in fields(source) if getattr(source, f.name) != getattr(target, f.name)]
    return f"{kind} {ident!r}: {', '.join(names)}"


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
            report.different.append(_differences("entity", entity.slug, entity, existing))

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
                    report.different.append(
                        _differences("customer", customer.id, customer, existing_customer)
                    )
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
                    report.different.append(_differences("entry", e.id, e, present[e.id]))
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


def _non_empty(counts: dict[str, int]) -> str:
    held = [f"{n} {kind}" for kind, n in counts.items() if n]
    return ", ".join(held)


@click.command("migrate")
@click.option(
    "--from", "source_url", required=True, metavar="URL", help="Store to copy from (must exist)."
)
@click.option("--to", "target_url", required=True, metavar="URL", help="Store to copy into.")
@click.option(
    "--merge",
    is_flag=True,
    help="Copy into a target that already holds records: only what it lacks is copied.",
)
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Records per read and per bulk write.",
)
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def migrate_command(
    source_url: str, target_url: str, merge: bool, batch_size: int, progress: bool
) -> None:
    """Copy every entity, customer and entry into another store.

    Ids, timestamps and versions are kept, and both stores' totals are compared at the end.
    A target holding records is refused unless --merge; with it, records already there are
    left as they are (identical ones counted, different ones named), so a re-run finishes an
    interrupted copy and changes nothing after a complete one. Exit status: 0 complete and
    identical, 1 nothing copied (error or refused), 2 usage error, 3 copied but the target
    differs from the source.
    """
    if source_url == target_url:
        raise click.UsageError("--from and --to name the same store")
    require_existing(source_url, "--from")
    source = open_store(source_url)
    try:
        target = open_store(target_url)
        try:
            held = _counts(target)
            if any(held.values()) and not merge:
                raise click.ClickException(
                    f"the target {target.url} already holds {_non_empty(held)}; nothing copied. "
                    "Pass --merge to copy only what it lacks (records already there are left "
                    "as they are, e.g. to finish an interrupted migration), or choose an empty "
                    "target"
                )
            report = migrate(source, target, batch_size=batch_size, progress=progress)
        finally:
            target.close()
    finally:
        source.close()
    click.echo(f"Copied from {source.url} to {target.url}:")
    click.echo(report.summary())
    click.echo(
        "Not copied by design: sign-in tokens, revoked sessions, rate limits and session "
        "generations (short-lived server state)."
    )
    if not report.identical:
        click.echo(
            f"incomplete: {target.url} does not hold everything {source.url} holds"
            + (": " + "; ".join(report.problems) if report.problems else ""),
            err=True,
        )
        click.get_current_context().exit(EXIT_DIFFERENT)
    click.echo(f"ok: {target.url} holds everything {source.url} holds")


__all__ = ["MigrationReport", "Tally", "migrate", "migrate_command"]
