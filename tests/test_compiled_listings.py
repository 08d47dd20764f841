"""Planned listings (issue 14, B5): ``GetCrmEntries`` / ``GetCrmFieldValues`` with constant
options for the render's customer are planned at compile time and fetched in the page's one
store round trip, answering exactly what the lazy call answers — per customer, after writes,
and with the same errors for bad options.

Real parts only: SQLite files (statements counted with ``set_trace_callback``), the real
osmem-server (HTTP requests counted as B6 does), the Flask test client on a copy of the
weight-tracker sample site.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2 import DictLoader
from jinja2.sandbox import SandboxedEnvironment

from benchmarks.b6_roundtrips import Counter
from crm_templates import Crm, CrmExtension, open_store
from crm_templates.compiled_reads import plan_of, resolve_listings
from crm_templates.extension import CrmTemplateError, fold_entity_refresh
from crm_templates.storage.prefetch import MAX_LISTINGS

ROOT = Path(__file__).resolve().parent.parent
CUSTOMERS = ("cus_alice", "cus_bob")
ENTITY = {
    "slug": "wt",
    "fields": [
        {"key": "weight", "type": "number"},
        {"key": "goal", "type": "number"},
        {"key": "history", "type": "json"},
    ],
    "pipelines": [{"slug": "progress", "stages": [{"slug": "start"}, {"slug": "going"}]}],
}
PAGE = (
    "{% set t = GetCrmFields({'slug': 'wt', 'fieldKeys': ['weight', 'goal']}) %}"
    "{% set history = GetCrmFieldValues({'slug': 'wt', 'fieldKey': 'history', 'limit': 3}) %}"
    "{% set latest = GetCrmEntries({'slug': 'wt', 'limit': 1}) %}"
    "{% set every = getCrmEntries(slug='wt') %}"
    "w={{ t.weight }} g={{ t.goal }}|"
    "{% for h in history %}{{ h.date }}:{{ h.kg }};{% endfor %}|"
    "{% for e in latest %}{{ e.id }} {{ e.stage_id }} {{ e.values | tojson }}{% endfor %}|"
    "{{ every | length }}"
)
# The same page with every listing's slug from a variable: nothing planned, all lazy.
LAZY = PAGE.replace("'slug': 'wt'", "'slug': s").replace("slug='wt'", "slug=s")


def seed(crm: Crm) -> None:
    crm.ensure_entity(ENTITY)
    for n, cid in enumerate(CUSTOMERS):
        view = crm.bind(cid)
        view.set_fields(slug="wt", fields={"weight": 80 + n, "goal": 70 + n})
        for day in range(1, 6):
            view.add_field_value(
                slug="wt", fieldKey="history", value={"date": f"{cid}-d{day}", "kg": 80 - day}
            )


def make_env(crm: Crm) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=DictLoader({"page.html": PAGE, "lazy.html": LAZY}),
        extensions=[CrmExtension],
        autoescape=True,
    )
    env.install_crm(crm)  # type: ignore[attr-defined]
    return env


@pytest.fixture
def sqlite_crm(tmp_path: Path) -> Iterator[Crm]:
    crm = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    seed(crm)
    yield crm
    crm.close()


@pytest.fixture
def search_crm(search_store_factory: Any) -> Iterator[Crm]:
    crm = Crm(search_store_factory())
    seed(crm)
    yield crm


def traced(crm: Crm) -> tuple[list[str], Any]:
    statements: list[str] = []
    conn = crm.store._conn()  # type: ignore[attr-defined]
    conn.set_trace_callback(statements.append)
    return statements, conn


# --- the plan --------------------------------------------------------------------------------


def test_plan_names_constant_listings_of_the_renders_customer_only() -> None:
    env = SandboxedEnvironment(extensions=[CrmExtension])
    plan = plan_of(
        env.parse(
            "{{ GetCrmEntries(slug='a', limit=3) }}{{ getCrmEntries({'slug': 'b'}) }}"
            "{{ GetCrmFieldValues(slug='c', fieldKey='k', limit=10) }}"
            "{{ getCrmFieldValues({'crmEntitySlug': 'd', 'fieldKey': 'k'}) }}"
            # the lazy path for each of these:
            "{{ GetCrmEntries(slug=name) }}{{ GetCrmEntries(slug='e', referenceId='x') }}"
            "{{ GetCrmEntries(slug='f', limit=True) }}{{ GetCrmEntries(slug='g', limit=0) }}"
            "{{ GetCrmEntries(slug='h', limit='5') }}{{ GetCrmEntries(slug='i', async=true) }}"
            "{{ GetCrmFieldValues(slug='j') }}{{ GetCrmFieldValues(slug='k', fieldKey=key) }}"
            "{{ GetCrmEntries({'slug': 'l'}, limit=2) }}{{ GetCrmEntries(**opts) }}"
        )
    )
    assert set(plan[3]) == {
        ("GetCrmEntries", "a", None, 3),
        ("GetCrmEntries", "b", None, None),
        ("GetCrmFieldValues", "c", "k", 10),
        ("GetCrmFieldValues", "d", "k", None),
        ("GetCrmEntries", "l", None, 2),
    }


def test_listings_are_followed_through_layouts_and_imported_macros() -> None:
    env = SandboxedEnvironment(
        extensions=[CrmExtension],
        loader=DictLoader(
            {
                "page.html": "{% extends 'layout.html' %}{% import 'm.html' as m %}"
                "{% block b %}{{ m.rows() }}{% endblock %}",
                "layout.html": "{{ GetCrmEntries(slug='layout', limit=1) }}{% block b %}"
                "{% endblock %}",
                "m.html": "{% macro rows() %}{{ GetCrmFieldValues(slug='macro', fieldKey='k') }}"
                "{% endmacro %}",
            }
        ),
    )
    assert set(resolve_listings(env.get_template("page.html"))) == {
        ("GetCrmEntries", "layout", None, 1),
        ("GetCrmFieldValues", "macro", "k", None),
    }


# --- same answers, one round trip ------------------------------------------------------------


def test_planned_listings_answer_as_the_lazy_calls_for_each_customer(sqlite_crm: Crm) -> None:
    env = make_env(sqlite_crm)
    page, lazy = env.get_template("page.html"), env.get_template("lazy.html")
    for cid in CUSTOMERS:
        planned = page.render(customer_id=cid)
        assert planned == lazy.render(customer_id=cid, s="wt")
        assert f"{cid}-d5:75;{cid}-d4:76;{cid}-d3:77;|" in planned
        assert "|6" in planned  # every entry, the default limit
        for other in CUSTOMERS:
            if other != cid:
                assert other not in planned


def test_a_page_with_listings_is_one_sqlite_statement(sqlite_crm: Crm) -> None:
    env = make_env(sqlite_crm)
    template = env.get_template("page.html")
    template.render(customer_id="cus_alice")  # compiles, caches the entity definition
    statements, conn = traced(sqlite_crm)
    try:
        with fold_entity_refresh():
            html = template.render(customer_id="cus_alice")
    finally:
        conn.set_trace_callback(None)
    assert "cus_alice-d5" in html
    assert len(statements) == 1, statements
    assert "LIMIT" in statements[0] and "FROM entities" in statements[0]


def test_a_page_with_listings_is_one_http_request_on_the_search_backend(
    search_crm: Crm,
) -> None:
    env = make_env(search_crm)
    page, lazy = env.get_template("page.html"), env.get_template("lazy.html")
    page.render(customer_id="cus_alice")
    counter = Counter(search_crm.store)  # type: ignore[arg-type]
    for cid in CUSTOMERS:
        with fold_entity_refresh():
            sent = counter.measure(lambda cid=cid: page.render(customer_id=cid))
        assert [path for path, _ in sent] == ["/_msearch"], sent
        assert page.render(customer_id=cid) == lazy.render(customer_id=cid, s="wt")


def test_a_write_before_a_planned_listing_is_seen(sqlite_crm: Crm) -> None:
    env = make_env(sqlite_crm)
    template = env.from_string(
        "{{ GetCrmFieldValues(slug='wt', fieldKey='history', limit=2) | length }}"
        "{% do AddCrmFieldValue(slug='wt', fieldKey='history', value={'date': 'new'}) %}"
        "{% for h in GetCrmFieldValues(slug='wt', fieldKey='history', limit=2) %}"
        "{{ h.date }};{% endfor %}"
    )
    assert template.render(customer_id="cus_bob") == "2new;cus_bob-d5;"


def test_a_planned_listing_reports_bad_options_as_the_lazy_call_does(sqlite_crm: Crm) -> None:
    env = make_env(sqlite_crm)
    messages = []
    for source, slug in (
        ("{{ GetCrmEntries(slug='nope') }}", None),
        ("{{ GetCrmEntries(slug=s) }}", "nope"),
        ("{{ GetCrmFieldValues(slug='wt', fieldKey='nokey') }}", None),
        ("{{ GetCrmFieldValues(slug=s, fieldKey='nokey') }}", "wt"),
    ):
        with pytest.raises(CrmTemplateError) as caught:
            env.from_string(source).render(customer_id="cus_alice", s=slug)
        messages.append(str(caught.value).split(": ", 1)[1])
    assert messages[0] == messages[1] and "nope" in messages[0]
    assert messages[2] == messages[3] and "nokey" in messages[2]


def test_without_a_customer_a_planned_listing_is_empty_and_reads_nothing(
    sqlite_crm: Crm,
) -> None:
    env = make_env(sqlite_crm)
    template = env.from_string("{{ GetCrmEntries(slug='wt') | length }}")
    template.render()
    statements, conn = traced(sqlite_crm)
    try:
        assert template.render() == "0"
    finally:
        conn.set_trace_callback(None)
    assert statements == []


# --- the store contract ----------------------------------------------------------------------


def test_prefetched_listings_equal_find_entries(crm: Crm) -> None:
    seed(crm)
    store = crm.store
    listings = [
        ("wt", "customer", "cus_alice", "history", 3),
        ("wt", "customer", "cus_alice", None, 2),
        ("wt", "customer", "cus_bob", None, 50),
        ("wt", "customer", "cus_nobody", None, 5),
        ("wt", "customer", "cus_bob", "goal", 10),
    ]
    answer = store.prefetch_values(
        [("wt", "customer", "cus_alice", ["weight"])], entity_versions=True, listings=listings
    )
    assert answer.values == [{"weight": 80.0}]
    assert answer.versions is not None and "wt" in answer.versions
    for (entity, rtype, rid, key, limit), found in zip(listings, answer.listings, strict=True):
        assert found == store.find_entries(entity, rtype, rid, has_key=key, limit=limit)
    assert [len(x or []) for x in answer.listings] == [3, 2, 6, 0, 1]
    # Listings alone, no pairs: still one call, still the same answers.
    alone = store.prefetch_values([], listings=listings[:1])
    assert alone.listings[0] == store.find_entries(*listings[0][:3], has_key="history", limit=3)


def test_listings_beyond_the_cap_are_left_to_the_caller(crm: Crm) -> None:
    seed(crm)
    listings = [("wt", "customer", "cus_alice", None, n + 1) for n in range(MAX_LISTINGS + 2)]
    answer = crm.store.prefetch_values([], listings=listings)
    assert [x is None for x in answer.listings] == [False] * MAX_LISTINGS + [True, True]
    assert len(answer.listings[MAX_LISTINGS - 1] or []) == 6


# --- the page server -------------------------------------------------------------------------


def test_the_weight_tracker_dashboard_reads_the_store_once(tmp_path: Path) -> None:
    """The sample site's dashboard (B5's page): the customer's record, the entity versions,
    the three fields, the history and the latest entry in one statement (the session check is
    the other); the page is the same as with the listings read lazily."""
    from crm_templates.server import create_app
    from crm_templates.server.sessions import CUSTOMER

    site = tmp_path / "weight_tracker"
    shutil.copytree(ROOT / "sample_sites" / "weight_tracker", site,
                    ignore=shutil.ignore_patterns("instance"))  # fmt: skip
    app = create_app(site, CRM_COOKIE_SECURE=False, TESTING=True)
    try:
        store = app.extensions["crm"].crm.store
        pages = {}
        for who in ("dana@example.com", None):
            client = app.test_client()
            if who is not None:
                customer = app.extensions["crm"].crm.find_customer(who)
                cookie = app.session_interface.get_signing_serializer(app).dumps(  # type: ignore[attr-defined]
                    {"customer_id": customer.id, "signed_in": True, CUSTOMER.sid_key: "t",
                     CUSTOMER.generation_key: 0}
                )  # fmt: skip
                client.set_cookie("crm_session", cookie)
            client.get("/")
            statements: list[str] = []
            conn = store._conn()
            conn.set_trace_callback(statements.append)
            try:
                response = client.get("/")
            finally:
                conn.set_trace_callback(None)
            assert response.status_code == 200
            pages[who] = response.get_data(as_text=True)
            if who is not None:
                page_reads = [s for s in statements if "FROM entries" in s]
                assert len(page_reads) == 1, statements
                assert len(statements) <= 2, statements
        assert "2025-03-22" in pages["dana@example.com"] and "78.4" in pages["dana@example.com"]
        assert "2025-03-22" not in pages[None]
    finally:
        app.extensions["crm"].close()


def test_a_frozen_entry_keeps_every_field() -> None:
    """`freeze` builds a listing's entries field by field (no dataclasses.replace): every
    field of `Entry` survives, and the values become read-only."""
    import dataclasses

    from crm_templates.extension import FrozenDict, freeze
    from crm_templates.model import Entry

    given = {f.name: f"{f.name}-x" for f in dataclasses.fields(Entry)}
    given["values"] = {"k": {"nested": [1, 2]}}
    given["version"] = 7
    entry = Entry(**given)
    frozen = freeze(entry)
    assert frozen == entry
    for f in dataclasses.fields(Entry):
        assert getattr(frozen, f.name) == getattr(entry, f.name), f.name
    assert type(frozen.values) is FrozenDict
    with pytest.raises(TypeError):
        frozen.values["k"]["nested"].append(3)
