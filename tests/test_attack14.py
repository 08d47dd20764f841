"""Attack review of issue 14's speed work (branch attack14): each test here failed before its
fix. Real parts only: SQLite files, the real osmem-server, Jinja's own environments."""

from __future__ import annotations

import os
import signal
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2 import DictLoader
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from crm_templates import Crm, CrmError, CrmExtension, open_store
from crm_templates.compiled_reads import plan_of
from crm_templates.extension import CrmFunction

CUSTOMERS = ("cus_alice", "cus_bob")


def seeded(crm: Crm) -> Crm:
    crm.ensure_entity(slug="profile", entityMode="data", fields=[{"key": "name"}])
    for cid in CUSTOMERS:
        crm.bind(cid).set_field(slug="profile", fieldKey="name", value=f"{cid}-secret")
    return crm


@pytest.fixture
def sqlite_crm(tmp_path: Path) -> Iterator[Crm]:
    crm = seeded(Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}")))
    yield crm
    crm.close()


def env_with(crm: Crm, templates: dict[str, str], **globals: Any) -> SandboxedEnvironment:
    env = SandboxedEnvironment(loader=DictLoader(templates), extensions=[CrmExtension])
    env.globals.update(globals)
    env.install_crm(crm)  # type: ignore[attr-defined]
    return env


# --- fault 1: a macro module kept per process held a mutable value -------------------------


@pytest.mark.parametrize(
    "top",
    [
        "{% set seen = [] %}",  # a list a macro appends to
        "{% set seen = {} %}",  # a dict a macro updates
        "{% set seen = holder.items %}",  # an attribute of a global (Flask's session, g, …)
        "{% set seen = holder %}",  # a global itself
        "{% for x in [1] %}{% endfor %}",
        "{% set seen %}{{ holder }}{% endset %}",
    ],
)
def test_a_module_top_level_holding_anything_but_immutable_literals_is_per_render(
    top: str,
) -> None:
    env = SandboxedEnvironment(extensions=[CrmExtension])
    assert plan_of(env.parse(top + "{% macro a() %}{% endmacro %}"))[2] is False


@pytest.mark.parametrize(
    "top",
    [
        "",
        "{% set title = 'Cards' %}",
        "{% set a, b = 1, (2, 'x') %}",
        "{% set n = 2 * 3 + 1 %}{% set s = 'a' ~ 'b' %}",
        "{% if 1 > 0 %}text{% endif %}",
        "{% set block_text %}plain text{% endset %}",
    ],
)
def test_a_module_of_macros_and_immutable_literals_is_still_kept_per_process(top: str) -> None:
    env = SandboxedEnvironment(extensions=[CrmExtension])
    assert plan_of(env.parse(top + "{% macro a() %}{% endmacro %}"))[2] is True


def test_a_list_in_an_imported_macro_module_never_carries_one_customer_s_value_to_another(
    sqlite_crm: Crm,
) -> None:
    env = env_with(
        sqlite_crm,
        {
            "m.html": (
                "{% set seen = [] %}"
                "{% macro note(v) %}{{ seen.append(v) or '' }}{% endmacro %}"
                "{% macro all() %}{{ seen | join(',') }}{% endmacro %}"
            ),
            "p.html": (
                "{% import 'm.html' as m %}"
                "{{ m.note(GetCrmField(slug='profile', fieldKey='name')) }}[{{ m.all() }}]"
            ),
        },
    )
    page = env.get_template("p.html")
    assert page.render(customer_id="cus_alice") == "[cus_alice-secret]"
    assert page.render(customer_id="cus_bob") == "[cus_bob-secret]"


def test_a_global_read_at_a_macro_module_s_top_level_is_read_again_each_render(
    sqlite_crm: Crm,
) -> None:
    class Holder:  # stands for Flask's ``session``/``g`` proxies: one value per request
        who = "cus_alice"

    holder = Holder()
    env = env_with(
        sqlite_crm,
        {
            "m.html": (
                "{% set who = holder.who %}"
                "{% macro name() %}"
                "{{ GetCrmField(slug='profile', fieldKey='name', referenceId=who) }}"
                "{% endmacro %}"
            ),
            "p.html": "{% import 'm.html' as m %}{{ m.name() }}",
        },
        holder=holder,
    )
    page = env.get_template("p.html")
    assert page.render() == "cus_alice-secret"
    holder.who = "cus_bob"
    assert page.render() == "cus_bob-secret"


# --- fault 2: the cached-read shortcut ignored a changed ``customer`` variable --------------


@pytest.mark.parametrize(
    "read",
    [
        "GetCrmField(slug='profile', fieldKey='name')",  # compiled to the direct call
        "GetCrmField(slug=p, fieldKey='name')",  # Jinja's call, keyword style
        "GetCrmField({'slug': p, 'fieldKey': 'name'})",  # Jinja's call, the seed's dict style
        "('profile' | crm_field('name'))",
    ],
)
def test_a_customer_variable_set_in_the_template_is_read_for_by_every_call_style(
    sqlite_crm: Crm, read: str
) -> None:
    # A service bound to Alice, a render naming no customer: reads are Alice's until the
    # template names another customer (SPEC §7: the context's customer takes precedence).
    env = SandboxedEnvironment(extensions=[CrmExtension])
    env.install_crm(sqlite_crm.bind("cus_alice"))  # type: ignore[attr-defined]
    source = "{{ R }}|{% set customer = {'id': 'cus_bob'} %}{{ R }}".replace("R", read)
    html = env.from_string(source).render(p="profile")
    assert html == "cus_alice-secret|cus_bob-secret"


# --- fault 3: a page naming hundreds of constant references broke the one-statement prefetch


@pytest.fixture(params=["sqlite", "search"])
def any_store_crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Crm]:
    if request.param == "sqlite":
        crm = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    else:
        crm = Crm(request.getfixturevalue("search_store_factory")())
    yield seeded(crm)
    crm.close()


def test_prefetch_of_more_pairs_than_one_sqlite_statement_holds_answers_every_pair(
    any_store_crm: Crm,
) -> None:
    crm = any_store_crm
    crm.set_field(
        slug="profile", fieldKey="name", value="deal-519", referenceType="deal", referenceId="d519"
    )
    reads = [("profile", "deal", f"d{i}", ["name"]) for i in range(520)]
    reads.append(("profile", "customer", "cus_bob", ["name"]))
    found = crm.store.prefetch_values(reads, entity_versions=True, customer="cus_alice")
    assert found.values[519] == {"name": "deal-519"}
    assert found.values[520] == {"name": "cus_bob-secret"}
    assert all(v == {} for v in found.values[:519])
    assert found.versions is not None and set(found.versions) == {"profile"}
    assert found.customer is None  # cus_alice has entries but no customer record


# --- fault 4: the direct call skipped a sandbox's own ``call`` ------------------------------


class RefusingCrmReads(SandboxedEnvironment):
    """A sandbox whose policy is in ``call`` (a public method of SandboxedEnvironment)."""

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(__obj, CrmFunction):
            raise SecurityError(f"{__obj!r} is not allowed here")
        return super().call(__context, __obj, *args, **kwargs)


def test_a_sandbox_call_policy_sees_constant_reads_as_it_sees_dynamic_ones(
    sqlite_crm: Crm,
) -> None:
    env = RefusingCrmReads(extensions=[CrmExtension])
    env.install_crm(sqlite_crm)  # type: ignore[attr-defined]
    for source in (
        "{{ GetCrmField(slug='profile', fieldKey='name') }}",
        "{{ getCrmField({'slug': 'profile', 'fieldKey': 'name'}) }}",
        "{{ GetCrmField(slug=p, fieldKey='name') }}",
    ):
        with pytest.raises(SecurityError):
            env.from_string(source).render(customer_id="cus_alice", p="profile")


def test_a_call_hook_set_on_the_sandbox_instance_sees_every_constant_read(
    sqlite_crm: Crm,
) -> None:
    env = SandboxedEnvironment(extensions=[CrmExtension])
    env.install_crm(sqlite_crm)  # type: ignore[attr-defined]
    seen: list[str] = []
    stock = env.call

    def counting(context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(repr(obj))
        return stock(context, obj, *args, **kwargs)

    env.call = counting  # type: ignore[method-assign]  # as playground_bounds.bound does
    html = env.from_string(
        "{{ GetCrmField(slug='profile', fieldKey='name') }}"
        "{{ GetCrmField(slug='profile', fieldKey='name') }}"
    ).render(customer_id="cus_alice")
    assert html == "cus_alice-secret" * 2
    assert seen == ["GetCrmField", "GetCrmField"]


# --- fault 5: a child forked while the id lock was held could never make an id --------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_child_forked_while_another_thread_makes_an_id_can_make_ids() -> None:
    from crm_templates import ids

    parent_ids = {ids.new_id() for _ in range(3)}
    with ids._lock:  # another thread of the parent, inside new_id, at the fork
        pid = os.fork()
        if pid == 0:  # the child: must not wait for a lock nobody will release
            signal.alarm(10)
            try:
                made = ids.new_id()
                os._exit(0 if made not in parent_ids else 2)
            finally:
                os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- fault 6: a forked child's async writes were never applied -----------------------------


def test_async_writes_of_a_child_forked_after_the_writer_started_are_applied(
    tmp_path: Path,
) -> None:
    # A pre-forking server (gunicorn --preload) that made an async write before forking: the
    # child inherits a writer whose thread does not exist in it.
    crm = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    crm.ensure_entity(slug="log", entityMode="data", fields=[{"key": "v"}])
    view = crm.bind("cus_alice")
    view.add_field_value({"slug": "log", "fieldKey": "v", "value": "parent", "async": True})
    assert crm.flush(10)
    pid = os.fork()
    if pid == 0:
        code = 4
        try:
            signal.alarm(20)
            child = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))  # the check's own
            view.add_field_value({"slug": "log", "fieldKey": "v", "value": "child", "async": True})
            code = 0 if crm.flush(10) and child.store.count_entries("log") == 2 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert crm.store.count_entries("log") == 2  # the parent's write once, the child's once
    crm.close()


# --- fault 7: a pair named twice with other keys got only the first read's keys (SQLite) ----


def test_prefetch_of_one_pair_named_twice_answers_each_read_as_latest_values(
    any_store_crm: Crm,
) -> None:
    crm = any_store_crm
    crm.ensure_entity(slug="pair", entityMode="data", fields=[{"key": "a"}, {"key": "b"}])
    crm.bind("cus_alice").set_fields(slug="pair", fields={"a": "A", "b": "B"})
    reads = [
        ("pair", "customer", "cus_alice", ["a"]),
        ("pair", "customer", "cus_alice", ["b"]),
        ("pair", "customer", "cus_alice", ["a", "b"]),
        ("pair", "customer", "cus_bob", ["a"]),
    ]
    found = crm.store.prefetch_values(reads)
    assert found.values == [crm.store.latest_values(*read) for read in reads]
    assert found.values[1] == {"b": "B"}


# --- fault 8: a forked child used its parent's SQLite connection ----------------------------


def test_a_forked_child_opens_its_own_sqlite_connection(tmp_path: Path) -> None:
    crm = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    crm.ensure_entity(slug="log", entityMode="data", fields=[{"key": "v"}])
    crm.bind("cus_alice").set_field(slug="log", fieldKey="v", value="parent")
    inherited = crm.store._conn()  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:
        code = 4
        try:
            signal.alarm(20)
            own = crm.store._conn()  # type: ignore[attr-defined]
            crm.bind("cus_bob").set_field(slug="log", fieldKey="v", value="child")
            code = 1 if own is inherited else 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert crm.bind("cus_bob").get_field(slug="log", fieldKey="v") == "child"
    assert crm.bind("cus_alice").get_field(slug="log", fieldKey="v") == "parent"
    crm.close()


def test_code_compiled_under_the_old_static_rule_is_not_kept_per_process(sqlite_crm: Crm) -> None:
    # A Jinja bytecode cache made before the fix holds the module with the old plan, which
    # called it static; loaded after an upgrade, its module must still be made per render.
    macros = (
        "{% set seen = [] %}"
        "{% macro note(v) %}{{ seen.append(v) or '' }}{% endmacro %}"
        "{% macro all() %}{{ seen | join(',') }}{% endmacro %}"
    )
    page = (
        "{% import 'm.html' as m %}"
        "{{ m.note(GetCrmField(slug='profile', fieldKey='name')) }}[{{ m.all() }}]"
    )
    env = env_with(sqlite_crm, {"m.html": macros, "p.html": page})
    source = env.compile(macros, name="m.html", filename="m.html", raw=True)
    assert "crm_plan_version" in source
    old = "\n".join(
        "crm_read_plan = ((), (), True)" if line.startswith("crm_read_plan") else line
        for line in source.splitlines()
        if not line.startswith("crm_plan_version")
    )
    code = compile(old, "m.html", "exec")
    template = env.template_class.from_code(env, code, env.make_globals(None))
    template.name = "m.html"
    env.cache[(weakref.ref(env.loader), "m.html")] = template  # type: ignore[index]
    rendered = env.get_template("p.html")
    assert rendered.render(customer_id="cus_alice") == "[cus_alice-secret]"
    assert rendered.render(customer_id="cus_bob") == "[cus_bob-secret]"


# --- checked, no fault: one failing sub-search of the prefetch's _msearch -------------------


def test_a_failing_sub_search_fails_the_prefetch_and_the_render_reads_lazily(
    search_store_factory: Any, search_admin: Any
) -> None:
    crm = seeded(Crm(search_store_factory()))
    store: Any = crm.store
    env = env_with(crm, {"p.html": "{{ GetCrmField(slug='profile', fieldKey='name') }}"})
    page = env.get_template("p.html")
    assert page.render(customer_id="cus_alice") == "cus_alice-secret"
    # One sub-search of the _msearch errors (its index is gone): never a wrong answer.
    search_admin.client.indices.delete(index=store.indices["customers"])
    with pytest.raises(CrmError):
        store.prefetch_values(
            [("profile", "customer", "cus_alice", ["name"])], customer="cus_alice"
        )
    # The render's own prefetch (no customer record) still answers; the values are right.
    assert page.render(customer_id="cus_bob") == "cus_bob-secret"
    crm.close()


def test_a_context_customer_hook_turning_bad_mid_render_is_reported_under_the_policy(
    sqlite_crm: Crm,
) -> None:
    # The shortcut asks the hook too (fault 2's fix): a bad answer must reach the error
    # policy as the general path reports it, not escape the render.
    answer: dict[str, Any] = {"id": "cus_alice"}

    def flip() -> str:
        answer["id"] = 3.5
        return ""

    env = SandboxedEnvironment(extensions=[CrmExtension])
    env.install_crm(  # type: ignore[attr-defined]
        sqlite_crm, on_error="log", context_customer=lambda context: answer["id"]
    )
    env.globals["flip"] = flip
    read = "{{ GetCrmField(slug='profile', fieldKey='name') }}"
    assert env.from_string(read + "|{{ flip() }}" + read).render() == "cus_alice-secret|None"
