"""The Jinja2 extension (SPEC §7): the CRM functions as template globals, the ``crm_*`` filters.

    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(Crm(open_store("sqlite:///crm.db")), on_error="raise")

Like Jinja's i18n extension, it keeps its settings in ``crm_``-prefixed environment attributes
and adds ``env.install_crm``. The globals are stateless callables: each call finds the service
through the render context (``context.environment.crm`` or the page server's ``request_crm``),
so no template can reach the `Crm` or `Store` objects through them.

Reads are cached per render. The cache (with the render's bound customer and its imported
modules) is a `RenderState` that exists exactly as long as one call of ``Template.render``,
``generate``, ``render_async`` or ``generate_async`` and is reachable only through a
`contextvars.ContextVar` set around that call: nothing Jinja keeps between renders (compiled
templates, the template cache, modules of ``{% import %}``/``{% from %}`` without context,
macros, ``caller``, ``self``) holds it, and each thread or asyncio task of a server sees only
its own render (issue 8). The first read of an entity for a reference fetches the newest values
of *all* its declared keys in one query; later `GetCrmField`/`GetCrmFields` calls and
``crm_field`` filters on that entity are served from it. A write drops the cached data of the
slug(s) it touches, so a template reads its own writes.

Whose data a call reads: the ``customer_id`` (or ``customer``) of the calling context, else
the installed ``context_customer(context)`` (Starlette: from the context's ``request``), else —
in a macro of a template imported without context, whose context has no render variables —
the customer of the render that called it. Outside any render (a macro called from Python
through ``template.module``) nothing is cached and the installed service answers as it is.
"""

from __future__ import annotations

import difflib
import logging
import re
import sys
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from jinja2 import Template, nodes
from jinja2.exceptions import TemplateRuntimeError
from jinja2.ext import Extension
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing, pass_context
from markupsafe import Markup

import renderers

from .access import may_reach
from .colours import css_colour
from .compiled_reads import (
    Listing,
    install_generator,
    loaded_plan,
    note_new_template,
    resolve_all,
    static_module,
)
from .errors import CrmError, CrmUsageError, CrmValidationError, UnknownFieldError
from .functions import BY_NAME, FUNCTIONS, FunctionSpec, parse_options, suggest
from .model import SEMANTIC_STATUSES, Entity, Entry, Field, Stage
from .service import ListingQuery, WriteResult
from .storage.prefetch import Prefetched
from .values import check_reference

if TYPE_CHECKING:
    from jinja2 import Environment
    from jinja2.parser import Parser

    from .service import Crm

logger = logging.getLogger(__name__)

OnError = Literal["raise", "log"]
RequestCrm = Callable[[], "Crm | None"]
ContextCustomer = Callable[[Context], Any]

_CRM_LOOKING = re.compile("crm", re.IGNORECASE)
_STATUSES = frozenset(SEMANTIC_STATUSES)


class CrmTemplateError(TemplateRuntimeError):
    """A CRM function failed during rendering (``on_error="raise"``).

    The message starts with ``<template>:<line>:``; the core's `CrmError` is the ``__cause__``.
    """

    def __init__(
        self, message: str, template_name: str | None = None, lineno: int | None = None
    ) -> None:
        super().__init__(message)
        self.template_name = template_name
        self.lineno = lineno


# --- read-only values -----------------------------------------------------------------------
# Cached results are shared by every call of one render, so the sandbox must not let a template
# change them in place (SandboxedEnvironment allows dict.update & co. on plain dicts).


def _read_only(*args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError("CRM values are read-only in templates; change them with SetCrmField(s)")


class FrozenDict(dict[str, Any]):
    """A dict that templates can read but not change; copies are plain dicts."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        return {k: copy.deepcopy(v, memo) for k, v in self.items()}


class FrozenList(list[Any]):
    """A list that templates can read but not change; copies are plain lists."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = remove = pop = clear = sort = reverse = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        import copy

        return [copy.deepcopy(v, memo) for v in self]


_SCALARS = frozenset({str, int, float, bool})


def freeze(value: Any) -> Any:
    """``value`` with every nested dict/list (and entry values) made read-only."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Entry):
        # Field by field, not dataclasses.replace (which inspects the class on every call).
        return Entry(
            value.id,
            value.entity,
            value.reference_type,
            value.reference_id,
            freeze(value.values),
            value.title,
            value.pipeline_id,
            value.stage_id,
            value.created_at,
            value.updated_at,
            value.version,
        )
    if isinstance(value, FrozenDict | FrozenList):
        return value
    if isinstance(value, dict):
        return FrozenDict(
            {k: v if type(v) in _SCALARS or v is None else freeze(v) for k, v in value.items()}
        )
    if isinstance(value, list):
        return FrozenList(freeze(v) for v in value)
    return value


# --- per-render state -----------------------------------------------------------------------


class RenderState:
    """The state of one render: read cache, bound customer, imported modules.

    Keys of ``cache`` start with the entity slug so writes can drop them. Created by
    `RenderScopedTemplate` for each render and reachable only through `current_render_state`;
    it never outlives the render (issue 8: a cache that did leaked one customer's values to
    the next visitor through a module Jinja had cached).
    """

    __slots__ = ("bound", "cache", "modules", "refresh", "root", "start")

    def __init__(self, start: Template | None = None) -> None:
        # The template whose render this is, until the render's first context prefetches its
        # compiled reads (then None).
        self.start = start
        # Whether the prefetch also checks the service's entity cache (`fold_entity_refresh`).
        self.refresh = False
        self.cache: dict[tuple[Any, ...], Any] = {}
        # (context, the customer_id that context names, service, service's customer, the
        # root's customer_id used for a context naming none) of the last lookup, reused while
        # the context and those customer ids are the same; a write resets it (a write may
        # create the customer).
        self.bound: tuple[Context, str | None, Crm, str | None, str | None] | None = None
        # The render's first context: whose customer a macro imported without context reads.
        self.root: Context | None = None
        # Modules of templates imported without context, made once per render (not per
        # process, as Jinja would), so their top-level CRM reads belong to this render.
        self.modules: dict[Template, Any] = {}

    def invalidate(self, slugs: Iterable[str] | None) -> None:
        """Forget cached reads of these entities (``None``: of every entity), and the modules
        made so far (a later ``{% include ... without context %}`` reads the new values)."""
        self.bound = None
        self.modules.clear()
        if slugs is None:
            self.cache.clear()
            return
        gone = set(slugs)
        for key in [k for k in self.cache if k[0] in gone]:
            del self.cache[key]

    def __repr__(self) -> str:
        return "<crm render state>"


_CURRENT_RENDER: ContextVar[RenderState | None] = ContextVar("crm_render_state", default=None)


class PagePrefetch:
    """What `prefetch_page` fetched before a page render: the session customer's record and
    the page's planned values for that customer, for the render that `fold_entity_refresh`
    hands it to (and for no other: it is consumed by the next render started in the block)."""

    __slots__ = ("cache", "customer", "customer_id")

    def __init__(
        self,
        customer_id: str | None,
        customer: Any,
        cache: dict[tuple[Any, ...], Any],
    ) -> None:
        self.customer_id = customer_id
        self.customer = customer
        self.cache = cache

    def __repr__(self) -> str:
        return "<crm page prefetch>"


# Set by `fold_entity_refresh` for the next render started in this thread or task.
_FOLD_REFRESH: ContextVar[list[PagePrefetch | None] | None] = ContextVar(
    "crm_fold_refresh", default=None
)


@contextmanager
def fold_entity_refresh(prefetched: PagePrefetch | None = None) -> Iterator[None]:
    """The next render started inside the block runs `Crm.refresh_entities` at its start,
    folded into its compiled reads' prefetch (one store round trip for both; issue 14,
    item 3) — or, given `prefetch_page`'s answer, starts from the values (and the refresh)
    that made. The page server wraps each page render in it instead of calling
    ``refresh_entities()`` itself. A render that has nothing to prefetch still refreshes,
    at its start, before any CRM read."""
    token = _FOLD_REFRESH.set([prefetched])
    try:
        yield
    finally:
        _FOLD_REFRESH.reset(token)


def _new_state(template: Template) -> RenderState:
    state = RenderState(template)
    fold = _FOLD_REFRESH.get()
    if fold:
        given = fold.pop()
        if given is None:
            state.refresh = True
        else:
            # Keyed by the customer they were read for: served only to a context naming
            # that customer, as the lazy path would serve them.
            state.cache.update(given.cache)
    return state


def prefetch_page(template: Template, crm: Crm, customer_id: str | None) -> PagePrefetch:
    """For the page server, before it builds a page's context: ONE store round trip reading
    the session customer's record (``customer_id``, not yet checked — the values are keyed by
    it and only a render whose context names that customer is served them), every entity's
    version (applied as `Crm.refresh_entities` would) and the template's planned values for
    that customer (issue 14, item 3). Pass the answer to `fold_entity_refresh`."""
    state = RenderState()
    reads, listings = resolve_all(template) if customer_id is not None else ([], [])
    state.refresh = True
    found = _prefetch(state, crm, customer_id, reads, customer_record=True, listings=listings)
    record = found.customer if found is not None else None
    if found is None:
        crm.refresh_entities()
        record = None if customer_id is None else crm.get_customer(customer_id)
    return PagePrefetch(customer_id, record, state.cache)


def current_render_state() -> RenderState | None:
    """The `RenderState` of the render running in this thread or task, or None outside one."""
    return _CURRENT_RENDER.get()


class RenderScopedTemplate(Template):
    """Runs every render inside its own `RenderState` (installed as ``env.template_class``).

    ``render``/``render_async`` set the state for the whole call; ``generate``/
    ``generate_async`` set it around each step only, so a paused stream never leaks its state
    into the code iterating it (or into another stream interleaved with it).
    """

    crm_read_plan: Any = None

    @classmethod
    def _from_namespace(
        cls, environment: Environment, namespace: Any, globals: Any
    ) -> RenderScopedTemplate:
        template = super()._from_namespace(environment, namespace, globals)
        assert isinstance(template, RenderScopedTemplate)
        # Written by compiled_reads.PlanningCodeGenerator (None: compiled without it).
        template.crm_read_plan = loaded_plan(namespace)
        note_new_template(environment)
        return template

    def render(self, *args: Any, **kwargs: Any) -> str:
        token = _CURRENT_RENDER.set(_new_state(self))
        try:
            return super().render(*args, **kwargs)
        finally:
            _CURRENT_RENDER.reset(token)

    async def render_async(self, *args: Any, **kwargs: Any) -> str:
        token = _CURRENT_RENDER.set(_new_state(self))
        try:
            return await super().render_async(*args, **kwargs)
        finally:
            _CURRENT_RENDER.reset(token)

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        state = _new_state(self)
        stream = super().generate(*args, **kwargs)
        while True:
            token = _CURRENT_RENDER.set(state)
            try:
                chunk = next(stream)
            except StopIteration:
                return
            finally:
                _CURRENT_RENDER.reset(token)
            yield chunk

    async def generate_async(self, *args: Any, **kwargs: Any) -> AsyncGenerator[str, object]:
        state = _new_state(self)
        stream = super().generate_async(*args, **kwargs)
        try:
            while True:
                token = _CURRENT_RENDER.set(state)
                try:
                    chunk = await stream.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    _CURRENT_RENDER.reset(token)
                yield chunk
        finally:
            await stream.aclose()

    def _get_default_module(self, ctx: Context | None = None) -> Any:
        """Jinja caches a module imported without context on the template, for the process;
        cache it in the render instead, and outside a render (``template.module`` from
        Python) not at all: its top-level values may be CRM reads for whoever asked first."""
        state = _CURRENT_RENDER.get()
        if state is not None and static_module(self):
            # Its top level runs nothing (compiled_reads, "static"): Jinja's per-process
            # module holds no one's data; its macros read for the render calling them.
            return super()._get_default_module(ctx)
        if ctx is not None and _extra_globals(ctx, self):
            return super()._get_default_module(ctx)  # Jinja's own uncached case
        if self.environment.is_async:
            return super()._get_default_module(ctx)  # raises Jinja's "not in async mode"
        if state is None:
            return self.make_module()
        module = state.modules.get(self)
        if module is None:
            module = state.modules[self] = self.make_module()
        return module

    async def _get_default_module_async(self, ctx: Context | None = None) -> Any:
        state = _CURRENT_RENDER.get()
        if state is not None and static_module(self):
            return await super()._get_default_module_async(ctx)
        if ctx is not None and _extra_globals(ctx, self):
            return await super()._get_default_module_async(ctx)
        if state is None:
            return await self.make_module_async()
        module = state.modules.get(self)
        if module is None:
            module = state.modules[self] = await self.make_module_async()
        return module


def _extra_globals(ctx: Context, template: Template) -> bool:
    """Jinja's ``ctx.globals_keys - template.globals.keys()`` (globals the importing render has
    that the template lacks), without iterating a ChainMap key by key."""
    maps = getattr(template.globals, "maps", None)
    if maps is None:
        return bool(ctx.globals_keys - template.globals.keys())
    return bool(ctx.globals_keys.difference(*maps))


class _RenderScoped(Context):
    """Resolves the CRM functions and records the first context of each render.

    The state itself is not stored in the context: contexts of imported modules outlive a
    render in Jinja's caches, so anything kept in them would reach the next render.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        state = _CURRENT_RENDER.get()
        if state is not None and state.root is None:
            state.root = self
            if state.start is not None:
                _start_render(self, state)

    def resolve_or_missing(self, key: str) -> Any:
        """Context variables, then template globals, then the CRM functions.

        The 34 CRM names are resolved here rather than put into ``env.globals``: Jinja copies
        every global into each render's context (through a ChainMap, in pure Python), which
        would cost every render ~20 µs before any CRM call. Variables and globals of the same
        name still take precedence, as they would over a global.
        """
        if key in self.vars:
            return self.vars[key]
        if key in self.parent:
            return self.parent[key]
        return GLOBALS.get(key, missing)


def _render_state() -> RenderState:
    """The running render's state; outside a render (a macro called from Python), a state for
    this one call, so nothing is cached across calls."""
    state = _CURRENT_RENDER.get()
    return RenderState() if state is None else state


class _CrmUndefined(Undefined):
    """Adds "did you mean getCrmField?" to the error of an undefined CRM-looking name."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        message: str = super()._undefined_message
        name = self._undefined_name
        if (
            self._undefined_hint is None
            and self._undefined_obj is missing
            and isinstance(name, str)
            and _CRM_LOOKING.search(name)
        ):
            return message + misspelling_hint(name)
        return message


def misspelling_hint(name: str) -> str:
    """``; did you mean getCrmField?`` for a CRM-looking name that is not a CRM function."""
    match = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.6)
    if match:
        return f"; did you mean {match[0]}?"
    return "; it is not a CRM function (they are: " + ", ".join(FUNCTIONS) + ")"


def _scoped(environment: Environment) -> None:
    """Install the render-scoped template and context classes and the misspelling hint
    (idempotent)."""
    if not issubclass(environment.context_class, _RenderScoped):
        base = environment.context_class
        environment.context_class = type(f"Crm{base.__name__}", (_RenderScoped, base), {})
    if not issubclass(environment.template_class, RenderScopedTemplate):
        base_t = environment.template_class
        environment.template_class = type(
            f"Crm{base_t.__name__}", (RenderScopedTemplate, base_t), {}
        )
    install_generator(environment)
    if not issubclass(environment.undefined, _CrmUndefined):
        base_u = environment.undefined
        environment.undefined = type(
            f"Crm{base_u.__name__}", (_CrmUndefined, base_u), {"__slots__": ()}
        )


# --- resolving the service and the customer -------------------------------------------------


def _customer_id(context: Context) -> str | None:
    cid = context.get("customer_id")
    if type(cid) is str and cid:  # the common case, first: this runs on every call
        return cid
    if cid is None or cid == "" or isinstance(cid, Undefined):
        customer = context.get("customer")
        if isinstance(customer, Mapping):
            cid = customer.get("id")
        elif customer is not None and not isinstance(customer, Undefined):
            cid = getattr(customer, "id", None)
        else:
            cid = None
    if isinstance(cid, int) and not isinstance(cid, bool):
        cid = str(cid)
    if isinstance(cid, str) and cid:
        return cid
    hook: ContextCustomer | None = getattr(context.environment, "crm_context_customer", None)
    return None if hook is None else _as_customer_id(hook(context))


def _as_customer_id(value: Any) -> str | None:
    """What a ``context_customer`` callable answered, as a customer id (``None``: none)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise CrmUsageError(
            f"the context_customer callable must return a customer id (str) or None; got "
            f"{type(value).__name__}"
        )
    return value


def _service(context: Context, state: RenderState) -> tuple[Crm, str | None]:
    """The request's (or the environment's) service bound to the render context's customer,
    and that customer's id."""
    own = _customer_id(context)
    cid = own
    root = state.root
    if cid is None and root is not None and root is not context:
        # A macro of a template imported without context: its context has none of the
        # render's variables, and it reads for the customer of the render calling it.
        cid = _customer_id(root)
    bound = state.bound
    env = context.environment
    if bound is not None and bound[1] == own and bound[4] == cid:
        if bound[0] is context:
            return bound[2], bound[3]  # the same context again: skip request_crm() and bind()
        if bound[0].environment is env:
            # Another context of this render (a block's, a loop's) naming the same customers:
            # the same service, which the cached-read fast path may now use for this context.
            state.bound = (context, own, bound[2], bound[3], cid)
            return bound[2], bound[3]
    request_crm: RequestCrm | None = getattr(env, "crm_request_crm", None)
    base = request_crm() if request_crm is not None else None
    if base is None:
        base = getattr(env, "crm", None)
    if base is None:
        raise CrmUsageError(
            "no CRM service is installed on this Jinja environment: call "
            "env.install_crm(Crm(open_store(...))) before rendering"
        )
    if cid is not None:
        crm = base.bind(cid)
    elif base.trusted:
        crm = base.bind()  # templates get a view, never the trusted service (crm_templates.access)
    else:
        crm = base
    customer = crm.customer_id
    state.bound = (context, own, crm, customer, cid)
    return crm, customer


def template_position(context: Context | None = None) -> tuple[str, int | None]:
    """Name and line of the innermost template frame on the stack (as Jinja's debug does)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            name = template.name or template.filename or "<template>"
            return name, template.get_corresponding_lineno(frame.f_lineno)
        frame = frame.f_back
    return (context.name if context is not None and context.name else "<template>"), None


def _failed(context: Context, what: str, failure: Any, exc: Exception) -> Any:
    """The error policy: raise `CrmTemplateError`, or log with the position and return
    ``failure``."""
    name, line = template_position(context)
    where = f"{name}:{line if line is not None else '?'}"
    if getattr(context.environment, "crm_on_error", "raise") == "log":
        logger.error("%s: %s failed: %s", where, what, exc)
        return failure
    message = str(exc) if str(exc).startswith(what) else f"{what}: {exc}"
    raise CrmTemplateError(f"{where}: {message}", name, line) from exc


def _guard(context: Context, what: str, failure: Any, run: Callable[[], Any]) -> Any:
    """Run a filter under the error policy."""
    try:
        return run()
    except (CrmError, renderers.RendererError) as exc:
        return _failed(context, what, failure, exc)


# --- the CRM functions ----------------------------------------------------------------------


def _parse(spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Canonical options from a template call: one options mapping and/or keyword arguments
    (`parse_options` skips alias folding when the names are already canonical)."""
    if len(args) > 1 or (args and not (args[0] is None or isinstance(args[0], Mapping))):
        raise CrmUsageError(
            f"{spec.name} takes one options mapping and/or keyword arguments, e.g. "
            f"{spec.name}({{'slug': ...}}) or {spec.name}(slug=...); got {len(args)} positional "
            "argument(s)"
        )
    return parse_options(spec, args[0] if args else None, kwargs)


def _cached_values(
    state: RenderState, crm: Crm, customer: str | None, o: Mapping[str, Any]
) -> tuple[frozenset[str], FrozenDict] | None:
    """(declared keys, newest value of each) of an entity for the call's reference: one store
    query per entity and reference per render. None when the service should answer (no
    current customer, or options it will reject with its own message)."""
    slug = o["slug"]
    rtype = o.get("referenceType", "customer")
    rid = o.get("referenceId")
    if rid is None:
        if rtype != "customer" or customer is None:
            return None
        rid = customer
    key = (slug, rtype, rid, "values")
    try:
        hit = state.cache.get(key)
    except TypeError:  # an unhashable option value: the service will reject it
        return None
    if hit is None:
        entity = crm.get_entity(slug)  # validates the slug (UnknownEntityError)
        check_reference(rtype, rid)
        # Straight to the store: the entity, its keys and the reference are validated above,
        # and this is the one query every read of this entity in the render shares.
        declared = entity.field_keys
        found = crm.store.latest_values(slug, rtype, rid, declared)
        hit = state.cache[key] = (
            frozenset(declared),
            freeze({k: found.get(k) for k in declared}),
        )
    return hit


# Reference pairs `check_reference` accepted lately (strings only, no data; bounded): most
# renders prefetch for a customer whose id was checked on an earlier request.
_VALID_REFERENCES: dict[tuple[str, str], None] = {}
_VALID_REFERENCES_MAX = 4096


def _start_render(context: Context, state: RenderState) -> None:
    """At a render's first context: fetch every value its compiled read plan names for the
    render's customer in one store round trip, into the render's read cache (with the entity
    versions too when the render folds in `Crm.refresh_entities`). Anything the prefetch cannot
    serve is left to the lazy path, which reports errors where the template reads."""
    template, state.start = state.start, None
    reads, listings = resolve_all(template) if template is not None else ([], [])
    if not reads and not listings and not state.refresh:
        return
    try:
        crm, customer = _service(context, state)
    except CrmError:
        return  # no service installed, a bad customer id: the first read says so
    if _prefetch(state, crm, customer, reads, listings=listings) is None and state.refresh:
        crm.refresh_entities()


def _planned_listings(
    state: RenderState, crm: Crm, customer: str | None, listings: Sequence[Listing]
) -> list[tuple[tuple[Any, ...], ListingQuery]]:
    """The planned listings (GetCrmEntries / GetCrmFieldValues with constant options, for the
    render's customer) this render has not read yet, each with its render-cache key — the key
    `_read` uses for the same call — and the query the service checked it into. A listing the
    service refuses (an unknown entity or key, a bad limit) is left to the lazy path, which
    reports it where the template calls it."""
    out: list[tuple[tuple[Any, ...], ListingQuery]] = []
    if customer is None:
        return out  # no customer: the functions answer [] without reading
    for function, slug, key, limit in listings:
        given = missing if limit is None else limit
        cache_key = (slug, "customer", customer, key, _limit_key(given), function)
        if cache_key in state.cache:
            continue
        # The render's customer named explicitly: the page server prefetches with its
        # unbound service, before the render binds one to the session customer.
        options: dict[str, Any] = {
            "slug": slug,
            "referenceType": "customer",
            "referenceId": customer,
        }
        if key is not None:
            options["fieldKey"] = key
        if limit is not None:
            options["limit"] = limit
        try:
            # Folding the refresh in, a cached definition is checked by the versions read in
            # the same round trip (`_prefetch` drops the answer of a changed one), as for
            # values: no entity read of its own first.
            query = crm.listing_query(function, options, known=state.refresh)
        except CrmError:
            continue
        if query is not None:
            out.append((cache_key, query))
    return out


def _limit_key(limit: Any) -> Any:
    """A listing's ``limit`` (``missing``: none given) as its render-cache key holds it: an
    int or ``missing`` as itself, anything else tagged with its type. A cached answer may only
    answer calls the service accepts alike; as dict keys alone ``limit=True`` would be the
    same call as ``limit=1``, ``limit=2.0`` as ``limit=2`` (the service refuses both), and
    ``limit=None`` (refused) the same as no limit."""
    if limit is missing or type(limit) is int:
        return limit
    return (type(limit), limit)


def _prefetch(
    state: RenderState,
    crm: Crm,
    customer: str | None,
    reads: Sequence[tuple[Any, ...]],
    customer_record: bool = False,
    listings: Sequence[Listing] = (),
) -> Prefetched | None:
    """The prefetch of `_start_render` (and `prefetch_page`, which also reads the customer's
    record); None when it did not reach the store."""
    wanted: list[tuple[tuple[Any, ...], Entity, list[str]]] = []
    checked: set[tuple[str, str]] = set()
    for slug, rtype, rid in reads:
        if rid is None:
            if customer is None:
                continue
            rtype, rid = "customer", customer
        key = (slug, rtype, rid, "values")
        if key in state.cache:
            continue
        try:
            # Folding the refresh in: a cached definition is checked by the versions read in
            # the same round trip (a changed one is dropped with its values, below).
            entity = (crm.known_entity(slug) if state.refresh else None) or crm.get_entity(slug)
            if (rtype, rid) not in checked and (rtype, rid) not in _VALID_REFERENCES:
                check_reference(rtype, rid)
                checked.add((rtype, rid))
        except CrmError:
            continue  # an unknown entity or bad reference: the read itself reports it
        wanted.append((key, entity, entity.field_keys))
    with_customer = customer if customer_record else None
    listed = _planned_listings(state, crm, customer, listings) if listings else []
    if not wanted and not listed and not state.refresh and with_customer is None:
        return None
    try:
        answer = crm.store.prefetch_values(
            [(k[0], k[1], k[2], keys) for k, _, keys in wanted],
            entity_versions=state.refresh,
            customer=with_customer,
            listings=[tuple(query) for _, query in listed] if listed else (),  # type: ignore[misc]
        )
    except CrmError:
        return None  # the lazy path reads (and reports a failing store) call by call
    if len(_VALID_REFERENCES) + len(checked) > _VALID_REFERENCES_MAX:
        _VALID_REFERENCES.clear()  # bounded: no growth with the number of customers (M1)
    _VALID_REFERENCES.update(dict.fromkeys(checked))
    versions = answer.versions
    dropped = crm.apply_entity_versions(versions) if versions is not None else set()
    for (key, entity, declared), values in zip(wanted, answer.values, strict=True):
        if entity.slug in dropped:
            continue  # defined differently now: the lazy path reads the new definition
        if all(type(v) in _SCALARS or v is None for v in values.values()):
            frozen = FrozenDict({k: values.get(k) for k in declared})  # nothing to freeze inside
        else:
            frozen = freeze({k: values.get(k) for k in declared})
        state.cache[key] = (frozenset(declared), frozen)
    if listed:
        for (key, query), entries in zip(listed, answer.listings, strict=True):
            if entries is not None and query.entity not in dropped:
                state.cache[key] = freeze(crm.listing_answer(query, entries))
    return answer


def _read(
    state: RenderState, crm: Crm, customer: str | None, spec: FunctionSpec, o: dict[str, Any]
) -> Any:
    """A read served from the render cache where possible; the service answers everything else
    (and raises its precise errors for bad options)."""
    name = spec.name
    if "async" in o and type(o["async"]) is not bool:
        return freeze(getattr(crm, spec.method)(o))  # the service rejects it, with its message
    if name == "GetCrmField":
        hit = _cached_values(state, crm, customer, o)
        key = o["fieldKey"]
        if hit is not None and type(key) is str and key in hit[0]:
            return hit[1][key]
    elif name == "GetCrmFields":
        hit = _cached_values(state, crm, customer, o)
        keys = o["fieldKeys"]
        if (
            hit is not None
            and isinstance(keys, list | tuple)
            and keys
            and all(type(k) is str and k in hit[0] for k in keys)
        ):
            return {k: hit[1][k] for k in keys}
    else:  # GetCrmEntries, GetCrmFieldValues: cached per slug, reference, key and limit
        rid = o.get("referenceId")
        cache_key = (
            o["slug"],
            o.get("referenceType", "customer"),
            customer if rid is None else rid,
            o.get("fieldKey"),
            _limit_key(o.get("limit", missing)),
            name,
        )
        try:
            if cache_key not in state.cache:
                state.cache[cache_key] = freeze(getattr(crm, spec.method)(o))
            return state.cache[cache_key]
        except TypeError:  # unhashable option values: let the service answer (and reject)
            pass
    return freeze(getattr(crm, spec.method)(o))


def _touched(spec: FunctionSpec, o: Mapping[str, Any]) -> list[str] | None:
    """The slugs a write may change (``None``: any)."""
    if spec.name == "MoveCrmToEntity":
        return [o["fromSlug"], o["toSlug"]]
    if spec.name == "ReassignCrmReference" or not isinstance(o.get("slug"), str):
        return None
    return [o["slug"]]


_GET_FIELD = FUNCTIONS["GetCrmField"]
_SANDBOX_CALL = SandboxedEnvironment.call


def _cached_field(context: Context, kwargs: dict[str, Any]) -> Any:
    """``GetCrmField(slug=..., fieldKey=...)`` answered straight from this render's cache, or
    ``missing`` to take the general path.

    The commonest call on a page, so it skips option parsing and service lookup when their
    results are already known: same context, same ``customer_id``, the entity's values cached.
    """
    if len(kwargs) != 2:
        return missing
    return _cached_value(context, kwargs.get("slug"), kwargs.get("fieldKey"))


def _cached_value(context: Context, slug: Any, key: Any) -> Any:
    """`_cached_field` with the options unpacked (``missing``: take the general path)."""
    state = _CURRENT_RENDER.get()
    if state is None:
        return missing
    bound = state.bound
    if bound is None or bound[0] is not context or bound[3] is None:
        return missing
    cid = context.vars.get("customer_id", missing)
    if cid is missing:
        cid = context.parent.get("customer_id")
    # No customer_id string: the customer comes from a ``customer`` variable or the
    # context_customer hook, either of which may have changed since the cached lookup
    # (``{% set customer = … %}``): ask as `_service` does (a hook's bad answer: the general
    # path reports it under the error policy). A context with neither — a macro module's, the
    # common case — names no customer, without asking.
    if (type(cid) is not str or not cid) and (
        cid is not None
        or "customer" in context.vars
        or "customer" in context.parent
        or context.environment.crm_context_customer is not None  # type: ignore[attr-defined]
    ):
        try:
            cid = _customer_id(context)
        except CrmError:
            return missing
    if cid != bound[1]:
        return missing
    root = state.root
    # A macro imported without context reads for the render's customer: the render may have
    # changed it ({% set customer_id = ... %}) since the cached lookup.
    if cid is None and root is not None and root is not context and _customer_id(root) != bound[4]:
        return missing
    if type(slug) is not str or type(key) is not str:
        return missing
    hit = state.cache.get((slug, "customer", bound[3], "values"))
    if hit is None or key not in hit[0]:
        return missing
    return hit[1][key]


def fast_field(
    context: Context,
    obj: Any,
    slug: str,
    key: str,
    style: str,
    loop_vars: dict[str, Any] | None = None,
    block_vars: dict[str, Any] | None = None,
) -> Any:
    """``GetCrmField(slug='…', fieldKey='…')`` with constant arguments, as compiled by
    `crm_templates.compiled_reads` (issue 14, item 1): when ``obj`` is the CRM function and the
    sandbox allows calling it, the value comes from the render's cache (or `invoke`) without
    Jinja's call machinery — the same answer the call would give. Anything else ``obj`` may be
    (a variable or global shadowing the name) goes through Jinja's own call. ``style``:
    ``"kw"`` or ``"dict"``, how the template passed the options; ``loop_vars``/``block_vars``:
    what Jinja passes a call in a loop or block (the function's context is derived from them,
    as `jinja2.runtime.Context.call` does)."""
    env = context.environment
    if (obj is _GET_FIELD_PASCAL or obj is _GET_FIELD_CAMEL) and (
        not env.sandboxed
        or (
            # A sandbox whose ``call`` is its own (a subclass's policy, or one set on the
            # instance as the playground's bounds are) decides every call itself.
            "call" not in env.__dict__
            and type(env).call is _SANDBOX_CALL  # type: ignore[attr-defined]
            and env.is_safe_callable(obj)  # type: ignore[attr-defined]
        )
    ):
        if loop_vars:
            context = context.derived(loop_vars)
        if block_vars:
            context = context.derived(block_vars)
        value = _cached_value(context, slug, key)
        if value is not missing:
            return value
        return invoke(context, _GET_FIELD, (), {"slug": slug, "fieldKey": key})
    options: dict[str, Any] = {"slug": slug, "fieldKey": key}
    args: tuple[Any, ...] = (options,) if style == "dict" else ()
    kwargs = {} if style == "dict" else dict(options)
    if loop_vars is not None:
        kwargs["_loop_vars"] = loop_vars
    if block_vars is not None:
        kwargs["_block_vars"] = block_vars
    if env.sandboxed:
        return env.call(context, obj, *args, **kwargs)  # type: ignore[attr-defined]
    return context.call(obj, *args, **kwargs)


def invoke(
    context: Context, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Call one CRM function for a template, with caching and the error policy."""
    if spec is _GET_FIELD:
        # Keyword style, or the seed's one-dict style (also what the crm_field filter passes).
        if not args:
            value = _cached_field(context, kwargs)
        elif len(args) == 1 and not kwargs and type(args[0]) is dict:
            value = _cached_field(context, args[0])
        else:
            value = missing
        if value is not missing:
            return value
    state = _render_state()
    try:
        crm, customer = _service(context, state)
        o = _parse(spec, args, kwargs)
        if spec.kind == "read":
            return _read(state, crm, customer, spec, o)
        try:
            return getattr(crm, spec.method)(o)
        finally:
            # Even a failed write may have changed something before failing (a queued async
            # write, a retried conflict): the next read goes to the store.
            state.invalidate(_touched(spec, o))
    except (CrmError, renderers.RendererError) as exc:
        failure = spec.failure_value(str(exc))
        if spec.kind == "write":  # a logged failed write must not print into the page either
            failure = WriteResult(failure)
        return _failed(context, spec.name, failure, exc)


class CrmFunction:
    """A CRM function as a template global: ``GetCrmField({...})`` / ``GetCrmField(k=v)``.

    It holds only its name; the service comes from the render context at call time, so the
    object gives a sandboxed template nothing to reach, and it prints as its name. Write
    functions carry ``crm_write = True`` rather than Jinja's ``unsafe_callable``: the default
    sandbox allows them, and an application that wants read-only templates refuses them in
    ``is_safe_callable`` (see docs/explanation/security.md, "Template sandbox").
    """

    __slots__ = ()
    name: str
    kind: str
    crm_write: bool
    # Stated explicitly for the sandbox's is_safe_callable (and found without a failed lookup).
    unsafe_callable = False
    alters_data = False

    def __repr__(self) -> str:
        return self.name


def _function(name: str, spec: FunctionSpec) -> CrmFunction:
    @pass_context
    def call(context: Context, /, *args: Any, **kwargs: Any) -> Any:
        return invoke(context, spec, args, kwargs)

    # Jinja calls ``obj.__call__`` after checking it for pass_context; as a staticmethod that
    # is the plain function above, which keeps a call as cheap as calling a function global.
    cls = type(
        name,
        (CrmFunction,),
        {
            "__slots__": (),
            "__call__": staticmethod(call),
            "name": name,
            "kind": spec.kind,
            "crm_write": spec.kind == "write",
        },
    )
    return cls()


GLOBALS: dict[str, CrmFunction] = {
    name: _function(name, spec)
    for spec in FUNCTIONS.values()
    for name in (spec.name, spec.camel_name)
}

_GET_FIELD_PASCAL = GLOBALS["GetCrmField"]
_GET_FIELD_CAMEL = GLOBALS["getCrmField"]

# --- filters --------------------------------------------------------------------------------


def _field_of(crm: Crm, slug: Any, key: Any) -> Field:
    return _entity_field(crm.get_entity(slug), key)


def _entity_field(entity: Entity, key: Any) -> Field:
    """The entity's field ``key``; `UnknownFieldError` naming the declared keys."""
    for field in entity.fields:
        if field.key == key:
            return field
    declared = entity.field_keys
    raise UnknownFieldError(
        f"entity {entity.slug!r} declares no field {key!r}.{suggest(str(key), declared)} "
        f"Declared keys: {', '.join(declared) or 'none'}"
    )


def _is_entry(value: Any) -> bool:
    return isinstance(value, Entry) or (
        isinstance(value, Mapping) and "entity" in value and "values" in value
    )


def _entry_parts(value: Any) -> tuple[str, Mapping[str, Any]]:
    if isinstance(value, Entry):
        return value.entity, value.values
    return value["entity"], value["values"]


# The renderer's view of a declared field, made once per entity definition (an `Entity` is
# immutable and replaced when it changes; bounded: starts over when full).
_FIELD_INFOS: dict[tuple[int, str], tuple[Entity, renderers.FieldInfo]] = {}
_FIELD_INFOS_KEPT = 1024


def _field_info(crm: Crm, slug: Any, key: Any) -> renderers.FieldInfo:
    """`renderers.FieldInfo` of the entity's field ``key`` (``source``: the `Field`); raises
    as `_field_of` does."""
    entity = crm.get_entity(slug)
    if type(key) is str:
        found = _FIELD_INFOS.get((id(entity), key))
        if found is not None and found[0] is entity:
            return found[1]
    info = renderers.FieldInfo.of(_entity_field(entity, key))
    if len(_FIELD_INFOS) >= _FIELD_INFOS_KEPT:
        _FIELD_INFOS.clear()
    _FIELD_INFOS[(id(entity), info.key)] = (entity, info)
    return info


def _render_options(
    context: Context, state: RenderState, crm: Crm, field: Any
) -> renderers.RenderOptions:
    base = getattr(context.environment, "crm_render_options", None) or renderers.RenderOptions()
    info = renderers.FieldInfo.of(field)
    if info.type not in ("reference", "multi_reference") or base.reference_labels is not None:
        return base
    field = info.source if info.source is not None else field
    display = field.get("display_field") if isinstance(field, Mapping) else None
    if not isinstance(field, Mapping):
        display = getattr(field, "display_field", None)

    def labels(target: str, ids: Sequence[str]) -> Mapping[str, str]:
        # One batched look-up per call, only for entries this render has not fetched yet.
        known: dict[str, Entry | None] = state.cache.setdefault((target, "entries-by-id"), {})
        wanted = [i for i in ids if i not in known]
        if wanted:
            found = crm.get_entries_by_ids(wanted)
            # Another customer's entry shows as its bare id (crm_templates.access).
            owner = crm.customer_id
            for ident in wanted:
                entry = found.get(ident)
                if entry is not None and (
                    entry.entity != target or not (crm.trusted or may_reach(entry, owner))
                ):
                    entry = None
                known[ident] = entry
        out = {}
        for ident in ids:
            entry = known[ident]
            shown = entry.values.get(display) if entry is not None and display else None
            if shown not in (None, ""):
                out[ident] = str(shown)
            else:
                out[ident] = entry.title or ident if entry is not None else ident
        return out

    return replace(base, reference_labels=labels)


def _render(context: Context, value: Any, field: Any, html: bool) -> Any:
    state = _render_state()
    crm = _service(context, state)[0]
    if isinstance(field, str):
        if _is_entry(value):
            slug, values = _entry_parts(value)
            raw = values.get(field)
        elif isinstance(value, str):
            slug = value
            raw = invoke(
                context, FUNCTIONS["GetCrmField"], ({"slug": slug, "fieldKey": field},), {}
            )
        else:
            raise CrmUsageError(
                f"crm_render({field!r}) needs an entry or an entity slug on its left; got "
                f"{type(value).__name__}"
            )
        definition: Any = _field_info(crm, slug, field)
    elif field is None or isinstance(field, Undefined):
        raise CrmUsageError(
            "crm_render needs a field: {{ value | crm_render(field) }} or "
            "{{ entry | crm_render('key') }}"
        )
    else:
        definition, raw = field, value
    options = _render_options(context, state, crm, definition)
    if html:
        return renderers.render(raw, definition, options)
    return renderers.render_text(raw, definition, options)


@pass_context
def do_crm_render(context: Context, value: Any, field: Any = None) -> Markup:
    """``{{ value | crm_render(field) }}``, ``{{ entry | crm_render('key') }}`` or
    ``{{ 'slug' | crm_render('key') }}`` (the current customer's value): safe HTML."""
    return _guard(context, "crm_render", Markup(""), lambda: _render(context, value, field, True))


@pass_context
def do_crm_text(context: Context, value: Any, field: Any = None) -> str:
    """Like ``crm_render``, as plain text (autoescaped where it is printed)."""
    return _guard(context, "crm_text", "", lambda: _render(context, value, field, False))


@pass_context
def do_crm_label(context: Context, source: Any, key: str | None = None) -> str:
    """A field's label: ``{{ 'slug' | crm_label('key') }}``, ``{{ entry | crm_label('key') }}``
    or ``{{ field | crm_label }}``."""

    def run() -> str:
        if key is None:
            if isinstance(source, str | Undefined) or source is None:
                raise CrmUsageError("crm_label needs a field key: {{ 'slug' | crm_label('key') }}")
            return renderers.FieldInfo.of(source).label
        slug = _entry_parts(source)[0] if _is_entry(source) else source
        return _field_of(_service(context, _render_state())[0], slug, key).label

    return _guard(context, "crm_label", "", run)


def _find_stage(entity: Entity, wanted: str, by_slug: bool) -> Stage | None:
    for pipeline in entity.pipelines:
        for stage in pipeline.stages:
            if stage.id == wanted or (by_slug and stage.slug == wanted):
                return stage
    return None


def stage_badge(stage: Stage) -> Markup:
    """``<span class="crm-stage crm-stage-<status>">``, with ``style="--crm-stage-color:…"``
    only for a colour that parses as a CSS colour; the attribute holds the parser's
    re-serialisation (`crm_templates.colours.css_colour`), never the stored text."""
    status = stage.semantic_status if stage.semantic_status in _STATUSES else "open"
    style = Markup("")
    colour = css_colour(stage.color)
    if colour is not None:
        style = Markup(' style="--crm-stage-color:{}"').format(colour)
    return Markup('<span class="crm-stage crm-stage-{}"{}>{}</span>').format(
        status, style, stage.name
    )


@pass_context
def do_crm_stage(context: Context, value: Any, slug: str | None = None) -> Markup:
    """A stage badge: ``{{ entry | crm_stage }}`` or ``{{ stage_id | crm_stage('deals') }}``."""

    def run() -> Markup:
        crm = _service(context, _render_state())[0]
        if _is_entry(value):
            entity_slug = _entry_parts(value)[0]
            stage_id = value.stage_id if isinstance(value, Entry) else value.get("stage_id")
            if not stage_id:
                return Markup("")
            stage = _find_stage(crm.get_entity(entity_slug), stage_id, by_slug=False)
            return Markup("") if stage is None else stage_badge(stage)
        if not isinstance(value, str) or not value:
            return Markup("")
        entities = [crm.get_entity(slug)] if slug is not None else crm.list_entities()
        for entity in entities:
            stage = _find_stage(entity, value, by_slug=slug is not None)
            if stage is not None:
                return stage_badge(stage)
        raise CrmValidationError(
            f"no stage {value!r}" + (f" in entity {slug!r}" if slug else "") + "; pass a stage "
            "id, or an entity slug as well for a stage slug: {{ 'won' | crm_stage('deals') }}"
        )

    return _guard(context, "crm_stage", Markup(""), run)


@pass_context
def do_crm_field(context: Context, slug: Any, key: Any, **options: Any) -> Any:
    """``{{ 'slug' | crm_field('key') }}``: GetCrmField on a slug."""
    if not options:
        value = _cached_value(context, slug, key)  # what invoke's cached path answers
        if value is not missing:
            return value
    return invoke(context, FUNCTIONS["GetCrmField"], ({"slug": slug, "fieldKey": key},), options)


@pass_context
def do_crm_fields(context: Context, slug: Any, keys: Any, **options: Any) -> Any:
    """``{{ 'slug' | crm_fields(['a', 'b']) }}``: GetCrmFields on a slug."""
    return invoke(context, FUNCTIONS["GetCrmFields"], ({"slug": slug, "fieldKeys": keys},), options)


@pass_context
def do_crm_entries(context: Context, slug: Any, limit: Any = None, **options: Any) -> Any:
    """``{{ 'slug' | crm_entries(limit=5) }}``: GetCrmEntries on a slug."""
    o: dict[str, Any] = {"slug": slug} if limit is None else {"slug": slug, "limit": limit}
    return invoke(context, FUNCTIONS["GetCrmEntries"], (o,), options)


@pass_context
def do_crm_field_values(
    context: Context, slug: Any, key: Any, limit: Any = None, **options: Any
) -> Any:
    """``{{ 'slug' | crm_field_values('key', limit=10) }}``: GetCrmFieldValues on a slug."""
    o: dict[str, Any] = {"slug": slug, "fieldKey": key}
    if limit is not None:
        o["limit"] = limit
    return invoke(context, FUNCTIONS["GetCrmFieldValues"], (o,), options)


FILTERS: dict[str, Callable[..., Any]] = {
    "crm_render": do_crm_render,
    "crm_text": do_crm_text,
    "crm_label": do_crm_label,
    "crm_stage": do_crm_stage,
    "crm_field": do_crm_field,
    "crm_fields": do_crm_fields,
    "crm_entries": do_crm_entries,
    "crm_field_values": do_crm_field_values,
}


# --- printing ---------------------------------------------------------------------------------


def none_as_empty(value: Any) -> Any:
    """A Jinja ``finalize`` that prints ``None`` as nothing (everything else unchanged).

    ``GetCrmField`` answers ``None`` for a value that is not set, and under
    ``on_error="log"`` for a failed read; Jinja prints that as the text ``None``. The page
    server's environment uses this (issue 9, item 4). The extension does not install it on an
    environment the application made — it would change how every ``{{ }}`` of the
    application prints — so pass it yourself::

        env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True,
                                   finalize=none_as_empty)
    """
    return "" if value is None else value


# --- the extension --------------------------------------------------------------------------


class CrmExtension(Extension):
    """Registers the CRM globals and filters, ``{% do %}``, and ``env.install_crm``."""

    # ``{% do %}`` as in jinja2.ext.do, so pages can call writes without printing.
    tags = {"do"}

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.extend(
            crm=None,
            crm_on_error="raise",
            crm_request_crm=None,
            crm_render_options=None,
            crm_context_customer=None,
            install_crm=self._install,
            # The CRM functions every template can call (resolved by the render context).
            crm_globals=GLOBALS,
        )
        environment.filters.update(FILTERS)
        _scoped(environment)

    def bind(self, environment: Environment) -> CrmExtension:
        """The extension for an ``env.overlay()``: its ``install_crm`` installs on the overlay
        (Jinja copies attributes, so the copied one would install on the original)."""
        bound = super().bind(environment)
        assert isinstance(bound, CrmExtension)
        environment.install_crm = bound._install  # type: ignore[attr-defined]
        _scoped(environment)
        return bound

    def _install(
        self,
        crm: Crm | None,
        on_error: OnError = "raise",
        request_crm: RequestCrm | None = None,
        render_options: renderers.RenderOptions | None = None,
        context_customer: ContextCustomer | None = None,
    ) -> None:
        """Use ``crm`` (or, per call, ``request_crm()`` when it returns a service).

        ``context_customer(context)``, when given, names the customer of a render whose context
        has no ``customer_id``/``customer`` variable: it gets the Jinja render context and
        returns a customer id or None (ints are taken as their text). The Starlette integration
        uses it to read the customer from the context's ``request`` (issue 11, item 2).
        """
        if on_error not in ("raise", "log"):
            raise ValueError(f"on_error must be 'raise' or 'log'; got {on_error!r}")
        if crm is None and request_crm is None:
            raise ValueError("install_crm needs a Crm service, a request_crm callable, or both")
        env = self.environment
        env.crm = crm  # type: ignore[attr-defined]
        env.crm_on_error = on_error  # type: ignore[attr-defined]
        env.crm_request_crm = request_crm  # type: ignore[attr-defined]
        env.crm_render_options = render_options  # type: ignore[attr-defined]
        env.crm_context_customer = context_customer  # type: ignore[attr-defined]
        _scoped(env)  # again, in case context_class/undefined were replaced since

    def parse(self, parser: Parser) -> nodes.Node:
        node = nodes.ExprStmt(lineno=next(parser.stream).lineno)
        node.node = parser.parse_tuple()
        return node


__all__ = [
    "FILTERS",
    "GLOBALS",
    "CrmExtension",
    "CrmFunction",
    "CrmTemplateError",
    "FrozenDict",
    "FrozenList",
    "PagePrefetch",
    "RenderScopedTemplate",
    "RenderState",
    "current_render_state",
    "fast_field",
    "fold_entity_refresh",
    "freeze",
    "misspelling_hint",
    "none_as_empty",
    "prefetch_page",
    "stage_badge",
]
