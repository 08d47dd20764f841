"""The ``crm-templates`` command (click). Library errors become clean messages only here."""

from __future__ import annotations

import json
from typing import Any

import click

from .cli_store import store_options
from .errors import CrmError

# Loading schema and seed files lives in the core (issue 11, item 4); these names stay importable
# from here for code written before the move.
from .loading import ensure_schema, load_schema_file  # noqa: F401
from .service import Crm
from .storage import open_store
from .terminal import for_terminal, json_for_terminal


class CrmGroup(click.Group):
    """Turns CRM errors into one-line messages and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrmError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=CrmGroup, context_settings={"max_content_width": 100})
@click.version_option(package_name="crm-templates")
def main() -> None:
    """crm-templates: a CRM inside Jinja2 templates."""


@main.command(short_help="Create or extend entities from a schema file.")
@click.argument("schema_file", type=click.Path(exists=True, dir_okay=False))
@store_options(create=True)
def ensure(schema_file: str, store_url: str) -> None:
    """Ensure the entities of SCHEMA_FILE (YAML or JSON) exist; adds only what is missing."""
    with Crm(open_store(store_url)) as crm:
        for r in ensure_schema(crm, schema_file):
            state = "created" if r["created"] else "exists"
            added = ", ".join(r["fields_added"]) or "-"
            click.echo(f"{r['slug']}: {state}; fields added: {added}")


@main.command(short_help="Print the entries of one entity for one reference.")
@click.argument("slug")
@click.option("--reference-id", required=True, help="The record the entries belong to.")
@click.option("--reference-type", default="customer", show_default=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 200))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@store_options(create=False)
def entries(
    slug: str, reference_id: str, reference_type: str, limit: int, as_json: bool, store_url: str
) -> None:
    """Print the entries of entity SLUG for one reference, newest first."""
    with Crm(open_store(store_url)) as crm:
        found = crm.get_entries(
            slug=slug, referenceType=reference_type, referenceId=reference_id, limit=limit
        )
        # Titles and values are written by visitors: nothing in them reaches the terminal as
        # a control (crm_templates.terminal).
        if as_json:
            text = json.dumps([e.to_dict() for e in found], indent=2, ensure_ascii=False)
            click.echo(json_for_terminal(text))
            return
        if not found:
            click.echo(f"no {slug} entries for {reference_type} {reference_id}", err=True)
            return
        for e in found:
            values = json_for_terminal(json.dumps(e.values, ensure_ascii=False))
            click.echo(f"{e.id}  {e.created_at}  {for_terminal(e.title or '-')}  {values}")


@main.command("schema", short_help="Print the JSON Schema of crm.yaml or seed.yaml.")
@click.argument("name", type=click.Choice(["crm", "seed"]))
@click.option(
    "--markdown",
    is_flag=True,
    help="Print the reference of every key as Markdown tables instead of the JSON Schema.",
)
def schema_command(name: str, markdown: bool) -> None:
    """Print the JSON Schema of crm.yaml (NAME crm) or seed.yaml (NAME seed).

    Save it beside a site and point an editor at it for completion and checking as you type,
    e.g. ``crm-templates schema crm > crm.schema.json`` and a first line
    ``# yaml-language-server: $schema=crm.schema.json`` in crm.yaml.
    """
    from .documents import schema_text

    if markdown:
        from .schemadoc import schema_reference

        click.echo(schema_reference(name), nl=False)
        return
    click.echo(schema_text(name), nl=False)


# Commands defined beside the parts they drive register themselves here. Each module keeps
# its heavy imports (Flask, Jinja2, the search client) inside the commands, so `--help` and the
# core commands stay light.
from .cli_apikeys import register as _register_apikeys  # noqa: E402
from .cli_data import register as _register_data  # noqa: E402
from .cli_operators import register as _register_operators  # noqa: E402
from .cli_webhooks import register as _register_webhooks  # noqa: E402
from .lint import lint as _lint  # noqa: E402
from .migrate import migrate_command as _migrate  # noqa: E402
from .server.cli import register as _register_server  # noqa: E402

main.add_command(_lint)
main.add_command(_migrate)
_register_server(main)
_register_data(main)
_register_operators(main)
_register_apikeys(main)
_register_webhooks(main)
