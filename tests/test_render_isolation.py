"""Per-render state never crosses renders, customers, threads or tasks (issue 8, fault 1).

Jinja caches things between renders: compiled templates, the template cache, the bytecode
cache, and the module of a template imported *without context* (``{% import %}``,
``{% from ... import %}``, ``{% include ... without context %}``). The extension's read cache,
bound customer and write invalidation once lived in a context Jinja cached that way, so a macro
imported from a shared template showed visitor A's value to visitor B. Every construct below is
rendered for several customers in turn, with a value changing in between, on every backend.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2 import DictLoader, FileSystemBytecodeCache
from jinja2.sandbox import SandboxedEnvironment

from crm_templates import Crm, CrmExtension

NOTES = {"slug": "notes", "fields": [{"key": "secret", "type": "text"}], "entityMode": "data"}
READ = "GetCrmField(slug='notes', fieldKey='secret')"

LIBRARY = {
    # A macro library, as page authors write them.
    "m.html": (
        "{% macro mine() %}[{{ " + READ + " }}]{% endmacro %}"
        "{% macro mine_filter() %}[{{ 'notes' | crm_field('secret') }}]{% endmacro %}"
        "{% macro wrap() %}<{{ caller() }}>{% endmacro %}"
        "{% macro save(v) %}{% do SetCrmField(slug='notes', fieldKey='secret', value=v) %}"
        "{% endmacro %}"
    ),
    # Top-level code of an imported template runs when the module is made.
    "top.html": "{% set top = " + READ + " %}",
    "inc.html": "[{{ " + READ + " }}]",
    # A module value its macros change (attack14: a module "running nothing" at its top level
    # was kept per process, and this list carried one customer's value to the next).
    "list.html": "{% set seen = [] %}{% macro note(v) %}{{ seen.append(v) or '' }}{% endmacro %}"
    "{% macro all() %}[{% for s in seen %}{{ s }}{% endfor %}]{% endmacro %}",
    "base.html": "{% block body %}[{{ " + READ + " }}]{% endblock %}",
}

# name -> page template; each prints the render customer's secret as [value] (twice for some).
CONSTRUCTS: dict[str, str] = {
    "import": "{% import 'm.html' as m %}{{ m.mine() }}",
    "from-import": "{% from 'm.html' import mine %}{{ mine() }}",
    "import-with-context": "{% import 'm.html' as m with context %}{{ m.mine() }}",
    "from-import-with-context": "{% from 'm.html' import mine with context %}{{ mine() }}",
    "imported-filter": "{% import 'm.html' as m %}{{ m.mine_filter() }}",
    "imported-module-top-level": "{% import 'top.html' as t %}[{{ t.top }}]",
    "imported-module-list": "{% import 'list.html' as l %}{{ l.note(" + READ + ") }}{{ l.all() }}",
    "include": "{% include 'inc.html' %}",
    "include-without-context": "{% include 'inc.html' without context %}",
    "extends": "{% extends 'base.html' %}",
    "extends-super": "{% extends 'base.html' %}{% block body %}{{ super() }}{% endblock %}",
    "self": "{% block b %}[{{ " + READ + " }}]{% endblock %}{{ self.b() }}",
    "local-macro": "{% macro x() %}[{{ " + READ + " }}]{% endmacro %}{{ x() }}",
    "caller": "{% macro w() %}{{ caller() }}{% endmacro %}{% call w() %}[{{ " + READ + " }}]"
    "{% endcall %}",
    "imported-caller": "{% import 'm.html' as m %}{% call m.wrap() %}{{ m.mine() }}{% endcall %}",
    "with": "{% with x = 1 %}[{{ " + READ + " }}]{% endwith %}",
    "loop": "{% for i in range(2) %}[{{ " + READ + " }}]{% endfor %}",
    "set-block": "{% set s %}[{{ " + READ + " }}]{% endset %}{{ s }}",
}
TWICE = {"self", "loop"}


def expected(construct: str, value: str | None) -> str:
    shown = f"[{value}]"  # Jinja prints a missing value (None) as "None"
    if construct == "imported-caller":
        shown = "<" + shown + ">"
    return shown * (2 if construct in TWICE else 1)


def make_env(crm: Crm, bytecode_dir: Path | None = None, **extra: Any) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        extensions=[CrmExtension],
        autoescape=True,
        loader=DictLoader({**LIBRARY, **{f"page-{k}.html": v for k, v in CONSTRUCTS.items()}}),
        bytecode_cache=FileSystemBytecodeCache(str(bytecode_dir)) if bytecode_dir else None,
        **extra,
    )
    env.install_crm(crm, on_error="raise")  # type: ignore[attr-defined]
    return env


@pytest.fixture
def crm(store: Any) -> Iterator[Crm]:
    """A Crm on each backend (conftest's ``store``), with alice and bob holding secrets."""
    service = Crm(store)
    service.ensure_entity(NOTES)
    service.bind("alice").set_field(slug="notes", fieldKey="secret", value="alice-private")
    service.bind("bob").set_field(slug="notes", fieldKey="secret", value="bob-private")
    yield service
    service.close()


@pytest.mark.parametrize("bytecode", [False, True], ids=["plain", "bytecode-cache"])
@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
def test_each_construct_reads_only_the_render_customer(
    crm: Crm, construct: str, bytecode: bool, tmp_path: Path
) -> None:
    env = make_env(crm, tmp_path if bytecode else None)
    for attempt in range(2):  # the second pass runs from Jinja's caches (and bytecode)
        if attempt:
            env = make_env(crm, tmp_path if bytecode else None)
        render = env.get_template(f"page-{construct}.html").render
        crm.bind("alice").set_field(slug="notes", fieldKey="secret", value="alice-private")
        assert render(customer_id="alice") == expected(construct, "alice-private")
        assert render(customer_id="bob") == expected(construct, "bob-private")
        assert render(customer_id="newcomer") == expected(construct, None)
        # alice changes her value: she sees the new one at once, nobody else sees either.
        crm.bind("alice").set_field(slug="notes", fieldKey="secret", value="alice-changed")
        assert render(customer_id="alice") == expected(construct, "alice-changed")
        assert render(customer_id="bob") == expected(construct, "bob-private")
        assert render(customer_id="newcomer") == expected(construct, None)


def test_a_write_in_an_imported_macro_is_read_back_in_the_same_render(crm: Crm) -> None:
    env = make_env(crm)
    template = env.from_string(
        "{% import 'm.html' as m %}{{ m.mine() }}{{ m.save(v) }}{{ m.mine() }}"
    )
    assert template.render(customer_id="carol", v="one") == "[None][one]"
    assert template.render(customer_id="alice", v="two") == "[alice-private][two]"
    # Each write went to its own render's customer.
    assert crm.bind("carol").get_field(slug="notes", fieldKey="secret") == "one"
    assert crm.bind("alice").get_field(slug="notes", fieldKey="secret") == "two"
    assert crm.bind("bob").get_field(slug="notes", fieldKey="secret") == "bob-private"


def test_streams_interleaved_for_two_customers_stay_apart(crm: Crm) -> None:
    env = make_env(crm)
    template = env.from_string(
        "{% import 'm.html' as m %}" + "{% for i in range(5) %}{{ m.mine() }}|{% endfor %}"
    )
    a = template.generate(customer_id="alice")
    b = template.generate(customer_id="bob")
    out_a, out_b = [], []
    for chunk_a, chunk_b in zip(a, b, strict=False):
        out_a.append(chunk_a)
        out_b.append(chunk_b)
    out_a.extend(a)
    out_b.extend(b)
    assert "".join(out_a) == "[alice-private]|" * 5
    assert "".join(out_b) == "[bob-private]|" * 5
    # A paused stream leaves no render state behind in the code iterating it.
    from crm_templates.extension import current_render_state

    paused = template.generate(customer_id="alice")
    next(paused)
    assert current_render_state() is None
    paused.close()


def test_async_renders_on_concurrent_tasks_stay_apart(crm: Crm) -> None:
    env = make_env(crm, enable_async=True)
    template = env.from_string("{% import 'm.html' as m %}{{ m.mine() }}{{ m.mine() }}")

    async def main() -> list[str]:
        jobs = [template.render_async(customer_id=c) for c in ["alice", "bob", "x"] * 10]
        return list(await asyncio.gather(*jobs))

    # On a thread of its own: Playwright's sync API (browser tests in the same session) keeps
    # an event loop marked running on the main thread, where asyncio.run() would refuse.
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.extend(asyncio.run(main()))
        except BaseException as exc:  # surfaced below: the thread's failure fails the test
            errors.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "the async renders hung"
    assert errors == []
    want = {"alice": "[alice-private]" * 2, "bob": "[bob-private]" * 2, "x": "[None]" * 2}
    assert results == [want[c] for c in ["alice", "bob", "x"] * 10]


def test_module_used_from_python_never_holds_a_render_customer(crm: Crm) -> None:
    env = make_env(crm)
    template = env.get_template("page-import.html")
    assert template.render(customer_id="alice") == "[alice-private]"
    # Outside a render, the module's macro reads for the installed (unbound) service: nobody.
    assert str(env.get_template("m.html").module.mine()) == "[None]"
    bound = make_env(crm.bind("bob"))
    assert str(bound.get_template("m.html").module.mine()) == "[bob-private]"
    assert template.render(customer_id="alice") == "[alice-private]"


def test_threads_rendering_for_different_customers_see_only_their_own(crm: Crm) -> None:
    env = make_env(crm)
    template = env.from_string(
        "{% import 'm.html' as m %}{% from 'm.html' import mine %}{{ m.mine() }}{{ mine() }}"
        "{% include 'inc.html' without context %}"
    )
    want = {c: f"[{c}-private]" * 3 for c in ("alice", "bob")}
    foreign: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            barrier.wait(timeout=60)
            for i in range(50):
                cid = ("alice", "bob")[(n + i) % 2]
                got = template.render(customer_id=cid)
                if got != want[cid]:
                    foreign.append(f"{cid}: {got}")
        except BaseException as exc:  # surfaced below: a thread's failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a rendering thread hung"
    assert errors == [], errors[:3]
    assert foreign == []


def test_module_top_level_from_python_is_computed_per_access(crm: Crm) -> None:
    # Jinja would keep the module of template.module for the process: its top-level read
    # would then be whoever asked first.
    alice = make_env(crm.bind("alice"))
    assert alice.get_template("top.html").module.top == "alice-private"  # type: ignore[attr-defined]
    crm.bind("alice").set_field(slug="notes", fieldKey="secret", value="alice-changed")
    assert alice.get_template("top.html").module.top == "alice-changed"  # type: ignore[attr-defined]


def test_page_backend_using_template_module_reads_for_each_visitor(tmp_path: Path) -> None:
    from crm_templates.server import create_app
    from tests.test_server import make_site

    site = make_site(
        tmp_path / "site",
        {
            "save.html": "{% do SetCrmField(slug='notes', fieldKey='secret', value=query.v) %}ok",
            "show.html": "{{ var.top }}",
            "show.py": """
                from crm_templates.server.state import state
                def handle(request, page):
                    page.set_variable("top", state().env.get_template("top.html").module.top)
                """,
        },
        "entities:\n  - slug: notes\n    entityMode: data\n    fields:\n"
        "      - {key: secret, type: text}\n",
    )
    (site / "templates" / "top.html").write_text(LIBRARY["top.html"])
    app = create_app(site, TESTING=True, CRM_SEED=False)
    try:
        alice, bob = app.test_client(), app.test_client()
        alice.get("/save?v=alice-private")
        assert alice.get("/show").get_data(as_text=True) == "alice-private"
        assert bob.get("/show").get_data(as_text=True) == ""
    finally:
        app.extensions["crm"].close()


def test_include_without_context_reads_a_write_made_earlier_in_the_render(crm: Crm) -> None:
    env = make_env(crm)
    template = env.from_string(
        "{% include 'inc.html' without context %}"
        "{% do SetCrmField(slug='notes', fieldKey='secret', value='new') %}"
        "{% include 'inc.html' without context %}{% include 'inc.html' %}"
    )
    assert template.render(customer_id="alice") == "[alice-private][new][new]"


def test_imported_macro_follows_the_render_customer_when_the_page_changes_it(crm: Crm) -> None:
    env = make_env(crm)
    template = env.from_string(
        "{% import 'm.html' as m %}{{ m.mine() }}{% set customer_id = 'bob' %}{{ m.mine() }}"
    )
    assert template.render(customer_id="alice") == "[alice-private][bob-private]"


def test_install_crm_on_an_overlay_leaves_the_original_environment_alone(
    crm: Crm, tmp_path: Path
) -> None:
    from crm_templates import open_store

    env = make_env(crm)
    other = Crm(open_store(f"sqlite:///{tmp_path / 'other.db'}"))
    try:
        other.ensure_entity(NOTES)
        other.bind("alice").set_field(slug="notes", fieldKey="secret", value="other-store")
        overlay = env.overlay()
        overlay.install_crm(other)  # type: ignore[attr-defined]
        assert env.crm is crm  # type: ignore[attr-defined]
        assert overlay.crm is other  # type: ignore[attr-defined]
        page = "{% import 'm.html' as m %}{{ m.mine() }}"
        assert env.from_string(page).render(customer_id="alice") == "[alice-private]"
        assert overlay.from_string(page).render(customer_id="alice") == "[other-store]"
    finally:
        other.close()
