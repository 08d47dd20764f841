"""The template playground ``/admin/playground`` (issue 12, item 7), on both backends: a page or
a typed template rendered as a chosen customer — read-only, sandboxed, bounded, isolated in a
sandboxed iframe — with lint's diagnostics at their lines; live refresh in Chromium and the
no-JavaScript form."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from tests import admin_world
from tests.admin_world import (
    BACKENDS,
    customer_client,
    make_admin_app,
    operator_client,
    seed_two_customers,
)

# A page whose backend writes (refused in a preview) and reads the customer's nickname.
NOTES_BACKEND = """
def handle(request, page):
    result = page.SetCrmField(slug="profile", fieldKey="nickname", value="from-backend")
    page.set_variable("write", result)
    page.set_variable("nick", page.GetCrmField(slug="profile", fieldKey="nickname"))
"""
NOTES_PAGE = (
    "<main><p id=w>{{ var.write.ok }} {{ var.write.error }}</p><p>{{ var.nick }}</p></main>"
)
AWAY_BACKEND = """
def handle(request, page):
    return page.redirect("/")
"""
SET_FIELDS = (
    "{% set r = SetCrmFields(slug='profile', fields={'nickname': 'Hacked'}) %}"
    "<p>{{ r.ok }} {{ r.error }}</p><p>{{ GetCrmField(slug='profile', fieldKey='nickname') }}</p>"
)


@pytest.fixture(params=BACKENDS)
def app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.setitem(admin_world.PAGES, "notes.html", NOTES_PAGE)
    monkeypatch.setitem(admin_world.PAGES, "notes.py", NOTES_BACKEND)
    monkeypatch.setitem(admin_world.PAGES, "away.html", "<p>never shown</p>")
    monkeypatch.setitem(admin_world.PAGES, "away.py", AWAY_BACKEND)
    application = make_admin_app(tmp_path, request.param, request)
    yield application
    application.extensions["crm"].close()


@pytest.fixture
def world(app: Any) -> tuple[Any, Any, Any, Any]:
    """(app, operator client, Ann, Bob)."""
    ann, bob = seed_two_customers(app)
    return app, operator_client(app), ann, bob


def token_of(client: Any) -> str:
    return admin_world.csrf_token(client, "/admin/playground")


def render(client: Any, source: str, customer: str, page: str = "", **extra: str) -> Any:
    data = {"csrf_token": token_of(client), "source": source, "customer": customer, "page": page}
    return client.post("/admin/playground", data={**data, **extra})


def frame(response: Any) -> BeautifulSoup:
    """The rendered page inside the playground's iframe (its srcdoc, parsed)."""
    soup = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    iframe = soup.select_one("iframe#pg-frame")
    assert iframe is not None, response.get_data(as_text=True)[:2000]
    return BeautifulSoup(iframe["srcdoc"], "html.parser")


def results(response: Any) -> BeautifulSoup:
    return BeautifulSoup(response.get_data(as_text=True), "html.parser")


def snapshot(app: Any) -> tuple[list[str], ...]:
    """Everything the store holds that a template could change."""
    store = app.extensions["crm"].crm.store
    return (
        sorted(repr(e) for e in store.list_entities()),
        sorted(repr(e) for e in store.iter_entries()),
        sorted(repr(c) for c in store.list_customers(limit=10_000)),
    )


# --- permissions ---------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_sign_in(app: Any) -> None:
    client = app.test_client()
    response = client.get("/admin/playground")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/operator/sign-in?next=/admin/playground")
    token = admin_world.csrf_token(client, "/auth/sign-in")  # CSRF is checked first (400)
    response = client.post("/admin/playground/render", data={"csrf_token": token, "source": "x"})
    assert response.status_code == 302


def test_customers_get_403(app: Any) -> None:
    seed_two_customers(app)
    client = customer_client(app, "ann@example.com")
    assert client.get("/admin/playground").status_code == 403
    token = admin_world.csrf_token(client, "/auth/sign-in")
    response = client.post("/admin/playground/render", data={"csrf_token": token, "source": "x"})
    assert response.status_code == 403
    assert "Playground" not in response.get_data(as_text=True)


def test_the_navigation_links_the_playground(world: Any) -> None:
    _, client, _, _ = world
    page = results(client.get("/admin/"))
    assert page.select_one('.admin-bar nav a[href="/admin/playground"]').get_text() == "Playground"


# --- rendering as a customer ---------------------------------------------------------------


def test_a_site_page_renders_as_the_chosen_customer_and_never_as_another(world: Any) -> None:
    _, client, ann, bob = world
    response = client.get(f"/admin/playground?page=/&customer={ann.id}")
    assert response.status_code == 200
    page = results(response)
    assert "GetCrmField(slug='profile'" in page.select_one("textarea#pg-source").get_text()
    assert page.select_one("#pg-page option[selected]")["value"] == "/"
    assert frame(response).main.get_text() == "Ann"
    as_bob = frame(client.get(f"/admin/playground?page=/&customer={bob.id}"))
    assert as_bob.main.get_text() == "Bob"
    # A typed template reading every deal it may see: Ann's only.
    typed = (
        "{% for e in GetCrmEntries(slug='deals') %}<li>{{ e.title }} {{ e['values'].amount }}"
        "</li>{% endfor %}<p>{{ customer.email }}</p>"
    )
    shown = frame(render(client, typed, ann.id)).get_text(" ")
    assert "Ann's deal 100" in shown and "ann@example.com" in shown
    assert "Bob" not in shown and "200" not in shown and "bob@" not in shown


def test_customers_are_found_by_email_name_or_id(world: Any) -> None:
    _, client, ann, bob = world
    for query in ("bob@ex", "BOB", bob.id[-8:]):
        response = render(client, "{{ customer.first_name }}", ann.id, q=query, action="find")
        assert response.status_code == 200
        page = results(response)
        assert [o["value"] for o in page.select("#pg-customer option")] == [bob.id], query
        assert frame(response).get_text() == "Bob"
    response = render(client, "x", ann.id, q="nobody-matches", action="find")
    assert "No customer matches" in results(response).select_one("#pg-status").get_text()
    # A link with only a search renders as the first match.
    assert frame(client.get("/admin/playground?q=ann@&page=/")).main.get_text() == "Ann"
    # Nothing to render: said, not rendered.
    empty = results(render(client, "  \n", ann.id))
    assert empty.select_one("iframe") is None
    assert "Type a template" in empty.select_one("#pg-status").get_text()


def test_unknown_customer_or_page_is_422(world: Any) -> None:
    _, client, ann, _ = world
    response = render(client, "x", "cus_missing")
    assert response.status_code == 422
    status = results(response).select_one("#pg-status").get_text()
    assert status == "There is no customer 'cus_missing'."
    assert results(response).select_one("iframe") is None
    response = render(client, "x", ann.id, page="/no-such-page")
    assert response.status_code == 422
    status = results(response).select_one("#pg-status").get_text()
    assert status == "There is no page '/no-such-page' with a template on this site."
    assert client.get(f"/admin/playground?page=/nope&customer={ann.id}").status_code == 422


def test_a_backend_that_answers_by_itself_is_reported(world: Any) -> None:
    _, client, ann, _ = world
    response = client.get(f"/admin/playground?page=/away&customer={ann.id}")
    assert response.status_code == 200
    page = results(response)
    assert page.select_one(".pg-note").get_text() == (
        "The page's backend answered by itself (302 FOUND, text/html, to /)"
    )
    assert "never shown" not in page.select_one("iframe#pg-frame")["srcdoc"]


# --- never writes ----------------------------------------------------------------------------


def test_a_typed_template_that_writes_changes_nothing(world: Any) -> None:
    app, client, ann, _ = world
    before = snapshot(app)
    shown = frame(render(client, SET_FIELDS, ann.id)).get_text(" ")
    assert "False preview" in shown
    assert "Ann" in shown and "Hacked" not in shown
    creating = (
        "{% set r = CreateCrmEntry(slug='deals', title='new', values={'amount': 5}) %}"
        "{{ r.ok }} {{ r.error }}"
    )
    assert frame(render(client, creating, ann.id)).get_text().strip() == "False preview"
    # A page backend's write is refused the same way, and the page still renders.
    response = client.get(f"/admin/playground?page=/notes&customer={ann.id}")
    rendered = frame(response)
    assert rendered.select_one("#w").get_text() == "False preview"
    assert "Ann" in rendered.get_text()
    assert snapshot(app) == before


# --- the sandbox, errors, bounds ---------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ self._TemplateReference__context }}",
    "{{ request.__class__.__init__.__globals__ }}",
    "{{ customer.__class__.__init__.__globals__ }}",
    "{{ GetCrmField.__class__.__init__.__globals__ }}",
    "{{ ''.format.__self__.__class__ }}",
    "{% set x = namespace() %}{{ x.__class__.__init__.__globals__ }}",
    "{{ 'x' * 10000000000 }}",
    "{{ 2 ** 10000000 }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_sandbox_escapes_give_a_safe_message(world: Any, payload: str) -> None:
    _, client, ann, _ = world
    response = render(client, f"<p>start</p>\n{payload}", ann.id)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    shown = frame(response).get_text()
    for leak in ("<class", "module", "uid=", "function", "__builtins__", "Context"):
        assert leak not in shown, (payload, shown)
    error = results(response).select_one("#pg-render-error").get_text()
    assert error.startswith("Line 2: Refused by the sandbox: "), error
    assert "pg-marked" in results(response).select_one("#pg-L2")["class"]


def test_template_errors_are_shown_with_their_line(world: Any) -> None:
    _, client, ann, _ = world
    cases = {
        "ok\nstill ok\n{% if %}\n": (3, "Syntax error"),
        "a\nb\nc\n{{ 1 / 0 }}\n": (4, "ZeroDivisionError"),
        "{% for x in 5 %}{% endfor %}": (1, "TypeError"),
    }
    for source, (line, kind) in cases.items():
        response = render(client, source, ann.id)
        assert response.status_code == 200, source
        error = results(response).select_one("#pg-render-error")
        assert error is not None, source
        assert error.get_text().startswith(f"Line {line}: {kind}"), error.get_text()
        assert error.a["href"] == f"#pg-L{line}"
        assert "pg-marked" in results(response).select_one(f"#pg-L{line}")["class"]


def test_lint_diagnostics_are_at_their_lines(world: Any) -> None:
    _, client, ann, _ = world
    source = (
        "<h1>Deals</h1>\n"
        "<p>{{ GetCrmField(slug='profile', fieldKey='nickname') }}</p>\n"
        "<p>{{ GetCrmFeild(slug='profile', fieldKey='nickname') }}</p>\n"
        "\n"
        "<p>{{ GetCrmField(slug='deals', fieldKy='amount') }}</p>\n"
        "<p>{{ GetCrmField(slug='profile', fieldKey='nickame') }}</p>\n"
    )
    page = results(render(client, source, ann.id))
    problems = [
        (li.a["href"], li.get_text(" ", strip=True)) for li in page.select(".pg-problems li")
    ]
    assert [href for href, _ in problems] == ["#pg-L3", "#pg-L5", "#pg-L5", "#pg-L6"]
    texts = " | ".join(text for _, text in problems)
    assert "unknown CRM function 'GetCrmFeild'; did you mean GetCrmField?" in texts
    assert "unknown option 'fieldKy'; did you mean fieldKey?" in texts
    assert "entity 'profile' has no field 'nickame'; did you mean nickname?" in texts
    lines = page.select("ol.pg-lines > li")
    assert len(lines) == 7  # six lines and the empty one after the last newline
    assert [li["id"] for li in lines if "pg-marked" in (li.get("class") or [])] == [
        "pg-L3",
        "pg-L5",
        "pg-L6",
    ]
    assert "GetCrmFeild" in page.select_one("#pg-L3 code").get_text()
    assert "did you mean GetCrmField" in page.select_one("#pg-L3 .pg-marker").get_text()
    assert page.select_one("#pg-L2 .pg-marker") is None
    clean = results(render(client, "<p>{{ customer.email }}</p>", ann.id))
    assert clean.select_one(".pg-clean").get_text() == "Lint found no problems."


def test_render_time_and_output_are_bounded(world: Any) -> None:
    app, client, ann, _ = world
    app.config["CRM_PLAYGROUND_TIMEOUT"] = 0.5
    spin = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    response = render(client, spin, ann.id)
    assert response.status_code == 200
    error = results(response).select_one("#pg-render-error").get_text()
    assert "took longer than 0.5 s and was stopped" in error
    # The timer is disarmed after a render: the next one is not hit by a late timeout.
    assert frame(render(client, "fine", ann.id)).get_text() == "fine"
    app.config["CRM_PLAYGROUND_TIMEOUT"] = 10
    flood = "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}"
    response = render(client, flood, ann.id)
    assert "longer than 1024 KB" in results(response).select_one("#pg-render-error").get_text()
    assert len(frame(response).get_text()) == 1024 * 1024


def test_an_oversized_source_is_refused_with_413(world: Any) -> None:
    app, client, ann, _ = world
    big = "x" * (101 * 1024)
    before = snapshot(app)
    response = render(client, big, ann.id)
    assert response.status_code == 413  # the site's 64 KB body cap comes first
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    response = render(client, big, ann.id)
    assert response.status_code == 413
    assert "larger than the 100 KB the playground renders" in response.get_data(as_text=True)
    assert results(response).select_one("iframe") is None
    response = client.post(
        "/admin/playground/render",
        data={"csrf_token": token_of(client), "source": big, "customer": ann.id},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 413 and response.get_json()["ok"] is False
    assert render(client, "y" * (99 * 1024), ann.id).status_code == 200
    assert snapshot(app) == before


def test_posts_without_csrf_are_400(world: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, client, ann, _ = world
    caplog.set_level(logging.INFO, "crm_templates.admin")
    for path in ("/admin/playground", "/admin/playground/render"):
        response = client.post(path, data={"source": "<p>hi</p>", "customer": ann.id})
        assert response.status_code == 400, path
        assert "pg-frame" not in response.get_data(as_text=True)
    assert not [r for r in caplog.records if "playground" in r.getMessage()]


def test_renders_are_logged_without_the_source(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, client, ann, _ = world
    caplog.set_level(logging.INFO, "crm_templates.admin")
    token = token_of(client)
    caplog.clear()
    data = {"csrf_token": token, "source": "<p>secret-template-text</p>", "customer": ann.id}
    client.post("/admin/playground", data={**data, "page": "/"})
    messages = [r.getMessage() for r in caplog.records if r.name == "crm_templates.admin"]
    assert messages == [
        f"playground: operator operator rendered page / (edited) as customer {ann.id}"
    ]
    assert all("secret-template-text" not in r.getMessage() for r in caplog.records)


# --- isolation and the live refresh endpoint ---------------------------------------------------


def test_the_rendered_page_is_isolated_in_a_sandboxed_iframe(world: Any) -> None:
    _, client, ann, _ = world
    hostile = '<script>parent.document.title = "owned"</script><p id="x">"quoted" & <b>bold</b></p>'
    response = render(client, hostile, ann.id)
    text = response.get_data(as_text=True)
    iframe = results(response).select_one("iframe#pg-frame")
    # sandbox with no allow-* token: no scripts, an opaque origin (no allow-same-origin).
    assert iframe.has_attr("sandbox") and iframe["sandbox"] in ("", [])
    assert "allow-" not in str(iframe)
    # The page is escaped into the attribute: no markup of it reaches the admin's document.
    assert "<script>parent.document.title" not in text
    assert "&lt;script&gt;parent.document.title" in text
    assert BeautifulSoup(iframe["srcdoc"], "html.parser").select_one("#x b").get_text() == "bold"
    assert results(response).select("script") == results(response).select(
        'script[src="/admin/static/playground.js"]'
    )
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp  # the srcdoc document inherits it: no inline script


def test_the_refresh_endpoint_answers_fragments(world: Any) -> None:
    _, client, ann, bob = world
    token = token_of(client)
    response = client.post(
        "/admin/playground/render",
        data={
            "csrf_token": token,
            "source": "{{ customer.first_name }}\n{{ GetCrmNope() }}",
            "customer": bob.id,
        },
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["ok"] is True and "source" not in body
    fragment = BeautifulSoup(body["results"], "html.parser")
    assert (
        BeautifulSoup(fragment.select_one("iframe")["srcdoc"], "html.parser")
        .get_text()
        .startswith("Bob")
    )
    assert fragment.select_one(".pg-problems a")["href"] == "#pg-L2"
    assert "pg-marked" in BeautifulSoup(body["lines"], "html.parser").select_one("#pg-L2")["class"]
    loaded = client.post(
        "/admin/playground/render",
        data={
            "csrf_token": token,
            "source": "ignored",
            "customer": ann.id,
            "page": "/",
            "action": "load",
        },
    ).get_json()
    assert "GetCrmField(slug='profile'" in loaded["source"]
    kept = client.post(
        "/admin/playground/render",
        data={"csrf_token": token, "source": "typed", "customer": ann.id, "action": "load"},
    ).get_json()
    assert kept["source"] == "typed"  # "None: a typed template" keeps the typed source
    frame_doc = BeautifulSoup(loaded["results"], "html.parser").select_one("iframe")["srcdoc"]
    assert "<main>Ann</main>" in frame_doc


# --- in Chromium -------------------------------------------------------------------------------

TYPED = (
    '<main><h1 id="who">{{ customer.first_name }}</h1>\n'
    "<script>parent.document.body.setAttribute('data-owned', '1')</script>\n"
    "{{ GetCrmFeild(slug='profile') }}</main>"
)


@pytest.fixture
def live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The admin test site on a loopback port (SQLite), with Ann and Bob."""
    from tests.test_server_browser import LiveServer

    application = make_admin_app(tmp_path, "sqlite", request)
    ann, bob = seed_two_customers(application)
    (tmp_path / "site" / "static").mkdir()
    (tmp_path / "site" / "static" / "site.css").write_text("#who { color: rgb(1, 2, 3); }\n")
    server = LiveServer(application)
    server.ann, server.bob = ann, bob  # type: ignore[attr-defined]
    yield server
    server.stop()


def sign_in(page: Any, url: str) -> None:
    page.goto(url + "/operator/sign-in?next=/admin/playground")
    page.fill("#password", admin_world.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url + "/admin/playground")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.allow_console_errors(r"Blocked script execution in 'about:srcdoc'")
def test_in_chromium_typing_refreshes_the_preview(live: Any, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from tests.test_accessibility import audit

    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Blocked script" in m.text else None)
    sign_in(page, live.url)
    assert audit(page, "playground") == []
    page.select_option("#pg-customer", live.ann.id)
    page.locator("#pg-source").fill(TYPED)
    # The debounced refresh: no submit, the preview and the diagnostics change in place.
    frame = page.locator("#pg-frame")
    expect(frame).to_have_attribute("srcdoc", re.compile(r'<h1 id="who">Ann</h1>'))
    expect(page.locator("#pg-status")).to_have_text("Preview updated.")
    expect(page.locator("#pg-L3")).to_have_class(re.compile("pg-marked"))
    expect(page.locator(".pg-problems li")).to_contain_text(["Line 3: unknown CRM function"])
    assert page.url == live.url + "/admin/playground"  # no navigation happened
    expect(page.frame_locator("#pg-frame").locator("#who")).to_have_text("Ann")
    page.screenshot(path=str(tmp_path / "admin-playground-typed.png"), full_page=True)
    # The site's stylesheet loads in the opaque-origin frame (public assets are embeddable).
    page.locator("#pg-source").fill('<link rel="stylesheet" href="/static/site.css">' + TYPED)
    expect(frame).to_have_attribute("srcdoc", re.compile(r"^<link rel=\"stylesheet\""))
    who = page.frame_locator("#pg-frame").locator("#who")
    expect(who).to_have_css("color", "rgb(1, 2, 3)")
    # Choosing Bob re-renders as Bob, still without leaving the page.
    page.select_option("#pg-customer", live.bob.id)
    expect(frame).to_have_attribute("srcdoc", re.compile(r'<h1 id="who">Bob</h1>'))
    # The rendered page's script was blocked by the sandbox: the admin page is untouched.
    assert page.evaluate("document.body.getAttribute('data-owned')") is None
    assert any("allow-scripts" in text for text in blocked), blocked
    # Choosing a page loads its source into the editor.
    page.select_option("#pg-page", "/")
    expect(page.locator("#pg-source")).to_have_value(re.compile(r"GetCrmField\(slug='profile'"))
    expect(frame).to_have_attribute("srcdoc", re.compile(r"<main>Bob</main>"))
    assert audit(page, "playground after typing") == []
    page.screenshot(path=str(tmp_path / "admin-playground.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.slow
def test_in_chromium_without_javascript_the_render_button_posts(
    live: Any, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, live.url)
        page.select_option("#pg-customer", live.bob.id)
        page.locator("#pg-source").fill(TYPED)
        page.get_by_role("button", name="Render", exact=True).click()
        page.wait_for_load_state()
        frame = page.locator("#pg-frame")
        expect(frame).to_have_attribute("srcdoc", re.compile(r'<h1 id="who">Bob</h1>'))
        expect(page.locator("#pg-L3")).to_have_class(re.compile("pg-marked"))
        expect(page.locator("#pg-source")).to_have_value(TYPED)
        # Find a customer, then load a page's source, all by posting the form.
        page.fill("#pg-q", "ann@")
        page.get_by_role("button", name="Find").click()
        expect(frame).to_have_attribute("srcdoc", re.compile(r'<h1 id="who">Ann</h1>'))
        page.select_option("#pg-page", "/")
        page.get_by_role("button", name="Load page source").click()
        expect(frame).to_have_attribute("srcdoc", re.compile(r"<main>Ann</main>"))
        page.screenshot(path=str(tmp_path / "admin-playground-nojs.png"), full_page=True)
    finally:
        context.close()


# --- the real process ----------------------------------------------------------------------------


@pytest.mark.slow
def test_crm_templates_serve_renders_in_the_playground_and_stops_a_runaway_loop(
    tmp_path: Path,
) -> None:
    """`crm-templates serve` (waitress threads) as the docs run it: an operator renders the
    sample's home page as its seeded customer; a loop that never ends is stopped by the
    deadline and the server keeps answering; the log names operator, page and customer only."""
    import shutil
    import time
    from urllib.parse import urlencode

    from tests.test_serve import SAMPLES, Served, browser_session

    site = tmp_path / "site"
    shutil.copytree(SAMPLES / "weight_tracker", site, ignore=shutil.ignore_patterns("instance"))
    env = {"CRM_OPERATOR_PASSWORD": "pw-playground", "CRM_PLAYGROUND_TIMEOUT": "1"}
    served = Served(site, tmp_path / "crm.db", env=env)
    try:
        client = browser_session()

        def token(path: str) -> str:
            html = client.open(served.url(path), timeout=10).read().decode()
            found = re.search(r'name="csrf_token" value="([^"]+)"', html)
            assert found, html
            return found.group(1)

        body = {"csrf_token": token("/operator/sign-in"), "password": "pw-playground"}
        try:
            client.open(served.url("/operator/sign-in"), urlencode(body).encode(), timeout=10)
        except Exception as exc:  # the 303 is not followed
            assert getattr(exc, "code", None) == 303, exc
        html = client.open(served.url("/admin/playground?page=/"), timeout=10).read().decode()
        page = BeautifulSoup(html, "html.parser")
        dana = page.select_one("#pg-customer option[selected]")
        assert "dana@example.com" in dana.get_text()
        assert page.select_one("iframe#pg-frame")["srcdoc"].strip()
        spin = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        form = {"csrf_token": token("/admin/playground"), "source": spin, "customer": dana["value"]}
        started = time.monotonic()
        answer = client.open(served.url("/admin/playground"), urlencode(form).encode(), timeout=30)
        assert time.monotonic() - started < 10
        error = BeautifulSoup(answer.read().decode(), "html.parser").select_one("#pg-render-error")
        assert "took longer than 1 s and was stopped" in error.get_text()
        assert client.open(served.url("/admin/playground"), timeout=10).status == 200
        logged = served.wait_for(re.compile(r".*crm_templates\.admin: playground: "))
        assert any(f"rendered page / as customer {dana['value']}" in line for line in logged)
        assert not any("range(100000)" in line for line in served.lines)
    finally:
        served.stop()
