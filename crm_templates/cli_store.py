"""Which store a command uses: ``--store URL``, ``CRM_STORE_URL``, or ``--site DIR`` (issue 11,
item 6).

The rule, in order:

1. ``--store URL`` (or the ``CRM_STORE_URL`` environment variable) names the store;
2. else ``--site DIR`` names the site's own store, ``sqlite:///DIR/instance/crm.db`` (the page
   server's default);
3. else the command stops with a usage error (exit status 2): ``no store: pass --store URL or
   --site DIR``. No command falls back to ``./crm.db``.

Commands that only read (``entries``, ``export``, ``import``, ``customers``, ``render``,
``migrate --from``) refuse a SQLite file that does not exist (exit status 1) instead of creating
an empty database; ``import`` counts as reading because the entity must already be there.
Commands that set a store up (``ensure``, ``seed``, ``serve``, ``migrate --to``) create it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

STORE_ENV = "CRM_STORE_URL"
NO_STORE = "no store: pass --store URL or --site DIR (or set CRM_STORE_URL)"
STORE_HELP = (
    "Store URL (sqlite:///path, elasticsearch://host:port, opensearch://host:port); "
    "env CRM_STORE_URL."
)
SITE_HELP = "Use the site's store, sqlite:///SITE/instance/crm.db (when --store is not given)."


def site_store_path(site_dir: str | Path) -> Path:
    """``SITE_DIR/instance/crm.db``, absolute: the page server's default store file."""
    return Path(site_dir).resolve() / "instance" / "crm.db"


def sqlite_path(url: str) -> str | None:
    """The file path of a ``sqlite:///`` URL; None for other schemes and ``:memory:``."""
    if not url.lower().startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]  # as open_store reads it
    return None if path in ("", ":memory:") else path


def require_existing(url: str, given_by: str) -> None:
    """Refuse a SQLite URL whose file does not exist (`click.ClickException`, exit status 1),
    so a read never creates an empty database. Other backends are not checked here."""
    path = sqlite_path(url)
    if path is not None and not Path(path).exists():
        raise click.ClickException(
            f"there is no store at {path} (from {given_by}); check the path, or create the "
            "store first (crm-templates ensure SCHEMA_FILE, seed or serve)"
        )


def resolve_store_url(
    store_url: str | None,
    site_dir: str | Path | None,
    *,
    create: bool,
    given_by: str = "--store",
) -> str:
    """The store URL a command uses (the rule in this module's docstring).

    ``create=False`` refuses a missing SQLite file; ``create=True`` makes the site's
    ``instance/`` folder when the site's store is used. Raises `click.UsageError` when neither
    a URL nor a site is given.
    """
    if store_url:
        url = store_url
    elif site_dir is not None:
        path = site_store_path(site_dir)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        url, given_by = f"sqlite:///{path}", f"--site {site_dir}"
    else:
        raise click.UsageError(NO_STORE)
    if not create:
        require_existing(url, given_by)
    return url


def store_options(*, create: bool) -> Callable[[F], F]:
    """Add ``--store`` and ``--site`` to a command; it receives the resolved ``store_url``.

    ``create``: whether the command may create the store (see the module docstring).
    """

    def decorate(command: F) -> F:
        @click.option(
            "--site",
            "site_dir",
            type=click.Path(exists=True, file_okay=False, dir_okay=True),
            metavar="DIR",
            help=SITE_HELP,
        )
        @click.option("--store", "store_url", envvar=STORE_ENV, metavar="URL", help=STORE_HELP)
        @functools.wraps(command)
        def wrapper(*args: Any, store_url: str | None, site_dir: str | None, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            source = ctx.get_parameter_source("store_url")
            given_by = STORE_ENV if source is click.core.ParameterSource.ENVIRONMENT else "--store"
            kwargs["store_url"] = resolve_store_url(
                store_url, site_dir, create=create, given_by=given_by
            )
            return command(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


__all__ = [
    "NO_STORE",
    "require_existing",
    "resolve_store_url",
    "site_store_path",
    "sqlite_path",
    "store_options",
]
