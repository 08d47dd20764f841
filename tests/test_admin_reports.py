"""The admin's Reports tab (issue 12, item 6) on both backends: exact numbers for every chart
kind from two customers' entries, the baseline, date buckets across a month boundary, null and
missing values, permissions, CSV downloads, hostile labels, SVGs without any external URL, and
a browser visit checked by axe-core."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from crm_templates.server import create_app
from tests.admin_world import BACKENDS, PASSWORD, customer_client, operator_client

HOSTILE = '<script>alert("x")</script>&amp;'
CRM_YAML = f"""\
entities:
  - slug: deals
    name: Deals
    fields:
      - key: amount
        label: Amount
        type: number
        reporting_config: {{preferred_chart: kpi, baseline: {{min: 50, max: 150}}}}
      - key: score
        label: Score
        type: number
        reporting_config: {{preferred_chart: histogram, bucket_size: 10}}
      - key: stage_choice
        label: Stage choice
        type: select
        options:
          - {{value: new, label: New}}
          - {{value: won, label: Won}}
          - {{value: evil, label: {HOSTILE!r}}}
        reporting_config: {{preferred_chart: pie, aggregation_type: categorical}}
      - key: tags
        label: Tags
        type: multiselect
        options: [red, green, blue]
        reporting_config: {{preferred_chart: bar}}
      - key: hot
        label: {"Hot " + HOSTILE!r}
        type: boolean
        reporting_config: {{preferred_chart: pie}}
      - key: closed_on
        label: Closed on
        type: date
        reporting_config: {{preferred_chart: line}}
      - key: note
        label: Note
        type: text
      - key: hidden
        label: Hidden
        type: number
        reporting_config: {{reportable: false}}
  - slug: leads
    name: Leads
    fields:
      - key: amount
        label: Amount
        type: number
        reporting_config: {{preferred_chart: kpi}}
"""
PAGES = {"index.html": "<!doctype html><title>Home</title><main>Home</main>"}

# (customer, values) — Ann has three deals, Bob two (one of them empty); one more is deleted.
DEALS: list[tuple[str, dict[str, Any]]] = [
    ("ann", {"amount": 40, "score": 5, "stage_choice": "new", "tags": ["red", "green"],
             "hot": True, "closed_on": "2026-01-31"}),
    ("ann", {"amount": 100, "score": 12.5, "stage_choice": "won", "tags": ["red"],
             "hot": False, "closed_on": "2026-02-01"}),
    ("ann", {"amount": 160, "score": 31, "stage_choice": "evil", "tags": [],
             "hot": True, "closed_on": "2026-02-02"}),
    ("bob", {"amount": 100, "score": 19.9, "stage_choice": "new", "tags": ["blue"],
             "closed_on": "2026-02-09"}),
    ("bob", {"note": "no numbers here", "amount": None}),
]  # fmt: skip


def make_app(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Any:
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
        site, url, TESTING=True, CRM_OPERATOR_PASSWORD=PASSWORD, CRM_BASE_URL="http://localhost"
    )


def seed(app: Any) -> None:
    crm = app.extensions["crm"].crm
    people = {
        "ann": crm.create_customer("ann@example.com", first_name="Ann"),
        "bob": crm.create_customer("bob@example.com", first_name="Bob"),
    }
    for who, values in DEALS:
        made = crm.create_entry(slug="deals", values=values, referenceId=people[who].id)
        assert made["ok"], made
    gone = crm.create_entry(
        slug="deals",
        values={"amount": 9999, "score": 99, "stage_choice": "won", "tags": ["blue"],
                "hot": True, "closed_on": "2026-03-15"},
        referenceId=people["bob"].id,
    )  # fmt: skip
    assert crm.delete_entry(gone["id"])
    made = crm.create_entry(slug="leads", values={"amount": 7}, referenceId=people["ann"].id)
    assert made["ok"]


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_app(tmp_path, request.param, request)
    seed(application)
    yield application
    application.extensions["crm"].close()


def sections(html: str) -> dict[str, Any]:
    page = BeautifulSoup(html, "html.parser")
    return {s.find("h2").get_text(strip=True): s for s in page.select("section.report")}


def table(section: Any) -> list[list[str]]:
    return [
        [cell.get_text(strip=True) for cell in tr.find_all(["th", "td"])]
        for tr in section.select("table.report-table tbody tr")
    ]


def csv_rows(client: Any, path: str) -> list[list[str]]:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


EXTERNAL = re.compile(r"(?:https?:)?//[^\s\"'<>)]+")
NAMESPACES = {"//www.w3.org/2000/svg", "//www.w3.org/1999/xlink"}


def external_urls(svg: str) -> set[str]:
    found = {m.group(0).split(":", 1)[-1] for m in EXTERNAL.finditer(svg)}
    return found - NAMESPACES


def test_every_chart_kind_has_exact_numbers(app: Any) -> None:
    client = operator_client(app)
    response = client.get("/admin/entities/deals/reports")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    found = sections(html)
    hot_label = f"Hot {HOSTILE}"
    assert list(found) == ["Amount", "Score", "Stage choice", "Tags", hot_label, "Closed on"]
    assert "5 entries in Deals." in html  # the deleted deal and the lead do not count

    # kpi with a baseline of 50..150: numbers of 4 entries (Bob's second has null).
    assert table(found["Amount"]) == [
        ["Count", "4", ""],
        ["Sum", "400", ""],
        ["Average", "100", "within"],
        ["Minimum", "40", "below"],
        ["Maximum", "160", "above"],
    ]
    # histogram, bucket_size 10, the empty bucket 20..30 filled with 0.
    assert table(found["Score"]) == [
        ["0 to under 10", "1"],
        ["10 to under 20", "2"],
        ["20 to under 30", "0"],
        ["30 to under 40", "1"],
    ]
    assert "1 without a value" in found["Score"].select_one(".report-meta").get_text()
    # pie of a select: options in order, the hostile label as text, the empty entry last.
    assert table(found["Stage choice"]) == [
        ["New", "2"], ["Won", "1"], [HOSTILE, "1"], ["No value", "1"],
    ]  # fmt: skip
    # bar of a multiselect: an entry counts once per option it holds; [] is "no value".
    assert table(found["Tags"]) == [
        ["red", "2"], ["green", "1"], ["blue", "1"], ["No value", "2"],
    ]  # fmt: skip
    assert table(found[hot_label]) == [["Yes", "2"], ["No", "1"], ["No value", "2"]]
    # line by month (the default).
    assert table(found["Closed on"]) == [["2026-01", "1"], ["2026-02", "3"]]


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("day", [["2026-01-31", "1"], ["2026-02-01", "1"], ["2026-02-02", "1"]]
         + [[f"2026-02-0{d}", "0"] for d in range(3, 9)] + [["2026-02-09", "1"]]),
        ("week", [["Week of 2026-01-26", "2"], ["Week of 2026-02-02", "1"],
                  ["Week of 2026-02-09", "1"]]),
        ("month", [["2026-01", "1"], ["2026-02", "3"]]),
    ],
)  # fmt: skip
def test_date_buckets_across_a_month_boundary(
    app: Any, interval: str, expected: list[list[str]]
) -> None:
    client = operator_client(app)
    html = client.get(f"/admin/entities/deals/reports?interval={interval}").get_data(as_text=True)
    assert table(sections(html)["Closed on"]) == expected
    rows = csv_rows(client, f"/admin/entities/deals/reports/closed_on.csv?interval={interval}")
    assert rows[0] == [{"day": "Day", "week": "Week", "month": "Month"}[interval], "Entries"]
    assert rows[1:] == expected


def test_csv_downloads_match_the_tables_and_are_injection_safe(app: Any) -> None:
    client = operator_client(app)
    assert csv_rows(client, "/admin/entities/deals/reports/amount.csv") == [
        ["Statistic", "Amount", "Against baseline"],
        ["Count", "4", ""],
        ["Sum", "400", ""],
        ["Average", "100", "within"],
        ["Minimum", "40", "below"],
        ["Maximum", "160", "above"],
    ]
    assert csv_rows(client, "/admin/entities/deals/reports/score.csv")[1] == ["0 to under 10", "1"]
    stage = csv_rows(client, "/admin/entities/deals/reports/stage_choice.csv")
    assert stage == [
        ["Stage choice", "Entries"], ["New", "2"], ["Won", "1"], [HOSTILE, "1"], ["No value", "1"],
    ]  # fmt: skip


def test_formula_like_labels_are_escaped_in_csv(tmp_path: Path, request: Any) -> None:
    application = make_app(tmp_path, "sqlite", request)
    try:
        crm = application.extensions["crm"].crm
        crm.ensure_entity(
            slug="evil",
            fields=[{"key": "pick", "label": "=cmd|' /C calc'!A0", "type": "select",
                     "options": [{"value": "a", "label": "@SUM(1+1)"}, "-2"],
                     "reporting_config": {"preferred_chart": "bar"}}],
        )  # fmt: skip
        crm.create_entry(slug="evil", values={"pick": "-2"}, referenceId="cus_x")
        rows = csv_rows(operator_client(application), "/admin/entities/evil/reports/pick.csv")
        assert rows == [["'=cmd|' /C calc'!A0", "Entries"], ["'@SUM(1+1)", "0"], ["'-2", "1"]]
    finally:
        application.extensions["crm"].close()


def test_svgs_have_a_title_no_script_and_no_external_url(app: Any) -> None:
    client = operator_client(app)
    html = client.get("/admin/entities/deals/reports").get_data(as_text=True)
    page = BeautifulSoup(html, "html.parser")
    svgs = page.select("figure.report-chart svg")
    assert len(svgs) == 6
    for svg in svgs:
        title = svg.find("title")
        assert svg["role"] == "img"
        assert svg["aria-labelledby"] == title["id"]
        assert title.get_text(strip=True)
        assert svg.find("script") is None and svg.find("style") is None
    assert "<script>alert" not in html  # hostile labels are text, in HTML and in SVG
    assert external_urls(html) == set()
    for key in ("amount", "score", "stage_choice", "tags", "hot", "closed_on"):
        response = client.get(f"/admin/entities/deals/reports/{key}.svg")
        assert response.status_code == 200
        assert response.mimetype == "image/svg+xml"
        svg_text = response.get_data(as_text=True)
        assert external_urls(svg_text) == set(), key
        assert "<script" not in svg_text and "<!--" not in svg_text
        assert "script-src" not in response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    css = client.get("/admin/reports/charts.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert ".crm-chart" in css.get_data(as_text=True)
    assert external_urls(css.get_data(as_text=True)) == set()


def test_hostile_labels_are_escaped_in_the_svg(app: Any) -> None:
    svg = operator_client(app).get("/admin/entities/deals/reports/hot.svg").get_data(as_text=True)
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg


def test_only_reported_fields_have_reports(app: Any) -> None:
    client = operator_client(app)
    for path in (
        "/admin/entities/deals/reports/note.csv",
        "/admin/entities/deals/reports/hidden.svg",
        "/admin/entities/deals/reports/nope.csv",
        "/admin/entities/nope/reports",
    ):
        assert client.get(path).status_code == 404, path


def test_a_bad_interval_is_a_400_naming_the_choices(app: Any) -> None:
    client = operator_client(app)
    for path in ("/admin/entities/deals/reports", "/admin/entities/deals/reports/closed_on.csv"):
        response = client.get(path + "?interval=year")
        assert response.status_code == 400
        assert "day, week, month" in response.get_data(as_text=True)


def test_other_entities_do_not_leak_into_a_report(app: Any) -> None:
    rows = csv_rows(operator_client(app), "/admin/entities/leads/reports/amount.csv")
    assert rows[1:] == [["Count", "1"], ["Sum", "7"], ["Average", "7"], ["Minimum", "7"],
                        ["Maximum", "7"]]  # fmt: skip


def test_the_reports_index_links_each_entity(app: Any) -> None:
    page = BeautifulSoup(
        operator_client(app).get("/admin/reports").get_data(as_text=True), "html.parser"
    )
    rows = {
        tr.find("a")["href"]: tr.find_all("td")[1].get_text(strip=True)
        for tr in page.select("table.admin-table tbody tr")
    }
    assert rows == {"/admin/entities/deals/reports": "6", "/admin/entities/leads/reports": "1"}
    assert page.select_one('nav[aria-label="Admin"] a[href="/admin/reports"]')


REPORT_URLS = (
    "/admin/reports",
    "/admin/entities/deals/reports",
    "/admin/entities/deals/reports/amount.csv",
    "/admin/entities/deals/reports/amount.svg",
    "/admin/reports/charts.css",
)


def test_anonymous_visitors_are_sent_to_sign_in(app: Any) -> None:
    client = app.test_client()
    for path in REPORT_URLS:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/operator/sign-in?next="), path


def test_customers_get_403_and_no_numbers(app: Any) -> None:
    client = customer_client(app, "ann@example.com")
    for path in REPORT_URLS:
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Count" not in response.get_data(as_text=True)


def test_an_entity_without_reported_fields_says_how_to_add_one(
    tmp_path: Path, request: Any
) -> None:
    application = make_app(tmp_path, "sqlite", request)
    try:
        application.extensions["crm"].crm.ensure_entity(slug="plain", fields=[{"key": "x"}])
        html = operator_client(application).get("/admin/entities/plain/reports")
        assert "reporting_config" in html.get_data(as_text=True)
        assert "section" not in html.get_data(as_text=True).split("<main", 1)[1]
    finally:
        application.extensions["crm"].close()


@pytest.mark.slow
def test_serve_shows_reports_to_an_operator(tmp_path: Path) -> None:
    """The real process: `crm-templates serve` with an operator password serves the tab."""
    import os
    import socket
    import time
    import urllib.request

    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text(PAGES["index.html"])
    (site / "crm.yaml").write_text(CRM_YAML)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CRM_OPERATOR_PASSWORD": PASSWORD, "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crm_templates", "serve", str(site), "--port", str(port),
         "--store", f"sqlite:///{tmp_path / 'crm.db'}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/operator/sign-in", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        form = opener.open(base + "/operator/sign-in").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token
        data = f"csrf_token={token.group(1)}&password={PASSWORD}&next=/admin/".encode()
        opener.open(base + "/operator/sign-in", data=data).read()
        html = opener.open(base + "/admin/entities/deals/reports").read().decode()
        assert "Amount: key figures" in html
        csv_text = opener.open(base + "/admin/entities/deals/reports/amount.csv").read().decode()
        assert csv_text.startswith("Statistic,Amount,Against baseline")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_report_in_chromium_has_no_serious_axe_violation(
    tmp_path: Path, request: Any, page: Any
) -> None:
    """Sign in as operator, open the report, switch dates to weeks (a plain GET form),
    screenshot it (a test artifact in tmp_path) and run axe-core: zero serious/critical."""
    from axe_playwright_python.sync_playwright import Axe

    from tests.test_server_browser import LiveServer

    application = make_app(tmp_path, "sqlite", request)
    application.config.update(TESTING=False, CRM_COOKIE_SECURE=False, TRUSTED_HOSTS=["127.0.0.1"])
    seed(application)
    live = LiveServer(application)
    try:
        page.goto(live.url + "/admin/entities/deals/reports")
        assert "/operator/sign-in" in page.url
        page.fill('input[name="password"]', PASSWORD)
        page.click('form button[type="submit"]')
        page.wait_for_url("**/admin/entities/deals/reports")
        assert page.locator("section.report").count() == 6
        page.select_option("#report-interval", "week")
        page.click(".report-interval button")
        page.wait_for_url("**interval=week")
        closed = page.locator("section.report", has_text="Closed on")
        assert closed.locator("tbody tr").first.inner_text().split("\t") == [
            "Week of 2026-01-26",
            "2",
        ]
        # The chart is drawn (styled by the stylesheet, not inline <style>) and labelled.
        svg = closed.locator("svg[role=img]")
        assert svg.get_attribute("aria-labelledby") == closed.locator("svg > title").get_attribute(
            "id"
        )
        assert svg.bounding_box()["width"] > 200
        page.screenshot(path=str(tmp_path / "admin-reports.png"), full_page=True)
        assert (tmp_path / "admin-reports.png").stat().st_size > 10_000
        results = Axe().run(page).response
        bad = [
            f"{v['id']} [{v['impact']}]: {v['help']} at {[n['target'] for n in v['nodes']]}"
            for v in results["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, "\n".join(bad)
    finally:
        live.stop()


def test_numbers_without_a_bucket_size_get_a_round_width(tmp_path: Path) -> None:
    """bar/pie/line of a number without ``bucket_size``: 1, 2 or 5 × 10ⁿ, at most 10 buckets,
    chosen from the store's min and max (a second aggregation, never the rows)."""
    from crm_templates import Crm, open_store
    from crm_templates.reports import build_report

    crm = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    try:
        crm.ensure_entity(
            slug="t",
            fields=[{"key": "n", "label": "N", "type": "number",
                     "reporting_config": {"preferred_chart": "bar"}}],
        )  # fmt: skip
        for value in (3, 18, 47, 47.5):
            crm.create_entry(slug="t", values={"n": value}, referenceId="cus_a")
        (chart,) = build_report(crm.store, crm.get_entity("t")).charts
        assert chart.chart == "bar"
        assert [(r.label, r.value) for r in chart.rows] == [
            ("0 to under 5", 1), ("5 to under 10", 0), ("10 to under 15", 0),
            ("15 to under 20", 1), ("20 to under 25", 0), ("25 to under 30", 0),
            ("30 to under 35", 0), ("35 to under 40", 0), ("40 to under 45", 0),
            ("45 to under 50", 2),
        ]  # fmt: skip
    finally:
        crm.close()


@pytest.mark.slow
def test_benchmark_b7_runs_and_its_page_shows_the_numbers(monkeypatch: Any) -> None:
    """B7 at a small size (the real size is measured by `python -m benchmarks.run --only B7`)."""
    from benchmarks import b7_reports

    monkeypatch.setenv("CRM_BENCH_B7_ENTRIES", "2000")
    outcome = b7_reports.run(quick=True)
    assert outcome["id"] == "B7"
    assert outcome["ratio"] > 0 and outcome["page_s"] > 0 and outcome["raw_sql_s"] > 0
