"""The admin's gate and frame (issue 12): every /admin URL is for operators only, on both
backends; the dashboard lists the entities with their entry counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from tests.admin_world import (
    BACKENDS,
    customer_client,
    make_admin_app,
    operator_client,
    seed_two_customers,
)


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_admin_app(tmp_path, request.param, request)
    yield application
    application.extensions["crm"].close()


def test_anonymous_visitors_are_sent_to_operator_sign_in(app: Any) -> None:
    response = app.test_client().get("/admin/?x=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/operator/sign-in?next=/admin/?x%3D1"


def test_a_signed_in_customer_gets_403_and_no_admin_markup(app: Any) -> None:
    seed_two_customers(app)
    client = customer_client(app, "ann@example.com")
    for path in ("/admin/", "/admin/static/admin.css"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Entities" not in response.get_data(as_text=True)


def test_operator_features_off_means_403_everywhere(tmp_path: Path, request: Any) -> None:
    application = make_admin_app(tmp_path, "sqlite", request)
    application.config["CRM_OPERATOR_PASSWORD"] = None
    try:
        response = application.test_client().get("/admin/")
        assert response.status_code == 403
        assert "CRM_OPERATOR_PASSWORD" in response.get_data(as_text=True)
    finally:
        application.extensions["crm"].close()


def test_the_dashboard_lists_entities_with_their_entry_counts(app: Any) -> None:
    seed_two_customers(app)
    response = operator_client(app).get("/admin/")
    assert response.status_code == 200
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    rows = {
        tr.select_one("th code").get_text(strip=True): tr.select_one("td.num").get_text(strip=True)
        for tr in page.select("table.dashboard-entities tbody tr")
    }
    assert rows == {"deals": "2", "profile": "2"}
    assert "2 customers in the store." in page.get_text(" ", strip=True)
    # The frame: a skip link first, the navigation, a main landmark with the title.
    assert page.select_one("a.admin-skip")["href"] == "#main"
    assert page.select_one("main#main h1").get_text(strip=True) == "Dashboard"
    assert page.select_one('link[rel="stylesheet"]')["href"] == "/admin/static/admin.css"


def test_signing_out_ends_admin_access(app: Any) -> None:
    client = operator_client(app)
    assert client.get("/admin/").status_code == 200
    page = client.get("/admin/").get_data(as_text=True)
    token = BeautifulSoup(page, "html.parser").select_one(".admin-signout input")["value"]
    assert client.post("/operator/sign-out", data={"csrf_token": token}).status_code == 303
    assert client.get("/admin/").status_code == 302
