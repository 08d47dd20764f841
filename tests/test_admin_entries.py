"""Entries in the admin (issue 12, item 3), on both backends: the table (keyset pages, search,
filters, sort), the entry page (values, relations both ways, stage history), inline edits
(locked 403, invalid 422, stale 409, CSRF 400 — each changing nothing) and stage moves."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from bs4 import BeautifulSoup

from crm_templates.stage_history import history
from tests.admin_world import (
    BACKENDS,
    csrf_token,
    customer_client,
    make_admin_app,
    operator_client,
    seed_two_customers,
)

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_admin_app(tmp_path, request.param, request)
    yield application
    application.extensions["crm"].close()


def crm_of(app: Any) -> Any:
    return app.extensions["crm"].crm


def deal_of(app: Any, customer_id: str) -> Any:
    (entry,) = crm_of(app).store.find_entries("deals", "customer", customer_id)
    return entry


def soup(response: Any) -> BeautifulSoup:
    return BeautifulSoup(response.get_data(as_text=True), "html.parser")


def table_titles(response: Any) -> list[str]:
    return [th.get_text(strip=True) for th in soup(response).select("tbody th[scope=row]")]


# --- permissions ----------------------------------------------------------------------------


def test_every_view_is_for_operators_only(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    deal = deal_of(app, ann.id)
    views = ["/admin/entities/deals/entries", f"/admin/entries/{deal.id}"]
    for path in views:
        response = app.test_client().get(path)
        assert response.status_code == 302 and "/operator/sign-in" in response.headers["Location"]
    customer = customer_client(app, "ann@example.com")
    token = csrf_token(customer, "/auth/sign-in")
    for path in views:
        assert customer.get(path).status_code == 403, path
    posts = {
        f"/admin/entries/{deal.id}/values/note": {"value": "customer was here"},
        f"/admin/entries/{deal.id}/stage": {"stage": "won"},
    }
    for path, data in posts.items():
        assert customer.post(path, data={**data, "csrf_token": token}).status_code == 403
        assert app.test_client().post(path, data=data).status_code == 400  # CSRF first
    assert deal_of(app, ann.id) == deal
    assert history(crm_of(app), deal.id) == []
    operator = operator_client(app)
    for path in views:
        assert operator.get(path).status_code == 200, path


# --- the table ------------------------------------------------------------------------------


def test_the_table_shows_both_customers_entries_rendered_and_filters_by_reference(
    app: Any,
) -> None:
    ann, bob = seed_two_customers(app)
    client = operator_client(app)
    response = client.get("/admin/entities/deals/entries")
    assert response.status_code == 200
    assert table_titles(response) == ["Bob's deal", "Ann's deal"]  # newest first
    page = soup(response)
    assert page.select_one('link[href="/admin/static/entries.css"]')
    assert page.select_one('script[src="/admin/static/entries.js"]')
    # Rendered with `renderers` (a number field's span), linked to the entry page.
    assert page.select("tbody .crm-number")
    assert page.select_one("tbody th a")["href"] == f"/admin/entries/{deal_of(app, bob.id).id}"
    only_ann = client.get(f"/admin/entities/deals/entries?reference_id={ann.id}")
    assert table_titles(only_ann) == ["Ann's deal"]
    only_bob = client.get(
        f"/admin/entities/deals/entries?reference_type=customer&reference_id={bob.id}"
    )
    assert table_titles(only_bob) == ["Bob's deal"]
    nobody = client.get("/admin/entities/deals/entries?reference_type=order")
    assert table_titles(nobody) == []
    assert "No entry matches these filters." in nobody.get_data(as_text=True)
    # A data-mode entity has a table too (no stage column).
    profiles = client.get("/admin/entities/profile/entries")
    assert profiles.status_code == 200
    headers = [th.get_text(strip=True) for th in soup(profiles).select("thead th")]
    assert "Stage" not in headers and "Nickname" in headers


def test_search_stage_filter_and_sort(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    crm = crm_of(app)
    client = operator_client(app)
    url = "/admin/entities/deals/entries"
    assert table_titles(client.get(f"{url}?q=ANN")) == ["Ann's deal"]
    assert table_titles(client.get(f"{url}?q=200")) == ["Bob's deal"]  # a number value
    assert table_titles(client.get(f"{url}?q=zzz")) == []
    crm.bind(ann.id).move_to_stage(slug="deals", stageSlug="won")
    assert table_titles(client.get(f"{url}?stage=won")) == ["Ann's deal"]
    won_id = next(s.id for s in crm.get_entity("deals").pipelines[0].stages if s.slug == "won")
    assert table_titles(client.get(f"{url}?stage={won_id}&pipeline=sales")) == ["Ann's deal"]
    assert table_titles(client.get(f"{url}?stage=new")) == ["Bob's deal"]
    assert table_titles(client.get(f"{url}?pipeline=sales")) == ["Bob's deal", "Ann's deal"]
    assert table_titles(client.get(f"{url}?sort=created")) == ["Ann's deal", "Bob's deal"]
    # Ann's deal was updated last (the move).
    assert table_titles(client.get(f"{url}?sort=-updated")) == ["Ann's deal", "Bob's deal"]
    assert table_titles(client.get(f"{url}?sort=updated")) == ["Bob's deal", "Ann's deal"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("stage=nope", "has no stage 'nope'"),
        ("pipeline=nope", "has no pipeline 'nope'"),
        ("sort=title", "sort must be one of"),
        ("after=not-a-token", "page cursor"),
        ("q=" + "x" * 201, "at most 200"),
        ("reference_type=bad%20type", "referenceType must match"),
    ],
)
def test_bad_table_parameters_answer_400_with_a_message(app: Any, query: str, message: str) -> None:
    response = operator_client(app).get(f"/admin/entities/deals/entries?{query}")
    assert response.status_code == 400
    assert message in soup(response).get_text()


def test_unknown_entity_is_404_and_stages_on_data_mode_are_400(app: Any) -> None:
    client = operator_client(app)
    assert client.get("/admin/entities/nope/entries").status_code == 404
    response = client.get("/admin/entities/profile/entries?stage=new")
    assert response.status_code == 400 and "data mode" in response.get_data(as_text=True)


def next_link(response: Any) -> str | None:
    link = soup(response).select_one('a[rel="next"]')
    return link["href"] if link else None


def test_pages_walk_every_entry_once_even_when_entries_are_added(app: Any) -> None:
    crm = crm_of(app)
    for n in range(120):
        crm.create_entry(slug="deals", title=f"deal {n:03d}", referenceId=f"cus_{n % 3}")
    client = operator_client(app)
    url: str | None = "/admin/entities/deals/entries?sort=created"
    seen: list[str] = []
    pages = 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += table_titles(response)
        pages += 1
        # A newcomer between pages sorts after everything: it shows up at the end, once.
        crm.create_entry(slug="deals", title=f"late {pages}", referenceId="cus_0")
        url = next_link(response)
        if url:
            assert "offset" not in url and "after=" in url
    assert seen[:120] == [f"deal {n:03d}" for n in range(120)]
    assert len(seen) == len(set(seen))
    assert all(title.startswith("late") for title in seen[120:])
    assert pages >= 3


def test_a_cursor_is_signed_and_bound_to_its_sort(app: Any) -> None:
    crm = crm_of(app)
    for n in range(60):
        crm.create_entry(slug="deals", title=f"deal {n}", referenceId="cus_a")
    client = operator_client(app)
    first = client.get("/admin/entities/deals/entries?q=deal")
    link = next_link(first)
    assert link is not None and "q=deal" in link
    token = parse_qs(urlsplit(link).query)["after"][0]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(f"/admin/entities/deals/entries?after={forged}").status_code == 400
    other_sort = client.get(f"/admin/entities/deals/entries?sort=-updated&after={token}")
    assert other_sort.status_code == 400
    assert "made for the sort '-created'" in soup(other_sort).get_text()
    second = client.get(link)
    assert len(table_titles(second)) == 10
    assert soup(second).select_one(".entries-pages a:not([rel])").get_text() == "First page"


def test_hostile_values_are_escaped_in_table_and_detail(app: Any) -> None:
    crm = crm_of(app)
    created = crm.create_entry(
        slug="deals", title=HOSTILE, values={"note": HOSTILE}, referenceId="cus_a"
    )
    client = operator_client(app)
    for path in ("/admin/entities/deals/entries", f"/admin/entries/{created['id']}"):
        body = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in body and "<img src=x" not in body, path
        assert "&lt;script&gt;alert" in body, path


# --- inline edit ----------------------------------------------------------------------------


def edit(client: Any, entry: Any, key: str, value: Any, **extra: Any) -> Any:
    data = {"csrf_token": csrf_token(client, f"/admin/entries/{entry.id}"), "value": value}
    data.update(extra)
    return client.post(f"/admin/entries/{entry.id}/values/{key}", data=data)


def test_inline_edit_saves_and_records_the_action(app: Any, caplog: Any) -> None:
    ann, bob = seed_two_customers(app)
    deal = deal_of(app, ann.id)
    client = operator_client(app)
    caplog.set_level(logging.INFO, logger="crm_templates.audit")
    response = edit(client, deal, "amount", "150.5", version=str(deal.version),
                    next="/admin/entities/deals/entries?q=ann")  # fmt: skip
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/entities/deals/entries?q=ann"
    assert deal_of(app, ann.id).values["amount"] == 150.5
    assert deal_of(app, bob.id).values["amount"] == 200  # the other customer's is untouched
    assert any("value.edit" in r.getMessage() and deal.id in r.getMessage() for r in caplog.records)
    # Without a version: the edit merges (last write wins for that key); next elsewhere is ignored.
    response = edit(client, deal, "note", "new note", next="https://evil.example/")
    assert response.headers["Location"] == f"/admin/entries/{deal.id}"
    assert deal_of(app, ann.id).values["note"] == "new note"
    # Clearing a number: an empty box is "no value".
    assert edit(client, deal, "amount", "").status_code == 303
    assert deal_of(app, ann.id).values["amount"] is None


def test_a_locked_field_shows_a_lock_and_refuses_edits(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    deal = deal_of(app, ann.id)
    client = operator_client(app)
    page = soup(client.get(f"/admin/entries/{deal.id}"))
    cell = page.select_one(f"#v-{deal.id}-score")
    lock = cell.select_one(".entry-lock")
    assert lock["role"] == "img" and lock["aria-label"] == "Locked: not editable in the admin"
    assert cell.select_one("form") is None
    assert page.select_one(f"#v-{deal.id}-amount form")  # an editable one has a form
    response = edit(client, deal, "score", "5")
    assert response.status_code == 403
    assert "ui_editable: false" in response.get_data(as_text=True)
    assert deal_of(app, ann.id) == deal
    json_answer = client.post(
        f"/admin/entries/{deal.id}/values/score",
        data={"csrf_token": csrf_token(client), "value": "5"},
        headers={"Accept": "application/json"},
    )
    assert json_answer.status_code == 403 and json_answer.get_json()["ok"] is False
    assert deal_of(app, ann.id) == deal


def test_an_invalid_value_is_422_with_the_core_message_next_to_it(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    deal = deal_of(app, ann.id)
    client = operator_client(app)
    response = edit(client, deal, "amount", "lots", version=str(deal.version))
    assert response.status_code == 422
    page = soup(response)
    cell = page.select_one(f"#v-{deal.id}-amount")
    error = cell.select_one(".entry-error").get_text(strip=True)
    assert "field 'amount' (number) expects" in error and "'lots'" in error
    field = cell.select_one("input[name=value]")
    assert field["value"] == "lots" and field["aria-invalid"] == "true"
    assert cell.select_one("details").has_attr("open")
    assert deal_of(app, ann.id) == deal
    # From the table: the table comes back, the error next to that value.
    back = "/admin/entities/deals/entries?sort=created"
    response = edit(client, deal, "amount", "lots", next=back)
    assert response.status_code == 422
    table = soup(response)
    assert table.select_one("h1").get_text() == "Deals: entries"
    assert "expects" in table.select_one(f"#v-{deal.id}-amount .entry-error").get_text()
    # JSON flow (entries.js): the message, the same status.
    answer = client.post(
        f"/admin/entries/{deal.id}/values/amount",
        data={"csrf_token": csrf_token(client), "value": "lots"},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 422 and "expects" in answer.get_json()["error"]
    assert deal_of(app, ann.id) == deal


def test_missing_csrf_stale_version_and_unknown_targets_change_nothing(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    deal = deal_of(app, ann.id)
    client = operator_client(app)
    no_csrf = client.post(f"/admin/entries/{deal.id}/values/note", data={"value": "x"})
    assert no_csrf.status_code == 400
    assert deal_of(app, ann.id) == deal
    crm_of(app).update_entry(deal.id, {"note": "changed by a script"})
    stale = edit(client, deal, "note", "mine", version=str(deal.version))
    assert stale.status_code == 409
    assert "changed by someone else" in stale.get_data(as_text=True)
    assert deal_of(app, ann.id).values["note"] == "changed by a script"
    assert edit(client, deal, "note", "x", version="v1").status_code == 400
    assert edit(client, deal, "nope", "x").status_code == 404
    no_value = client.post(
        f"/admin/entries/{deal.id}/values/note", data={"csrf_token": csrf_token(client)}
    )
    assert no_value.status_code == 400
    token = csrf_token(client)
    assert client.post("/admin/entries/nope/values/note",
                       data={"csrf_token": token, "value": "x"}).status_code == 404  # fmt: skip
    assert deal_of(app, ann.id).values["note"] == "changed by a script"


def test_json_edit_answers_the_rendered_value_and_new_version(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    deal = deal_of(app, ann.id)
    client = operator_client(app)
    answer = client.post(
        f"/admin/entries/{deal.id}/values/note",
        data={"csrf_token": csrf_token(client), "value": HOSTILE, "version": str(deal.version)},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 200
    data = answer.get_json()
    assert data["ok"] is True and data["version"] == deal.version + 1
    assert "crm-text" in data["html"] and "<script>" not in data["html"]


# --- entry page: stage, relations, history --------------------------------------------------


def test_stage_move_from_the_admin_and_from_a_template_show_in_the_history(
    app: Any, caplog: Any
) -> None:
    ann, _ = seed_two_customers(app)
    deal = deal_of(app, ann.id)
    crm = crm_of(app)
    crm.bind(ann.id).move_to_stage(slug="deals", stageSlug="won")  # as a page would
    client = operator_client(app)
    caplog.set_level(logging.INFO, logger="crm_templates.audit")
    token = csrf_token(client, f"/admin/entries/{deal.id}")
    response = client.post(f"/admin/entries/{deal.id}/stage",
                           data={"csrf_token": token, "stage": "lost"})  # fmt: skip
    assert response.status_code == 303
    assert any("entry.stage" in r.getMessage() for r in caplog.records)
    page = soup(client.get(f"/admin/entries/{deal.id}"))
    rows = [
        [td.get_text(strip=True) for td in tr.select("td")]
        for tr in page.select(".entry-history tbody tr")
    ]
    assert [row[1:] for row in rows] == [
        ["operator", "Won", "Lost"],
        [f"customer {ann.id}", "New", "Won"],
    ]
    assert page.select_one("#move-stage option[selected]").get_text() == "Lost"


def test_stage_move_refusals(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    deal = deal_of(app, ann.id)
    client = operator_client(app)
    token = csrf_token(client)
    url = f"/admin/entries/{deal.id}/stage"
    unknown = client.post(url, data={"csrf_token": token, "stage": "nope"})
    assert unknown.status_code == 422
    assert "has no stage 'nope'" in soup(unknown).select_one("#move-error").get_text()
    assert client.post(url, data={"stage": "won"}).status_code == 400  # no CSRF
    stale = client.post(url, data={"csrf_token": token, "stage": "won", "version": "99"})
    assert stale.status_code == 409
    assert client.post("/admin/entries/nope/stage",
                       data={"csrf_token": token, "stage": "won"}).status_code == 404  # fmt: skip
    assert deal_of(app, ann.id) == deal
    profile = crm_of(app).store.find_entries("profile", "customer", ann.id)[0]
    data_mode = client.post(f"/admin/entries/{profile.id}/stage",
                            data={"csrf_token": token, "stage": "won"})  # fmt: skip
    assert data_mode.status_code == 422 and "data mode" in data_mode.get_data(as_text=True)
    json_answer = client.post(url, data={"csrf_token": token, "stage": "won"},
                              headers={"Accept": "application/json"})  # fmt: skip
    assert json_answer.get_json()["ok"] is True
    assert history(crm_of(app), deal.id)[0].actor == "operator"


def test_a_data_mode_entry_page_has_values_and_no_stage(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    profile = crm_of(app).store.find_entries("profile", "customer", ann.id)[0]
    page = soup(operator_client(app).get(f"/admin/entries/{profile.id}"))
    assert page.select_one(f"#v-{profile.id}-nickname").get_text(" ", strip=True).startswith("Ann")
    assert page.select_one("#move-stage") is None and page.select_one(".entry-history") is None


def test_relations_are_linked_both_ways(app: Any) -> None:
    ann, bob = seed_two_customers(app)
    crm = crm_of(app)
    crm.ensure_entity(
        slug="contacts",
        name="Contacts",
        entityMode="data",
        fields=[
            {"key": "name"},
            {"key": "deal", "label": "Main deal", "type": "reference", "target_entity": "deals"},
            {"key": "others", "label": "Other deals", "type": "multi_reference",
             "target_entity": "deals"},
        ],
    )  # fmt: skip
    crm.ensure_entity(
        slug="deals",
        fields=[{"key": "contact", "label": "Contact", "type": "reference",
                 "target_entity": "contacts", "display_field": "name"}],
    )  # fmt: skip
    ann_deal, bob_deal = deal_of(app, ann.id), deal_of(app, bob.id)
    contact = crm.create_entry(
        slug="contacts",
        title="Carol",
        values={"name": "Carol C", "deal": ann_deal.id, "others": [bob_deal.id, ann_deal.id]},
        referenceType="site",
        referenceId="crm",
    )["id"]
    crm.update_entry(ann_deal.id, {"contact": contact})
    client = operator_client(app)
    page = soup(client.get(f"/admin/entries/{ann_deal.id}"))
    out_links = {a.get_text(): a["href"] for a in page.select("#relations-out a")}
    assert out_links == {"Carol C": f"/admin/entries/{contact}"}
    incoming = [li.get_text(" ", strip=True) for li in page.select("#relations-in li")]
    assert incoming == ["Contacts · Main deal: Carol", "Contacts · Other deals: Carol"]
    assert {a["href"] for a in page.select("#relations-in a")} == {f"/admin/entries/{contact}"}
    # Bob's deal is linked only from the multi_reference; the contact page links both deals.
    bob_page = soup(client.get(f"/admin/entries/{bob_deal.id}"))
    assert bob_page.select_one("#relations-out") is None
    assert [li.get_text(" ", strip=True) for li in bob_page.select("#relations-in li")] == [
        "Contacts · Other deals: Carol"
    ]
    contact_page = soup(client.get(f"/admin/entries/{contact}"))
    targets = {a["href"] for a in contact_page.select("#relations-out a")}
    assert targets == {f"/admin/entries/{ann_deal.id}", f"/admin/entries/{bob_deal.id}"}
    # In the table the reference renders as a labelled link to the entry page.
    table = client.get("/admin/entities/deals/entries").get_data(as_text=True)
    assert re.search(rf'href="/admin/entries/{contact}"[^>]*>Carol C<', table)


# --- in a real browser ----------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
# The locked field's refusal answers 403, which Chromium logs as a failed resource load.
@pytest.mark.allow_console_errors(r"status of 403 ")
def test_browser_inline_edit_and_a_locked_field_refusing(
    page: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    from tests.admin_world import PASSWORD
    from tests.test_server_browser import LiveServer

    application = make_admin_app(tmp_path, "sqlite", request)
    ann, _ = seed_two_customers(application)
    deal = deal_of(application, ann.id)
    server = LiveServer(application)
    try:
        page.goto(f"{server.url}/operator/sign-in?next=/admin/entities/deals/entries")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Deals: entries")
        cell = page.locator(f"#v-{deal.id}-amount")
        cell.locator("summary").click()
        cell.get_by_label("New value of Amount of Ann's deal").fill("321")
        cell.get_by_role("button", name="Save").click()
        # entries.js swapped the rendered value in place (no page load) and closed the form.
        expect(cell.locator(".entry-value-shown")).to_have_text("321")
        expect(cell.locator("details")).not_to_have_attribute("open", "")
        assert deal_of(application, ann.id).values["amount"] == 321
        # The locked field: a lock with its accessible name, no form; the server refuses too.
        locked = page.locator(f"#v-{deal.id}-score")
        expect(locked.get_by_role("img", name="Locked: not editable in the admin")).to_be_visible()
        assert locked.locator("form").count() == 0
        status = page.evaluate(
            """async (url) => {
                const token = document.querySelector('input[name=csrf_token]').value;
                const body = new URLSearchParams({csrf_token: token, value: '9'});
                return (await fetch(url, {method: 'POST', body})).status;
            }""",
            f"/admin/entries/{deal.id}/values/score",
        )
        assert status == 403
        assert "score" not in deal_of(application, ann.id).values
        page.screenshot(path=str(tmp_path / "admin-inline-edit.png"), full_page=True)
        axe = Axe()
        problems = []
        for name, url in (("entry", f"/admin/entries/{deal.id}"),
                          ("entries-table", "/admin/entities/deals/entries")):  # fmt: skip
            page.goto(server.url + url)
            page.screenshot(path=str(tmp_path / f"admin-{name}.png"), full_page=True)
            results = axe.run(page)
            problems += [
                f"{url}: {v['id']} [{v['impact']}] {v['help']}"
                for v in results.response["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            print(url, [(v["id"], v["impact"]) for v in results.response["violations"]])
        assert problems == []
    finally:
        server.stop()


# --- the real process -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_server_lists_edits_and_moves_entries(tmp_path: Path) -> None:
    """`crm-templates serve` on the weight tracker with CRM_OPERATOR_PASSWORD, as the docs say:
    sign in at /operator/sign-in, open the entity's entries, edit a value, move a stage."""
    import shutil
    import urllib.error
    from urllib.parse import urlencode

    from tests.test_serve import SAMPLES, Served, browser_session

    site = tmp_path / "site"
    shutil.copytree(SAMPLES / "weight_tracker", site, ignore=shutil.ignore_patterns("instance"))
    served = Served(site, tmp_path / "crm.db", env={"CRM_OPERATOR_PASSWORD": "real-process"})
    client = browser_session()

    def get(path: str) -> str:
        with client.open(served.url(path), timeout=20) as response:
            assert response.status == 200, path
            return str(response.read().decode())

    def post(path: str, data: dict[str, str]) -> int:
        try:
            with client.open(served.url(path), urlencode(data).encode(), timeout=20) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        token = re.search(r'name="csrf_token" value="([^"]+)"', get("/operator/sign-in"))
        assert token is not None
        csrf = token.group(1)
        assert post("/operator/sign-in", {"csrf_token": csrf, "password": "real-process"}) == 303
        table = BeautifulSoup(get("/admin/entities/weight-tracker/entries"), "html.parser")
        rows = table.select("tbody tr")
        assert len(rows) == 5  # the seeded check-ins
        link = table.select_one('tbody th a[href^="/admin/entries/"]')["href"]
        entry_id = link.rsplit("/", 1)[1]
        assert table.select_one(f"#v-{entry_id}-weighin_history .entry-lock")
        assert post(f"{link}/values/goal_weight", {"csrf_token": csrf, "value": "72"}) == 303
        assert post(f"{link}/values/weighin_history", {"csrf_token": csrf, "value": "{}"}) == 403
        assert post(f"{link}/values/goal_weight", {"csrf_token": csrf, "value": "x"}) == 422
        assert post(f"{link}/stage", {"csrf_token": csrf, "stage": "goal-reached"}) == 303
        page = BeautifulSoup(get(link), "html.parser")
        assert (
            page.select_one(f"#v-{entry_id}-goal_weight .entry-value-shown")
            .get_text(strip=True)
            .startswith("72")
        )
        history_row = [td.get_text(strip=True) for td in page.select(".entry-history td")]
        # The newest check-in (the first row) was seeded in "In Progress".
        assert history_row[1:] == ["operator", "In Progress", "Goal Reached"]
    finally:
        served.stop()


def test_the_entry_page_shows_its_audit_trail_with_the_operator(app: Any) -> None:
    """Issue 12, item 1: an operator's edit appears in the entry's own audit trail (read back
    from the store), naming the operator; another entry's trail stays empty."""
    ann, bob = seed_two_customers(app)
    crm = app.extensions["crm"].crm
    deals = {e.reference_id: e for e in crm.store.iter_entries("deals")}
    ann_deal, bob_deal = deals[ann.id], deals[bob.id]
    client = operator_client(app)
    token = csrf_token(client, f"/admin/entries/{ann_deal.id}")
    response = client.post(
        f"/admin/entries/{ann_deal.id}/values/note", data={"csrf_token": token, "value": "edited"}
    )
    assert response.status_code == 303
    page = BeautifulSoup(client.get(f"/admin/entries/{ann_deal.id}").data, "html.parser")
    trail = page.select_one("section.admin-audit")
    assert trail is not None
    items = [li.get_text(" ", strip=True) for li in trail.select("li")]
    assert len(items) == 1 and "value.edit" in items[0], items
    other = BeautifulSoup(client.get(f"/admin/entries/{bob_deal.id}").data, "html.parser")
    assert not other.select("section.admin-audit li")
