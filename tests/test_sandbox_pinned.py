"""Every sandbox payload of tests/test_sandbox.py has one pinned outcome (issue 10, item 2).

`test_sandbox.test_payload_reaches_nothing` accepts any of three exceptions and checks the
output against a substring blocklist, which autoescape defeats (``<class`` prints as
``&lt;class``). Here each payload's outcome is pinned exactly, in the plain and the immutable
sandbox: the output text, or the exception class with its message (and, for a CRM error, the
core error behind it). A payload that starts to render something, or is refused elsewhere or
for another reason, fails. Output is also checked for leaks after HTML-unescaping.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import pytest
from jinja2 import Environment
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from crm_templates import Crm, CrmExtension, CrmValidationError, UnknownEntityError
from crm_templates.extension import CrmTemplateError
from tests import test_sandbox
from tests.test_sandbox import LEAKS, PAYLOADS

crm = test_sandbox.crm  # the same fixture: one customer's weight-tracker entry on SQLite


def state(crm: Crm) -> list[Any]:
    return [e.to_dict() for e in crm.store.iter_entries()] + [
        (e.slug, e.version) for e in crm.list_entities()
    ]


@dataclass(frozen=True)
class Out:
    """The payload renders exactly this text."""

    text: str


@dataclass(frozen=True)
class Raises:
    """The payload raises exactly this class with exactly this message (and cause class)."""

    error: type[BaseException]
    message: str
    cause: type[BaseException] | None = None


def unsafe(attribute: str, owner: str) -> Raises:
    return Raises(
        SecurityError, f"access to attribute {attribute!r} of {owner!r} object is unsafe."
    )


READ_ONLY = Raises(
    TypeError, "CRM values are read-only in templates; change them with SetCrmField(s)"
)
EMPTY = Out("")
# (plain sandbox, immutable sandbox) where the two differ: the immutable one refuses a
# mutating method before our read-only mapping gets to refuse the call.
PINNED: dict[str, Out | Raises | tuple[Out | Raises, Out | Raises]] = {
    # Python object model: an unsafe attribute is undefined (prints nothing) or refused.
    "{{ ''.__class__ }}": EMPTY,
    "{{ ''.__class__.__mro__[1].__subclasses__() }}": unsafe("__class__", "str"),
    "{{ ().__class__.__bases__[0].__subclasses__() }}": unsafe("__class__", "tuple"),
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}":
        unsafe("__class__", "list"),
    "{{ dict.mro() }}": unsafe("mro", "type"),
    "{{ range.__self__ }}": EMPTY,
    "{{ self.__dict__ }}": EMPTY,
    "{{ self._TemplateReference__context }}": EMPTY,
    "{{ config.items() }}": Raises(UndefinedError, "'config' is undefined"),
    "{{ request.application.__globals__ }}": Raises(UndefinedError, "'request' is undefined"),
    # Jinja's own globals
    "{{ cycler.__init__.__globals__ }}": unsafe("__init__", "type"),
    "{{ joiner.__init__.__globals__.os }}": unsafe("__init__", "type"),
    "{{ namespace.__init__.__globals__ }}": unsafe("__init__", "type"),
    "{{ lipsum.__globals__ }}": EMPTY,
    "{{ lipsum|attr('__globals__')|attr('get')('os') }}": unsafe("__globals__", "function"),
    # the CRM functions: small objects holding their name only
    "{{ GetCrmField.__class__ }}": EMPTY,
    "{{ GetCrmField.__closure__ }}": EMPTY,
    "{{ GetCrmField.__globals__ }}": EMPTY,
    "{{ GetCrmField.__self__ }}": EMPTY,
    "{{ GetCrmField.__call__.__func__.__globals__ }}": unsafe("__call__", "GetCrmField"),
    "{{ GetCrmField._spec }}": EMPTY,
    "{{ GetCrmField|attr('_spec') }}": EMPTY,
    "{{ GetCrmField|attr('__class__') }}": EMPTY,
    "{{ GetCrmField|attr('__call__')|attr('__globals__') }}": EMPTY,
    "{{ GetCrmFields.__init__.__globals__['FUNCTIONS'] }}": unsafe("__init__", "GetCrmFields"),
    "{{ SetCrmField.__call__.__globals__.sys.modules }}": unsafe("__call__", "SetCrmField"),
    "{% set f = GetCrmField.__call__ %}{{ f(slug='weight-tracker', fieldKey='current_weight') }}":
        unsafe("__call__", "GetCrmField"),
    "{{ GetCrmField }}{{ setCrmFields }}{{ SetCrmField.name }}{{ SetCrmField.crm_write }}":
        Out("GetCrmFieldsetCrmFieldsSetCrmFieldTrue"),
    "{{ GetCrmField.jinja_pass_arg }}": EMPTY,
    # format / % tricks
    "{{ '{0.__class__}'.format(GetCrmField) }}": EMPTY,
    "{{ '{0.__init__.__globals__}'.format(cycler) }}": unsafe("__init__", "type"),
    "{{ '{x.__class__}'.format_map({'x': entry}) }}": EMPTY,
    "{{ '{0._spec}'.format(GetCrmField) }}": EMPTY,
    "{{ '%s|%r' % (GetCrmField, SetCrmFields) }}": Out("GetCrmField|SetCrmFields"),
    # The customer's own values, escaped: nothing but the data.
    "{{ '%s' % entry.values }}": Out(
        "{&#39;current_weight&#39;: 80.0, &#39;notes&#39;: &#39;hi&#39;, "
        "&#39;partners&#39;: [&#39;a&#39;]}"
    ),
    # entries and results
    "{{ entry.__class__ }}": EMPTY,
    "{{ entry.values.__class__.__mro__ }}": unsafe("__class__", "FrozenDict"),
    "{{ entry.__dataclass_fields__ }}": EMPTY,
    "{{ entry.values_flat.__class__.__base__.__subclasses__() }}":
        unsafe("__class__", "FrozenDict"),
    "{{ entry.__reduce_ex__(2) }}": unsafe("__reduce_ex__", "Entry"),
    "{{ entry.to_dict().values.__class__ }}": EMPTY,
    "{{ 'weight-tracker' | crm_field('current_weight') | attr('__class__') }}": EMPTY,
    "{{ GetCrmFields(slug='weight-tracker', fieldKeys=['notes']).__class__.__mro__ }}":
        unsafe("__class__", "dict"),
    "{{ SetCrmField(slug='nope', fieldKey='x', value=1).__class__ }}": Raises(
        CrmTemplateError,
        "<template>:1: SetCrmField: no CRM entity 'nope'. Known entities: weight-tracker "
        "(create it with EnsureCrmEntity)",
        UnknownEntityError,
    ),
    "{% set ns = namespace(a=entry) %}{{ ns.a.__class__.__init__.__globals__ }}":
        unsafe("__init__", "CrmUndefined"),
    # mutation of cached/read values
    "{% do entry.values.update({'current_weight': 1}) %}":
        (READ_ONLY, unsafe("update", "FrozenDict")),
    "{% do entry.values.__setitem__('current_weight', 1) %}": unsafe("__setitem__", "FrozenDict"),
    "{% do entry.values.partners.append('x') %}": (READ_ONLY, unsafe("append", "FrozenList")),
    "{% set x = entry.values.pop('current_weight') %}{{ x }}":
        (READ_ONLY, unsafe("pop", "FrozenDict")),
    "{{ entry.values.copy().__setitem__('a', 1) }}": unsafe("__setitem__", "dict"),
    # smuggling an unsafe object into a write: it arrives as Undefined, and is refused
    "{{ SetCrmField(slug='weight-tracker', fieldKey='notes', value=GetCrmField.__class__) }}":
        Raises(
            CrmTemplateError,
            "<template>:1: SetCrmField: field 'notes' (text) expects text; got Undefined",
            CrmValidationError,
        ),
    "{{ SetCrmField(slug='weight-tracker', fieldKey='notes', value=''.__class__.__mro__) }}":
        unsafe("__class__", "str"),
}  # fmt: skip

SANDBOXES = [SandboxedEnvironment, ImmutableSandboxedEnvironment]


def leaks(text: str) -> list[str]:
    """Blocklisted words in ``text`` as written and as a browser would read it (unescaped)."""
    return sorted({leak for t in (text, html.unescape(text)) for leak in LEAKS if leak in t})


def test_every_payload_is_pinned() -> None:
    assert sorted(PINNED) == sorted(PAYLOADS)


@pytest.mark.parametrize(
    "text", ["&lt;class 'str'&gt;", "&#60;function x&#62;", "<module 'os'>", "&lt;built-in"]
)
def test_the_leak_check_sees_through_escaping(text: str) -> None:
    assert leaks(text)


@pytest.mark.parametrize("sandbox", SANDBOXES, ids=["sandbox", "immutable"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_has_its_pinned_outcome(crm: Crm, sandbox: type, payload: str) -> None:
    env: Environment = sandbox(extensions=[CrmExtension], autoescape=True)
    env.install_crm(crm)  # type: ignore[attr-defined]
    pinned = PINNED[payload]
    expected = pinned[SANDBOXES.index(sandbox)] if isinstance(pinned, tuple) else pinned
    before = state(crm)
    template = env.from_string(
        "{% set entry = GetCrmEntries(slug='weight-tracker')[0] %}" + payload
    )
    if isinstance(expected, Out):
        out = template.render(customer_id="cus_1")
        assert out == expected.text
        assert leaks(out) == []
    else:
        with pytest.raises(BaseException) as caught:
            template.render(customer_id="cus_1")
        assert type(caught.value) is expected.error
        assert str(caught.value) == expected.message
        cause = caught.value.__cause__
        assert (type(cause) if cause is not None else None) is expected.cause
    assert state(crm) == before
