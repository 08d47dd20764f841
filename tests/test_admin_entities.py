"""The admin's Entities pages (issue 12, item 2) on both backends: permissions of every view,
each edit through the forms, the remove-field confirmation with its count, stage reorder,
stale forms (409), invalid input (422) and missing CSRF (400) changing nothing, entries
unchanged by every edit, hostile names escaped, a second app on the same store seeing an edit
at once, a real `crm-templates serve` process, and the main task in Chromium with axe."""

from __future__ import annotations

import logging
import re
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from bs4 import BeautifulSoup

from crm_templates.model import Entity, Entry
from crm_templates.server import create_app
from tests.admin_world import (
    BACKENDS,
    CRM_YAML,
    PAGES,
    PASSWORD,
    csrf_token,
    customer_client,
    operator_client,
    seed_two_customers,
)

# A page showing the current label of deals.note: what "pages see the new definition" checks.
LABEL_PAGE = '<!doctype html><title>Label</title><main><p id="label">{{ "deals" | crm_label("note") }}</p></main>'


def make_app(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Any:
    """The admin test site (tests/admin_world.py) plus ``/label``."""
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    for name, text in {**PAGES, "label.html": LABEL_PAGE}.items():
        (site / "pages" / name).write_text(text)
    (site / "crm.yaml").write_text(CRM_YAML)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        search_url = request.getfixturevalue("search_url")
        request.getfixturevalue("search_admin")
        url = f"{search_url}?prefix=t{uuid.uuid4().hex[:12]}_"
    return second_app(site, url)


def second_app(site: Path, url: str) -> Any:
    """An app of ``site`` on the store at ``url`` (a second one is another process's twin)."""
    return create_app(
        site, url, TESTING=True, CRM_OPERATOR_PASSWORD=PASSWORD, CRM_BASE_URL="http://localhost"
    )


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_app(tmp_path, request.param, request)
    seed_two_customers(application)
    yield application
    application.extensions["crm"].close()


def crm(app: Any) -> Any:
    return app.extensions["crm"].crm


def definition(app: Any, slug: str = "deals") -> Entity:
    entity = crm(app).store.get_entity(slug)
    assert entity is not None
    return entity


def entries(app: Any) -> dict[str, Entry]:
    """Every entry, whole (values, pipeline, stage, version): compared before/after edits."""
    return {e.id: e for e in crm(app).store.iter_entries()}


def snapshot(app: Any) -> tuple[Any, ...]:
    store = crm(app).store
    return tuple(store.list_entities()), entries(app)


def soup_of(response: Any) -> BeautifulSoup:
    return BeautifulSoup(response.get_data(as_text=True), "html.parser")


def error_of(response: Any, name: str) -> str:
    """The message next to input ``name`` (the input points at it with aria-describedby)."""
    soup = soup_of(response)
    field = soup.select_one(f"#f-{name}")
    assert field is not None, name
    assert field.get("aria-invalid") == "true", field
    assert f"err-{name}" in field.get("aria-describedby", "").split(), field
    message = soup.select_one(f"#err-{name}")
    assert message is not None
    return str(message.get_text(" ", strip=True))


def alert(response: Any) -> str:
    return " ".join(a.get_text(" ", strip=True) for a in soup_of(response).select('[role="alert"]'))


GETS = [
    "/admin/entities",
    "/admin/entities/deals",
    "/admin/entities/profile",
    "/admin/entities/deals/settings",
    "/admin/entities/deals/fields",
    "/admin/entities/deals/fields/amount",
    "/admin/entities/deals/fields/amount/remove",
    "/admin/entities/deals/pipelines",
    "/admin/entities/deals/pipelines/sales/settings",
    "/admin/entities/deals/pipelines/sales/stages",
    "/admin/entities/deals/pipelines/sales/stages/won",
]


def posts(version: int) -> list[tuple[str, dict[str, Any]]]:
    """One valid form per write view (each succeeds when sent alone with a CSRF token)."""
    return [
        ("/admin/entities", {"slug": "tickets", "name": "Tickets", "mode": "crm"}),
        ("/admin/entities/deals/settings", {"version": version, "name": "Deals!", "mode": "crm"}),
        ("/admin/entities/deals/fields", {"version": version, "key": "city", "type": "text"}),
        ("/admin/entities/deals/fields/note", {"version": version, "label": "N", "type": "text"}),
        ("/admin/entities/deals/fields/note/remove", {"version": version, "confirm": "yes"}),
        (
            "/admin/entities/deals/pipelines",
            {"version": version, "slug": "renewals", "stage_slug": "due"},
        ),
        ("/admin/entities/deals/pipelines/sales/settings", {"version": version, "name": "S"}),
        ("/admin/entities/deals/pipelines/sales/stages", {"version": version, "slug": "review"}),
        ("/admin/entities/deals/pipelines/sales/stages/won", {"version": version, "name": "W"}),
        (
            "/admin/entities/deals/pipelines/sales/stages/won/move",
            {"version": version, "direction": "up"},
        ),
        ("/admin/entities/deals/pipelines/sales/stages/lost/remove", {"version": version}),
    ]


# --- permissions ----------------------------------------------------------------------------


def test_every_view_is_for_operators_only(app: Any) -> None:
    anonymous = app.test_client()
    customer = customer_client(app, "ann@example.com")
    operator = operator_client(app)
    before = snapshot(app)
    for path in GETS:
        response = anonymous.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/operator/sign-in?next="), path
        assert customer.get(path).status_code == 403, path
        assert operator.get(path).status_code == 200, path
    token = csrf_token(customer, "/auth/sign-in")
    for path, form in posts(definition(app).version):
        assert anonymous.post(path, data=form).status_code in (302, 400), path
        assert customer.post(path, data={**form, "csrf_token": token}).status_code == 403, path
    assert snapshot(app) == before
    assert operator.get("/admin/entities/none-such").status_code == 404
    assert operator.get("/admin/entities/deals/fields/none-such").status_code == 404
    assert operator.get("/admin/entities/deals/pipelines/none/settings").status_code == 404
    assert operator.get("/admin/entities/deals/pipelines/sales/stages/none").status_code == 404


def test_missing_csrf_is_400_and_nothing_changes(app: Any) -> None:
    client = operator_client(app)
    before = snapshot(app)
    for path, form in posts(definition(app).version):
        assert client.post(path, data=form).status_code == 400, path
    assert snapshot(app) == before


def test_each_valid_form_works_alone_and_entries_never_change(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "crm_templates.audit")
    client = operator_client(app)
    token = csrf_token(client, "/admin/entities")
    before = entries(app)
    for path, form in posts(0):
        if "version" in form:
            form["version"] = definition(app).version
        response = client.post(path, data={**form, "csrf_token": token})
        assert response.status_code == 303, (path, response.get_data(as_text=True)[:3000])
        assert entries(app) == before, path
    deals = definition(app)
    assert deals.name == "Deals!" and "city" in deals.field_keys and "note" not in deals.field_keys
    sales = deals.pipelines[0]
    assert [s.slug for s in sales.stages] == ["won", "new", "review"]
    assert sales.name == "S" and sales.stages[0].name == "W"
    assert [p.slug for p in deals.pipelines] == ["sales", "renewals"]
    assert definition(app, "tickets").mode == "crm"
    # Each write was recorded for the audit trail (context.record_action), with the operator.
    actions = [
        r.getMessage().split(" by ")[0] for r in caplog.records if r.name == "crm_templates.audit"
    ]
    assert actions == [
        "entity.create",
        "entity.update",
        "field.add",
        "field.update",
        "field.remove",
        "pipeline.add",
        "pipeline.update",
        "stage.add",
        "stage.update",
        "stage.move",
        "stage.remove",
    ]


# --- the pages ------------------------------------------------------------------------------


def test_the_list_shows_entities_with_counts_swatches_and_links(app: Any) -> None:
    soup = soup_of(operator_client(app).get("/admin/entities"))
    rows = {
        tr.select("td")[1].get_text(strip=True): tr
        for tr in soup.select("table.admin-table tbody tr")
    }
    assert set(rows) == {"deals", "profile"}
    cells = [td.get_text(" ", strip=True) for td in rows["deals"].select("td")]
    assert cells[0] == "Deals" and cells[2] == "crm" and cells[3] == "2"
    assert rows["profile"].select("td")[2].get_text(strip=True) == "data"
    assert rows["deals"].select_one(".admin-swatch")["style"] == "--swatch: #2563eb"
    hrefs = [a["href"] for a in rows["deals"].select("a")]
    assert hrefs == [
        "/admin/entities/deals",
        "/admin/entities/deals/entries",
        "/admin/entities/deals/reports",
    ]
    nav = [a.get_text(strip=True) for a in soup.select("header nav a")]
    assert "Entities" in nav
    assert soup.select_one('header nav a[aria-current="page"]').get_text(strip=True) == "Entities"


def test_the_detail_shows_fields_lock_pipelines_and_links(app: Any) -> None:
    client = operator_client(app)
    token = csrf_token(client, "/admin/entities")
    v = definition(app).version
    client.post(
        "/admin/entities/deals/fields",
        data={
            "csrf_token": token,
            "version": v,
            "key": "kind",
            "label": "Kind",
            "type": "select",
            "options": "a\nb | Bee",
            "ui_editable": "on",
            "reportable": "on",
            "aggregation_type": "categorical",
            "preferred_chart": "pie",
        },
    )
    client.post(
        "/admin/entities/deals/fields",
        data={
            "csrf_token": token,
            "version": v + 1,
            "key": "who",
            "type": "reference",
            "target_entity": "profile",
            "display_field": "nickname",
            "ui_editable": "on",
        },
    )
    soup = soup_of(client.get("/admin/entities/deals"))
    rows = {
        tr.select_one("td code").get_text(): [
            td.get_text(" ", strip=True) for td in tr.select("td")
        ]
        for tr in soup.select("table.ent-fields tbody tr")
    }
    assert rows["amount"][:3] == ["amount", "Amount", "number"] and rows["amount"][7] == "2"
    assert rows["kind"][3] == "a Bee b" and rows["kind"][5] == "reportable, categorical, pie"
    assert rows["who"][6].replace(" )", ")") == "profile (shows nickname)"
    # The locked field: a lock icon with an accessible name, and "No".
    lock = soup.select("table.ent-fields tbody tr")[2].select_one(".ent-lock")
    assert lock is not None and lock["role"] == "img"
    assert lock["aria-label"] == "Locked: not editable in the admin"
    assert soup.select("table.ent-fields tbody tr")[2].select_one("code").get_text() == "score"
    assert len(soup.select(".ent-lock")) == 1
    # Stages in order with colour, status, probability and counts; board/entries/reports links.
    stages = [
        [td.get_text(" ", strip=True) for td in tr.select("td")[:6]]
        for tr in soup.select("table.ent-stages tbody tr")
    ]
    assert stages == [
        ["1", "New", "new", "open", "—", "2"],
        ["2", "Won", "won", "won", "—", "0"],
        ["3", "Lost", "lost", "lost", "—", "0"],
    ]
    assert soup.select("table.ent-stages .admin-swatch")[1]["style"] == "--swatch: #15803d"
    hrefs = {a["href"] for a in soup.select("main a")}
    assert {
        "/admin/entities/deals/entries",
        "/admin/entities/deals/reports",
        "/admin/entities/deals/pipelines/sales",
    } <= hrefs
    assert "/admin/entities/profile" in hrefs  # the reference target


def test_breadcrumbs_link_every_parent(app: Any) -> None:
    soup = soup_of(operator_client(app).get("/admin/entities/deals/pipelines/sales/stages/won"))
    crumbs = soup.select("nav.admin-crumbs li")
    assert [a["href"] for a in soup.select("nav.admin-crumbs a")] == [
        "/admin/",
        "/admin/entities",
        "/admin/entities/deals",
    ]
    assert [li.get_text(strip=True) for li in crumbs] == ["Admin", "Entities", "Deals", "Stage Won"]
    assert len(soup.select('nav.admin-crumbs [aria-current="page"]')) == 1


def test_remove_field_asks_with_the_count_and_keeps_values(app: Any) -> None:
    client = operator_client(app)
    before_entries = entries(app)
    v = definition(app).version
    step = soup_of(client.get("/admin/entities/deals/fields/amount/remove"))
    assert "2 entries hold a value" in step.get_text(" ", strip=True)
    token = csrf_token(client, "/admin/entities")
    # The POST without confirm answers with the count and changes nothing.
    response = client.post(
        "/admin/entities/deals/fields/amount/remove", data={"csrf_token": token, "version": v}
    )
    assert response.status_code == 200
    assert "2 entries hold a value" in soup_of(response).get_text(" ", strip=True)
    assert definition(app).version == v and "amount" in definition(app).field_keys
    response = client.post(
        "/admin/entities/deals/fields/amount/remove",
        data={"csrf_token": token, "version": v, "confirm": "yes"},
    )
    assert response.status_code == 303
    assert "amount" not in definition(app).field_keys
    assert entries(app) == before_entries  # the values stay in the entries
    soup = soup_of(client.get("/admin/entities/deals"))
    assert "2 entries keep their values" in soup.select_one('[role="status"]').get_text()
    assert "amount (2 entries)" in soup.select_one("#kept-values").get_text(" ", strip=True)


def test_stage_reorder_with_the_up_and_down_buttons(app: Any) -> None:
    client = operator_client(app)
    before = entries(app)
    soup = soup_of(client.get("/admin/entities/deals"))
    down = soup.find("button", attrs={"aria-label": "Move New down"})
    form = down.find_parent("form")
    data = {i["name"]: i["value"] for i in form.select("input")}
    assert client.post(form["action"], data=data).status_code == 303
    soup = soup_of(client.get("/admin/entities/deals"))
    order = [tr.select("td")[2].get_text() for tr in soup.select("table.ent-stages tbody tr")]
    assert order == ["won", "new", "lost"]
    assert soup.find("button", attrs={"aria-label": "Move Won up"}).has_attr("disabled")
    assert soup.find("button", attrs={"aria-label": "Move Lost down"}).has_attr("disabled")
    # The same (now stale) form again: 409, nothing changed.
    response = client.post(form["action"], data=data)
    assert response.status_code == 409
    assert "changed by someone else" in soup_of(response).get_text(" ", strip=True)
    assert [s.slug for s in definition(app).pipelines[0].stages] == ["won", "new", "lost"]
    assert entries(app) == before


def test_a_stale_form_is_409_and_nothing_changes(app: Any) -> None:
    client = operator_client(app)
    token = csrf_token(client, "/admin/entities")
    old = definition(app).version
    # Another operator saves first.
    other = operator_client(app)
    response = other.post(
        "/admin/entities/deals/settings",
        data={"csrf_token": csrf_token(other, "/admin/entities"), "version": old, "name": "Theirs"},
    )
    assert response.status_code == 303
    before = snapshot(app)
    for path, form in posts(old)[1:]:
        response = client.post(path, data={**form, "csrf_token": token})
        assert response.status_code == 409, path
        assert "changed by someone else" in soup_of(response).get_text(" ", strip=True), path
    assert snapshot(app) == before
    assert definition(app).name == "Theirs"


def test_invalid_input_is_422_next_to_the_input_and_nothing_changes(app: Any) -> None:
    client = operator_client(app)
    token = csrf_token(client, "/admin/entities")
    v = definition(app).version
    before = snapshot(app)
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("/admin/entities", {"slug": "Bad Slug"}, "slug", "must match"),
        ("/admin/entities", {"slug": "deals"}, "slug", "already exists"),
        (
            "/admin/entities",
            {"slug": "x", "color": "red; background: url(x)"},
            "color",
            "CSS colour",
        ),
        ("/admin/entities/deals/settings", {"color": "nope-colour"}, "color", "CSS colour"),
        ("/admin/entities/deals/settings", {"mode": "data"}, "mode", "2 entries"),
        ("/admin/entities/deals/fields", {"key": "bad key"}, "key", "must match"),
        ("/admin/entities/deals/fields", {"key": "amount"}, "key", "already has a field"),
        ("/admin/entities/deals/fields", {"key": "s", "type": "select"}, "options", "options"),
        (
            "/admin/entities/deals/fields",
            {"key": "r", "type": "reference", "target_entity": "ghost"},
            "target_entity",
            "does not exist",
        ),
        (
            "/admin/entities/deals/fields",
            {"key": "b", "bucket_size": "many"},
            "bucket_size",
            "number",
        ),
        (
            "/admin/entities/deals/fields",
            {"key": "j", "validation_rules": "{not json"},
            "validation_rules",
            "must be JSON",
        ),
        (
            "/admin/entities/deals/fields/amount",
            {"type": "text", "label": "Amount"},
            "type",
            "2 entries hold values of field 'amount'",
        ),
        (
            "/admin/entities/deals/pipelines/sales/stages/won",
            {"probability": "150"},
            "probability",
            "between 0 and 100",
        ),
        (
            "/admin/entities/deals/pipelines/sales/stages/won",
            {"probability": "lots"},
            "probability",
            "must be a number",
        ),
        ("/admin/entities/deals/pipelines/sales/stages", {"slug": "new"}, "slug", "already has"),
        (
            "/admin/entities/deals/pipelines",
            {"slug": "sales", "stage_slug": "a"},
            "slug",
            "already",
        ),
        (
            "/admin/entities/deals/pipelines",
            {"slug": "p", "stage_slug": "B B"},
            "stage_slug",
            "must match",
        ),
    ]
    for path, form, name, expected in cases:
        response = client.post(path, data={"csrf_token": token, "version": v, **form})
        assert response.status_code == 422, (path, form)
        assert expected in error_of(response, name), (path, form)
    # Refusals shown beside their buttons: a stage entries sit in, the only pipeline.
    response = client.post(
        "/admin/entities/deals/pipelines/sales/stages/new/remove",
        data={"csrf_token": token, "version": v},
    )
    assert response.status_code == 422
    assert "2 entries sit in stage 'new'" in soup_of(response).select_one("#err-remove").get_text()
    response = client.post(
        "/admin/entities/deals/pipelines/sales/remove", data={"csrf_token": token, "version": v}
    )
    assert response.status_code == 422
    assert "only pipeline" in soup_of(response).select_one("#err-remove").get_text()
    response = client.post(
        "/admin/entities/deals/pipelines/sales/stages/new/move",
        data={"csrf_token": token, "version": v, "direction": "up"},
    )
    assert response.status_code == 422 and "already the first" in soup_of(response).get_text()
    response = client.post(
        "/admin/entities/deals/settings", data={"csrf_token": token, "version": "x"}
    )
    assert response.status_code == 422 and "version" in alert(response)
    assert snapshot(app) == before


def test_hostile_names_and_labels_are_escaped(app: Any) -> None:
    client = operator_client(app)
    token = csrf_token(client, "/admin/entities")
    payload = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    assert (
        client.post(
            "/admin/entities",
            data={"csrf_token": token, "slug": "evil", "name": payload, "icon": payload},
        ).status_code
        == 303
    )
    v = definition(app, "evil").version
    assert (
        client.post(
            "/admin/entities/evil/fields",
            data={
                "csrf_token": token,
                "version": v,
                "key": "k",
                "label": payload,
                "type": "select",
                "options": f"{payload} | {payload}",
            },
        ).status_code
        == 303
    )
    assert (
        client.post(
            "/admin/entities/evil/pipelines/default/stages/new",
            data={"csrf_token": token, "version": v + 1, "name": payload},
        ).status_code
        == 303
    )
    for path in (
        "/admin/entities",
        "/admin/entities/evil",
        "/admin/entities/evil/fields/k",
        "/admin/entities/evil/fields/k/remove",
        "/admin/entities/evil/pipelines/default/stages/new",
        "/admin/entities/evil/settings",
    ):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert(1)" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    # A hostile colour never reaches a style attribute.
    response = client.post(
        "/admin/entities/evil/settings",
        data={"csrf_token": token, "version": v + 2, "color": "red;background:url(//x)"},
    )
    assert response.status_code == 422


# --- other pages and processes see the edit -------------------------------------------------


def test_pages_of_this_and_a_second_app_see_an_edit_at_once(app: Any) -> None:
    twin = second_app(Path(app.config["CRM_SITE_DIR"]), app.config["CRM_STORE_URL"])
    try:
        # Both render the label once, so both services have deals cached.
        for application in (app, twin):
            html = application.test_client().get("/label").get_data(as_text=True)
            assert '<p id="label">Note</p>' in html
        client = operator_client(app)
        response = client.post(
            "/admin/entities/deals/fields/note",
            data={
                "csrf_token": csrf_token(client, "/admin/entities"),
                "version": definition(app).version,
                "label": "Remark",
                "type": "text",
                "ui_editable": "on",
            },
        )
        assert response.status_code == 303
        for application in (app, twin):
            html = application.test_client().get("/label").get_data(as_text=True)
            assert '<p id="label">Remark</p>' in html
        # And the twin's admin shows it too.
        soup = soup_of(operator_client(twin).get("/admin/entities/deals"))
        assert "Remark" in soup.select_one("table.ent-fields").get_text()
    finally:
        twin.extensions["crm"].close()


@pytest.mark.slow
def test_edit_in_one_served_process_shows_in_another(tmp_path: Path) -> None:
    """Two real `crm-templates serve` processes on one SQLite file, as the docs run them."""
    from tests.test_serve import Served, browser_session

    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "label.html").write_text(LABEL_PAGE)
    (site / "crm.yaml").write_text(CRM_YAML)
    env = {"CRM_OPERATOR_PASSWORD": PASSWORD, "CRM_COOKIE_SECURE": "0"}
    db = tmp_path / "crm.db"
    admin, pages = Served(site, db, env=env), Served(site, db, env=env)
    try:
        assert '<p id="label">Note</p>' in read(pages.url("/label"))
        client = browser_session()
        html = client.open(admin.url("/operator/sign-in"), timeout=10).read().decode()
        body = {"csrf_token": token_in(html), "password": PASSWORD, "next": "/admin/"}
        status_of(client, admin.url("/operator/sign-in"), body, 303)
        html = (
            client.open(admin.url("/admin/entities/deals/fields/note"), timeout=10).read().decode()
        )
        version = re.search(r'name="version" value="(\d+)"', html)
        assert version
        form = {"csrf_token": token_in(html), "version": version.group(1), "label": "Remark"}
        status_of(
            client, admin.url("/admin/entities/deals/fields/note"), {**form, "type": "text"}, 303
        )
        assert '<p id="label">Remark</p>' in read(pages.url("/label"))
    finally:
        admin.stop()
        pages.stop()


def read(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def token_in(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def status_of(client: Any, url: str, form: dict[str, Any], expected: int) -> None:
    try:
        with client.open(url, urlencode(form).encode(), timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == expected, url


# --- in Chromium ----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.allow_console_errors(r"status of (409|422) ")
def test_add_a_field_and_reorder_a_stage_in_chromium(
    tmp_path: Path, request: pytest.FixtureRequest, page: Any
) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    from tests.test_server_browser import LiveServer

    application = make_app(tmp_path, "sqlite", request)
    application.config["SESSION_COOKIE_SECURE"] = False
    seed_two_customers(application)
    server = LiveServer(application)
    axe = Axe()
    problems: list[str] = []

    def audit(state: str) -> None:
        for violation in axe.run(page).response["violations"]:
            if violation["impact"] in ("serious", "critical"):
                problems.append(
                    f"{state}: {violation['id']} {[n['target'] for n in violation['nodes']]}"
                )

    try:
        page.goto(server.url + "/operator/sign-in?next=/admin/entities")
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(server.url + "/admin/entities")
        audit("entities list")
        page.get_by_role("link", name="Deals", exact=True).click()
        audit("entity detail")
        page.get_by_role("link", name="Add a field").click()
        page.get_by_label("Key").fill("city")
        page.get_by_label("Label").fill("City")
        page.get_by_label("Type").select_option("select")
        page.get_by_role("button", name="Add field").click()
        expect(page.locator("#err-options")).to_contain_text("options")
        audit("field form with an error")
        page.get_by_label("Options").fill("Paris\nBerlin")
        page.get_by_label("Editable in the admin").uncheck()
        page.get_by_role("button", name="Add field").click()
        expect(page.get_by_role("status")).to_contain_text("Field 'city' added.")
        row = page.locator("table.ent-fields tbody tr", has_text="city")
        expect(row.get_by_role("img", name="Locked: not editable in the admin")).to_be_visible()
        page.get_by_role("button", name="Move Lost up").click()
        expect(page.get_by_role("status")).to_contain_text("moved up")
        stages = page.locator("table.ent-stages tbody tr td:nth-child(3)")
        expect(stages).to_have_text(["new", "lost", "won"])
        audit("entity detail after the edits")
        page.screenshot(path=str(tmp_path / "admin-entity.png"), full_page=True)
        page.locator("table.ent-fields tbody tr", has_text="amount").get_by_role(
            "link", name="Remove field amount"
        ).click()
        expect(page.locator("#held-count")).to_contain_text("2 entries hold")
        audit("remove-field confirmation")
        page.goto(server.url + "/admin/entities/deals/pipelines/sales/stages/won")
        audit("stage form")
        page.screenshot(path=str(tmp_path / "admin-stage.png"), full_page=True)
        assert (tmp_path / "admin-entity.png").stat().st_size > 0
        entity = definition(application)
        assert [s.slug for s in entity.pipelines[0].stages] == ["new", "lost", "won"]
        assert "city" in entity.field_keys
    finally:
        server.stop()
    assert not problems, "\n".join(problems)
