"""``crm-templates apikey create|list|revoke``: the REST API's keys (issue 13, item 3).

Every command takes ``--store URL`` / ``--site DIR`` (`crm_templates.cli_store`).

* ``create --name N --scope read|write [--rate-limit N]`` prints **only the new key** on
  standard output, so ``KEY=$(crm-templates apikey create …)`` captures it; its id and a
  reminder that it is shown once go to standard error. The key is not kept anywhere but in
  that output (the store holds its hash).
* ``list [--json]`` shows id, name, scope, prefix, rate limit, created, last used and revoked
  times; never a key or a hash.
* ``revoke ID`` refuses the key from the next request on, in every server process.

``create`` and ``revoke`` are recorded in the audit trail with the operator id ``"cli"``
(actions ``apikey.create`` and ``apikey.revoke``, details: the key's id, name, scope and rate
limit — never the key).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from . import audit
from .cli_store import store_options
from .errors import CrmError
from .storage import open_store

if TYPE_CHECKING:
    from .storage.api_keys import ApiKey


def audit_details(key: ApiKey) -> dict[str, Any]:
    """What the audit trail keeps about a key (never the key itself)."""
    return {"key_id": key.id, "name": key.name, "scope": key.scope, "rate_limit": key.rate_limit}


def when(seconds: float | None) -> str:
    """Unix seconds as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), ``-`` for None."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group("apikey", short_help="Create, list and revoke the REST API's keys.")
def apikey_group() -> None:
    """API keys: what other systems send to use the CRM REST API under /api/crm."""


@apikey_group.command("create")
@click.option("--name", required=True, help="What the key is for, e.g. 'checkout'.")
@click.option(
    "--scope",
    required=True,
    type=click.Choice(["read", "write"]),
    help="read: GET requests only; write: every request.",
)
@click.option(
    "--rate-limit",
    type=int,
    default=None,
    metavar="N",
    help="Requests per minute this key may make (default 600).",
)
@store_options(create=True)
def create_command(name: str, scope: str, rate_limit: int | None, store_url: str) -> None:
    """Create a key; print it (only it) on standard output. It is shown this once."""
    from .api_keys import create_key

    store = open_store(store_url)
    try:
        key, secret = create_key(store, name=name, scope=scope, rate_limit=rate_limit)
        audit.record(store, audit.CLI_OPERATOR, "apikey.create", details=audit_details(key))
    except CrmError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(
        f"created API key {key.id} ({key.name!r}, scope {key.scope}, {key.rate_limit} "
        "requests/minute); the key is printed on standard output only this once: store it now",
        err=True,
    )
    click.echo(secret)


@apikey_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@store_options(create=False)
def list_command(as_json: bool, store_url: str) -> None:
    """List keys, oldest first: id, name, scope, prefix, rate limit, created, last used,
    revoked. Never prints a key or its hash."""
    from .api_keys import list_keys

    store = open_store(store_url)
    try:
        keys = list_keys(store)
    except CrmError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([k.to_dict() for k in keys], indent=2, ensure_ascii=False))
        return
    for key in keys:
        click.echo(
            "\t".join(
                [
                    key.id,
                    key.name,
                    key.scope,
                    key.prefix + "…",
                    f"{key.rate_limit}/min",
                    when(key.created_at),
                    when(key.last_used_at),
                    "revoked " + when(key.revoked_at) if key.revoked else "active",
                ]
            )
        )
    if not keys:
        click.echo("no API keys", err=True)


@apikey_group.command("revoke")
@click.argument("key_id", metavar="ID")
@store_options(create=False)
def revoke_command(key_id: str, store_url: str) -> None:
    """Revoke the key ID (key_…): every server refuses it from the next request on."""
    from .api_keys import revoke_key

    store = open_store(store_url)
    try:
        key = revoke_key(store, key_id)
        audit.record(store, audit.CLI_OPERATOR, "apikey.revoke", details=audit_details(key))
    except CrmError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"revoked API key {key.id} ({key.name!r}) at {when(key.revoked_at)}")


def register(group: click.Group) -> None:
    """Add ``apikey`` to the ``crm-templates`` group."""
    group.add_command(apikey_group)


__all__ = ["apikey_group", "audit_details", "register"]
