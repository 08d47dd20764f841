"""Template-injection payloads in a sandbox reach nothing (SPEC §7, §10 "sandbox").

Each payload must either be refused (`SecurityError`, or an undefined/read-only error) or
render without leaking Python internals, and none may change the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jinja2 import Environment
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from crm_templates import Crm, CrmExtension, open_store
from crm_templates.extension import CrmTemplateError

WT = "weight-tracker"

PAYLOADS = [
    # Python object model
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ dict.mro() }}",
    "{{ range.__self__ }}",
    "{{ self.__dict__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__ }}",
    # Jinja's own globals
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum|attr('__globals__')|attr('get')('os') }}",
    # the CRM functions
    "{{ GetCrmField.__class__ }}",
    "{{ GetCrmField.__closure__ }}",
    "{{ GetCrmField.__globals__ }}",
    "{{ GetCrmField.__self__ }}",
    "{{ GetCrmField.__call__.__func__.__globals__ }}",
    "{{ GetCrmField._spec }}",
    "{{ GetCrmField|attr('_spec') }}",
    "{{ GetCrmField|attr('__class__') }}",
    "{{ GetCrmField|attr('__call__')|attr('__globals__') }}",
    "{{ GetCrmFields.__init__.__globals__['FUNCTIONS'] }}",
    "{{ SetCrmField.__call__.__globals__.sys.modules }}",
    "{% set f = GetCrmField.__call__ %}{{ f(slug='weight-tracker', fieldKey='current_weight') }}",
    "{{ GetCrmField }}{{ setCrmFields }}{{ SetCrmField.name }}{{ SetCrmField.crm_write }}",
    "{{ GetCrmField.jinja_pass_arg }}",
    # format / % tricks
    "{{ '{0.__class__}'.format(GetCrmField) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ '{x.__class__}'.format_map({'x': entry}) }}",
    "{{ '{0._spec}'.format(GetCrmField) }}",
    "{{ '%s|%r' % (GetCrmField, SetCrmFields) }}",
    "{{ '%s' % entry.values }}",
    # entries and results
    "{{ entry.__class__ }}",
    "{{ entry.values.__class__.__mro__ }}",
    "{{ entry.__dataclass_fields__ }}",
    "{{ entry.values_flat.__class__.__base__.__subclasses__() }}",
    "{{ entry.__reduce_ex__(2) }}",
    "{{ entry.to_dict().values.__class__ }}",
    "{{ 'weight-tracker' | crm_field('current_weight') | attr('__class__') }}",
    "{{ GetCrmFields(slug='weight-tracker', fieldKeys=['notes']).__class__.__mro__ }}",
    "{{ SetCrmField(slug='nope', fieldKey='x', value=1).__class__ }}",
    "{% set ns = namespace(a=entry) %}{{ ns.a.__class__.__init__.__globals__ }}",
    # mutation of cached/read values must not stick, and never reaches the store
    "{% do entry.values.update({'current_weight': 1}) %}",
    "{% do entry.values.__setitem__('current_weight', 1) %}",
    "{% do entry.values.partners.append('x') %}",
    "{% set x = entry.values.pop('current_weight') %}{{ x }}",
    "{{ entry.values.copy().__setitem__('a', 1) }}",
    # smuggling an unsafe object into a write
    "{{ SetCrmField(slug='weight-tracker', fieldKey='notes', value=GetCrmField.__class__) }}",
    "{{ SetCrmField(slug='weight-tracker', fieldKey='notes', value=''.__class__.__mro__) }}",
]

# Text that would mean a payload reached something it should not.
LEAKS = [
    "<class",
    "&lt;class",
    "function",
    "module",
    "Store",
    "sqlite",
    " at 0x",
    "crm_templates",
    "method",
    "built-in",
    "_PassArg",
    "FunctionSpec",
    "/tmp",
    "/work",
]

REFUSED = (SecurityError, UndefinedError, TypeError)


@pytest.fixture
def crm(tmp_path: Any) -> Iterator[Crm]:
    """A Crm over a SQLite file holding one customer's weight-tracker entry."""
    service = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    service.ensure_entity(
        slug=WT,
        fields=[
            {"key": "current_weight", "type": "number"},
            {"key": "notes", "type": "text"},
            {"key": "partners", "type": "json"},
        ],
    )
    service.bind("cus_1").set_fields(
        slug=WT, fields={"current_weight": 80, "notes": "hi", "partners": ["a"]}
    )
    yield service
    service.close()


def snapshot(crm: Crm) -> list[Any]:
    return [e.to_dict() for e in crm.store.iter_entries()] + [
        (e.slug, e.version) for e in crm.list_entities()
    ]


@pytest.fixture(params=[SandboxedEnvironment, ImmutableSandboxedEnvironment])
def env(request: pytest.FixtureRequest, crm: Crm) -> Environment:
    """A sandbox (plain and immutable) with the CRM extension installed."""
    e: Environment = request.param(extensions=[CrmExtension], autoescape=True)
    e.install_crm(crm)  # type: ignore[attr-defined]
    return e


def test_at_least_30_payloads() -> None:
    assert len(PAYLOADS) >= 30


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_reaches_nothing(env: Environment, crm: Crm, payload: str) -> None:
    before = snapshot(crm)
    source = "{% set entry = GetCrmEntries(slug='weight-tracker')[0] %}" + payload
    try:
        out = env.from_string(source).render(customer_id="cus_1")
    except REFUSED:
        pass
    except CrmTemplateError as exc:  # an unusable value was refused by the CRM's validation
        assert not any(leak in str(exc) for leak in LEAKS), exc
    else:
        leaked = [leak for leak in LEAKS if leak in out]
        assert not leaked, out
    assert snapshot(crm) == before
    # The cache of the next render is fresh: mutations did not stick anywhere.
    check = "{{ GetCrmEntries(slug='weight-tracker')[0].values.current_weight }}"
    assert env.from_string(check).render(customer_id="cus_1") == "80.0"


def test_reads_and_writes_work_in_the_sandbox(env: Environment, crm: Crm) -> None:
    out = env.from_string(
        "{% do SetCrmField(slug='weight-tracker', fieldKey='notes', value='ok') %}"
        "{{ GetCrmField(slug='weight-tracker', fieldKey='notes') }}"
    ).render(customer_id="cus_1")
    assert out == "ok"


def test_functions_are_stateless_objects() -> None:
    e = SandboxedEnvironment(extensions=[CrmExtension])
    fn = e.crm_globals["GetCrmField"]  # type: ignore[attr-defined]
    # Nothing on the object leads to the service or the store: it holds its name only.
    public = {a for a in dir(fn) if not a.startswith("_")}  # all class-level constants
    assert public == {"alters_data", "crm_write", "kind", "name", "unsafe_callable"}


class ReadOnlySandbox(SandboxedEnvironment):
    """The recipe in docs/explanation/security.md: a sandbox that refuses the CRM write functions."""

    def is_safe_callable(self, obj: Any) -> bool:
        return not getattr(obj, "crm_write", False) and super().is_safe_callable(obj)


def test_a_sandbox_can_refuse_writes(crm: Crm) -> None:
    e = ReadOnlySandbox(extensions=[CrmExtension])
    e.install_crm(crm)  # type: ignore[attr-defined]
    t = "{{ GetCrmField(slug='weight-tracker', fieldKey='notes') }}"
    assert e.from_string(t).render(customer_id="cus_1") == "hi"
    before = snapshot(crm)
    with pytest.raises(SecurityError):
        e.from_string("{% do SetCrmField(slug='weight-tracker', fieldKey='notes', value='x') %}")\
            .render(customer_id="cus_1")  # fmt: skip
    assert snapshot(crm) == before
