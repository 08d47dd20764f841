"""Attack review of this session's speed work (issue 14, B2/B3/B5): planned listings, the
cached "who wants a store's events" answer (attack-b5; notes in /work/notes/attack-b5.md).

Failed before their fixes: a planned or cached listing answered a call whose options the
service refuses (``limit=None``; ``limit=True`` beside ``limit=1``, ``limit=2.0`` beside
``limit=2``); a write that began when nobody listened sent its event before its commit,
attributed to ``system``, when a receiver connected while it waited for the write lock; a page
with listings cost two round trips once the cached entity definition was older than
``entity_cache_seconds``. The others pin what held: planned == lazy on every backend (ties,
null values, dotted keys, deletes, another process's definition change) and per customer
through every render-isolation construct.

Real parts only: SQLite files (a second raw sqlite3 connection holding the write lock,
statements counted with ``set_trace_callback``), the real osmem-server (HTTP requests counted
as B6 does).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_render_isolation as isolation
from jinja2 import DictLoader, FileSystemBytecodeCache
from jinja2.sandbox import SandboxedEnvironment

from benchmarks.b6_roundtrips import Counter
from crm_templates import Crm, CrmExtension, entity_admin, events, open_store
from crm_templates.extension import CrmTemplateError, fold_entity_refresh
from crm_templates.model import Entry

WT = {
    "slug": "wt",
    "fields": [{"key": "weight", "type": "number"}, {"key": "history", "type": "json"}],
}
NOTES = {"slug": "notes", "entityMode": "data", "fields": [{"key": "n", "type": "number"}]}


@pytest.fixture
def wt_crm(tmp_path: Path) -> Iterator[Crm]:
    """A SQLite service with two customers' weight entries."""
    service = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    service.ensure_entity(WT)
    service.ensure_entity(NOTES)
    for cid in ("cus_alice", "cus_bob"):
        view = service.bind(cid)
        for day in range(1, 4):
            view.add_field_value(slug="wt", fieldKey="history", value={"d": f"{cid}-{day}"})
    yield service
    service.close()


def _env(crm: Crm) -> SandboxedEnvironment:
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(crm)  # type: ignore[attr-defined]
    return env


def _outcome(env: SandboxedEnvironment, source: str, **context: Any) -> str:
    try:
        return env.from_string(source).render(customer_id="cus_alice", **context)
    except CrmTemplateError as exc:
        return "error: " + str(exc).split(": ", 1)[1]


# --- planned listings answer only what the service accepts ----------------------------------

BAD_LIMITS = [
    # alone: planned (a constant None), the service refuses it
    "{{ GetCrmEntries(slug=S, limit=None) | length }}",
    "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=None) | length }}",
    # beside a good call that equals it as a dict key: True == 1, 2.0 == 2
    "{{ GetCrmEntries(slug=S, limit=1) | length }}{{ GetCrmEntries(slug=S, limit=True) }}",
    "{{ GetCrmEntries(slug=S, limit=2.0) | length }}{{ GetCrmEntries(slug=S, limit=2) }}",
    "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=2) | length }}"
    "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=2.0) }}",
]


@pytest.mark.parametrize("source", BAD_LIMITS)
def test_a_cached_listing_never_answers_a_call_the_service_refuses(
    wt_crm: Crm, source: str
) -> None:
    env = _env(wt_crm)
    planned = _outcome(env, source.replace("slug=S", "slug='wt'"))
    lazy = _outcome(env, source.replace("slug=S", "slug=s"), s="wt")
    assert planned.startswith("error: ") and "limit must be a whole number" in planned
    assert planned == lazy


def test_listings_over_the_limit_cap_share_one_read_and_answer_alike(wt_crm: Crm) -> None:
    env = _env(wt_crm)
    source = (
        "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=500) | length }}/"
        "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=200) | length }}/"
        "{{ GetCrmEntries(slug=S, limit=1) | map(attribute='reference_id') | join }}"
    )
    planned = _outcome(env, source.replace("slug=S", "slug='wt'"))
    assert planned == _outcome(env, source.replace("slug=S", "slug=s"), s="wt")
    assert planned == "3/3/cus_alice"


# --- events: a write that began unheard stays unheard ----------------------------------------


def test_a_receiver_connected_while_a_write_waits_gets_no_early_or_misattributed_event(
    wt_crm: Crm, tmp_path: Path
) -> None:
    """A write that found nobody listening (`events.wanted` empty) runs without a unit of
    work; a receiver connected while it waits for SQLite's write lock must not be sent an
    event for it before its commit, attributed to ``system`` instead of its customer."""
    ann = wt_crm.bind("cus_ann")
    ann.set_field(slug="notes", fieldKey="n", value=1)
    assert events.wanted(wt_crm.store) == frozenset()
    began = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        conn = wt_crm.store._conn()  # type: ignore[attr-defined]
        conn.set_trace_callback(lambda sql: began.set() if sql.startswith("BEGIN") else None)
        try:
            ann.set_field(slug="notes", fieldKey="n", value=2)  # the scan path: BEGIN IMMEDIATE
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            conn.set_trace_callback(None)

    seen: list[tuple[str, dict[str, Any], list[str]]] = []

    def receiver(sender: Any, event: events.EntryEvent) -> None:
        other = sqlite3.connect(tmp_path / "crm.db")
        try:
            stored = [r[0] for r in other.execute("SELECT values_json FROM entries WHERE "
                                                  "entity = 'notes'")]  # fmt: skip
        finally:
            other.close()
        seen.append((str(event.actor), dict(event.changes), stored))

    blocker = sqlite3.connect(tmp_path / "crm.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the write waits for this lock
    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert began.wait(30), "the write never reached BEGIN"
        events.entry_updated.connect(receiver, sender=wt_crm.store, weak=False)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
        writer.join(30)
    try:
        assert not failures, failures
        # Whatever the write sends, it sends after its commit and as its customer.
        for actor, _changes, stored in seen:
            assert actor == "customer cus_ann", seen
            assert stored == ['{"n":2.0}'], f"sent before the commit: {seen}"
        ann.set_field(slug="notes", fieldKey="n", value=3)  # the next write is heard
        assert seen[-1][:2] == ("customer cus_ann", {"n": 3.0})
    finally:
        events.entry_updated.disconnect(receiver, sender=wt_crm.store)


# --- planned listings ride on the one round trip, with the versions folded in --------------


def _statements(crm: Crm, render: Any) -> tuple[list[str], Any]:
    statements: list[str] = []
    conn = crm.store._conn()  # type: ignore[attr-defined]
    conn.set_trace_callback(statements.append)
    try:
        return statements, render()
    finally:
        conn.set_trace_callback(None)


LISTING_PAGE = (
    "{{ GetCrmField(slug='wt', fieldKey='weight') }}|"
    "{{ GetCrmFieldValues(slug='wt', fieldKey='history', limit=2) | map(attribute='d') | join }}"
)


def test_a_page_with_listings_is_one_statement_after_the_entity_cache_time(
    tmp_path: Path,
) -> None:
    """The page server folds the entity-version check into the page's one round trip; a
    planned listing must not read its entity first once the cached definition is older than
    ``entity_cache_seconds`` (the first request after a quiet moment)."""
    crm = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"), entity_cache_seconds=0.05)
    try:
        crm.ensure_entity(WT)
        crm.bind("cus_alice").add_field_value(slug="wt", fieldKey="history", value={"d": "a1"})
        template = _env(crm).from_string(LISTING_PAGE)
        template.render(customer_id="cus_alice")  # compiles; caches the definition
        time.sleep(0.2)  # the cached definition is now older than entity_cache_seconds

        def page() -> str:
            with fold_entity_refresh():
                return template.render(customer_id="cus_alice")

        statements, html = _statements(crm, page)
        assert html == "None|a1"
        assert len(statements) == 1, statements
    finally:
        crm.close()


def test_a_listed_entity_changed_by_another_process_is_read_anew(tmp_path: Path) -> None:
    """Another service on the same file (another process's caches) adds and removes the
    listed field: the next page answers as the lazy call does, from the new definition."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    crm = Crm(open_store(url), entity_cache_seconds=3600)
    other = Crm(open_store(url))
    try:
        crm.ensure_entity(WT)
        crm.bind("cus_alice").set_field(slug="wt", fieldKey="weight", value=80)
        env = _env(crm)
        listing = "{{ GetCrmFieldValues(slug=S, fieldKey='note', limit=3) | join(',') }}"

        def page(source: str) -> str:
            with fold_entity_refresh():
                return _outcome(env, source.replace("slug=S", "slug='wt'"))

        def lazy(source: str) -> str:
            with fold_entity_refresh():
                return _outcome(env, source.replace("slug=S", "slug=s"), s="wt")

        before = page(listing)
        assert "declares no field 'note'" in before and before == lazy(listing)
        version = other.get_entity("wt").version
        entity_admin.add_field(other, "wt", version, {"key": "note", "type": "text"})
        other.bind("cus_alice").add_field_value(slug="wt", fieldKey="note", value="hello")
        assert page(listing) == lazy(listing) == "hello"
        version = other.get_entity("wt").version
        entity_admin.remove_field(other, "wt", version, "note", confirm=True)
        after = page(listing)
        assert "declares no field 'note'" in after and after == lazy(listing)
    finally:
        other.close()
        crm.close()


def test_a_page_with_listings_is_one_http_request_after_the_entity_cache_time(
    search_store_factory: Any,
) -> None:
    """B6 on the search backend: one ``_msearch`` for the page, also on the first request
    after the cached definitions grew older than ``entity_cache_seconds``."""
    crm = Crm(search_store_factory(), entity_cache_seconds=0.05)
    crm.ensure_entity(WT)
    crm.bind("cus_alice").add_field_value(slug="wt", fieldKey="history", value={"d": "a1"})
    template = _env(crm).from_string(LISTING_PAGE)
    template.render(customer_id="cus_alice")
    time.sleep(0.2)
    counter = Counter(crm.store)  # type: ignore[arg-type]

    def page() -> str:
        with fold_entity_refresh():
            return template.render(customer_id="cus_alice")

    sent = counter.measure(page)
    assert [path for path, _ in sent] == ["/_msearch"], sent
    assert page() == "None|a1"


# --- planned listings answer what the lazy call answers, on every backend -------------------


def test_planned_listings_equal_the_lazy_calls_on_ties_null_values_and_dotted_keys(
    crm: Crm,
) -> None:
    """Entries created in the same instant (ties broken by id, newest first), a value that
    is JSON null, a key with dots, json values, a deleted entry: the planned page and the
    same page with its slugs in variables (lazy) print the same, for each customer."""
    crm.ensure_entity(
        {
            "slug": "log",
            "entityMode": "data",
            "fields": [{"key": "a.b", "type": "json"}, {"key": "n", "type": "number"}],
        }
    )
    now = "2026-11-30T12:00:00.000000Z"
    rows = []
    for cid in ("cus_alice", "cus_bob"):
        for ident, values in (
            ("ent_3", {"a.b": {"x": [1, "two"]}, "n": 3}),
            ("ent_1", {"a.b": None}),
            ("ent_2", {"n": 2}),
            ("ent_5", {"a.b": "five"}),
            ("ent_4", {"a.b": 4}),
        ):
            rows.append(
                Entry(
                    f"{ident}_{cid}", "log", "customer", cid, values, created_at=now, updated_at=now
                )
            )
    crm.store.insert_entries(rows)
    crm.store.delete_entry("ent_5_cus_bob")
    source = (
        "{% for e in GetCrmEntries(slug=S, limit=4) %}{{ e.id }}={{ e.values | tojson }};"
        "{% endfor %}|{{ GetCrmFieldValues(slug=S, fieldKey='a.b') | tojson }}"
        "|{{ GetCrmFieldValues(slug=S, fieldKey='n', limit=1) | tojson }}"
    )
    env = _env(crm)
    for cid in ("cus_alice", "cus_bob"):
        planned = env.from_string(source.replace("slug=S", "slug='log'"))
        lazy = env.from_string(source.replace("slug=S", "slug=s"))
        with fold_entity_refresh():
            html = planned.render(customer_id=cid)
        assert html == lazy.render(customer_id=cid, s="log")
        other = "cus_bob" if cid == "cus_alice" else "cus_alice"
        assert cid in html and other not in html
        assert html.index(f"ent_4_{cid}") < html.index(f"ent_3_{cid}")  # id breaks the tie


# --- planned listings through every Jinja construct, per customer ---------------------------

LISTING_READ = "(GetCrmFieldValues(slug='notes', fieldKey='secret', limit=1) | first)"


@pytest.mark.parametrize("bytecode", [False, True], ids=["plain", "bytecode-cache"])
@pytest.mark.parametrize("construct", sorted(set(isolation.CONSTRUCTS) - {"imported-filter"}))
def test_each_construct_lists_only_the_render_customers_entries(
    store: Any, construct: str, bytecode: bool, tmp_path: Path
) -> None:
    """The render-isolation constructs (imports with and without context, includes, blocks,
    macros, caller, loops…) with a planned listing instead of a value read, on every backend
    (``imported-filter`` reads a value through ``crm_field``: nothing to list)."""
    crm = Crm(store)
    crm.ensure_entity(isolation.NOTES)
    for cid in ("alice", "bob"):
        crm.bind(cid).add_field_value(slug="notes", fieldKey="secret", value=f"{cid}-private")
    library = {k: v.replace(isolation.READ, LISTING_READ) for k, v in isolation.LIBRARY.items()}
    pages = {
        f"page-{k}.html": v.replace(isolation.READ, LISTING_READ)
        for k, v in isolation.CONSTRUCTS.items()
    }

    def make() -> SandboxedEnvironment:
        env = SandboxedEnvironment(
            extensions=[CrmExtension],
            autoescape=True,
            loader=DictLoader({**library, **pages}),
            bytecode_cache=FileSystemBytecodeCache(str(tmp_path)) if bytecode else None,
        )
        env.install_crm(crm)  # type: ignore[attr-defined]
        return env

    try:
        for _attempt in range(2):  # the second pass from Jinja's caches (and the bytecode)
            render = make().get_template(f"page-{construct}.html").render
            for cid, value in (("alice", "alice-private"), ("bob", "bob-private")):
                with fold_entity_refresh():
                    assert render(customer_id=cid) == isolation.expected(construct, value)
            assert render(customer_id="newcomer") == isolation.expected(construct, "")
            crm.bind("alice").add_field_value(slug="notes", fieldKey="secret", value="a2")
            with fold_entity_refresh():
                assert render(customer_id="alice") == isolation.expected(construct, "a2")
            assert render(customer_id="bob") == isolation.expected(construct, "bob-private")
            crm.bind("alice").add_field_value(
                slug="notes", fieldKey="secret", value="alice-private"
            )
    finally:
        crm.flush()


def test_planned_listings_inside_a_search_batch_see_its_buffered_writes(
    search_store_factory: Any,
) -> None:
    """Inside ``batch()`` the search backend leaves planned listings to ``find_entries``,
    which lays the buffered writes over the hits: the page answers as the lazy calls do."""
    crm = Crm(search_store_factory())
    crm.ensure_entity(WT)
    for cid in ("cus_alice", "cus_bob"):
        crm.bind(cid).add_field_value(slug="wt", fieldKey="history", value={"d": f"{cid}-1"})
    env = _env(crm)
    source = (
        "{{ GetCrmFieldValues(slug=S, fieldKey='history') | map(attribute='d') | join(',') }}|"
        "{{ GetCrmEntries(slug=S, limit=1) | map(attribute='reference_id') | join }}"
    )
    with crm.store.batch():
        crm.bind("cus_alice").add_field_value(slug="wt", fieldKey="history", value={"d": "buf"})
        with fold_entity_refresh():
            planned = env.from_string(source.replace("slug=S", "slug='wt'")).render(
                customer_id="cus_alice"
            )
        lazy = env.from_string(source.replace("slug=S", "slug=s")).render(
            customer_id="cus_alice", s="wt"
        )
    assert planned == lazy == "buf,cus_alice-1|cus_alice"
