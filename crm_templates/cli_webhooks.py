"""``crm-templates webhooks add|list|remove|pause|resume|deliveries|retry|prune|deliver``: webhook
endpoints and their delivery log (issue 13, item 8; `crm_templates.webhooks`).

Every command takes ``--store URL`` / ``--site DIR`` (`crm_templates.cli_store`). ``add``
prints the new endpoint's signing secret once, on standard output (nothing shows it again).
Changes are recorded in the audit trail with the operator id ``"cli"``. ``deliver`` sends due
deliveries: once (``--once``, for cron) or until interrupted.

Settings come from the environment: ``CRM_WEBHOOKS_ALLOW_PRIVATE=1`` allows loopback and
private addresses; ``CRM_WEBHOOKS_TIMEOUT``, ``_MAX_ATTEMPTS``, ``_MAX_AGE``, ``_BACKOFF``,
``_BACKOFF_CAP`` and ``_POLL`` tune delivery (`crm_templates.webhooks.Settings`).
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from . import audit
from .cli_store import store_options
from .errors import CrmError
from .storage import open_store
from .terminal import for_terminal

if TYPE_CHECKING:
    from .storage.base import Store
    from .storage.webhooks import WebhookDelivery


@contextmanager
def _store(store_url: str) -> Iterator[Store]:
    """The store, closed afterwards; a CRM error becomes the command's one-line error."""
    store = open_store(store_url)
    try:
        yield store
    except CrmError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _audited(store: Store, action: str, details: dict[str, Any]) -> None:
    audit.record(store, audit.CLI_OPERATOR, action, details=details)


@click.group("webhooks", short_help="Register webhook URLs, read the delivery log, deliver.")
def webhooks_group() -> None:
    """Webhooks: signed POSTs to your URLs when entries change (issue 13)."""


@webhooks_group.command("add")
@click.argument("url")
@click.option(
    "--event",
    "event_names",
    multiple=True,
    required=True,
    help="An event to send: entry.created, entry.updated, entry.deleted, "
    "entry.stage_changed, or * for all. Repeat for several.",
)
@store_options(create=False)
def add_command(url: str, event_names: tuple[str, ...], store_url: str) -> None:
    """Register URL for the given events; prints the signing secret once."""
    from . import webhooks

    with _store(store_url) as store:
        endpoint = webhooks.add_endpoint(store, url, list(event_names))
        _audited(
            store,
            "webhook.add",
            {"webhook_id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events)},
        )
    click.echo(f"added webhook {endpoint.id} -> {endpoint.url} ({', '.join(endpoint.events)})")
    click.echo(f"signing secret (shown only now): {endpoint.secret}")


@webhooks_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@store_options(create=False)
def list_command(as_json: bool, store_url: str) -> None:
    """List webhooks (id, state, events, URL). Never prints secrets."""
    from . import webhooks

    with _store(store_url) as store:
        found = webhooks.list_endpoints(store)
    rows: list[dict[str, Any]] = [
        {
            "id": e.id,
            "url": e.url,
            "events": list(e.events),
            "active": e.active,
            "created_at": e.created_at,
        }
        for e in found
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        state = "active" if row["active"] else "paused"
        click.echo(f"{row['id']}\t{state}\t{','.join(row['events'])}\t{for_terminal(row['url'])}")
    if not rows:
        click.echo("no webhooks", err=True)


def _change(store_url: str, action: str, change: Callable[[Store], Any]) -> Any:
    with _store(store_url) as store:
        endpoint = change(store)
        _audited(store, action, {"webhook_id": endpoint.id, "url": endpoint.url})
    return endpoint


@webhooks_group.command("remove")
@click.argument("webhook_id")
@store_options(create=False)
def remove_command(webhook_id: str, store_url: str) -> None:
    """Remove webhook WEBHOOK_ID and its delivery log."""
    from . import webhooks

    endpoint = _change(
        store_url, "webhook.remove", lambda s: webhooks.remove_endpoint(s, webhook_id)
    )
    click.echo(f"removed webhook {endpoint.id} ({for_terminal(endpoint.url)})")


@webhooks_group.command("pause")
@click.argument("webhook_id")
@store_options(create=False)
def pause_command(webhook_id: str, store_url: str) -> None:
    """Stop queueing events for WEBHOOK_ID (queued ones fail when their turn comes)."""
    from . import webhooks

    _change(store_url, "webhook.pause", lambda s: webhooks.set_active(s, webhook_id, False))
    click.echo(f"paused webhook {webhook_id}")


@webhooks_group.command("resume")
@click.argument("webhook_id")
@store_options(create=False)
def resume_command(webhook_id: str, store_url: str) -> None:
    """Queue events for WEBHOOK_ID again."""
    from . import webhooks

    _change(store_url, "webhook.resume", lambda s: webhooks.set_active(s, webhook_id, True))
    click.echo(f"resumed webhook {webhook_id}")


def _delivery_row(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "webhook_id": d.endpoint_id,
        "event": d.event,
        "entry_id": d.entry_id,
        "created_at": d.created_at,
        "status": d.status,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "last_attempt_at": d.last_attempt_at,
        "last_duration_ms": d.last_duration_ms,
        "finished_at": d.finished_at,
    }


@webhooks_group.command("deliveries")
@click.option("--webhook", "webhook_id", help="Only this webhook's deliveries.")
@click.option("--failed", is_flag=True, help="Only deliveries that gave up.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@store_options(create=False)
def deliveries_command(
    webhook_id: str | None, failed: bool, limit: int, as_json: bool, store_url: str
) -> None:
    """The delivery log, newest first: status, attempts, last response or error."""
    from . import webhooks

    with _store(store_url) as store:
        if webhook_id is not None:
            webhooks.get_endpoint(store, webhook_id)
        found = webhooks.deliveries(store, endpoint_id=webhook_id, failed=failed, limit=limit)
    rows = [_delivery_row(d) for d in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        last = r["last_status"] or for_terminal(r["last_error"] or "-")
        click.echo(
            f"{r['id']}\t{r['status']}\t{r['event']}\t{r['entry_id']}\t"
            f"attempts={r['attempts']}\tlast={last}"
        )
    if not rows:
        click.echo("no deliveries", err=True)


@webhooks_group.command("retry")
@click.argument("delivery_id")
@store_options(create=False)
def retry_command(delivery_id: str, store_url: str) -> None:
    """Queue delivery DELIVERY_ID again now (its attempts start over)."""
    from . import webhooks

    with _store(store_url) as store:
        delivery = webhooks.retry(store, delivery_id)
        _audited(
            store,
            "webhook.retry",
            {"delivery_id": delivery.id, "webhook_id": delivery.endpoint_id},
        )
    click.echo(f"queued delivery {delivery.id} again")


@webhooks_group.command("prune")
@click.option(
    "--days",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    help="Delete delivered and failed deliveries that finished more than this many days ago.",
)
@store_options(create=False)
def prune_command(days: float, store_url: str) -> None:
    """Shorten the delivery log (pending deliveries are kept)."""
    from . import webhooks

    with _store(store_url) as store:
        deleted = webhooks.prune(store, days)
    click.echo(f"deleted {deleted} finished deliveries older than {days:g} days")


@webhooks_group.command("deliver")
@click.option("--once", is_flag=True, help="Send what is due now, then exit (for cron).")
@store_options(create=False)
def deliver_command(once: bool, store_url: str) -> None:
    """Send due deliveries: once, or until interrupted (Ctrl+C or SIGTERM)."""
    from . import webhooks

    with _store(store_url) as store:
        worker = webhooks.DeliveryWorker(store, webhooks.Settings.from_env())
        if once:
            total = 0
            while True:
                sent = worker.run_once()
                total += sent
                if sent < worker.settings.batch:
                    break
            click.echo(f"attempted {total} deliveries")
            return
        stopped = threading.Event()

        def stop(signum: int, frame: Any) -> None:
            stopped.set()

        signal.signal(signal.SIGTERM, stop)
        worker.start()
        click.echo("Delivering webhooks; Ctrl+C to stop.")
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            worker.stop()
        click.echo("Stopped.")


def register(group: click.Group) -> None:
    """Add ``webhooks`` to the ``crm-templates`` group."""
    group.add_command(webhooks_group)


__all__ = ["register", "webhooks_group"]
