"""A site, an app and signed-in clients for the admin's tests (issue 12), on either backend.

``admin_app`` (fixture in tests/test_admin*.py via `make_admin_app`) serves a small site with
two entities, a pipeline and two customers' entries; `operator_client` signs in with the
bootstrap password, `customer_client` signs a customer in by email link.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from crm_templates.server import create_app

PASSWORD = "admin-test-password"
CRM_YAML = """\
entities:
  - slug: deals
    name: Deals
    color: "#2563eb"
    fields:
      - {key: amount, label: Amount, type: number}
      - {key: note, label: Note, type: text}
      - {key: score, label: Score, type: number, ui_editable: false}
    pipelines:
      - slug: sales
        name: Sales
        stages:
          - {slug: new, name: New, color: "#64748b", semantic_status: open}
          - {slug: won, name: Won, color: "#15803d", semantic_status: won}
          - {slug: lost, name: Lost, color: "#b91c1c", semantic_status: lost}
  - slug: profile
    name: Profile
    entity_mode: data
    fields:
      - {key: nickname, label: Nickname, type: text}
"""
PAGES = {
    "index.html": "<!doctype html><title>Home</title><main>{{ GetCrmField(slug='profile', "
    "fieldKey='nickname') }}</main>",
}
BACKENDS = ("sqlite", "opensearch")


def make_admin_app(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Any:
    """The admin test site on ``backend`` (``sqlite`` or ``opensearch``), operators enabled."""
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    for name, text in PAGES.items():
        (site / "pages" / name).write_text(text)
    (site / "crm.yaml").write_text(CRM_YAML)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        search_url = request.getfixturevalue("search_url")
        request.getfixturevalue("search_admin")
        url = f"{search_url}?prefix=t{uuid.uuid4().hex[:12]}_"
    return create_app(
        site,
        url,
        TESTING=True,
        CRM_OPERATOR_PASSWORD=PASSWORD,
        CRM_BASE_URL="http://localhost",
    )


def seed_two_customers(app: Any) -> tuple[Any, Any]:
    """Customers Ann and Bob, each with a deal and a profile of their own."""
    crm = app.extensions["crm"].crm
    ann = crm.create_customer("ann@example.com", first_name="Ann")
    bob = crm.create_customer("bob@example.com", first_name="Bob")
    for customer, amount in ((ann, 100), (bob, 200)):
        created = crm.create_entry(
            slug="deals",
            title=f"{customer.first_name}'s deal",
            values={"amount": amount, "note": f"{customer.first_name}'s deal"},
            referenceId=customer.id,
        )
        assert created["ok"], created
        crm.set_field(
            slug="profile", fieldKey="nickname", value=customer.first_name, referenceId=customer.id
        )
    return ann, bob


def csrf_token(client: Any, path: str = "/operator/sign-in") -> str:
    """The CSRF token of the client's session, read from a form page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match, path
    return match.group(1)


def operator_client(app: Any) -> Any:
    """A client signed in as the bootstrap operator."""
    client = app.test_client()
    response = client.post(
        "/operator/sign-in",
        data={"csrf_token": csrf_token(client), "password": PASSWORD, "next": "/admin/"},
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def customer_client(app: Any, email: str) -> Any:
    """A client signed in as the customer with ``email`` (through the emailed link)."""
    from tests.test_server_security import open_link

    client = app.test_client()
    outbox = app.extensions["crm"].outbox
    before = len(outbox)
    response = client.post(
        "/auth/sign-in", data={"csrf_token": csrf_token(client, "/auth/sign-in"), "email": email}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(outbox) == before + 1
    assert open_link(client, str(outbox[-1].link)).status_code == 303
    return client
