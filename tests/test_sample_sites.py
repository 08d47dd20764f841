"""The sample sites, through Flask's test client: every page renders, the seed loads, the
forms work, and nothing in them would be blocked by the server's Content-Security-Policy."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

from crm_templates.cli import main
from crm_templates.server import create_app

SAMPLES = Path(__file__).resolve().parent.parent / "sample_sites"
SITES = ["weight_tracker", "property_listings", "sales_pipeline"]


def copy_site(name: str, tmp_path: Path) -> Path:
    """A copy of a sample site (its instance/ folder stays out of the repository)."""
    target = tmp_path / name
    shutil.copytree(SAMPLES / name, target, ignore=shutil.ignore_patterns("instance"))
    return target


def parse(data: bytes) -> Any:
    """The parsed page (typed loosely: the tests assert the elements exist by using them)."""
    return BeautifulSoup(data, "html.parser")


def csrf(html: str) -> str:
    """The first CSRF token in a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    """Build the app of a sample site copy (seeded on first start); closed afterwards."""
    apps: list[Any] = []

    def make(name: str, **config: Any) -> Any:
        app = create_app(copy_site(name, tmp_path), TESTING=True, **config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["crm"].close()


@pytest.mark.parametrize("name", SITES)
def test_every_page_renders_for_a_new_visitor(make_app: Any, name: str) -> None:
    app = make_app(name)
    client = app.test_client()
    site = app.extensions["crm"].site
    for url in site.urls:
        if url == "/property":
            continue  # needs ?id=, covered below
        response = client.get(url)
        assert response.status_code == 200, (url, response.get_data(as_text=True)[:500])
        soup = parse(response.data)
        assert soup.title and soup.title.string.strip()
        assert soup.find("link", rel="stylesheet")["href"] == "/static/site.css"
    assert client.get("/static/site.css").status_code == 200
    # Browsing creates no customer records.
    assert all(c.email for c in app.extensions["crm"].crm.store.list_customers())


@pytest.mark.parametrize("name", SITES)
def test_sample_sites_use_no_inline_script_or_style(name: str) -> None:
    # The server's CSP refuses inline scripts and <style>; handlers would be refused too.
    for path in (SAMPLES / name).rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert "<script" not in text, path
        assert "<style" not in text, path
        assert not re.search(r"\son[a-z]+\s*=", text), path
        assert "style=" not in text, path


@pytest.mark.parametrize("name", SITES)
def test_seed_command_loads_each_sample(name: str, tmp_path: Path) -> None:
    site = copy_site(name, tmp_path)
    db = tmp_path / "seed.db"
    result = CliRunner().invoke(main, ["seed", str(site), "--store", f"sqlite:///{db}"])
    assert result.exit_code == 0, result.output
    assert "Seeded" in result.output


@pytest.mark.parametrize("name", SITES)
def test_render_command_on_each_sample(make_app: Any, name: str) -> None:
    app = make_app(name)
    crm = app.extensions["crm"].crm
    customers = crm.store.list_customers()
    customer = customers[0] if customers else crm.create_customer()
    app.extensions["crm"].close()
    result = CliRunner().invoke(
        main,
        ["render", "/", "--site", app.config["CRM_SITE_DIR"], "--customer", customer.id],
    )
    assert result.exit_code == 0, result.output
    assert "<html" in result.output


# --- weight tracker -----------------------------------------------------------------------


def test_weight_tracker_check_in(make_app: Any) -> None:
    app = make_app("weight_tracker")
    client = app.test_client()
    assert "No check-ins yet" in client.get("/").get_data(as_text=True)
    token = csrf(client.get("/checkin").get_data(as_text=True))

    bad = client.post("/checkin", data={"csrf_token": token, "weight": "heavy", "goal": "5"})
    assert bad.status_code == 422
    soup = parse(bad.data)
    assert "must be a number" in soup.find(id="weight-error").text
    assert "between 20 and 400" in soup.find(id="goal-error").text
    assert soup.find(id="weight")["value"] == "heavy"  # what the visitor typed comes back

    ok = client.post("/checkin", data={"csrf_token": token, "weight": "82.5", "goal": "75"})
    assert ok.status_code == 303 and ok.headers["Location"] == "/"
    soup = parse(client.get("/").data)
    assert soup.find(id="current-weight").text.strip() == "82.5"
    assert soup.find(id="goal-weight").text.strip() == "75"
    assert soup.find(id="to-go").text.strip() == "7.5 kg"
    assert soup.find(id="stage").text.strip() == "In Progress"

    client.post("/checkin", data={"csrf_token": token, "weight": "74", "goal": "75", "note": "yay"})
    soup = parse(client.get("/").data)
    assert soup.find(id="stage").text.strip() == "Goal Reached"
    history = [li.get_text(" ", strip=True) for li in soup.find(id="history").find_all("li")]
    assert len(history) == 2
    assert history[0].endswith("74.0 kg yay")


def test_weight_tracker_preview_of_seeded_customer(make_app: Any) -> None:
    app = make_app("weight_tracker", CRM_OPERATOR_PASSWORD="pw")
    client = app.test_client()
    dana = app.extensions["crm"].crm.find_customer("dana@example.com")
    token = csrf(client.get("/auth/sign-in").get_data(as_text=True))
    client.post("/operator/sign-in", data={"csrf_token": token, "password": "pw"})
    soup = parse(client.get(f"/?preview_customer={dana.id}").data)
    assert "Preview as" in soup.find(class_="crm-preview-banner").text
    assert soup.find(id="current-weight").text.strip() == "78.4"
    assert len(soup.find(id="history").find_all("li")) == 4


# --- property listings ----------------------------------------------------------------------


def test_property_listings_render_catalogue(make_app: Any) -> None:
    app = make_app("property_listings")
    client = app.test_client()
    soup = parse(client.get("/").data)
    cards = soup.select("#listings article")
    assert len(cards) == 4
    images = soup.select("#listings img")
    assert images and all(img["src"].startswith("/static/img/") for img in images)
    for img in images:
        assert client.get(img["src"]).status_code == 200
    links = [a["href"] for a in soup.select("#listings h2 a")]
    detail = parse(client.get(links[0]).data)
    assert detail.select_one(".field-city .crm-reference").text.strip() == "Lisbon"
    assert detail.select_one(".crm-rich_text strong")
    plan = detail.select_one(".field-floor_plan a")
    assert plan["href"].startswith("/static/files/") and plan.has_attr("download")
    assert client.get(plan["href"]).status_code == 200
    assert detail.select_one(".crm-swatch")["style"].startswith("background-color:#")
    assert detail.select_one(".crm-json details")
    assert detail.select_one(".field-agent_email a")["href"].startswith("mailto:")
    assert detail.select_one(".field-agent_phone a")["href"].startswith("tel:+351")
    assert client.get("/property?id=nope").status_code == 404
    cities = parse(client.get("/cities").data)
    assert len(cities.select("#cities article")) == 3


# --- sales pipeline ---------------------------------------------------------------------------


def test_sales_pipeline_lead_to_won_deal(make_app: Any) -> None:
    app = make_app("sales_pipeline")
    client = app.test_client()
    token = csrf(client.get("/").get_data(as_text=True))
    bad = client.post("/", data={"csrf_token": token, "name": "", "email": "x", "plan": "growth"})
    assert bad.status_code == 422
    assert "valid email" in bad.get_data(as_text=True)
    lead = {
        "csrf_token": token,
        "name": "Lee",
        "email": "lee@acme.example",
        "company": "Acme",
        "plan": "growth",
        "budget": "12,500",
        "phone": "+44 20 7946 0000",
    }
    response = client.post("/", data=lead)
    assert response.status_code == 303 and response.headers["Location"] == "/pipeline"

    def board() -> Any:
        return parse(client.get("/pipeline").data)

    assert board().select_one("#newest-lead .crm-stage").text == "New"
    for stage, label in (("contacted", "Contacted"), ("qualified", "Qualified")):
        client.post("/pipeline", data={"csrf_token": token, "action": "lead-stage", "stage": stage})
        assert board().select_one("#newest-lead .crm-stage").text == label
    client.post("/pipeline", data={"csrf_token": token, "action": "promote"})
    soup = board()
    assert soup.select_one("#newest-lead") is None  # removeFromOld
    deal = soup.select_one("#newest-deal")
    assert deal.select_one(".crm-stage").text == "Proposal"
    assert deal.select_one(".value").text.strip() == "12,500"
    client.post("/pipeline", data={"csrf_token": token, "action": "deal-stage", "stage": "won"})
    assert board().select_one("#newest-deal .crm-stage").text == "Won"
    bad_action = client.post("/pipeline", data={"csrf_token": token, "action": "steal"})
    assert bad_action.status_code == 400
    assert client.post("/pipeline", data={"action": "promote"}).status_code == 400  # no CSRF
