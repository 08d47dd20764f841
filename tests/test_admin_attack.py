"""Findings of the attack review of the operator admin (issue 12), each a test that failed
before its fix: whole numbers typed into forms and query strings, the entries table's page
cursor replayed on another entity, and the playground's values bounded in size (memory bombs
and big-integer powers the render deadline cannot interrupt)."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from crm_templates.whole_numbers import MAX_DIGITS, parse_whole_number
from tests.admin_world import (
    BACKENDS,
    csrf_token,
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


def html_text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def first_entry(client: Any, slug: str) -> str:
    html = client.get(f"/admin/entities/{slug}/entries").get_data(as_text=True)
    match = re.search(r"/admin/entries/([0-9a-f]{32})", html)
    assert match, html[:2000]
    return match.group(1)


# --- whole numbers ---------------------------------------------------------------------------

# str.isdigit() is true for all of these but int() refuses them (or, past 4,300 digits, CPython
# refuses the conversion): each answered 500 where it was checked with isdigit() then int().
NOT_WHOLE_NUMBERS = ["²", "①", "٣x", "-1", "+1", "1.0", "1e3", "9" * (MAX_DIGITS + 1), "9" * 5000]


@pytest.mark.parametrize("raw", NOT_WHOLE_NUMBERS)
def test_parse_whole_number_refuses_what_is_not_ascii_digits(raw: str) -> None:
    assert parse_whole_number(raw) is None


def test_parse_whole_number_reads_ascii_digits() -> None:
    assert parse_whole_number(" 42 ") == 42
    assert parse_whole_number("0") == 0
    assert parse_whole_number("9" * MAX_DIGITS) == int("9" * MAX_DIGITS)
    assert parse_whole_number(42) is None  # only text


@pytest.mark.parametrize("raw", ["²", "①", "9" * 5000])
def test_odd_whole_numbers_are_4xx_in_every_admin_view(app: Any, raw: str) -> None:
    seed_two_customers(app)
    client = operator_client(app)
    token = csrf_token(client, "/admin/entities")
    crm = app.extensions["crm"].crm
    entry_id = first_entry(client, "deals")
    before_entry = crm.store.get_entry(entry_id)
    before_entity = crm.get_entity("deals")

    edit = client.post(
        f"/admin/entries/{entry_id}/values/note",
        data={"csrf_token": token, "value": "changed", "version": raw},
    )
    assert edit.status_code == 400, edit.get_data(as_text=True)[:500]
    assert "version must be a whole number" in html_text(edit)
    move = client.post(
        f"/admin/entries/{entry_id}/stage",
        data={"csrf_token": token, "stage": "won", "version": raw},
    )
    assert move.status_code == 400
    assert crm.store.get_entry(entry_id) == before_entry

    settings = client.post(
        "/admin/entities/deals/settings",
        data={"csrf_token": token, "version": raw, "name": "Renamed"},
    )
    assert settings.status_code == 422, settings.get_data(as_text=True)[:500]
    assert "version must be a whole number" in html_text(settings)
    assert crm.get_entity("deals") == before_entity

    page = client.get("/admin/customers", query_string={"page": raw})
    assert page.status_code == 400
    assert "page must be a whole number" in html_text(page)


# --- the entries table's cursor ----------------------------------------------------------------


def test_a_page_cursor_of_one_entity_is_refused_on_another(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    crm = app.extensions["crm"].crm
    for i in range(55):
        crm.create_entry(slug="deals", title=f"deal {i}", values={"amount": i}, referenceId=ann.id)
    client = operator_client(app)
    html = client.get("/admin/entities/deals/entries").get_data(as_text=True)
    token = re.search(r"after=([^&\"]+)", html)
    assert token, "no Next page link"
    assert client.get(f"/admin/entities/deals/entries?after={token.group(1)}").status_code == 200
    other = client.get(f"/admin/entities/profile/entries?after={token.group(1)}")
    assert other.status_code == 400
    assert "made for the entity 'deals'" in html_text(other)


# --- the playground's bounds -------------------------------------------------------------------

BOMBS = [
    # one C-level allocation far beyond the output cap (the deadline cannot stop it)
    "{{ 'x'|center(300000000)|length }}",
    "{{ 'x'.ljust(300000000)|length }}",
    "{{ 'x'.zfill(300000000)|length }}",
    "{{ 'x'|indent(300000000, true)|length }}",
    "{{ '{:>300000000}'.format(1)|length }}",
    "{{ '{a:>300000000}'.format_map({'a': 1})|length }}",
    "{{ ('%0300000000d' % 1)|length }}",
    "{{ '%0300000000d'|format(1)|length }}",
    "{{ ('x' * 1000000).replace('x', 'x' * 1000)|length }}",
    "{{ ('x' * 1000000)|replace('x', 'x' * 1000)|length }}",
    "{{ ('\t' * 1000000).expandtabs(1000)|length }}",
    "{{ ('x' * 1000000).join(['a'] * 100)|length }}",
    "{{ (['x' * 1000000] * 1000)|join|length }}",
    "{{ ('a' * 1000).translate({97: 'x' * 1000000})|length }}",
    "{{ lipsum(100000, max=100)|length }}",
    # growth by repetition under the deadline
    "{% set ns = namespace(a='x' * 1000000) %}{% for i in range(30) %}"
    "{% set ns.a = ns.a ~ ns.a %}{% endfor %}{{ ns.a|length }}",
    "{% set a = 'x' * 1000000 %}{{ (a + a + a + a + a + a + a + a + a + a + a + a + a + a + a + a"
    " + a)|length }}",
    "{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) }}{% endfor %}{{ l|length }}",
    # integers computed in C while holding the GIL (every request of the process waited)
    "{{ ((10 ** 1000) ** 1000) ** 20 > 1 }}",
    "{% set ns = namespace(n=10 ** 1000) %}{% for i in range(40) %}"
    "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 1 }}",
]


@pytest.mark.parametrize("bomb", BOMBS)
def test_playground_values_are_bounded_before_they_are_made(sqlite_app: Any, bomb: str) -> None:
    ann, _ = seed_two_customers(sqlite_app)
    client = operator_client(sqlite_app)
    started = time.monotonic()
    response = client.post(
        "/admin/playground",
        data={
            "csrf_token": csrf_token(client, "/admin/playground"),
            "source": f"<p>start</p>\n{bomb}",
            "customer": ann.id,
        },
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    error = page.select_one("#pg-render-error")
    assert error is not None, bomb
    assert error.get_text().strip().startswith("Line 2: Refused by the sandbox:"), error.get_text()
    # Refused before the work, not stopped by the 3 s deadline afterwards.
    assert elapsed < 2.5, (bomb, elapsed)


def test_playground_bounds_leave_ordinary_templates_alone(sqlite_app: Any) -> None:
    ann, _ = seed_two_customers(sqlite_app)
    client = operator_client(sqlite_app)
    source = (
        "<p id=out>{{ 'abc'|center(9) }}|{{ 'a,b'.replace(',', ';') }}|{{ [1, 2]|join(', ') }}|"
        "{{ '%05d' % 3 }}|{{ '{:>4}'.format(7) }}|{{ 'x' ~ 1 ~ customer.email }}|{{ 2 ** 64 }}|"
        "{{ [1] + [2] }}|{{ 'hi'|upper }}|{{ lipsum(2)|length > 0 }}|{{ ('y' * 1000)|length }}"
        "</p>"
    )
    response = client.post(
        "/admin/playground",
        data={
            "csrf_token": csrf_token(client, "/admin/playground"),
            "source": source,
            "customer": ann.id,
        },
    )
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    assert page.select_one("#pg-render-error") is None
    srcdoc = BeautifulSoup(page.select_one("iframe#pg-frame")["srcdoc"], "html.parser")
    assert srcdoc.select_one("#out").get_text() == (
        "   abc   |a;b|1, 2|00003|   7|x1ann@example.com|18446744073709551616|[1, 2]|HI|True|1000"
    )


def test_site_pages_keep_the_sites_own_environment(sqlite_app: Any) -> None:
    """The bounds are the playground overlay's: the site's environment is not changed."""
    from crm_templates.server.playground_render import playground_environment

    with sqlite_app.app_context():
        site_env = sqlite_app.extensions["crm"].env
        env = playground_environment(sqlite_app)
        assert env is not site_env
        assert env.filters["center"] is not site_env.filters["center"]
        assert site_env.intercepted_binops == frozenset()


# --- the page never scrolls sideways ------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_wide_admin_tables_scroll_in_their_box_not_the_page(
    page: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A table wider than the window scrolls inside its box; the visually hidden (absolute)
    labels in its cells used to escape the box and widen the whole page."""
    from playwright.sync_api import expect

    from crm_templates import entity_admin
    from tests.admin_world import PASSWORD
    from tests.test_server_browser import LiveServer

    application = make_admin_app(tmp_path, "sqlite", request)
    seed_two_customers(application)
    crm = application.extensions["crm"].crm
    for i in range(12):
        version = crm.get_entity("deals").version
        entity_admin.add_field(
            crm, "deals", version, {"key": f"extra{i}", "label": f"Extra field {i}", "type": "text"}
        )
    server = LiveServer(application)
    try:
        page.set_viewport_size({"width": 900, "height": 800})
        page.goto(f"{server.url}/operator/sign-in?next=/admin/entities/deals/entries")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Deals: entries")
        for url in (
            "/admin/entities/deals/entries",
            "/admin/entities/deals",
            "/admin/entities/deals/pipelines/sales",
            "/admin/customers",
            "/admin/audit",
        ):
            page.goto(server.url + url)
            sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert sizes[0] <= sizes[1], (url, sizes)
        page.goto(server.url + "/admin/entities/deals/entries")
        box = page.locator(".entries-scroll")
        assert box.evaluate("e => e.scrollWidth > e.clientWidth")  # the table did overflow
        page.screenshot(path=str(tmp_path / "admin-wide-table.png"), full_page=True)
    finally:
        server.stop()


# --- previews and the admin ---------------------------------------------------------------------


def test_a_previewing_operator_writes_nothing_through_the_admin_but_can_render(app: Any) -> None:
    """Decision: a preview is read-only for the whole session, the admin included (its pages
    show the banner with "Leave preview"); the playground writes nothing, so it still works."""
    from crm_templates import audit

    ann, bob = seed_two_customers(app)
    crm = app.extensions["crm"].crm
    client = operator_client(app)
    entry_id = first_entry(client, "deals")
    token = csrf_token(client, "/admin/entities")
    assert client.get(f"/?preview_customer={ann.id}").status_code == 200
    page = client.get("/admin/playground")
    assert "Leave preview" in page.get_data(as_text=True)
    before = (crm.store.get_entry(entry_id), crm.get_entity("deals"))
    trail = audit.records(crm.store, limit=100)[0]
    writes = [
        (f"/admin/entries/{entry_id}/values/note", {"value": "changed"}),
        (f"/admin/entries/{entry_id}/stage", {"stage": "won"}),
        ("/admin/entities/deals/settings", {"version": before[1].version, "name": "X"}),
        (f"/admin/customers/{bob.id}/sign-out-everywhere", {}),
    ]
    for url, data in writes:
        response = client.post(url, data={"csrf_token": token, **data})
        assert response.status_code == 403, url
        assert "Previews are read-only" in html_text(response)
    assert (crm.store.get_entry(entry_id), crm.get_entity("deals")) == before
    assert audit.records(crm.store, limit=100)[0] == trail
    rendered = client.post(
        "/admin/playground/render",
        data={"csrf_token": token, "source": "{{ customer.email }}", "customer": bob.id},
    )
    assert rendered.status_code == 200
    assert rendered.get_json()["ok"] is True
    assert "bob@example.com" in html.unescape(rendered.get_json()["results"])
    # Leaving the preview makes the admin write again.
    assert client.post("/_crm/preview/leave", data={"csrf_token": token}).status_code == 303
    edit = client.post(
        f"/admin/entries/{entry_id}/values/note", data={"csrf_token": token, "value": "changed"}
    )
    assert edit.status_code == 303
    assert crm.store.get_entry(entry_id).values["note"] == "changed"
