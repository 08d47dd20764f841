"""Webhooks in the admin (issue 13, item 8), on both backends: operators only; add shows the
secret once and refuses a bad URL with 422; pause, remove and the delivery log with retry; every
change audited; admin writes carry the operator as the events' actor; `CrmTemplates` starts the
delivery worker when the store has webhooks and stops it on close."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from crm_templates import audit, events, webhooks
from tests.admin_world import (
    BACKENDS,
    csrf_token,
    customer_client,
    make_admin_app,
    operator_client,
    seed_two_customers,
)

PAGE = "/admin/webhooks"


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_admin_app(tmp_path, request.param, request)
    yield application
    application.extensions["crm"].close()


def store(app: Any) -> Any:
    return app.extensions["crm"].crm.store


def test_only_operators_see_the_webhooks(app: Any) -> None:
    seed_two_customers(app)
    assert app.test_client().get(PAGE).status_code == 302
    assert customer_client(app, "ann@example.com").get(PAGE).status_code == 403
    page = operator_client(app).get(PAGE)
    assert page.status_code == 200
    assert 'href="/admin/webhooks"' in page.get_data(as_text=True)  # in the navigation


def test_adding_shows_the_secret_once_and_a_bad_url_adds_nothing(app: Any) -> None:
    client = operator_client(app)
    bad = client.post(
        PAGE,
        data={"csrf_token": csrf_token(client, PAGE), "url": "ftp://x", "events": "*"},
    )
    assert bad.status_code == 422
    assert "http:// or https://" in bad.get_data(as_text=True)
    private = client.post(
        PAGE,
        data={
            "csrf_token": csrf_token(client, PAGE),
            "url": "http://127.0.0.1:9/x",
            "events": "entry.created",
        },
    )
    assert private.status_code == 422 and "CRM_WEBHOOKS_ALLOW_PRIVATE" in private.get_data(
        as_text=True
    )
    none = client.post(
        PAGE, data={"csrf_token": csrf_token(client, PAGE), "url": "https://hooks.example.com/"}
    )
    assert none.status_code == 422 and "at least one event" in none.get_data(as_text=True)
    assert webhooks.list_endpoints(store(app)) == []
    added = client.post(
        PAGE,
        data={
            "csrf_token": csrf_token(client, PAGE),
            "url": "https://hooks.example.com/crm",
            "events": ["entry.created", "entry.stage_changed"],
        },
    )
    assert added.status_code == 200
    (endpoint,) = webhooks.list_endpoints(store(app))
    assert endpoint.events == ("entry.created", "entry.stage_changed")
    html = added.get_data(as_text=True)
    assert endpoint.secret in html
    assert endpoint.secret not in client.get(PAGE).get_data(as_text=True)  # only once
    (record,) = [r for r in audit.records(store(app))[0] if r.action == "webhook.add"]
    assert record.operator_id == "operator" and record.details["webhook_id"] == endpoint.id
    assert "secret" not in str(record.details)


def test_pause_resume_remove_and_the_delivery_log_with_retry(app: Any) -> None:
    client = operator_client(app)
    # A closed loopback port: whatever the app's worker sends stays on this machine.
    endpoint = webhooks.add_endpoint(
        store(app), "http://127.0.0.1:9/crm", ["*"], allow_private=True
    )
    failed = webhooks.WebhookDelivery(
        id="whd_1", endpoint_id=endpoint.id, event="entry.created", entry_id="e1",
        created_at="2026-01-01T00:00:00.000000Z", body="{}", status="failed", attempts=8,
        last_status=500, last_error="HTTP 500", last_attempt_at="2026-01-01T00:01:00.000000Z",
    )  # fmt: skip
    store(app).enqueue_webhook_deliveries([failed])
    log = client.get(f"{PAGE}/{endpoint.id}")
    assert log.status_code == 200
    text = BeautifulSoup(log.get_data(as_text=True), "html.parser").get_text(" ", strip=True)
    assert "HTTP 500" in text and "failed" in text and "e1" in text
    assert client.get(f"{PAGE}/{endpoint.id}?failed=1").status_code == 200
    assert client.get(f"{PAGE}/whe_nope").status_code == 404
    token = csrf_token(client, PAGE)
    assert (
        client.post(f"{PAGE}/deliveries/whd_nope/retry", data={"csrf_token": token}).status_code
        == 404
    )
    webhooks.set_active(store(app), endpoint.id, False)
    retried = client.post(f"{PAGE}/deliveries/whd_1/retry", data={"csrf_token": token})
    assert retried.status_code == 303 and retried.location.endswith(f"{PAGE}/{endpoint.id}")
    again = store(app).get_webhook_delivery("whd_1")
    # Queued again; the app's worker may already have taken it (paused: failed at once).
    assert (again.status, again.attempts) in (("pending", 0), ("sending", 0), ("failed", 1))
    resumed = client.post(f"{PAGE}/{endpoint.id}/active", data={"csrf_token": token, "active": "1"})
    assert resumed.status_code == 303
    assert webhooks.get_endpoint(store(app), endpoint.id).active
    bad = client.post(f"{PAGE}/{endpoint.id}/active", data={"csrf_token": token, "active": "x"})
    assert bad.status_code == 400
    paused = client.post(f"{PAGE}/{endpoint.id}/active", data={"csrf_token": token, "active": "0"})
    assert paused.status_code == 303 and not webhooks.get_endpoint(store(app), endpoint.id).active
    assert "Paused" in client.get(PAGE).get_data(as_text=True)
    removed = client.post(f"{PAGE}/{endpoint.id}/remove", data={"csrf_token": token})
    assert removed.status_code == 303
    assert webhooks.list_endpoints(store(app)) == []
    assert store(app).list_webhook_deliveries() == []
    assert (
        client.post(f"{PAGE}/{endpoint.id}/remove", data={"csrf_token": token}).status_code == 404
    )
    actions = [r.action for r in audit.records(store(app))[0]]
    assert {"webhook.retry", "webhook.resume", "webhook.pause", "webhook.remove"} <= set(actions)


def test_admin_edits_send_events_as_the_operator(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    crm = app.extensions["crm"].crm
    entry = next(e for e in crm.store.iter_entries("deals") if e.reference_id == ann.id)
    seen: list[events.EntryEvent] = []

    def record(sender: Any, event: events.EntryEvent) -> None:
        seen.append(event)

    for signal in events.SIGNALS.values():
        signal.connect(record, sender=crm.store, weak=False)
    try:
        client = operator_client(app)
        page = client.get(f"/admin/entries/{entry.id}").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        edit = client.post(
            f"/admin/entries/{entry.id}/values/note",
            data={"csrf_token": token.group(1), "value": "edited", "version": str(entry.version)},
        )
        assert edit.status_code == 303, edit.get_data(as_text=True)[:300]
        moved = client.post(
            f"/admin/entries/{entry.id}/stage",
            data={"csrf_token": token.group(1), "stage": "won"},
        )
        assert moved.status_code == 303, moved.get_data(as_text=True)[:300]
    finally:
        for signal in events.SIGNALS.values():
            signal.disconnect(record)
    assert [e.name for e in seen] == ["entry.updated", "entry.stage_changed"]
    assert {e.actor for e in seen} == {events.Actor("operator", "operator")}
    assert seen[0].changes == {"note": "edited"} and seen[0].customer_id == ann.id
    assert events.current_actor() is None  # nothing leaks out of the request


def test_the_app_runs_the_worker_only_with_webhooks_and_stops_it(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    plain = make_admin_app(tmp_path / "a", "sqlite", request)
    worker = plain.extensions["crm"].crm_state.webhooks
    assert worker is not None and not worker.running  # no webhooks: no thread
    webhooks.add_endpoint(
        plain.extensions["crm"].crm.store, "http://127.0.0.1:9/x", ["*"], allow_private=True
    )
    plain.extensions["crm"].close()
    from crm_templates.server import create_app

    # The same site and store, now with a webhook.
    again = create_app(
        tmp_path / "a" / "site", f"sqlite:///{tmp_path / 'a' / 'crm.db'}", TESTING=True
    )
    worker = again.extensions["crm"].crm_state.webhooks
    assert worker is not None and worker.running
    again.extensions["crm"].close()
    assert not worker.running
    from flask import Flask

    from crm_templates.flask import CrmTemplates

    off = Flask(__name__, instance_path=str(tmp_path / "b"))
    off.config["CRM_WEBHOOKS_WORKER"] = False
    extension = CrmTemplates(off)
    assert extension.state(off).webhooks is None
    extension.close(off)


def test_a_playground_render_that_writes_sends_nothing(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    crm = app.extensions["crm"].crm
    webhooks.add_endpoint(crm.store, "http://127.0.0.1:9/x", ["*"], allow_private=True)
    seen: list[events.EntryEvent] = []

    def record(sender: Any, event: events.EntryEvent) -> None:
        seen.append(event)

    for signal in events.SIGNALS.values():
        signal.connect(record, weak=False)
    try:
        client = operator_client(app)
        source = (
            "{{ SetCrmField(slug='deals', fieldKey='note', value='from the playground') }}"
            "{{ MoveCrmToStage(slug='deals', stageSlug='won') }}"
            "{{ CreateCrmEntry(slug='deals', values={'amount': 1}) }}rendered"
        )
        response = client.post(
            "/admin/playground/render",
            data={
                "csrf_token": csrf_token(client, "/admin/playground"),
                "source": source,
                "customer": ann.id,
            },
        )
        assert response.status_code == 200
        assert "rendered" in response.get_data(as_text=True)
    finally:
        for signal in events.SIGNALS.values():
            signal.disconnect(record)
    assert seen == []
    assert crm.store.list_webhook_deliveries() == []
