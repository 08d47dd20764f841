"""``crm-templates operator add|password|remove|list``: operator accounts (issue 12, item 1).

Every command takes ``--store URL`` / ``--site DIR`` (`crm_templates.cli_store`). A password
never goes on the command line (it would sit in the shell history and the process list): it is
asked for twice at a terminal, or read as the first line of standard input with
``--password-stdin`` (for scripts: ``printf '%s\\n' "$PW" | crm-templates operator add …``).

Each change is recorded in the audit trail with the operator id ``"cli"``. Removing an account
or changing its password ends that account's sessions everywhere at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from . import audit
from .cli_store import store_options
from .errors import CrmError
from .operators import MAX_PASSWORD, MIN_PASSWORD
from .storage import open_store

if TYPE_CHECKING:
    from .storage.base import Store
    from .storage.operators import OperatorAccount

STDIN_HELP = "Read the password from the first line of standard input (no prompt)."


def _read_password(password_stdin: bool) -> str:
    """The new password: the first line of stdin, or asked twice at a terminal."""
    if password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.ClickException("--password-stdin: standard input was empty")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise click.UsageError(
            "standard input is not a terminal: pass --password-stdin and write the password "
            "to standard input"
        )
    value = click.prompt(
        f"Password ({MIN_PASSWORD} to {MAX_PASSWORD} characters)",
        hide_input=True,
        confirmation_prompt=True,
    )
    return str(value)


def _change(
    store_url: str, action: str, change: Callable[[Store], OperatorAccount]
) -> OperatorAccount:
    """Run ``change`` on the store and record ``action`` for the account it returns in the
    audit trail (operator ``cli``); a CRM error becomes the command's one-line error."""
    store = open_store(store_url)
    try:
        account = change(store)
        audit.record(
            store,
            audit.CLI_OPERATOR,
            action,
            details={"operator_id": account.id, "email": account.email},
        )
    except CrmError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    return account


@click.group("operator", short_help="Add, remove and list the admin's operator accounts.")
def operator_group() -> None:
    """Operator accounts: who may sign in to /admin and preview pages."""


@operator_group.command("add")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help=STDIN_HELP)
@store_options(create=True)
def add_command(email: str, password_stdin: bool, store_url: str) -> None:
    """Add an operator account that signs in with EMAIL and a password."""
    from .operators import add_operator

    password = _read_password(password_stdin)
    account = _change(store_url, "operator.add", lambda s: add_operator(s, email, password))
    click.echo(f"added operator {account.email} ({account.id})")


@operator_group.command("password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help=STDIN_HELP)
@store_options(create=False)
def password_command(email: str, password_stdin: bool, store_url: str) -> None:
    """Give the operator EMAIL a new password (their sessions end everywhere)."""
    from .operators import set_password

    password = _read_password(password_stdin)
    account = _change(store_url, "operator.password", lambda s: set_password(s, email, password))
    click.echo(f"changed the password of operator {account.email}; their sessions ended")


@operator_group.command("remove")
@click.argument("email")
@store_options(create=False)
def remove_command(email: str, store_url: str) -> None:
    """Remove the operator account EMAIL (their sessions end everywhere)."""
    from .operators import remove_operator

    account = _change(store_url, "operator.remove", lambda s: remove_operator(s, email))
    click.echo(f"removed operator {account.email}; their sessions ended")


@operator_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@store_options(create=False)
def list_command(as_json: bool, store_url: str) -> None:
    """List operator accounts (email, id, created), by email. Never prints password hashes."""
    from .operators import list_operators

    store = open_store(store_url)
    try:
        accounts = list_operators(store)
    except CrmError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if as_json:
        rows = [{"id": a.id, "email": a.email, "created_at": a.created_at} for a in accounts]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for account in accounts:
        click.echo(f"{account.email}\t{account.id}\t{account.created_at}")
    if not accounts:
        click.echo("no operator accounts", err=True)


def register(group: click.Group) -> None:
    """Add ``operator`` to the ``crm-templates`` group."""
    group.add_command(operator_group)


__all__ = ["operator_group", "register"]
