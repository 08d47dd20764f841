"""Webhooks in the admin (issue 13, item 8): register, pause, remove, and the delivery log with
retry, through the core (`crm_templates.webhooks`); every change is audited.

- ``GET /admin/webhooks``: the endpoints and the form to add one.
- ``POST /admin/webhooks`` (``url``, ``events`` — one or more event names; CSRF): adds one and
  shows its signing secret once (200); a bad URL or no event answers 422 and adds nothing.
  Loopback and private addresses need ``CRM_WEBHOOKS_ALLOW_PRIVATE=1``.
- ``GET /admin/webhooks/<id>``: the endpoint's delivery log, newest first (``?failed=1``: only
  failed ones).
- ``POST /admin/webhooks/<id>/active`` (``active`` 1|0), ``POST /admin/webhooks/<id>/remove``,
  ``POST /admin/webhooks/deliveries/<id>/retry`` (CSRF): 303 back to the page.
"""

from __future__ import annotations

from flask import abort, redirect, request, url_for
from flask.typing import ResponseReturnValue

from ... import events, webhooks
from ...errors import CrmError
from ..state import state
from . import bp
from .context import NAVIGATION, record_action, render_admin

NAVIGATION.append(("Webhooks", "crm_admin.webhooks"))


def _endpoint_or_404(webhook_id: str) -> webhooks.WebhookEndpoint:
    found = state().crm.store.get_webhook_endpoint(webhook_id)
    if found is None:
        abort(404, f"There is no webhook {webhook_id!r}.")
    return found


@bp.route("/webhooks", methods=["GET", "POST"], endpoint="webhooks")
def webhooks_page() -> ResponseReturnValue:
    """The list and the add form (see the module docstring)."""
    store = state().crm.store
    created = None
    error = None
    status = 200
    if request.method == "POST":
        try:
            created = webhooks.add_endpoint(
                store, request.form.get("url", ""), request.form.getlist("events")
            )
        except CrmError as exc:
            error, status = str(exc), 422
        else:
            record_action(
                "webhook.add",
                details={
                    "webhook_id": created.id,
                    "url": created.url,
                    "events": list(created.events),
                },
            )
    return render_admin(
        "admin/webhooks.html",
        title="Webhooks",
        status=status,
        endpoints=webhooks.list_endpoints(store),
        event_names=events.EVENT_NAMES,
        created=created,
        error=error,
        form=request.form,
    )


@bp.get("/webhooks/<webhook_id>")
def webhook_log(webhook_id: str) -> ResponseReturnValue:
    """One endpoint's delivery log, newest first."""
    endpoint = _endpoint_or_404(webhook_id)
    failed = request.args.get("failed") == "1"
    found = webhooks.deliveries(
        state().crm.store, endpoint_id=endpoint.id, failed=failed, limit=200
    )
    return render_admin(
        "admin/webhook.html",
        title="Webhook deliveries",
        breadcrumbs=[("Webhooks", url_for("crm_admin.webhooks"))],
        endpoint=endpoint,
        deliveries=found,
        failed=failed,
    )


@bp.post("/webhooks/<webhook_id>/active")
def webhook_active(webhook_id: str) -> ResponseReturnValue:
    """Pause (``active=0``) or resume (``active=1``) an endpoint."""
    endpoint = _endpoint_or_404(webhook_id)
    wanted = request.form.get("active")
    if wanted not in ("0", "1"):
        abort(400, "active must be 1 (resume) or 0 (pause).")
    webhooks.set_active(state().crm.store, endpoint.id, wanted == "1")
    record_action(
        "webhook.resume" if wanted == "1" else "webhook.pause",
        details={"webhook_id": endpoint.id, "url": endpoint.url},
    )
    return redirect(url_for("crm_admin.webhooks"), 303)


@bp.post("/webhooks/<webhook_id>/remove")
def webhook_remove(webhook_id: str) -> ResponseReturnValue:
    """Remove an endpoint and its delivery log."""
    endpoint = _endpoint_or_404(webhook_id)
    webhooks.remove_endpoint(state().crm.store, endpoint.id)
    record_action("webhook.remove", details={"webhook_id": endpoint.id, "url": endpoint.url})
    return redirect(url_for("crm_admin.webhooks"), 303)


@bp.post("/webhooks/deliveries/<delivery_id>/retry")
def webhook_retry(delivery_id: str) -> ResponseReturnValue:
    """Queue a delivery again now."""
    store = state().crm.store
    found = store.get_webhook_delivery(delivery_id)
    if found is None:
        abort(404, f"There is no webhook delivery {delivery_id!r}.")
    try:
        webhooks.retry(store, found.id)
    except CrmError as exc:
        abort(409, str(exc))
    record_action(
        "webhook.retry", details={"delivery_id": found.id, "webhook_id": found.endpoint_id}
    )
    return redirect(url_for("crm_admin.webhook_log", webhook_id=found.endpoint_id), 303)
