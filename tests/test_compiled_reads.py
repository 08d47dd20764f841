"""Compiled CRM reads (issue 14, items 1-3): a template's constant reads — in the page, its
layout, includes and imported macros — are planned when Jinja compiles it and fetched for the
render's customer in ONE store round trip, folded with the page server's entity-cache check.

Real parts only: SQLite files (statements counted with ``set_trace_callback``), the real
osmem-server (HTTP requests counted at the store client's connection pool, as B6 does), the
Flask test client, and a second process sharing a store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2 import DictLoader, FileSystemLoader
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from benchmarks import b1m_render
from benchmarks.b6_roundtrips import Counter
from crm_templates import Crm, CrmExtension, open_store
from crm_templates.compiled_reads import plan_of, resolve_plan
from crm_templates.extension import CrmFunction, fold_entity_refresh

ROOT = Path(__file__).resolve().parent.parent
CUSTOMERS = ("cus_alice", "cus_bob")


def seed(crm: Crm) -> None:
    """The B1m entities, each key of each entity set to ``<customer>:<key>`` per customer."""
    for slug, keys in b1m_render.ENTITIES.items():
        crm.ensure_entity(slug=slug, entityMode="data", fields=[{"key": k} for k in keys])
    for cid in CUSTOMERS:
        view = crm.bind(cid)
        for slug, keys in b1m_render.ENTITIES.items():
            view.set_fields(slug=slug, fields={k: f"{cid}:{k}" for k in keys})


def b1m_env(folder: Path, crm: Crm) -> SandboxedEnvironment:
    for name, source in b1m_render.templates().items():
        (folder / name).write_text(source, encoding="utf-8")
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(folder)), extensions=[CrmExtension], autoescape=True
    )
    env.install_crm(crm)  # type: ignore[attr-defined]
    return env


def expected_values(cid: str) -> list[str]:
    return [f"{cid}:{k}" for keys in b1m_render.ENTITIES.values() for k in keys]


def assert_page_of(html: str, cid: str) -> None:
    for value in expected_values(cid):
        assert value in html, value
    for other in CUSTOMERS:
        if other != cid:
            assert other not in html


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[tuple[Crm, SandboxedEnvironment]]:
    crm = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    seed(crm)
    folder = tmp_path / "templates"
    folder.mkdir()
    yield crm, b1m_env(folder, crm)
    crm.close()


def traced(crm: Crm) -> tuple[list[str], Any]:
    """Statements this thread's SQLite connection runs, and the connection."""
    statements: list[str] = []
    conn = crm.store._conn()  # type: ignore[attr-defined]
    conn.set_trace_callback(statements.append)
    return statements, conn


# --- the plan --------------------------------------------------------------------------------


def test_plan_names_constant_reads_and_constant_template_names() -> None:
    env = SandboxedEnvironment(extensions=[CrmExtension])
    plan = plan_of(
        env.parse(
            "{% extends 'layout.html' %}{% import 'm.html' as m %}{% from 'f.html' import x %}"
            "{% include ['a.html', 'b.html'] %}{% include dynamic_name %}"
            "{{ GetCrmField(slug='one', fieldKey='k') }}"
            "{{ getCrmField({'crmEntitySlug': 'two', 'fieldKey': 'k'}) }}"
            "{{ GetCrmFields(slug='three', fieldKeys=['a', 'b'], referenceType='deal', "
            "referenceId='d1') }}"
            "{{ 'four' | crm_field('k') }}{{ 'five' | crm_fields(['k']) }}"
            "{{ 'six' | crm_render('k') }}{{ 'seven' | crm_text('k') }}"
            "{{ GetCrmField(slug=name, fieldKey='k') }}"  # dynamic slug: lazy
            "{{ GetCrmField(slug='eight', fieldKey='k', referenceId=rid) }}"  # dynamic reference
            "{{ GetCrmField(slug='nine', fieldKey='k', referenceType='deal') }}"  # no id: service
            "{{ entry | crm_render('k') }}"  # an entry, not a slug
        )
    )
    reads, names, static, _listings = plan
    assert set(reads) == {
        ("one", None, None),
        ("two", None, None),
        ("three", "deal", "d1"),
        ("four", None, None),
        ("five", None, None),
        ("six", None, None),
        ("seven", None, None),
    }
    assert set(names) == {"layout.html", "m.html", "f.html", "a.html", "b.html"}
    assert static is False


@pytest.mark.parametrize(
    ("source", "static"),
    [
        ("{% macro a(x=GetCrmField(slug='s', fieldKey='k')) %}{{ x | e }}{% endmacro %}", True),
        ("{% set title = 'Cards' %}{% macro a() %}{{ title }}{% endmacro %}", True),
        ("{% set v = GetCrmField(slug='s', fieldKey='k') %}{% macro a() %}{% endmacro %}", False),
        ("{{ 's' | crm_field('k') }}{% macro a() %}{% endmacro %}", False),
        ("{% include 'x.html' %}{% macro a() %}{% endmacro %}", False),
        ("{% import 'x.html' as x %}{% macro a() %}{% endmacro %}", False),
        ("{% if v is defined %}{% endif %}", False),
    ],
)
def test_only_modules_whose_top_level_runs_nothing_are_kept_per_process(
    source: str, static: bool
) -> None:
    env = SandboxedEnvironment(extensions=[CrmExtension])
    assert plan_of(env.parse(source))[2] is static


def test_plan_follows_layouts_includes_and_imported_macros_transitively() -> None:
    env = SandboxedEnvironment(
        extensions=[CrmExtension],
        loader=DictLoader(
            {
                "page.html": "{% extends 'layout.html' %}{% import 'macros.html' as m %}"
                "{% block b %}{{ m.card() }}{{ GetCrmField(slug='page', fieldKey='k') }}"
                "{% include 'missing.html' ignore missing %}{% endblock %}",
                "layout.html": "{% include 'header.html' %}{% block b %}{% endblock %}",
                "header.html": "{{ 'header' | crm_field('k') }}{% include 'page.html' %}",
                "macros.html": "{% macro card() %}{{ GetCrmField(slug='macro', fieldKey='k') }}"
                "{% endmacro %}",
            }
        ),
    )
    reads = resolve_plan(env.get_template("page.html"))
    assert {r[0] for r in reads} == {"page", "header", "macro"}  # a cycle and a gap are fine


# --- one round trip --------------------------------------------------------------------------


def test_b1m_page_is_one_sqlite_statement(sqlite_world: tuple[Crm, SandboxedEnvironment]) -> None:
    crm, env = sqlite_world
    template = env.get_template("page.html")
    template.render(customer_id="cus_alice")  # compiles, caches the entity definitions
    statements, conn = traced(crm)
    try:
        with fold_entity_refresh():  # as the page server renders a page
            html = template.render(customer_id="cus_alice")
    finally:
        conn.set_trace_callback(None)
    assert_page_of(html, "cus_alice")
    assert len(statements) == 1, statements
    assert "UNION ALL" in statements[0] and "FROM entities" in statements[0]


def test_dynamic_reads_and_template_names_keep_the_lazy_path(
    sqlite_world: tuple[Crm, SandboxedEnvironment],
) -> None:
    _crm, env = sqlite_world
    (Path(env.loader.searchpath[0]) / "dyn.html").write_text(  # type: ignore[union-attr]
        "{% set slug = 'contact' %}{% include part %}{% import lib as m %}"
        "{{ GetCrmField(slug=slug, fieldKey='con0') }}|{{ m.show('profile', 'pro1') }}",
        encoding="utf-8",
    )
    (Path(env.loader.searchpath[0]) / "part.html").write_text(  # type: ignore[union-attr]
        "{{ GetCrmField(slug='activity', fieldKey='act2') }}|", encoding="utf-8"
    )
    (Path(env.loader.searchpath[0]) / "lib.html").write_text(  # type: ignore[union-attr]
        "{% macro show(s, k) %}{{ s | crm_field(k) }}{% endmacro %}", encoding="utf-8"
    )
    template = env.get_template("dyn.html")
    assert resolve_plan(template) == []  # nothing constant: every read is lazy
    for cid in CUSTOMERS:
        html = template.render(customer_id=cid, part="part.html", lib="lib.html")
        assert html == f"{cid}:act2|{cid}:con0|{cid}:pro1"


def test_template_edited_on_disk_gets_a_new_plan(
    sqlite_world: tuple[Crm, SandboxedEnvironment],
) -> None:
    crm, env = sqlite_world
    folder = Path(env.loader.searchpath[0])  # type: ignore[union-attr]
    macros = folder / "macros.html"
    template = env.get_template("page.html")
    assert_page_of(template.render(customer_id="cus_bob"), "cus_bob")
    assert "contact" in {r[0] for r in resolve_plan(template)}
    # The imported macros now read another entity; the page itself is unchanged.
    macros.write_text(
        "{% macro contact_card() %}{{ GetCrmField(slug='activity', fieldKey='act4') }}"
        "{% endmacro %}{% macro subscription_box() %}{% endmacro %}",
        encoding="utf-8",
    )
    later = time.time() + 5
    os.utime(macros, (later, later))
    html = env.get_template("page.html").render(customer_id="cus_bob")
    assert "cus_bob:con0" not in html and html.count("cus_bob:act4") == 2
    planned = {r[0] for r in resolve_plan(env.get_template("page.html"))}
    assert "contact" not in planned and "subscription" not in planned
    statements, conn = traced(crm)
    try:
        assert html == env.get_template("page.html").render(customer_id="cus_bob")
    finally:
        conn.set_trace_callback(None)
    assert len(statements) == 1, statements


# --- isolation -------------------------------------------------------------------------------


def test_two_customers_rendering_one_compiled_template_see_only_their_own(
    sqlite_world: tuple[Crm, SandboxedEnvironment],
) -> None:
    _crm, env = sqlite_world
    template = env.get_template("page.html")
    for _ in range(2):
        for cid in CUSTOMERS:
            assert_page_of(template.render(customer_id=cid), cid)
    # A visitor with no data and a render with no customer get none of theirs.
    stranger = template.render(customer_id="cus_stranger")
    nobody = template.render()
    for html in (stranger, nobody):
        assert not any(cid in html for cid in CUSTOMERS)
    # Streams interleaved step by step: each keeps its own prefetched values.
    a = template.generate(customer_id="cus_alice")
    b = template.generate(customer_id="cus_bob")
    parts: dict[str, list[str]] = {"cus_alice": [], "cus_bob": []}
    for chunk_a, chunk_b in zip(a, b, strict=False):
        parts["cus_alice"].append(chunk_a)
        parts["cus_bob"].append(chunk_b)
    for cid, chunks in parts.items():
        assert_page_of("".join(chunks), cid)


SECOND_PROCESS = """
import sys
from pathlib import Path
from jinja2 import FileSystemLoader
from jinja2.sandbox import SandboxedEnvironment
from crm_templates import Crm, CrmExtension, open_store
db, folder, value = sys.argv[1:4]
crm = Crm(open_store("sqlite:///" + db))
env = SandboxedEnvironment(loader=FileSystemLoader(folder), extensions=[CrmExtension])
env.install_crm(crm)
crm.bind("cus_bob").set_field(slug="contact", fieldKey="con0", value=value)
t = env.get_template("page.html")
print(t.render(customer_id="cus_bob"))
print("---")
print(t.render(customer_id="cus_alice"))
crm.close()
"""


def test_two_processes_sharing_a_store_see_only_their_customer(tmp_path: Path) -> None:
    db = tmp_path / "crm.db"
    crm = Crm(open_store(f"sqlite:///{db}"))
    seed(crm)
    folder = tmp_path / "templates"
    folder.mkdir()
    env = b1m_env(folder, crm)
    template = env.get_template("page.html")
    assert_page_of(template.render(customer_id="cus_alice"), "cus_alice")
    out = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, str(db), str(folder), "bob-new"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    ).stdout
    bob, alice = out.split("---")
    assert "bob-new" in bob and "cus_alice" not in bob
    assert "bob-new" not in alice and "cus_bob" not in alice
    # Back here: the other process's write shows for Bob, never for Alice.
    mine = template.render(customer_id="cus_alice")
    assert_page_of(mine, "cus_alice")
    assert "bob-new" not in mine
    assert "bob-new" in template.render(customer_id="cus_bob")
    crm.close()


# --- the direct call keeps Jinja's semantics -------------------------------------------------


def test_constant_get_field_answers_as_the_dynamic_call(
    sqlite_world: tuple[Crm, SandboxedEnvironment],
) -> None:
    crm, env = sqlite_world
    body = textwrap.dedent(
        """\
        {{ GetCrmField(slug='profile', fieldKey='pro0') }}
        {% for customer_id in ['cus_bob'] %}{{ GetCrmField(slug='profile', fieldKey='pro1') }}
        {% set customer_id = 'cus_bob' %}{{ getCrmField({'slug': 'profile', 'fieldKey': 'pro2'}) }}
        {% endfor %}
        {% block b %}{% set customer_id = 'cus_bob' %}{{ GetCrmField(slug='profile', fieldKey='pro3') }}{% endblock %}
        {{ GetCrmField(slug='profile', fieldKey='nope') }}
        """
    )
    constant = env.from_string(body)
    # The same calls with a slug the compiler cannot see: Jinja's own call machinery.
    dynamic_body = body.replace("slug='profile'", "slug=p").replace(
        "'slug': 'profile'", "'slug': p"
    )
    dynamic = env.from_string(dynamic_body)
    assert env.compile(body, raw=True).count("crm_fast_field(") == 5
    assert "crm_fast_field(" not in env.compile(dynamic_body, raw=True)
    env.install_crm(crm, on_error="log")  # type: ignore[attr-defined]
    for cid in CUSTOMERS:
        assert constant.render(customer_id=cid) == dynamic.render(customer_id=cid, p="profile")


def test_direct_call_defers_to_a_shadowing_name_and_to_the_sandbox(
    sqlite_world: tuple[Crm, SandboxedEnvironment],
) -> None:
    crm, env = sqlite_world
    source = "{{ GetCrmField(slug='profile', fieldKey='pro0') }}"
    template = env.from_string(source)
    assert template.render(customer_id="cus_alice") == "cus_alice:pro0"
    shadow = template.render(
        customer_id="cus_alice", GetCrmField=lambda **o: f"mine {o['slug']}/{o['fieldKey']}"
    )
    assert shadow == "mine profile/pro0"

    class ReadOnly(SandboxedEnvironment):
        def is_safe_callable(self, obj: Any) -> bool:
            return not isinstance(obj, CrmFunction) and super().is_safe_callable(obj)

    strict = ReadOnly(extensions=[CrmExtension])
    strict.install_crm(crm)  # type: ignore[attr-defined]
    with pytest.raises(SecurityError):
        strict.from_string(source).render(customer_id="cus_alice")


# --- the search backend and the page server ---------------------------------------------------


@pytest.fixture
def search_crm(search_store_factory: Any) -> Iterator[Crm]:
    crm = Crm(search_store_factory())
    seed(crm)
    yield crm


def test_b1m_page_is_one_http_request_on_the_search_backend(
    search_crm: Crm, tmp_path: Path
) -> None:
    env = b1m_env(tmp_path, search_crm)
    template = env.get_template("page.html")
    template.render(customer_id="cus_alice")
    counter = Counter(search_crm.store)  # type: ignore[arg-type]
    for cid in CUSTOMERS:
        with fold_entity_refresh():
            sent = counter.measure(lambda cid=cid: template.render(customer_id=cid))
        assert [path for path, _ in sent] == ["/_msearch"], sent
        with fold_entity_refresh():
            assert_page_of(template.render(customer_id=cid), cid)


@pytest.mark.parametrize("backend", ["sqlite", "opensearch"])
def test_page_server_serves_a_b1m_page_in_one_round_trip(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from crm_templates.server import create_app
    from tests.test_server import make_site

    crm_yaml = "entities:\n" + "".join(
        f"  - slug: {slug}\n    entityMode: data\n    fields:\n"
        + "".join(f"      - {{key: {k}, type: text}}\n" for k in keys)
        for slug, keys in b1m_render.ENTITIES.items()
    )
    sources = b1m_render.templates()
    pages = {
        "index.html": sources["page.html"],
        "save.html": "{% do SetCrmFields(slug='profile', fields={'pro0': 'mine'}) %}saved",
    }
    site = make_site(tmp_path / "site", pages, crm_yaml)
    (site / "templates" / "layout.html").write_text(sources["layout.html"])
    (site / "templates" / "macros.html").write_text(sources["macros.html"])
    config: dict[str, Any] = {"TESTING": True, "CRM_SEED": False}
    if backend == "opensearch":
        import uuid

        prefix = f"t{uuid.uuid4().hex[:12]}_"
        request.getfixturevalue("search_store_factory")(prefix=prefix).close()
        config["CRM_STORE_URL"] = f"{request.getfixturevalue('search_url')}?prefix={prefix}"
    else:
        config["CRM_STORE_URL"] = f"sqlite:///{tmp_path / 'crm.db'}"
    app = create_app(site, **config)
    try:
        visitor, other = app.test_client(), app.test_client()
        assert visitor.get("/save").status_code == 200
        assert "mine" in visitor.get("/").get_data(as_text=True)  # warm: definitions cached
        store = app.extensions["crm"].crm.store
        if backend == "opensearch":
            counter = Counter(store)
            sent = counter.measure(lambda: visitor.get("/"))
            assert [path for path, _ in sent] == ["/_msearch"], sent
        else:
            statements: list[str] = []
            conn = store._conn()
            conn.set_trace_callback(statements.append)
            try:
                html = visitor.get("/").get_data(as_text=True)
            finally:
                conn.set_trace_callback(None)
            assert "mine" in html
            assert len(statements) == 1, statements
        assert "mine" not in other.get("/").get_data(as_text=True)
    finally:
        app.extensions["crm"].close()
