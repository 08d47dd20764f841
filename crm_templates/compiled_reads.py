"""Compiled CRM reads (issue 14, item 1): what a template will read, found when it is compiled.

The extension installs `PlanningCodeGenerator` as the environment's code generator. When Jinja
compiles a template it walks the parsed AST and writes a *read plan* into the compiled module
(``crm_read_plan``), so the plan is cached exactly as the compiled code is — per template
object, rebuilt when Jinja reloads an edited template, kept in a bytecode cache with the code.
A plan is ``(reads, references, static, listings)``:

- ``reads``: ``(slug, referenceType, referenceId)`` triples for every value read whose entity
  slug (and reference, when given) are constants — ``GetCrmField``/``GetCrmFields`` (either
  spelling, keyword or one-dict style), the ``crm_field``/``crm_fields`` filters and
  ``'slug' | crm_render('key')``/``crm_text``. ``referenceType``/``referenceId`` are ``None``
  for the default reference (the render's customer).
- ``listings``: ``(function, slug, fieldKey, limit)`` for ``GetCrmEntries``/``GetCrmFieldValues``
  (either spelling and style) whose only options are a string slug, a string ``fieldKey``
  (GetCrmFieldValues) and a whole-number ``limit`` (or none): the render's customer's entries,
  fetched in the same round trip once the service checked the options (`Crm.listing_query`).
- ``references``: the constant names of the templates it ``{% extends %}``, ``{% include %}``s
  and ``{% import %}``s / ``{% from … import %}``s (their macros included).
- ``static``: whether, imported as a module, the template's top level (everything outside its
  macro bodies) runs nothing and holds nothing mutable — only text and ``{% set %}``/``{% if %}``
  over literals of immutable values (no call, filter, test, include, import, extends, block, no
  variable or global read, no list or dict) — so its module cannot hold anything read for one
  customer, nor anything a macro could change for the next. Such a module is kept per process,
  as Jinja keeps modules; any other module is made per render (issue 8). Macro bodies run when
  called, in the calling render, and read for that render's customer.

At render start `resolve_plan` follows the references (through ``env.get_template``, so an
edited layout or macro file brings its new plan) and the extension fetches every triple for the
render's customer in one store round trip (`Store.prefetch_values`) into the render's own read
cache — the cache the lazy path fills, so semantics cannot diverge. Reads with a dynamic slug,
key set or reference, and templates named by an expression, keep the lazy cached path.

The generator also compiles ``GetCrmField(slug='…', fieldKey='…')`` with constant arguments
into a direct call of
`crm_templates.extension.fast_field`, which serves a cached value without Jinja's sandboxed
call machinery and hands anything else (a variable shadowing the name, a callable the sandbox
refuses) to Jinja's own call.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from jinja2 import Environment as JinjaEnvironment
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

from .functions import ALIASES

if TYPE_CHECKING:
    from jinja2 import Environment, Template

Read = tuple[str, "str | None", "str | None"]
#: A planned listing: (function, slug, fieldKey or None, limit as written or None).
Listing = tuple[str, str, "str | None", Any]
Plan = tuple[tuple[Read, ...], tuple[str, ...], bool, tuple[Listing, ...]]

_VALUE_CALLS = frozenset({"GetCrmField", "getCrmField", "GetCrmFields", "getCrmFields"})
_FIELD_CALLS = frozenset({"GetCrmField", "getCrmField"})
_VALUE_FILTERS = frozenset({"crm_field", "crm_fields"})
_RENDER_FILTERS = frozenset({"crm_render", "crm_text"})
_PLAN_OPTIONS = frozenset({"slug", "fieldKey", "fieldKeys", "referenceType", "referenceId"})
# Listing calls (by template name) and the options a planned one may give: the render's
# customer's entries only (another reference takes the lazy path, with its access rules).
_LISTING_CALLS = {
    "GetCrmEntries": "GetCrmEntries",
    "getCrmEntries": "GetCrmEntries",
    "GetCrmFieldValues": "GetCrmFieldValues",
    "getCrmFieldValues": "GetCrmFieldValues",
}
_LISTING_OPTIONS = {
    "GetCrmEntries": frozenset({"slug", "limit"}),
    "GetCrmFieldValues": frozenset({"slug", "fieldKey", "limit"}),
}
_EXTENSION = __name__.rsplit(".", 1)[0] + ".extension"


def _const(node: nodes.Node | None) -> Any:
    """The constant value of ``node`` (a literal, a list/tuple/dict of literals), or raise
    `nodes.Impossible`."""
    if node is None:
        raise nodes.Impossible()
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.List | nodes.Tuple):
        return [_const(item) for item in node.items]
    raise nodes.Impossible()


def _const_dict(node: nodes.Node) -> dict[Any, Any] | None:
    """A dict literal of constants (Jinja's optimizer may have folded it into a `Const`)."""
    if isinstance(node, nodes.Const):
        return node.value if type(node.value) is dict else None
    if not isinstance(node, nodes.Dict):
        return None
    return {_const(pair.key): _const(pair.value) for pair in node.items}


def _call_options(call: nodes.Call) -> dict[str, Any] | None:
    """A call's options when all are constants (one dict literal and/or keywords)."""
    if call.dyn_args is not None or call.dyn_kwargs is not None or len(call.args) > 1:
        return None
    out: dict[str, Any] = {}
    try:
        if call.args:
            given = _const_dict(call.args[0])
            if given is None:
                return None
            for key, value in given.items():
                out[ALIASES.get(key, key)] = value
        for keyword in call.kwargs:
            out[ALIASES.get(keyword.key, keyword.key)] = _const(keyword.value)
    except (nodes.Impossible, TypeError):  # TypeError: an unhashable constant key
        return None
    return out


def _read_of(options: dict[str, Any]) -> Read | None:
    """The plan triple of a value read's constant options, or None (lazy path)."""
    if not options.keys() <= _PLAN_OPTIONS:
        return None
    slug = options.get("slug")
    rtype = options.get("referenceType")
    rid = options.get("referenceId")
    if type(slug) is not str or not slug:
        return None
    if rid is None:
        if rtype not in (None, "customer"):
            return None  # another reference type needs an id: the service answers
        return (slug, None, None)
    if type(rtype) is not str or type(rid) is not str:
        return None
    return (slug, rtype, rid)


def _listing_of(function: str, options: dict[str, Any]) -> Listing | None:
    """The plan entry of a listing call's constant options, or None (lazy path): a string
    slug (and fieldKey for GetCrmFieldValues), a whole-number limit ≥ 1 or none, no other
    option. The service still validates the entity, key and limit when the prefetch asks it."""
    if not options.keys() <= _LISTING_OPTIONS[function]:
        return None
    slug = options.get("slug")
    key = options.get("fieldKey")
    limit = options.get("limit")
    if type(slug) is not str or not slug:
        return None
    if function == "GetCrmFieldValues" and (type(key) is not str or not key):
        return None
    if (limit is not None or "limit" in options) and (type(limit) is not int or limit < 1):
        return None  # refused by the service (``limit=None`` too): the lazy call says so
    return (function, slug, key, limit)


def _template_names(node: nodes.Node) -> Iterator[str]:
    """Constant template names of an extends/include/import node."""
    try:
        value = _const(node.template)  # type: ignore[attr-defined]
    except nodes.Impossible:
        return
    for name in value if isinstance(value, list | tuple) else [value]:
        if type(name) is str:
            yield name


def plan_of(tree: nodes.Template) -> Plan:
    """The read plan of one parsed template (its own reads and the templates it names)."""
    reads: dict[Read, None] = {}
    listings: dict[Listing, None] = {}
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name in _VALUE_CALLS:
            options = _call_options(call)
            read = None if options is None else _read_of(options)
            if read is not None:
                reads[read] = None
        elif isinstance(call.node, nodes.Name) and call.node.name in _LISTING_CALLS:
            options = _call_options(call)
            function = _LISTING_CALLS[call.node.name]
            listing = None if options is None else _listing_of(function, options)
            if listing is not None:
                listings[listing] = None
    for flt in tree.find_all(nodes.Filter):
        if flt.name not in _VALUE_FILTERS | _RENDER_FILTERS:
            continue
        if not isinstance(flt.node, nodes.Const) or type(flt.node.value) is not str:
            continue
        if flt.name in _RENDER_FILTERS:
            # 'slug' | crm_render('key'): GetCrmField of the render's customer.
            if len(flt.args) == 1 and isinstance(flt.args[0], nodes.Const) and not flt.kwargs:
                reads[(flt.node.value, None, None)] = None
            continue
        if flt.dyn_args is not None or flt.dyn_kwargs is not None:
            continue
        try:
            keywords: list[nodes.Keyword] = flt.kwargs  # type: ignore[assignment]
            options = {ALIASES.get(k.key, k.key): _const(k.value) for k in keywords}
        except nodes.Impossible:
            continue
        read = _read_of({**options, "slug": flt.node.value})
        if read is not None:
            reads[read] = None
    names: dict[str, None] = {}
    for kind in (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport):
        for node in tree.find_all(kind):
            names.update(dict.fromkeys(_template_names(node)))
    return tuple(reads), tuple(names), _static(tree), tuple(listings)


# What a module's top level (outside macro bodies) may hold and still be kept per process:
# text, and `{% set %}` / `{% if %}` over literals of immutable values. Anything else may run
# code (a call, filter, test, include, import, block), read something per request (a name or an
# attribute of a global: Flask's ``session``/``g``/``request`` are globals) or make a value its
# macros could change — ``{% set seen = [] %}`` appended to by a macro would carry one render's
# CRM values into the next customer's (found by the attack14 review).
_STATIC_NODES = (
    nodes.Output,
    nodes.TemplateData,
    nodes.Assign,
    nodes.AssignBlock,
    nodes.If,
    nodes.Const,
    nodes.Tuple,
    nodes.Name,
    nodes.BinExpr,
    nodes.UnaryExpr,
    nodes.Concat,
    nodes.Compare,
    nodes.Operand,
    nodes.CondExpr,
)
_IMMUTABLE = (str, int, float, complex, bool, bytes, type(None))


def _inert(node: nodes.Node) -> bool:
    """Whether ``node`` (outside macro bodies) runs nothing and makes nothing mutable."""
    if not isinstance(node, _STATIC_NODES):
        return False
    if isinstance(node, nodes.Const) and not _immutable(node.value):
        return False
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return False  # a global (maybe per request, maybe mutable) or a context variable
    return all(_inert(child) for child in node.iter_child_nodes())


def _immutable(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_immutable(item) for item in value)
    return isinstance(value, _IMMUTABLE)


def _static(tree: nodes.Template) -> bool:
    """True when the template's top level, outside macro bodies, runs nothing and holds only
    immutable values (see module docstring, ``static``)."""
    for node in tree.body:
        if isinstance(node, nodes.Macro):
            continue  # its body and its defaults run when it is called
        if not _inert(node):
            return False
    return True


#: The rules a compiled plan was made with. Code compiled under older rules (kept in a Jinja
#: bytecode cache across an upgrade) keeps its reads and references, but its ``static`` is not
#: trusted: version 1 called a module holding ``{% set seen = [] %}`` static (attack14);
#: version 3 added the planned listings (older plans have none).
PLAN_VERSION = 3


def loaded_plan(namespace: Mapping[str, Any]) -> Plan | None:
    """The plan of a compiled module's namespace (None: compiled without the generator), with
    ``static`` false unless the module was compiled under the current `PLAN_VERSION`, and no
    listings unless it has them."""
    plan: Any = namespace.get("crm_read_plan")
    if plan is None:
        return None
    if namespace.get("crm_plan_version") != PLAN_VERSION:
        return (tuple(plan[0]), tuple(plan[1]), False, ())
    if len(plan) < 4:
        return (tuple(plan[0]), tuple(plan[1]), plan[2] is True, ())
    return cast("Plan", plan)


def static_module(template: Any) -> bool:
    """Whether ``template``'s compiled plan says its module may be kept per process."""
    plan = getattr(template, "crm_read_plan", None)
    return plan is not None and len(plan) > 2 and plan[2] is True


def constant_get_field(node: nodes.Call) -> tuple[str, str, str] | None:
    """``(slug, fieldKey, style)`` of ``GetCrmField(slug='…', fieldKey='…')`` or
    ``GetCrmField({'slug': '…', 'fieldKey': '…'})`` with string constants (style ``kw`` or
    ``dict``); None for any other call."""
    if not isinstance(node.node, nodes.Name) or node.node.name not in _FIELD_CALLS:
        return None
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        return None
    try:
        if node.args:
            if len(node.args) != 1 or node.kwargs:
                return None
            found = _const_dict(node.args[0])
            if found is None:
                return None
            given, style = found, "dict"
        else:
            given = {k.key: _const(k.value) for k in node.kwargs}
            style = "kw"
    except (nodes.Impossible, TypeError):
        return None
    if given.keys() != {"slug", "fieldKey"}:
        return None
    slug, key = given["slug"], given["fieldKey"]
    if type(slug) is not str or type(key) is not str:
        return None
    return slug, key, style


class PlanningCodeGenerator(CodeGenerator):
    """Jinja's code generator, plus ``crm_read_plan`` in each compiled module and direct calls
    for constant ``GetCrmField`` reads (mixed into the environment's own generator class)."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        plan = plan_of(node)  # before code generation, which may fold constants
        super().visit_Template(node, frame)
        self.writeline(f"crm_read_plan = {plan!r}")
        self.writeline(f"crm_plan_version = {PLAN_VERSION}")
        self.writeline(f"from {_EXTENSION} import fast_field as crm_fast_field")

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        fast = None
        if not (forward_caller or self.environment.is_async):
            fast = constant_get_field(node)
        if fast is None:
            super().visit_Call(node, frame, forward_caller=forward_caller)
            return
        self.write("crm_fast_field(context, ")
        self.visit(node.node, frame)
        slug, key, style = fast
        # Loop and block variables, which Jinja's call would pass on (Context.call derives
        # the function's context from them).
        loop_vars = "_loop_vars" if frame.loop_frame else "None"
        block_vars = "_block_vars" if frame.block_frame else "None"
        self.write(f", {slug!r}, {key!r}, {style!r}, {loop_vars}, {block_vars})")


def install_generator(environment: Environment) -> None:
    """Make the environment's code generator plan CRM reads (idempotent; keeps a generator
    class the application set, by subclassing it)."""
    base = environment.code_generator_class
    if not issubclass(base, PlanningCodeGenerator):
        environment.code_generator_class = type(
            f"CrmPlanning{base.__name__}", (PlanningCodeGenerator, base), {}
        )


def _named(environment: Environment, name: str, parent: str | None) -> Any:
    """The template ``name`` as Jinja's template cache holds it, else loaded.

    The cached one may be older than its file until the render's own ``get_template`` reloads
    it (the stat Jinja's auto-reload makes is not repeated here): a plan is only what to
    prefetch, and a read it misses takes the lazy path, so one render with an older plan still
    renders the new template correctly."""
    cache = environment.cache
    loader = environment.loader
    if cache is not None and loader is not None and _plain_join(environment):
        found = cache.get((weakref.ref(loader), name))
        if found is not None:
            return found
    return environment.get_template(name, parent)


def _plain_join(environment: Environment) -> bool:
    return type(environment).join_path is JinjaEnvironment.join_path


def note_new_template(environment: Environment) -> None:
    """Called for every template object the environment makes (a first load, a reload of an
    edited file, ``from_string``): resolved plans made before are worked out again."""
    environment.crm_template_generation = (  # type: ignore[attr-defined]
        getattr(environment, "crm_template_generation", 0) + 1
    )


def resolve_plan(template: Template) -> list[Read]:
    """Every read of ``template`` and the templates it names, transitively (cycles and
    templates that fail to load are skipped: the render reports those itself).

    Kept on the template until the environment makes any new template object
    (`note_new_template`) — an edited layout or macro file is reloaded as a new object."""
    return _resolved(template)[0]


def resolve_listings(template: Template) -> list[Listing]:
    """Every planned listing (`Listing`) of ``template`` and the templates it names,
    transitively, as `resolve_plan` finds the reads (and kept with them)."""
    return _resolved(template)[1]


def resolve_all(template: Template) -> tuple[list[Read], list[Listing]]:
    """`resolve_plan` and `resolve_listings` in one look-up (the render start asks for both)."""
    return _resolved(template)


def _resolved(template: Template) -> tuple[list[Read], list[Listing]]:
    generation = getattr(template.environment, "crm_template_generation", 0)
    memo = getattr(template, "crm_resolved_plan", None)
    if memo is not None and memo[0] == generation:
        return memo[1], memo[2]
    reads, listings = _resolve(template)
    template.crm_resolved_plan = (generation, reads, listings)  # type: ignore[attr-defined]
    return reads, listings


def _resolve(template: Template) -> tuple[list[Read], list[Listing]]:
    environment = template.environment
    reads: dict[Read, None] = {}
    listings: dict[Listing, None] = {}
    seen: set[str] = set()
    stack: list[Any] = [template]
    while stack:
        current = stack.pop()
        plan: Plan | None = getattr(current, "crm_read_plan", None)
        if plan is None:
            continue
        reads.update(dict.fromkeys(plan[0]))
        if len(plan) > 3:
            listings.update(dict.fromkeys(plan[3]))
        for name in plan[1]:
            if name in seen:
                continue
            seen.add(name)
            try:
                stack.append(_named(environment, name, current.name))
            except Exception:  # the render itself raises Jinja's error
                continue
    return list(reads), list(listings)


__all__ = [
    "PLAN_VERSION",
    "Listing",
    "Plan",
    "PlanningCodeGenerator",
    "constant_get_field",
    "install_generator",
    "loaded_plan",
    "note_new_template",
    "plan_of",
    "resolve_all",
    "resolve_listings",
    "resolve_plan",
    "static_module",
]
