"""Pipeline boards (issue 12, item 4): the store's board queries on every backend, the board
and boards views (permissions, columns, totals, won/lost, cards, escaping), the stage-move
form without JavaScript, and — in Chromium — dragging a card and the keyboard "Move to" path,
with axe-core finding nothing serious."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from crm_templates import CrmValidationError
from crm_templates.boards import load_board, stage_probability
from crm_templates.ids import new_id, utc_now
from crm_templates.model import Entry, Stage
from crm_templates.server import create_app
from crm_templates.stage_history import SYSTEM, move_entry
from crm_templates.storage.boards import MAX_CARDS, StageTotal
from tests.admin_world import PASSWORD, csrf_token, customer_client, operator_client

BOARD = "/admin/entities/deals/pipelines/sales"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
CRM_YAML = """\
entities:
  - slug: deals
    name: Deals
    singular_name: Deal
    color: "#2563eb"
    fields:
      - {key: amount, label: Amount, type: number}
      - {key: seats, label: Seats, type: number}
      - {key: note, label: Note, type: text}
    pipelines:
      - slug: sales
        name: Sales
        stages:
          - {slug: new, name: New, color: "#64748b", probability: 10}
          - {slug: proposal, name: Proposal, color: "#d97706", semantic_status: active, probability: 60}
          - {slug: review, name: Review, color: "#7c3aed", semantic_status: active}
          - {slug: won, name: Won, color: "#15803d", semantic_status: won}
          - {slug: lost, name: Lost, color: "#b91c1c", semantic_status: lost}
      - slug: renewals
        name: Renewals
        stages:
          - {slug: due, name: Due}
          - {slug: won, name: Renewed, semantic_status: won}
  - slug: profile
    name: Profile
    entity_mode: data
    fields:
      - {key: nickname, label: Nickname, type: text}
"""
# What seed() puts on the Sales board: stage -> (count, amount total, weighted total).
EXPECTED = {
    "new": (2, 300.0, 30.0),
    "proposal": (1, 250.5, 150.3),
    "review": (0, 0.0, None),
    "won": (1, 1000.0, 1000.0),
    "lost": (1, 0.0, 0.0),
}


def make_board_app(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Any:
    """The boards test site (two pipelines, probabilities) on ``backend``, operators on."""
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text("<!doctype html><title>Home</title><main>Hi</main>")
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
        TRUSTED_HOSTS=["127.0.0.1", "localhost"],
        CRM_COOKIE_SECURE=False,
    )


def seed(app: Any) -> dict[str, Any]:
    """Ann and Bob with deals on both pipelines; returns the ids by name."""
    crm = app.extensions["crm"].crm
    ann = crm.create_customer("ann@example.com", first_name="Ann")
    bob = crm.create_customer("bob@example.com", first_name="Bob")
    ids: dict[str, Any] = {"ann": ann.id, "bob": bob.id}
    for name, customer, stage, values, pipeline in (
        ("ann-new", ann, "new", {"amount": 100, "seats": 2, "note": "Ann's first"}, "sales"),
        ("ann-proposal", ann, "proposal", {"amount": 250.5}, "sales"),
        ("bob-new", bob, "new", {"amount": 200, "seats": 5}, "sales"),
        ("bob-won", bob, "won", {"amount": 1000}, "sales"),
        ("bob-lost", bob, "lost", {"note": "no amount"}, "sales"),
        ("ann-renewal", ann, "due", {"amount": 7}, "renewals"),
    ):
        created = crm.create_entry(
            slug="deals",
            title=f"{name} deal",
            values=values,
            pipeline=pipeline,
            stage=stage,
            referenceId=customer.id,
        )
        assert created["ok"], created
        ids[name] = created["id"]
    crm.set_field(slug="profile", fieldKey="nickname", value="Ann", referenceId=ann.id)
    return ids


@pytest.fixture(params=["sqlite", "opensearch"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_board_app(tmp_path, request.param, request)
    yield application
    application.extensions["crm"].close()


def soup(response: Any) -> BeautifulSoup:
    return BeautifulSoup(response.get_data(as_text=True), "html.parser")


def stage_of(app: Any, entry_id: str) -> str | None:
    """The stage slug an entry is at, read back from the store."""
    crm = app.extensions["crm"].crm
    entry = crm.get_entry(entry_id)
    entity = crm.get_entity("deals")
    for pipeline in entity.pipelines:
        for stage in pipeline.stages:
            if stage.id == entry.stage_id and pipeline.id == entry.pipeline_id:
                return f"{pipeline.slug}/{stage.slug}"
    return None


def column_cards(page: BeautifulSoup) -> dict[str, list[str]]:
    return {
        col["data-stage"]: [li["data-entry"] for li in col.select("li.board-card")]
        for col in page.select("section.board-col")
    }


# --- the store's board queries (every backend of conftest's `store` fixture) ----------------


def _entry(stage: str, updated: str, pipeline: str = "p1", entity: str = "deals", **values: Any):
    return Entry(
        id=new_id(),
        entity=entity,
        reference_type="customer",
        reference_id="cus_1",
        values=values,
        title=f"{stage} {updated}",
        pipeline_id=pipeline,
        stage_id=stage,
        created_at=utc_now(),
        updated_at=updated,
    )


def test_store_counts_and_sums_per_stage(store: Any) -> None:
    store.insert_entries(
        [
            _entry("s1", "2026-01-01", amount=10),
            _entry("s1", "2026-01-02", amount=2.5),
            _entry("s1", "2026-01-03", amount="12"),  # text: not summed
            _entry("s1", "2026-01-04", amount=True),  # boolean: not summed
            _entry("s1", "2026-01-05", amount=None),
            _entry("s2", "2026-01-06", other=99),
            _entry("gone", "2026-01-07", amount=1),  # a stage the pipeline no longer has
            _entry("s1", "2026-01-08", "p2", amount=1000),  # another pipeline
            _entry("s1", "2026-01-09", entity="leads", amount=1000),  # another entity
        ]
    )
    assert store.stage_totals("deals", "p1", "amount") == {
        "s1": StageTotal(count=5, total=12.5),
        "s2": StageTotal(count=1, total=0.0),
        "gone": StageTotal(count=1, total=1.0),
    }
    assert store.stage_totals("deals", "p1") == {
        "s1": StageTotal(5, 0.0),
        "s2": StageTotal(1, 0.0),
        "gone": StageTotal(1, 0.0),
    }
    assert store.stage_totals("deals", "nope", "amount") == {}


def test_store_cards_are_bounded_and_most_recently_updated_first(store: Any) -> None:
    entries = [_entry("s1", f"2026-01-0{day}", n=day) for day in range(1, 6)]
    store.insert_entries([*entries, _entry("s2", "2026-02-01"), _entry("s1", "2027", "p2")])
    cards = store.stage_cards("deals", "p1", ["s1", "s3"], 3)
    assert [e.values["n"] for e in cards["s1"]] == [5, 4, 3]
    assert cards["s3"] == []
    assert cards["s1"][0] == entries[4]
    assert store.stage_cards("deals", "p1", [], 3) == {}
    for bad in (0, MAX_CARDS + 1, True):
        with pytest.raises(CrmValidationError, match="cards per stage"):
            store.stage_cards("deals", "p1", ["s1"], bad)


def test_a_read_only_view_may_run_the_board_queries(store: Any) -> None:
    from crm_templates.access import read_only_store

    store.insert_entries([_entry("s1", "2026-01-01", amount=3)])
    view = read_only_store(store)
    assert view.stage_totals("deals", "p1", "amount") == {"s1": StageTotal(1, 3.0)}
    assert [e.values for e in view.stage_cards("deals", "p1", ["s1"], 1)["s1"]] == [{"amount": 3}]


# --- permissions ----------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_sign_in(app: Any) -> None:
    ids = seed(app)
    client = app.test_client()
    for path in ("/admin/boards", BOARD):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/operator/sign-in?next=")
    data = {"csrf_token": csrf_token(client), "stage": "lost", "pipeline": "sales"}
    response = client.post(f"/admin/entries/{ids['ann-new']}/stage", data=data)
    assert response.status_code == 302
    assert stage_of(app, ids["ann-new"]) == "sales/new"


def test_a_customer_gets_403_and_cannot_move_a_card(app: Any) -> None:
    ids = seed(app)
    client = customer_client(app, "ann@example.com")
    for path in ("/admin/boards", BOARD, "/admin/static/board.js"):
        assert client.get(path).status_code == 403, path
    token = csrf_token(client, "/auth/sign-in")
    response = client.post(
        f"/admin/entries/{ids['ann-new']}/stage", data={"csrf_token": token, "stage": "won"}
    )
    assert response.status_code == 403
    assert stage_of(app, ids["ann-new"]) == "sales/new"


# --- the boards list and the board ----------------------------------------------------------


def test_boards_lists_every_pipeline_and_is_in_the_navigation(app: Any) -> None:
    seed(app)
    page = soup(operator_client(app).get("/admin/boards"))
    rows = [
        [td.get_text(" ", strip=True) for td in tr.find_all("td")] for tr in page.select("tbody tr")
    ]
    assert rows == [
        ["Sales", "Deals deals", "5", "5"],
        ["Renewals", "Deals deals", "2", "1"],
    ]
    links = [a["href"] for a in page.select("tbody a")]
    assert links == [BOARD, "/admin/entities/deals/pipelines/renewals"]
    nav = {a.get_text(strip=True): a["href"] for a in page.select(".admin-bar nav a")}
    assert nav["Boards"] == "/admin/boards"
    assert page.select_one('.admin-bar nav a[aria-current="page"]').get_text() == "Boards"


def test_columns_in_stage_order_with_counts_and_totals(app: Any) -> None:
    ids = seed(app)
    page = soup(operator_client(app).get(BOARD))
    columns = page.select("section.board-col")
    assert [c["data-stage"] for c in columns] == list(EXPECTED)
    assert [c.select_one("h2").get_text(strip=True) for c in columns] == [
        "New",
        "Proposal",
        "Review",
        "Won",
        "Lost",
    ]
    for column in columns:
        count, total, weighted = EXPECTED[column["data-stage"]]
        figures = {
            dt.get_text(strip=True): dd.get_text(strip=True)
            for dt, dd in zip(
                column.select(".board-figures dt"), column.select(".board-figures dd"), strict=True
            )
        }
        assert figures["Entries"] == str(count)
        assert figures["Amount"] == f"{total:,.2f}".rstrip("0").rstrip(".")
        weighted_key = next(k for k in figures if k.startswith("Weighted"))
        if weighted is None:
            assert figures[weighted_key] == "no probability"
        else:
            assert figures[weighted_key] == f"{weighted:,.2f}".rstrip("0").rstrip(".")
    # Both customers' cards, each on its own customer's link; the renewal is not on this board.
    cards = column_cards(page)
    assert sorted(cards["new"]) == sorted([ids["ann-new"], ids["bob-new"]])
    assert cards["won"] == [ids["bob-won"]]
    assert all(ids["ann-renewal"] not in shown for shown in cards.values())
    ann_card = page.select_one(f'li[data-entry="{ids["ann-new"]}"]')
    ref = ann_card.select_one(".board-card-ref a")
    assert (ref.get_text(), ref["href"]) == ("Ann", f"/admin/customers/{ids['ann']}")
    bob_card = page.select_one(f'li[data-entry="{ids["bob-new"]}"]')
    assert bob_card.select_one(".board-card-ref a")["href"] == f"/admin/customers/{ids['bob']}"
    title = ann_card.select_one(".board-card-title a")
    assert (title.get_text(), title["href"]) == ("ann-new deal", f"/admin/entries/{ids['ann-new']}")
    values = [dd.get_text(strip=True) for dd in ann_card.select(".board-card-values dd")]
    assert values == ["100", "2", "Ann's first"]  # the summed field first, then the others
    summary = page.select_one("#board-summary").get_text(" ", strip=True)
    assert "5 entries" in summary and "Amount 1,550.5" in summary and "weighted 1,180.3" in summary


def test_the_sum_field_is_chosen_with_a_get_form(app: Any) -> None:
    seed(app)
    client = operator_client(app)
    page = soup(client.get(BOARD))
    form = page.select_one("form.board-sum")
    assert form["method"] == "get" and form["action"] == BOARD
    select = form.select_one("select[name=sum]")
    assert [o["value"] for o in select.select("option")] == ["amount", "seats"]
    assert select.select_one("option[selected]")["value"] == "amount"
    page = soup(client.get(BOARD + "?sum=seats"))
    new = page.select_one('section[data-stage="new"]')
    assert [dd.get_text() for dd in new.select(".board-figures dd")][:2] == ["2", "7"]
    assert page.select_one("select[name=sum] option[selected]")["value"] == "seats"
    # The move forms come back here, sum choice included.
    assert page.select_one("form.board-move input[name=next]")["value"] == BOARD + "?sum=seats"
    response = client.get(BOARD + "?sum=note")
    assert response.status_code == 400
    text = soup(response).get_text(" ", strip=True)
    assert "'note' is not a number field of 'deals'; number fields: amount, seats" in text


def test_unknown_entity_or_pipeline_is_404(app: Any) -> None:
    client = operator_client(app)
    assert client.get("/admin/entities/nope/pipelines/sales").status_code == 404
    assert client.get("/admin/entities/deals/pipelines/nope").status_code == 404
    assert client.get("/admin/entities/profile/pipelines/sales").status_code == 404


def test_won_and_lost_stages_are_distinct_in_style_and_text(app: Any) -> None:
    seed(app)
    page = soup(operator_client(app).get(BOARD))
    classes = {c["data-stage"]: c["class"] for c in page.select("section.board-col")}
    assert "board-col--won" in classes["won"] and "board-col--lost" in classes["lost"]
    assert not any(c.startswith("board-col--") for c in classes["new"] + classes["proposal"])
    won = page.select_one('section[data-stage="won"]').get_text(" ", strip=True)
    lost = page.select_one('section[data-stage="lost"]').get_text(" ", strip=True)
    assert "Won stage" in won and "Lost stage" in lost
    # The stage colour goes into a custom property (re-serialised), never into text colour.
    assert page.select_one('section[data-stage="won"]')["style"] == "--stage-color: #15803d"


def test_a_column_is_bounded_with_a_link_to_the_rest(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = seed(app)
    monkeypatch.setattr("crm_templates.server.admin.boards.CARDS", 1)
    page = soup(operator_client(app).get(BOARD))
    new = page.select_one('section[data-stage="new"]')
    assert len(new.select("li.board-card")) == 1
    assert new.select_one("li.board-card")["data-entry"] == ids["bob-new"]  # updated last
    more = new.select_one(".board-more a")
    assert more.get_text() == "1 more at New"
    assert more["href"] == "/admin/entities/deals/entries?stage=new"
    assert page.select_one('section[data-stage="won"] .board-more a') is None


def test_hostile_titles_values_and_names_are_escaped(app: Any) -> None:
    crm = app.extensions["crm"].crm
    evil = crm.create_customer("evil@example.com", first_name=HOSTILE)
    crm.create_entry(
        slug="deals",
        title=HOSTILE,
        values={"note": HOSTILE, "amount": 1},
        referenceId=evil.id,
    )
    crm.create_entry(slug="deals", title="  ", values={"amount": 2}, referenceId=evil.id)
    html = operator_client(app).get(BOARD).get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html or "&lt;script&gt;" in html
    page = BeautifulSoup(html, "html.parser")
    titles = [a.get_text() for a in page.select(".board-card-title a")]
    assert HOSTILE in titles and "Untitled deal" in titles
    assert page.select("main script") == []


# --- moving a card without JavaScript -------------------------------------------------------


def _move(client: Any, entry_id: str, **data: str) -> Any:
    return client.post(f"/admin/entries/{entry_id}/stage", data=data)


def test_the_move_form_refuses_without_csrf_and_for_unknown_stages(app: Any) -> None:
    ids = seed(app)
    client = operator_client(app)
    token = csrf_token(client, BOARD)
    before = app.extensions["crm"].crm.get_entry(ids["ann-new"])
    assert _move(client, ids["ann-new"], stage="won").status_code == 400
    response = _move(client, ids["ann-new"], stage="nope", csrf_token=token, next=BOARD)
    assert response.status_code == 422
    text = soup(response).get_text(" ", strip=True)
    assert "has no stage 'nope'" in text
    assert _move(client, ids["ann-new"], stage="", csrf_token=token).status_code == 422
    # "won" is in both pipelines: ambiguous without the pipeline.
    response = _move(client, ids["ann-new"], stage="won", csrf_token=token)
    assert response.status_code == 422
    assert "in several pipelines" in soup(response).get_text()
    response = _move(client, ids["ann-new"], stage="new", pipeline="nope", csrf_token=token)
    assert response.status_code == 422
    assert app.extensions["crm"].crm.get_entry(ids["ann-new"]) == before
    assert _move(client, "missing", stage="won", csrf_token=token).status_code == 404


def test_the_move_form_moves_records_and_redirects(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ids = seed(app)
    client = operator_client(app)
    token = csrf_token(client, BOARD)
    before = app.extensions["crm"].crm.get_entry(ids["ann-new"])
    caplog.set_level(logging.INFO, logger="crm_templates.audit")
    response = _move(
        client,
        ids["ann-new"],
        stage="won",
        pipeline="sales",
        csrf_token=token,
        next=BOARD + "?sum=seats",
    )
    assert response.status_code == 303
    assert response.headers["Location"] == BOARD + "?sum=seats"
    assert stage_of(app, ids["ann-new"]) == "sales/won"
    after = app.extensions["crm"].crm.get_entry(ids["ann-new"])
    assert after.values == before.values and after.updated_at > before.updated_at
    audit = [r.getMessage() for r in caplog.records if r.name == "crm_templates.audit"]
    assert len(audit) == 1
    assert audit[0].startswith(f"entry.stage by operator entry={ids['ann-new']} entity=deals")
    assert f"'from': '{before.stage_id}', 'to': '{after.stage_id}'" in audit[0]
    page = soup(client.get(BOARD))
    assert ids["ann-new"] in column_cards(page)["won"]
    # Off-site `next`: the entry's page instead. Moving across pipelines by stage id works.
    renewed = app.extensions["crm"].crm.get_entity("deals").pipelines[1].stages[1]
    response = _move(
        client, ids["bob-new"], stage=renewed.id, csrf_token=token, next="https://evil.example/"
    )
    assert response.headers["Location"] == f"/admin/entries/{ids['bob-new']}"
    assert stage_of(app, ids["bob-new"]) == "renewals/won"
    # Moving to where it is: no write, no audit line.
    caplog.clear()
    version = app.extensions["crm"].crm.get_entry(ids["bob-won"]).version
    response = _move(client, ids["bob-won"], stage="won", pipeline="sales", csrf_token=token)
    assert response.status_code == 303
    assert app.extensions["crm"].crm.get_entry(ids["bob-won"]).version == version
    assert not [r for r in caplog.records if r.name == "crm_templates.audit"]


def test_the_move_answers_json_when_asked(app: Any) -> None:
    ids = seed(app)
    client = operator_client(app)
    token = csrf_token(client, BOARD)
    headers = {"Accept": "application/json", "X-CSRFToken": token}
    response = client.post(
        f"/admin/entries/{ids['bob-new']}/stage",
        data={"stage": "proposal", "pipeline": "sales"},
        headers=headers,
    )
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["ok"] is True
    assert stage_of(app, ids["bob-new"]) == "sales/proposal"
    assert answer["stage_id"] == app.extensions["crm"].crm.get_entry(ids["bob-new"]).stage_id
    response = client.post(
        f"/admin/entries/{ids['bob-new']}/stage", data={"stage": "nope"}, headers=headers
    )
    assert response.status_code == 422
    assert response.get_json()["ok"] is False and "nope" in response.get_json()["error"]
    assert stage_of(app, ids["bob-new"]) == "sales/proposal"


# --- the core -------------------------------------------------------------------------------


def test_load_board_and_move_in_the_core(crm: Any, tmp_path: Path) -> None:
    from crm_templates.loading import ensure_schema

    (tmp_path / "crm.yaml").write_text(CRM_YAML)
    ensure_schema(crm, tmp_path / "crm.yaml")
    created = crm.create_entry(slug="deals", values={"amount": 5}, referenceId="cus_1")
    board = load_board(crm, "deals", "sales", cards=1)
    assert [c.count for c in board.columns] == [1, 0, 0, 0, 0]
    assert board.columns[0].weighted == 0.5 and board.weighted == 0.5
    with pytest.raises(CrmValidationError, match="no pipeline 'x'"):
        load_board(crm, "deals", "x")
    with pytest.raises(CrmValidationError, match="cards per column"):
        load_board(crm, "deals", "sales", cards=0)
    before = crm.get_entry(created["id"])
    moved = move_entry(crm, created["id"], stage="lost", pipeline="sales", actor=SYSTEM)
    assert moved.stage_id != before.stage_id and moved.pipeline_id == before.pipeline_id
    assert load_board(crm, "deals", "sales").columns[4].count == 1
    profile = crm.set_field(slug="profile", fieldKey="nickname", value="x", referenceId="cus_1")
    with pytest.raises(CrmValidationError, match="data mode"):
        move_entry(crm, profile["id"], stage="new", actor=SYSTEM)


@pytest.mark.parametrize(
    ("status", "probability", "expected"),
    [("open", None, None), ("active", 40, 40.0), ("won", None, 100.0), ("lost", None, 0.0),
     ("won", 90, 90.0)],
)  # fmt: skip
def test_stage_probability(status: str, probability: float | None, expected: Any) -> None:
    stage = Stage(id="s", slug="s", name="S", position=0, semantic_status=status)
    assert stage_probability(replace(stage, probability=probability)) == expected


# --- in Chromium ------------------------------------------------------------------------------


@pytest.fixture
def live_board(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Any, dict]]:
    from tests.test_server_browser import LiveServer

    app = make_board_app(tmp_path, "sqlite", request)
    app.config["TESTING"] = False
    ids = seed(app)
    server = LiveServer(app)
    try:
        yield server, ids
    finally:
        server.stop()


def _sign_in(page: Any, server: Any) -> None:
    page.goto(server.url + "/operator/sign-in?next=" + BOARD)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(BOARD) + "$"))


@pytest.mark.browser
@pytest.mark.slow
def test_in_chromium_drag_a_card_and_use_the_keyboard(
    live_board: tuple[Any, dict], page: Any, tmp_path: Path
) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    server, ids = live_board
    _sign_in(page, server)
    card = page.locator(f'li[data-entry="{ids["ann-new"]}"]')
    won = page.locator('section[data-stage="won"]')
    status = page.locator("#board-status")

    card.drag_to(won.locator("ol[data-cards]"))
    expect(won.locator(f'li[data-entry="{ids["ann-new"]}"]')).to_be_visible()
    expect(status).to_have_text("Moved “ann-new deal” from New to Won.")
    expect(won.locator(".board-count")).to_have_text("2")  # figures refreshed from the server
    expect(page.locator('section[data-stage="new"] .board-count')).to_have_text("1")
    page.reload()
    expect(won.locator(f'li[data-entry="{ids["ann-new"]}"]')).to_be_visible()

    # The keyboard path: the card's own "Move to" select and button, no mouse.
    select = page.locator(f"#move-{ids['bob-new']}")
    select.focus()
    select.select_option("lost")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    lost = page.locator('section[data-stage="lost"]')
    expect(lost.locator(f'li[data-entry="{ids["bob-new"]}"]')).to_be_visible()
    expect(status).to_have_text("Moved “bob-new deal” from New to Lost.")
    expect(page.locator(f"#move-{ids['bob-new']}")).to_be_focused()
    page.screenshot(path=str(tmp_path / "board.png"), full_page=True)
    page.reload()
    expect(lost.locator(f'li[data-entry="{ids["bob-new"]}"]')).to_be_visible()
    assert stage_of(server.app, ids["bob-new"]) == "sales/lost"

    results = Axe().run(page)
    bad = [
        f"{v['id']} [{v['impact']}]: {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == []
    # The same in the dark scheme, and the Boards list.
    page.emulate_media(color_scheme="dark")
    for url in (BOARD, "/admin/boards"):
        page.goto(server.url + url)
        bad = [
            f"{url}: {v['id']} at {[n['target'] for n in v['nodes']]}"
            for v in Axe().run(page).response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert bad == []
    page.goto(server.url + BOARD)
    page.screenshot(path=str(tmp_path / "board-dark.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.allow_console_errors(r"status of 404")
def test_in_chromium_a_refused_move_puts_the_card_back(
    live_board: tuple[Any, dict], page: Any
) -> None:
    from playwright.sync_api import expect

    server, ids = live_board
    _sign_in(page, server)
    # Someone deletes the entry after the page was drawn: the server refuses, the card goes back.
    assert server.app.extensions["crm"].crm.store.delete_entry(ids["ann-new"])
    card = page.locator(f'li[data-entry="{ids["ann-new"]}"]')
    card.drag_to(page.locator('section[data-stage="won"] ol[data-cards]'))
    status = page.locator("#board-status")
    expect(status).to_contain_text("Could not move “ann-new deal”: There is no entry")
    expect(status).to_have_class(re.compile("board-status--error"))
    new = page.locator('section[data-stage="new"]')
    expect(new.locator(f'li[data-entry="{ids["ann-new"]}"]')).to_be_visible()
    expect(page.locator('section[data-stage="won"] li.board-card')).to_have_count(1)


# --- the real process -------------------------------------------------------------------------


@pytest.mark.slow
def test_crm_templates_serve_shows_the_sample_board_and_moves_a_card(tmp_path: Path) -> None:
    """`crm-templates serve sample_sites/sales_pipeline` with CRM_OPERATOR_PASSWORD: sign in,
    open Boards, the seeded deal sits in Negotiation; the plain form moves it to Won."""
    import shutil
    from urllib.parse import urlencode

    from tests.test_serve import SAMPLES, Served, browser_session

    site = tmp_path / "site"
    shutil.copytree(SAMPLES / "sales_pipeline", site, ignore=shutil.ignore_patterns("instance"))
    served = Served(site, tmp_path / "crm.db", env={"CRM_OPERATOR_PASSWORD": PASSWORD})
    try:
        client = browser_session()

        def get(path: str) -> BeautifulSoup:
            with client.open(served.url(path), timeout=10) as response:
                assert response.status == 200, path
                return BeautifulSoup(response.read().decode(), "html.parser")

        def post(path: str, data: dict[str, str]) -> str:
            try:
                client.open(served.url(path), urlencode(data).encode(), timeout=10)
            except Exception as exc:  # the client follows no redirect: a 303 is an HTTPError
                assert getattr(exc, "code", None) == 303, exc
                return str(exc.headers["Location"])  # type: ignore[attr-defined]
            raise AssertionError(f"POST {path} did not redirect")

        token = get("/operator/sign-in").select_one("input[name=csrf_token]")["value"]
        post("/operator/sign-in", {"csrf_token": token, "password": PASSWORD, "next": "/admin/"})
        boards = get("/admin/boards")
        link = next(a["href"] for a in boards.select("tbody a") if a.get_text() == "Deals")
        assert link == BOARD
        board = get(link)
        negotiation = board.select_one('section[data-stage="negotiation"]')
        figures = [dd.get_text(strip=True) for dd in negotiation.select(".board-figures dd")]
        assert figures == ["1", "18,000", "10,800"]
        card = negotiation.select_one("li.board-card")
        assert card.select_one(".board-card-title").get_text(strip=True) == "Northwind Traders"
        assert card.select_one(".board-card-ref a").get_text() == "Sam Okafor"
        form = card.select_one("form.board-move")
        fields = {i["name"]: i["value"] for i in form.select("input[type=hidden]")}
        location = post(form["action"], {**fields, "stage": "won"})
        assert location == BOARD
        board = get(BOARD)
        won = board.select_one('section[data-stage="won"]')
        assert won.select_one(".board-card-title").get_text(strip=True) == "Northwind Traders"
        assert [dd.get_text(strip=True) for dd in won.select(".board-figures dd")] == [
            "1",
            "18,000",
            "18,000",
        ]
    finally:
        served.stop()
