"""``crm-templates serve | render | seed``: the page server's commands.

Imported by ``crm_templates.cli`` at start-up, so this module imports only click; Flask and
waitress load when a command runs.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
from typing import Any

import click

from .logs import LEVELS

site_argument = click.argument(
    "site_dir", type=click.Path(exists=True, file_okay=False, dir_okay=True)
)
store_option = click.option(
    "--store",
    "store_url",
    envvar="CRM_STORE_URL",
    default=None,
    help="Store URL; default: sqlite file SITE_DIR/instance/crm.db.",
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command(short_help="Serve a site directory (pages, templates, crm.yaml).")
@site_argument
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--debug", is_flag=True, help="Flask's development server, tracebacks, --reload.")
@click.option(
    "--reload",
    is_flag=True,
    help="Apply changes to pages, templates, backends, static files, crm.yaml and seed.yaml "
    "while serving (each logged as 'reloaded FILE').",
)
@click.option(
    "--log-level",
    envvar="CRM_LOG_LEVEL",
    default="INFO",
    show_default=True,
    type=click.Choice(LEVELS, case_sensitive=False),
    help="Level of the crm_templates logs (sign-in links and the access log are INFO).",
)
def serve(
    site_dir: str,
    store_url: str | None,
    host: str,
    port: int,
    threads: int,
    debug: bool,
    reload: bool,
    log_level: str,
) -> None:
    """Serve SITE_DIR (pages/, templates/, static/, crm.yaml) on waitress.

    Logs go to stderr, one line per request on the access log (unless logging was already
    configured in this process).
    """
    from .app import create_app
    from .logs import AccessLog, configure_logging, quiet_request_handler

    # Before the app exists, so Flask's logger finds the handler and adds none of its own.
    configure_logging(log_level)
    config: dict[str, Any] = {}
    if debug:
        config["DEBUG"] = True
    if "CRM_COOKIE_SECURE" not in os.environ and _is_loopback(host):
        # Plain http on this machine only: a Secure cookie would never come back.
        config["CRM_COOKIE_SECURE"] = False
    try:
        app = create_app(site_dir, store_url, **config)
    except ValueError as exc:  # a setting with a bad value: its message names it
        raise click.ClickException(str(exc)) from None
    app.wsgi_app = AccessLog(app.wsgi_app)  # type: ignore[method-assign]
    server_state = app.extensions["crm"]
    bootstrap = app.config.get("CRM_OPERATOR_PASSWORD_HASH") or app.config.get(
        "CRM_OPERATOR_PASSWORD"
    )
    operator = (
        "on at /admin/"
        if bootstrap or server_state.crm.store.has_operators()
        else f"off (run crm-templates operator add EMAIL --site {site_dir}, or set "
        "CRM_OPERATOR_PASSWORD)"
    )
    mailer = app.config.get("CRM_MAILER")
    notes = [
        f"operator admin {operator}",
        f"sign-in links mailed via {mailer}"
        if mailer is not None
        else "sign-in links logged here (set CRM_MAIL_URL to mail them)",
    ]
    watcher = None
    try:
        if reload or debug:
            from .reload import SiteWatcher

            watcher = SiteWatcher(app)
            watcher.start()
            notes.append("reloading on changes")
        if debug:
            _trust_hosts(app, host, port)
            click.echo(
                f"Serving {site_dir} at http://{host}:{port}/ (Flask debug server; "
                f"{'; '.join(notes)})"
            )
            app.run(
                host=host,
                port=port,
                debug=True,
                use_reloader=False,
                threaded=True,
                request_handler=quiet_request_handler(),
            )
            return
        from waitress import create_server

        limit = app.config["MAX_CONTENT_LENGTH"]
        server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            # No "Server: waitress" banner telling scanners what to try.
            ident="",
            # Refuse an oversized body from its Content-Length, before reading it: waitress
            # buffers a whole body before the app runs, so the app's own 413 would come only
            # after the upload. waitress refuses sizes >= its limit; the app refuses > limit.
            **({"max_request_body_size": limit + 1} if limit is not None else {}),
        )
        bound_port = server.effective_port if hasattr(server, "effective_port") else port
        _trust_hosts(app, host, bound_port)

        def stop(signum: int, frame: Any) -> None:
            # waitress leaves its loop on SystemExit and waits for running requests.
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop)
        click.echo(
            f"Serving {site_dir} at http://{host}:{bound_port}/ (waitress, {threads} threads; "
            f"{'; '.join(notes)}). Ctrl+C to stop.",
        )
        server.run()
    finally:
        if watcher is not None:
            watcher.stop()
        server_state.close()
        click.echo("Stopped; queued writes drained and the store closed.")


def _trust_hosts(app: Any, host: str, port: int) -> None:
    """On loopback, trust the loopback host names on ``port`` (links are built from them); say
    so when no sign-in link could be mailed (issue 8, item 2)."""
    from .urls import missing_address_hint, trust_loopback

    if _is_loopback(host):
        trust_loopback(app, host, port)
    problem = missing_address_hint(app)
    if problem:
        click.echo(f"Warning: {problem}.", err=True)


def _url_for_page(page: str) -> str:
    """``/checkin``, ``checkin.html``, ``pages/weight/index.html`` → a URL path."""
    path = page.replace(os.sep, "/")
    if path.endswith(".html"):
        path = path.removeprefix("pages/").removesuffix(".html")
        if path == "index" or path.endswith("/index"):
            path = path[: -len("index")]
    return "/" + path.lstrip("/")


@click.command(short_help="Print a page as a customer, read-only.")
@click.argument("page")
@click.option("--site", "site_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--customer", "customer_id", required=True, help="The customer id to render as.")
@store_option
def render(page: str, site_dir: str, customer_id: str, store_url: str | None) -> None:
    """Print PAGE (a URL path like /checkin, or a file under pages/) as a customer, read-only."""
    from ..cli_store import resolve_store_url
    from .app import create_app
    from .pages import render_as

    # Rendering must not write anything: an existing store only, no schema ensured, no seed,
    # a throwaway secret (no instance/secret_key), and a read-only view (the preview policy).
    url = resolve_store_url(store_url, site_dir, create=False)
    try:
        app = create_app(
            site_dir,
            url,
            DEBUG=True,
            CRM_SEED=False,
            CRM_ENSURE_SCHEMA=False,
            SECRET_KEY=secrets.token_hex(16),
        )
    except ValueError as exc:  # a setting with a bad value: its message names it
        raise click.ClickException(str(exc)) from None
    try:
        status, html = render_as(app, _url_for_page(page), customer_id)
    finally:
        app.extensions["crm"].close()
    if status != 200:
        raise click.ClickException(f"{page}: {status}: {html.strip()}")
    click.echo(html, nl=False)


@click.command(short_help="Load a site's seed.yaml into its store.")
@site_argument
@store_option
@click.option("--force", is_flag=True, help="Add the seed data even when the store has data.")
def seed(site_dir: str, store_url: str | None, force: bool) -> None:
    """Load SITE_DIR/seed.yaml into the site's store (after ensuring crm.yaml)."""
    from ..cli_store import resolve_store_url
    from ..loading import ensure_schema, load_seed, store_is_empty
    from ..service import Crm
    from ..storage import open_store
    from .site import Site

    site = Site(site_dir)
    if site.seed_file is None:
        raise click.ClickException(f"{site_dir} has no seed.yaml")
    with Crm(open_store(resolve_store_url(store_url, site_dir, create=True))) as crm:
        if site.schema_file is not None:
            ensure_schema(crm, site.schema_file)
        if not force and not store_is_empty(crm):
            click.echo("The store already has data; nothing seeded (use --force to add it).")
            return
        counts = load_seed(crm, site.seed_file)
    click.echo(f"Seeded {counts['customers']} customers and {counts['entries']} entries.")


def register(group: click.Group) -> None:
    """Add serve, render and seed to the ``crm-templates`` group."""
    for command in (serve, render, seed):
        group.add_command(command)
