"""``crm-templates export | import | customers``: data in and out (issue 11, items 5 and 6).

The commands parse arguments and call `crm_templates.transfer` and
`crm_templates.customer_list`; the store comes from ``--store``/``CRM_STORE_URL``/``--site``
(`crm_templates.cli_store`). Exit status: 0 done; 1 refused or failed, with every problem on
stderr and nothing written; 2 a usage error (bad option, missing file, no store given).
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .cli_store import store_options
from .customer_list import find_customers
from .service import Crm
from .storage import open_store
from .terminal import for_terminal, json_for_terminal
from .transfer import FORMATS, export_entries, import_entries

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: only when stderr is a terminal).",
)
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="File format (default: from the file name: .csv, .jsonl or .ndjson).",
)


def _format(fmt: str | None, path: str | None, what: str) -> str:
    if fmt:
        return fmt
    found = SUFFIXES.get(Path(path).suffix.lower()) if path and path != "-" else None
    if found is None:
        raise click.UsageError(f"pass --format csv or --format jsonl (cannot tell from {what})")
    return found


@click.command("export")
@click.argument("entity")
@format_option
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="File to write (default: stdout); written whole or not at all.",
)
@progress_option
@store_options(create=False)
def export_command(
    entity: str, fmt: str | None, output: str | None, progress: bool | None, store_url: str
) -> None:
    """Write every entry of ENTITY, oldest first, as CSV or JSONL.

    Columns: id, title, reference_type, reference_id, pipeline, stage (slugs; CRM-mode
    entities only), created_at, updated_at, then one per field. `import` reads the file back.
    """
    fmt = _format(fmt, output, "the output" if output else "stdout: give --format")
    with Crm(open_store(store_url)) as crm:
        if output is None:
            sys.stdout.flush()
            stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
            try:
                report = export_entries(crm, entity, stream, fmt, progress=progress)
            finally:
                stream.flush()
                stream.detach()
        else:
            # A temporary file beside the target, renamed at the end: a failed export leaves
            # no half-written file behind.
            partial = f"{output}.part"
            try:
                with open(partial, "w", encoding="utf-8", newline="") as out:
                    report = export_entries(crm, entity, out, fmt, progress=progress)
                os.replace(partial, output)
            finally:
                if os.path.exists(partial):
                    os.remove(partial)
    for key, count in sorted(report.undeclared.items()):
        click.echo(
            f"warning: {count} entr{'y' if count == 1 else 'ies'} hold {key!r}, which "
            f"{entity!r} does not declare; not exported",
            err=True,
        )
    where = f" to {output}" if output else ""
    click.echo(f"exported {report.entries} entries of {entity!r}{where}", err=True)


def _read_text(file: str) -> str:
    data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{file} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        ) from None


@click.command("import")
@click.argument("entity")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@format_option
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@click.option(
    "--key",
    metavar="COLUMN",
    help="Match rows to existing entries by this column (id or a field key): matches are "
    "updated, unchanged rows skipped, others created; re-runnable.",
)
@progress_option
@store_options(create=False)
def import_command(
    entity: str,
    file: str,
    fmt: str | None,
    dry_run: bool,
    key: str | None,
    progress: bool | None,
    store_url: str,
) -> None:
    """Import entries of ENTITY from FILE, CSV or JSONL.

    Every row is checked first; any bad row is reported with its line, column and reason,
    and nothing is written. Without --key every row creates an entry, all or nothing.
    FILE - reads stdin.
    """
    fmt = _format(fmt, file, "stdin" if file == "-" else file)
    text = _read_text(file)
    with Crm(open_store(store_url)) as crm:
        report = import_entries(
            crm,
            entity,
            io.StringIO(text, newline=""),
            fmt,
            key=key,
            dry_run=dry_run,
            progress=progress,
        )
    for problem in report.problems:
        click.echo(f"{file}: {problem}", err=True)
    if not report.ok:
        raise click.ClickException(report.summary())
    click.echo(report.summary())


@click.command("customers")
@click.option("--search", metavar="TEXT", help="Only customers whose id, email or name has TEXT.")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Print at most this many.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@store_options(create=False)
def customers_command(search: str | None, limit: int, as_json: bool, store_url: str) -> None:
    """List customers (id, email, name), newest first."""
    store = open_store(store_url)
    try:
        found, total = find_customers(store, search, limit=limit)
    finally:
        store.close()
    # Names are written by visitors: nothing in them reaches the terminal as a control.
    if as_json:
        text = json.dumps([c.to_dict() for c in found], indent=2, ensure_ascii=False)
        click.echo(json_for_terminal(text))
    else:
        for c in found:
            name = " ".join(p for p in (c.first_name, c.last_name) if p)
            click.echo(
                "\t".join(for_terminal(part) for part in (c.id, c.email or "-", name or "-"))
            )
    if total == 0:
        click.echo("no customers" + (f" match {search!r}" if search else ""), err=True)
    elif total > len(found):
        click.echo(f"showing {len(found)} of {total}; use --limit to see more", err=True)


def register(group: Any) -> None:
    """Add export, import and customers to the ``crm-templates`` group."""
    for command in (export_command, import_command, customers_command):
        group.add_command(command)


__all__ = ["customers_command", "export_command", "import_command", "register"]
