"""Attack review of the admin's webhook pages (issue 13, item 8; branch ``attackhooks``), on
both backends: the page that shows a signing secret is never cached (``no-store``, like the
API key page), and a hostile URL or error text is escaped on the list and the delivery log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_templates import webhooks
from tests.admin_world import BACKENDS, csrf_token, make_admin_app, operator_client

PAGE = "/admin/webhooks"
HOSTILE = 'https://hooks.example.com/<script>alert(1)</script>"onmouseover="x'


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_admin_app(tmp_path, request.param, request)
    yield application
    application.extensions["crm"].close()


def test_the_page_showing_a_secret_is_not_cached(app: Any) -> None:
    client = operator_client(app)
    added = client.post(
        PAGE,
        data={
            "csrf_token": csrf_token(client, PAGE),
            "url": "https://hooks.example.com/crm",
            "events": "*",
        },
    )
    assert added.status_code == 200
    (endpoint,) = webhooks.list_endpoints(app.extensions["crm"].crm.store)
    assert endpoint.secret in added.get_data(as_text=True)
    assert "no-store" in added.headers.get("Cache-Control", "")


def test_a_hostile_url_and_error_text_are_escaped(app: Any) -> None:
    store = app.extensions["crm"].crm.store
    endpoint = webhooks.add_endpoint(store, HOSTILE, "*")
    store.enqueue_webhook_deliveries(
        [
            webhooks.WebhookDelivery(
                id="whd_x",
                endpoint_id=endpoint.id,
                event="entry.created",
                entry_id="<img src=x onerror=alert(2)>",
                created_at="2026-11-30T00:00:00.000000Z",
                body="{}",
                queued_at=0.0,
                next_attempt_at=0.0,
                status="failed",
                last_error="<script>alert(3)</script>",
            )
        ]
    )
    client = operator_client(app)
    listing = client.get(PAGE).get_data(as_text=True)
    log = client.get(f"{PAGE}/{endpoint.id}").get_data(as_text=True)
    for html in (listing, log):
        assert "<script>" not in html and "<img src=x" not in html
        assert '"onmouseover=' not in html
    assert "&lt;script&gt;alert(3)" in log
