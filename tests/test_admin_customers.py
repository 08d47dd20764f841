"""Customers in the admin (issue 12, item 5), on both backends: the list and search, the
customer page with its CRM tab (each customer's own entries only, values rendered and escaped),
the preview button, and signing a customer out everywhere (CSRF, audited)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from bs4 import BeautifulSoup

from crm_templates.operators import BOOTSTRAP_ID, add_operator
from tests.admin_world import (
    BACKENDS,
    csrf_token,
    customer_client,
    make_admin_app,
    operator_client,
    seed_two_customers,
)
from tests.test_server_browser import LiveServer

HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_admin_app(tmp_path, request.param, request)
    yield application
    application.extensions["crm"].close()


def crm_of(app: Any) -> Any:
    return app.extensions["crm"].crm


def soup(response: Any) -> BeautifulSoup:
    return BeautifulSoup(response.get_data(as_text=True), "html.parser")


def sign_out_url(customer: Any) -> str:
    return f"/admin/customers/{customer.id}/sign-out-everywhere"


def test_every_customer_view_is_for_operators_only(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    urls = [
        "/admin/customers",
        f"/admin/customers/{ann.id}",
        f"/admin/customers/{ann.id}?tab=details",
    ]
    anonymous = app.test_client()
    customer = customer_client(app, "ann@example.com")
    operator = operator_client(app)
    for url in urls:
        assert anonymous.get(url).status_code == 302, url
        assert anonymous.get(url).headers["Location"].startswith("/operator/sign-in?next=")
        assert customer.get(url).status_code == 403, url
        assert "Ann&#39;s deal" not in customer.get(url).get_data(as_text=True)
        assert operator.get(url).status_code == 200, url
    # The POST: anonymous → sign-in, customer → 403, and nothing changed either way.
    store = crm_of(app).store
    key = f"customer:{ann.id}"
    before = store.session_generation(key)
    token = csrf_token(customer, "/auth/sign-in")
    assert (
        anonymous.post(
            sign_out_url(ann), data={"csrf_token": csrf_token(anonymous, "/auth/sign-in")}
        ).status_code
        == 302
    )
    assert customer.post(sign_out_url(ann), data={"csrf_token": token}).status_code == 403
    assert store.session_generation(key) == before


def test_the_old_operator_page_leads_to_the_customers(app: Any) -> None:
    response = operator_client(app).get("/operator/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/customers"


def test_the_list_and_search(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    client = operator_client(app)
    page = soup(client.get("/admin/customers"))
    assert [a.get_text() for a in page.select("tbody td:first-child a")] == ["Bob", "Ann"]
    assert (
        page.select_one('nav[aria-label="Admin"] a[aria-current="page"]').get_text() == "Customers"
    )
    for query in ("ann", "ANN@EXAMPLE", ann.id, ann.id[-8:], "ann@example.com"):
        found = soup(client.get("/admin/customers", query_string={"q": query}))
        assert [a.get_text() for a in found.select("tbody td:first-child a")] == ["Ann"], query
    none = soup(client.get("/admin/customers?q=zed"))
    assert none.select("tbody tr") == [] and "No customer matches" in none.get_text()
    preview = page.select_one(f'a[href="/?preview_customer={ann.id}"]')
    assert preview is not None
    for bad in ("page=0", "page=x", "page=999999", "q=" + "x" * 321):
        assert client.get(f"/admin/customers?{bad}").status_code == 400, bad


def test_the_list_pages(app: Any) -> None:
    crm = crm_of(app)
    for i in range(53):
        crm.create_customer(f"c{i:02d}@example.com", first_name=f"C{i:02d}")
    client = operator_client(app)
    first = soup(client.get("/admin/customers"))
    assert len(first.select("tbody tr")) == 50
    second = soup(client.get(first.select_one('a[rel="next"]')["href"]))
    names = [a.get_text() for a in second.select("tbody td:first-child a")]
    assert names == ["C02", "C01", "C00"]
    assert second.select_one('a[rel="next"]') is None and second.select_one('a[rel="prev"]')
    searched = soup(client.get("/admin/customers?q=example.com&page=2"))
    assert len(searched.select("tbody tr")) == 3


def entry_titles(page: BeautifulSoup) -> list[str]:
    return [a.get_text() for a in page.select(".admin-entry-head a")]


def test_each_crm_tab_shows_only_that_customers_entries(app: Any) -> None:
    ann, bob = seed_two_customers(app)
    crm = crm_of(app)
    # A shared entry (not a customer's) and another customer's entry never show up.
    crm.create_entry(slug="deals", title="Company deal", values={"amount": 5},
                     referenceId="acme", referenceType="company")  # fmt: skip
    client = operator_client(app)
    ann_page = soup(client.get(f"/admin/customers/{ann.id}"))
    bob_page = soup(client.get(f"/admin/customers/{bob.id}"))
    assert [h.get_text(" ", strip=True) for h in ann_page.select(".admin-crm-entity h3")] == [
        "Deals (1)",
        "Profile (1)",
    ]
    assert "Ann's deal" in entry_titles(ann_page)
    assert "Bob's deal" not in ann_page.get_text() and "Company deal" not in ann_page.get_text()
    assert "Ann's deal" not in bob_page.get_text() and "Bob's deal" in entry_titles(bob_page)
    # Values rendered by `renderers`, each entry linked to its admin page.
    [deal] = crm.store.find_entries("deals", "customer", ann.id)
    link = ann_page.select_one(f'a[href="/admin/entries/{deal.id}"]')
    assert link is not None and link.get_text() == "Ann's deal"
    values = {
        dt.get_text(): dd
        for dt, dd in zip(ann_page.select("dt"), ann_page.select("dd"), strict=True)
    }
    assert values["Amount"].select_one(".crm-field") is not None
    assert values["Amount"].get_text(strip=True) == "100"
    assert values["Nickname"].get_text(strip=True) == "Ann"
    assert "2 entries across every entity" in ann_page.get_text()
    assert ann_page.select_one('.admin-tabs a[aria-current="page"]').get_text() == "CRM"


def test_hostile_values_are_escaped_in_the_crm_tab(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    crm = crm_of(app)
    created = crm.create_entry(slug="deals", title=HOSTILE, values={"note": HOSTILE},
                               referenceId=ann.id)  # fmt: skip
    assert created["ok"], created
    client = operator_client(app)
    html = client.get(f"/admin/customers/{ann.id}").get_data(as_text=True)
    assert "<script>alert(2)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    page = BeautifulSoup(html, "html.parser")
    assert HOSTILE in entry_titles(page)
    assert page.find("img") is None and page.find("script") is None
    # A hostile name, in the list, the search and the customer's page title.
    mallory = crm.create_customer("mallory@example.com", first_name=HOSTILE)
    for url in ("/admin/customers", "/admin/customers?q=mallory", f"/admin/customers/{mallory.id}"):
        page = soup(client.get(url))
        assert page.find("img") is None and page.find("script") is None, url
        assert HOSTILE in page.get_text(), url


def test_unknown_or_non_customer_ids_are_404(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    client = operator_client(app)
    [deal] = crm_of(app).store.find_entries("deals", "customer", ann.id)
    token = csrf_token(client, "/admin/")
    for cid in ("cus_nobody", deal.id, "x" * 300):
        assert client.get(f"/admin/customers/{cid}").status_code == 404, cid
        assert client.post(f"/admin/customers/{cid}/sign-out-everywhere",
                           data={"csrf_token": token}).status_code == 404  # fmt: skip
    assert client.get(f"/admin/customers/{ann.id}?tab=nope").status_code == 400


def test_the_preview_button_previews_as_that_customer(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    client = operator_client(app)
    page = soup(client.get(f"/admin/customers/{ann.id}"))
    button = page.find("a", string="Preview pages as this customer")
    assert button is not None and button["href"] == f"/?preview_customer={ann.id}"
    html = client.get(button["href"]).get_data(as_text=True)
    assert "crm-preview-banner" in html and "<main>Ann</main>" in html


def test_signing_a_customer_out_everywhere(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    ann_browser = customer_client(app, "ann@example.com")
    bob_browser = customer_client(app, "bob@example.com")
    assert "<main>Ann</main>" in ann_browser.get("/").get_data(as_text=True)
    client = operator_client(app)
    store = crm_of(app).store
    before = store.session_generation(f"customer:{ann.id}")
    # Without the CSRF token: 400, nothing changed.
    response = client.post(sign_out_url(ann), data={})
    assert response.status_code == 400
    assert store.session_generation(f"customer:{ann.id}") == before
    assert "<main>Ann</main>" in ann_browser.get("/").get_data(as_text=True)
    token = soup(client.get(f"/admin/customers/{ann.id}")).select_one(
        f'form[action="{sign_out_url(ann)}"] input[name="csrf_token"]'
    )["value"]
    response = client.post(sign_out_url(ann), data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/admin/customers/{ann.id}?signed_out=1"
    assert "Every session of this customer was signed out." in client.get(
        response.headers["Location"]
    ).get_data(as_text=True)
    assert "<main></main>" in ann_browser.get("/").get_data(as_text=True)  # a visitor now
    assert "<main>Bob</main>" in bob_browser.get("/").get_data(as_text=True)  # Bob stays
    [record] = store.list_audit_records(operator_id=BOOTSTRAP_ID, limit=1)
    assert record.action == "customer.sign_out_everywhere"
    assert record.details["customer_id"] == ann.id


@pytest.mark.browser
@pytest.mark.slow
def test_an_account_finds_a_customer_and_opens_the_crm_tab_in_a_browser(
    tmp_path: Path, request: pytest.FixtureRequest, page: Any
) -> None:
    from playwright.sync_api import expect

    app = make_admin_app(tmp_path, "sqlite", request)
    app.config["TRUSTED_HOSTS"] = ["127.0.0.1"]
    app.config["CRM_COOKIE_SECURE"] = False
    app.config["SESSION_COOKIE_SECURE"] = False
    ann, _ = seed_two_customers(app)
    add_operator(crm_of(app).store, "ops@example.com", "browser password")
    server = LiveServer(app)
    axe = Axe()
    problems: list[str] = []

    def check(state: str) -> None:
        for violation in axe.run(page).response["violations"]:
            if violation["impact"] in ("serious", "critical"):
                problems.append(f"{state}: {violation['id']} [{violation['impact']}]")

    try:
        page.goto(server.url + "/admin/customers")
        expect(page).to_have_url(server.url + "/operator/sign-in?next=/admin/customers")
        check("operator sign-in")
        page.fill("#email", "ops@example.com")
        page.fill("#password", "browser password")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(server.url + "/admin/customers")
        check("customers")
        page.get_by_label("Search customers").fill("ann")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("link", name="Ann", exact=True).click()
        expect(page.locator("main h1")).to_have_text("Ann")
        expect(page.locator(".admin-crm")).to_contain_text("Ann's deal")
        expect(page.locator(".admin-crm")).not_to_contain_text("Bob's deal")
        check("customer CRM tab")
        page.screenshot(path=str(tmp_path / "admin_customer_crm_tab.png"), full_page=True)
        page.get_by_role("link", name="Details").click()
        expect(page.locator("main")).to_contain_text(ann.id)
        check("customer details tab")
        page.get_by_role("link", name="Audit trail").click()
        expect(page.locator("main table")).to_contain_text("operator.sign_in")
        check("audit trail")
        page.emulate_media(color_scheme="dark")
        page.goto(f"{server.url}/admin/customers/{ann.id}")
        check("customer CRM tab, dark")
        page.screenshot(path=str(tmp_path / "admin_customer_crm_tab_dark.png"), full_page=True)
    finally:
        server.stop()
    assert (tmp_path / "admin_customer_crm_tab.png").stat().st_size > 0
    assert not problems, "\n".join(problems)
