"""The admin's look (issue 12, item 8, and the dashboard of the URL contract): the dashboard
(entities with mode, counts and links, the newest entries, customers, empty states, swatches
re-validated at render), breadcrumbs on the pages of every concern, the sign-in and error pages
in the admin theme (the site's own error pages keep the site's look), on both backends."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from crm_templates.server import create_app
from tests.admin_world import (
    BACKENDS,
    PASSWORD,
    csrf_token,
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


@pytest.fixture
def sqlite_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_admin_app(tmp_path, "sqlite", request)
    yield application
    application.extensions["crm"].close()


def soup_of(response: Any) -> BeautifulSoup:
    return BeautifulSoup(response.get_data(as_text=True), "html.parser")


def entity_rows(soup: BeautifulSoup) -> dict[str, Any]:
    return {
        tr.select_one("th code").get_text(strip=True): tr
        for tr in soup.select("table.dashboard-entities tbody tr")
    }


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_shows_each_entitys_mode_count_and_links(app: Any) -> None:
    seed_two_customers(app)
    client = operator_client(app)
    soup = soup_of(client.get("/admin/"))
    rows = entity_rows(soup)
    assert set(rows) == {"deals", "profile"}
    # The Mode column reads Entity.mode (it read a missing attribute and showed nothing).
    assert [td.get_text(strip=True) for td in rows["deals"].find_all("td")][:2] == ["crm", "2"]
    assert [td.get_text(strip=True) for td in rows["profile"].find_all("td")][:2] == ["data", "2"]
    deals = {a.get_text(" ", strip=True): a["href"] for a in rows["deals"].find_all("a")}
    assert deals == {
        "Deals": "/admin/entities/deals",
        "2": "/admin/entities/deals/entries",
        "Entries of Deals": "/admin/entities/deals/entries",
        "Reports of Deals": "/admin/entities/deals/reports",
        "Sales board of Deals": "/admin/entities/deals/pipelines/sales",
    }
    profile = [a.get_text(" ", strip=True) for a in rows["profile"].find_all("a")]
    assert not any("board" in label for label in profile)  # a data entity has no pipelines
    for href in set(deals.values()):
        assert client.get(href).status_code == 200, href
    customers = soup.select_one("#customers-heading").find_parent("section").find("a")
    assert customers["href"] == "/admin/customers"
    assert customers.get_text(strip=True) == "2 customers"


def test_recent_entries_are_the_ten_newest_across_entities(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    crm = app.extensions["crm"].crm
    for n in range(11):
        made = crm.create_entry(
            slug="deals", title=f"Deal {n}", values={"amount": n}, referenceId=ann.id
        )
        assert made["ok"], made
    store = crm.store
    everything = [*store.iter_entries("deals"), *store.iter_entries("profile")]
    newest = sorted(everything, key=lambda e: (e.created_at, e.id), reverse=True)[:10]
    soup = soup_of(operator_client(app).get("/admin/"))
    links = [tr.select_one("th a") for tr in soup.select("table.dashboard-recent tbody tr")]
    assert [a["href"] for a in links] == [f"/admin/entries/{e.id}" for e in newest]
    first = soup.select_one("table.dashboard-recent tbody tr")
    assert first.select("td a")[1]["href"] == f"/admin/customers/{newest[0].reference_id}"


def test_a_profile_without_a_title_is_named_by_its_entity(app: Any) -> None:
    seed_two_customers(app)
    soup = soup_of(operator_client(app).get("/admin/"))
    titles = [a.get_text(strip=True) for a in soup.select("table.dashboard-recent th a")]
    assert sorted(titles) == ["Ann's deal", "Bob's deal", "Untitled Profile", "Untitled Profile"]


def test_a_stored_colour_that_does_not_parse_never_reaches_the_style(sqlite_app: Any) -> None:
    """A colour written straight into the store (not through the editor) is re-validated."""
    store = sqlite_app.extensions["crm"].crm.store
    deals = store.get_entity("deals")
    assert deals is not None
    hostile = "red;background:url(//evil.example/x)"
    store.update_entity(dataclasses.replace(deals, color=hostile), deals.version)
    soup = soup_of(operator_client(sqlite_app).get("/admin/"))
    rows = entity_rows(soup)
    assert rows["deals"].select_one(".admin-swatch")["style"] == "--swatch: #64748b"
    assert "evil.example" not in str(soup)
    profile = store.get_entity("profile")
    assert profile is not None
    store.update_entity(dataclasses.replace(profile, color="HSL(120 50% 50%)"), profile.version)
    rows = entity_rows(soup_of(operator_client(sqlite_app).get("/admin/")))
    assert rows["profile"].select_one(".admin-swatch")["style"] == "--swatch: hsl(120 50% 50%)"


def test_a_fresh_store_says_what_to_do(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text("<p>hi</p>")
    application = create_app(
        site, f"sqlite:///{tmp_path / 'crm.db'}", TESTING=True, CRM_OPERATOR_PASSWORD=PASSWORD
    )
    try:
        client = operator_client(application)
        soup = soup_of(client.get("/admin/"))
        text = soup.select_one("main").get_text(" ", strip=True)
        assert "No entities yet." in text and "crm.yaml" in text
        assert "No customers yet." in text
        assert not soup.select("table")
        hrefs = {a["href"] for a in soup.select("main a")}
        assert {"/admin/entities", "/admin/customers", "/auth/sign-in"} <= hrefs
    finally:
        application.extensions["crm"].close()


def test_entities_without_entries_say_where_entries_come_from(app: Any) -> None:
    soup = soup_of(operator_client(app).get("/admin/"))
    text = soup.select_one("main").get_text(" ", strip=True)
    assert "No entries yet." in text and "No customers yet." in text
    assert {"/admin/playground", "/admin/customers"} <= {a["href"] for a in soup.select("main a")}
    assert [row.find_all("td")[1].get_text(strip=True) for row in entity_rows(soup).values()] == [
        "0",
        "0",
    ]


# --- breadcrumbs -----------------------------------------------------------------------------


def test_breadcrumbs_on_the_pages_of_every_concern(app: Any) -> None:
    """Every parent crumb is a link that answers 200; the title is last, the current page."""
    ann, _ = seed_two_customers(app)
    client = operator_client(app)
    deal = next(iter(app.extensions["crm"].crm.store.iter_entries("deals")))
    expected = {
        "/admin/customers": [],
        f"/admin/customers/{ann.id}": [("Admin", "/admin/"), ("Customers", "/admin/customers")],
        "/admin/entities": [],
        "/admin/entities/deals": [("Admin", "/admin/"), ("Entities", "/admin/entities")],
        "/admin/entities/deals/entries": [
            ("Admin", "/admin/"),
            ("Entities", "/admin/entities"),
            ("Deals", "/admin/entities/deals"),
        ],
        f"/admin/entries/{deal.id}": None,  # checked generically below
        "/admin/entities/deals/pipelines/sales": None,
        "/admin/entities/deals/reports": None,
        "/admin/entities/deals/fields/amount": [
            ("Admin", "/admin/"),
            ("Entities", "/admin/entities"),
            ("Deals", "/admin/entities/deals"),
        ],
        "/admin/audit": [],
        "/admin/playground": [],
        "/admin/boards": [],
        "/admin/reports": [],
    }
    for url, trail in expected.items():
        response = client.get(url)
        assert response.status_code == 200, url
        soup = soup_of(response)
        title = soup.select_one("main h1").get_text(" ", strip=True)
        crumbs = soup.select("nav.admin-crumbs li")
        if trail == []:
            # A top-level page (one step below the dashboard): "Admin › Title".
            assert [li.get_text(strip=True) for li in crumbs] in ([], ["Admin", title]), url
            if crumbs:
                assert crumbs[0].a["href"] == "/admin/", url
            continue
        assert crumbs, f"{url} has no breadcrumbs"
        *parents, last = crumbs
        assert last.get_text(" ", strip=True) == title, url
        assert last.select_one('[aria-current="page"]') and not last.a, url
        assert len(soup.select('nav.admin-crumbs [aria-current="page"]')) == 1, url
        links = [(li.a.get_text(strip=True), li.a["href"]) if li.a else None for li in parents]
        assert None not in links, f"{url}: a parent crumb is not a link: {links}"
        assert links[0] == ("Admin", "/admin/"), url
        if trail is not None:
            assert links == trail, url
        for _, href in links:
            assert client.get(href).status_code == 200, (url, href)


# --- the theme of sign-in and error pages ----------------------------------------------------


def admin_themed(soup: BeautifulSoup) -> bool:
    links = [link["href"] for link in soup.select('link[rel="stylesheet"]')]
    return bool(soup.select_one("body.admin")) and links[0] in (
        "/admin/static/admin.css",
        "/operator/theme.css",
    )


def test_the_operator_sign_in_page_wears_the_admin_theme(app: Any) -> None:
    client = app.test_client()
    response = client.get("/operator/sign-in?next=/admin/entities")
    soup = soup_of(response)
    assert admin_themed(soup)
    assert soup.select_one('link[rel="stylesheet"]')["href"] == "/operator/theme.css"
    assert soup.select_one('input[name="csrf_token"]')["value"]
    assert soup.select_one('input[name="next"]')["value"] == "/admin/entities"
    assert not soup.select(".admin-signout") and not soup.select('nav[aria-label="Admin"]')
    theme = client.get("/operator/theme.css")  # public: the page is shown before signing in
    assert theme.status_code == 200 and theme.mimetype == "text/css"
    assert b"--accent" in theme.data and b"prefers-color-scheme: dark" in theme.data
    # A wrong password: 403, the error summary first in <main>, focused, linking the field.
    bad = client.post(
        "/operator/sign-in",
        data={"csrf_token": csrf_token(client), "password": "wrong", "email": "<b>x@y.z</b>"},
    )
    assert bad.status_code == 403
    soup = soup_of(bad)
    assert admin_themed(soup)
    summary = soup.select_one("main > .crm-error-summary")
    assert summary is not None and summary.has_attr("autofocus")
    assert summary.a["href"] == "#password"
    assert soup.select_one("#password")["aria-invalid"] == "true"
    assert "<b>x@y.z</b>" not in bad.get_data(as_text=True)  # escaped


def test_the_sign_in_page_is_never_a_sites_template(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text("<p>hi</p>")
    (site / "templates" / "crm").mkdir(parents=True)
    (site / "templates" / "crm" / "operator_sign_in.html").write_text("HIJACKED")
    (site / "templates" / "admin").mkdir(parents=True)
    (site / "templates" / "admin" / "base.html").write_text("HIJACKED")
    (site / "templates" / "admin" / "error.html").write_text("HIJACKED")
    application = create_app(site, f"sqlite:///{tmp_path / 'c.db'}", CRM_OPERATOR_PASSWORD="x")
    try:
        client = application.test_client()
        for url in ("/operator/sign-in", "/admin/nope"):
            html = client.get(url, follow_redirects=True).get_data(as_text=True)
            assert "HIJACKED" not in html and 'class="admin"' in html, url
    finally:
        application.extensions["crm"].close()


def test_admin_errors_wear_the_admin_theme_with_the_navigation_for_operators(app: Any) -> None:
    client = operator_client(app)
    response = client.get("/admin/entities/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert response.status_code == 404
    soup = soup_of(response)
    assert admin_themed(soup)
    assert soup.select_one(".admin-status").get_text(strip=True) == "Error 404"
    assert "There is no entity" in soup.select_one(".admin-message").get_text()
    assert "<img" not in response.get_data(as_text=True)  # the slug in the message, escaped
    assert soup.select('nav[aria-label="Admin"] a')  # the operator can go on from here
    assert soup.select_one(".admin-signout input[name=csrf_token]")["value"]
    # A POST without its CSRF token: 400 in the admin theme, nothing changed.
    before = app.extensions["crm"].crm.store.get_entity("deals")
    refused = client.post("/admin/entities/deals/settings", data={"name": "Changed"})
    assert refused.status_code == 400
    assert admin_themed(soup_of(refused))
    assert app.extensions["crm"].crm.store.get_entity("deals") == before
    # JSON clients still get JSON.
    as_json = client.get("/admin/entities/nope", headers={"Accept": "application/json"})
    assert as_json.status_code == 404 and as_json.get_json()["ok"] is False


def test_a_customer_refused_at_the_gate_sees_the_theme_but_no_admin(app: Any) -> None:
    seed_two_customers(app)
    client = customer_client(app, "ann@example.com")
    response = client.get("/admin/customers")
    assert response.status_code == 403
    soup = soup_of(response)
    assert admin_themed(soup)
    assert soup.select_one('link[rel="stylesheet"]')["href"] == "/operator/theme.css"
    assert not soup.select('nav[aria-label="Admin"]') and not soup.select(".admin-signout")
    assert "Sign in as an operator" in soup.select_one(".admin-message").get_text()
    assert "ann@example.com" not in response.get_data(as_text=True)
    assert "bob@example.com" not in response.get_data(as_text=True)


def test_site_errors_keep_the_sites_look(app: Any) -> None:
    response = operator_client(app).get("/no/such/page")
    assert response.status_code == 404
    soup = soup_of(response)
    assert not soup.select_one("body.admin")
    assert "/admin/static/admin.css" not in str(soup) and "/operator/theme.css" not in str(soup)


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422, 500])
def test_every_admin_error_status_is_themed(tmp_path: Path, status: int) -> None:
    from flask import abort

    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text("<p>hi</p>")
    application = create_app(
        site, f"sqlite:///{tmp_path / 'c.db'}", TESTING=False, CRM_OPERATOR_PASSWORD=PASSWORD
    )

    def fail(code: int) -> Any:
        if code == 500:
            raise RuntimeError("boom <b>")
        abort(code, f"Refused <b>{code}</b>.")

    application.add_url_rule("/admin-probe/<int:code>", view_func=fail)
    application.add_url_rule("/operator/probe/<int:code>", view_func=fail)
    try:
        client = operator_client(application)
        for url in (f"/operator/probe/{status}", f"/admin-probe/{status}"):
            response = client.get(url)
            assert response.status_code == status, url
            soup = soup_of(response)
            html = response.get_data(as_text=True)
            assert "<b>" not in html, url
            if url.startswith("/operator"):
                assert admin_themed(soup), url
                assert soup.select_one(".admin-status").get_text() == f"Error {status}"
                if status != 500:
                    assert f"Refused <b>{status}</b>." in soup.select_one(".admin-message").text
                else:
                    assert "boom" not in html  # no traceback outside debug mode
            else:
                # /admin-probe is not under /admin/: the site's look.
                assert not soup.select_one("body.admin"), url
    finally:
        application.extensions["crm"].close()


def test_the_admin_theme_is_dark_aware_and_has_phone_rules() -> None:
    css = (
        Path(__file__).resolve().parent.parent / "crm_templates/server/admin/static/admin.css"
    ).read_text()
    assert re.search(r"@media \(prefers-color-scheme: dark\)", css)
    assert re.search(r"@media \(max-width: 40rem\)", css)


def test_operator_features_off_is_a_themed_403_without_a_loop(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text("<p>hi</p>")
    application = create_app(site, f"sqlite:///{tmp_path / 'c.db'}", TESTING=True)
    try:
        response = application.test_client().get("/operator/sign-in")
        assert response.status_code == 403
        soup = soup_of(response)
        assert admin_themed(soup)
        assert "crm-templates operator add" in soup.select_one(".admin-message").get_text()
        assert [a["href"] for a in soup.select("main a")] == ["/"]  # no link back to itself
    finally:
        application.extensions["crm"].close()
