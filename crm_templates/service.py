"""The `Crm` service: every CRM function of SPEC §5, with its semantics, in one place.

Each public method takes one options object — a mapping, keyword arguments, or both — exactly
like the template functions (``crm.set_field({'slug': 'x', 'fieldKey': 'y', 'value': 1})`` or
``crm.set_field(slug='x', field_key='y', value=1)``). Seed names dispatch through `Crm.call`.

The current customer (the default ``referenceId``) comes from `Crm.bind`: a customer id, or a
provider ``(create: bool) -> str | None`` that the page server uses to create an anonymous
customer on the first write. Reads without a customer return the empty result; writes without
one raise `MissingOptionError` unless a provider can create one.

`Crm(store)` itself is for trusted Python code; the views `Crm.bind` makes (for templates and
page backends) are limited by `crm_templates.access`: read-only previews, and the reassign rule.
"""

from __future__ import annotations

import enum
import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from . import events, fast_writes
from . import webhooks as _webhooks  # importing it connects the receiver that queues webhooks
from .access import (
    REASSIGN_REFUSALS,
    IdSource,
    ReassignRule,
    may_reach,
    preview_message,
    read_only_store,
)
from .conflicts import deadline_of, retry_conflicts
from .errors import (
    ConflictError,
    CrmUsageError,
    CrmValidationError,
    DuplicateError,
    EntryNotFoundError,
    MissingOptionError,
    PreviewError,
    StaleEntryError,
    UnknownEntityError,
    UnknownFieldError,
    UnknownFunctionError,
)
from .functions import BY_NAME, FUNCTIONS, FunctionSpec, parse_options, suggest
from .ids import new_id, utc_now
from .model import REFERENCE_TYPES, Customer, Entity, Entry, Field, Pipeline, Stage
from .presets import apply_preset
from .schema import build_entity, check_slug, check_unicode, parse_fields, parse_pipelines
from .stage_history import changes as stage_changes
from .stage_history import customer_actor
from .storage.base import Store
from .values import check_plain_string, check_reference, check_reference_cached, coerce, shown
from .writer import AsyncWriter, FailedWrite, PendingWrite

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
CustomerProvider = Callable[[bool], "str | None"]
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
SCAN_DEPTH = 100  # SetCrmField without force looks this far back for an entry holding the key
_FIELD_ITEM_KEYS = ("fieldKey", "field_key", "value")


_check_reference_cached = check_reference_cached  # one bounded cache, shared with fast_writes


class _Same(enum.Enum):
    CUSTOMER = "the same customer"


def _writes(method: F) -> F:
    """Marks a service method that writes without being a CRM function: a read-only view
    raises `PreviewError` instead of running it (issue 8, fault 6)."""

    @functools.wraps(method)
    def guarded(self: Crm, *args: Any, **kwargs: Any) -> Any:
        if self.read_only:
            raise PreviewError(preview_message(f"Crm.{method.__name__}()"))
        return method(self, *args, **kwargs)

    guarded.crm_writes = True  # type: ignore[attr-defined]
    return guarded  # type: ignore[return-value]


class ListingQuery(NamedTuple):
    """A checked GetCrmEntries / GetCrmFieldValues read (`Crm.listing_query`): the entity's
    entries of one reference, newest first, at most ``limit`` of them; with ``key`` (the
    GetCrmFieldValues field) only those holding it."""

    entity: str
    reference_type: str
    reference_id: str
    key: str | None
    limit: int


class WriteResult(dict[str, Any]):
    """A write's result mapping that prints as nothing: ``{{ SetCrmField(...) }}`` adds no text.

    It is falsy exactly when ``ok`` is false (a refused preview write, a move with nothing to
    move, a failure returned by the ``log`` error policy), so ``{% if SetCrmField(...) %}``
    tests success (issue 9, item 4); a plain dict would be truthy whenever it has keys.
    """

    __slots__ = ()

    def __bool__(self) -> bool:
        return self.get("ok") is not False

    def __str__(self) -> str:
        return ""

    def __html__(self) -> str:
        return ""


@dataclass(frozen=True)
class _Schema:
    entity: Entity
    fields: dict[str, Field]
    loaded: float
    has_references: bool = False


class _Shared:
    """State shared by a service and every `bind()` copy of it."""

    def __init__(self, store: Store, writer: AsyncWriter, cache_seconds: float) -> None:
        self.store = store
        self.writer = writer
        self.cache_seconds = cache_seconds
        self.schemas: dict[str, _Schema] = {}
        self.lock = threading.Lock()


class Crm:
    """The CRM service over one store.

    Constructed directly it is trusted (for Python code: the server's sign-in flow, the CLI);
    ``read_only=True`` makes it refuse every write, as a preview does.
    """

    def __init__(
        self,
        store: Store,
        *,
        customer: str | CustomerProvider | None = None,
        read_only: bool = False,
        batch_size: int = 500,
        entity_cache_seconds: float = 2.0,
        failure_log: str | Path | None = None,
    ) -> None:
        writer = AsyncWriter(store, batch_size=batch_size, failure_log=failure_log)
        _webhooks.prime(store)  # the store's webhook list, read once here, not on a write
        self._shared = _Shared(store, writer, entity_cache_seconds)
        self._customer = customer
        self.read_only = read_only
        self._store = read_only_store(store) if read_only else store
        # None: trusted, reassigns freely; views made by bind() always carry a rule.
        self._reassign: ReassignRule | None = None

    # --- binding, lifecycle ---------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store this service uses; a read-only view's refuses every write (`PreviewError`)."""
        return self._store

    @property
    def trusted(self) -> bool:
        """True for the service itself, False for every view made by `bind`."""
        return self._reassign is None

    def bind(
        self,
        customer: str | CustomerProvider | _Same | None = _Same.CUSTOMER,
        *,
        read_only: bool = False,
        reassign_from: IdSource | None = None,
        reassign_to: IdSource | None = None,
    ) -> Crm:
        """A view of this service for templates and page backends (`crm_templates.access`).

        ``customer`` is the default ``referenceId``: an id, a provider ``(create) -> id | None``,
        or None; left out, this view's customer.

        ``read_only=True`` (operator previews, ``crm-templates render``): the CRM write
        functions return ``{ok: False, error: 'preview', preview: True, message}``, the other
        writing methods raise `PreviewError`, and ``store`` refuses every write. A view of a
        read-only view is read-only whatever ``read_only`` says.

        ReassignCrmReference through a view may only move ``("customer", reassign_from())``
        (the session's own anonymous visitor) onto ``("customer", reassign_to())`` (the current
        signed-in customer; by default the customer bound here), else it returns
        ``{ok: False, error: 'forbidden' | 'forbidden_target'}`` and moves nothing. Without
        ``reassign_from`` no reassign is allowed. Both can only be given when binding the
        service itself (`CrmUsageError` otherwise): a view of a view keeps its rule.
        """
        if (reassign_from is not None or reassign_to is not None) and self._reassign is not None:
            raise CrmUsageError(
                "reassign_from and reassign_to can only be given when binding the service "
                "itself; a view keeps the reassign rule it was made with"
            )
        # A shallow copy by hand: copy.copy's reduce protocol is several times slower, and the
        # page server binds once per request and the template extension once per render.
        view = object.__new__(Crm)
        view.__dict__.update(self.__dict__)
        if customer is not _Same.CUSTOMER:
            view._customer = customer
        if self._reassign is None:
            view._reassign = ReassignRule(reassign_from, reassign_to, view._customer)
        if read_only and not self.read_only:
            view.read_only = True
            view._store = read_only_store(self._store)
        return view

    @property
    def customer_id(self) -> str | None:
        """The bound customer's id, without creating one."""
        return self._current_customer(create=False)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for every queued async write; False if ``timeout`` ran out first."""
        return self._shared.writer.flush(timeout)

    @property
    def failed_writes(self) -> list[FailedWrite]:
        """Async writes that could not be applied (also logged)."""
        return list(self._shared.writer.failures)

    def close(self) -> None:
        """Drain async writes and close the store.

        A read-only view (a preview) raises `PreviewError` instead: the store is shared.
        """
        if self.read_only and not self.trusted:
            raise PreviewError(preview_message("Crm.close()"))
        self._shared.writer.close()
        self._shared.store.close()

    def __enter__(self) -> Crm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- dispatch -------------------------------------------------------------------------

    def call(self, name: str, options: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Any:
        """Call a CRM function by its seed name (``SetCrmField`` or ``setCrmField``)."""
        spec = BY_NAME.get(name)
        if spec is None:
            raise UnknownFunctionError(
                f"there is no CRM function {shown(name)}.{suggest(name, list(BY_NAME))}"
            )
        method: Callable[..., Any] = getattr(self, spec.method)
        return method(options, **kwargs)

    # --- schema ---------------------------------------------------------------------------

    def _schema(self, slug: Any) -> _Schema:
        if not isinstance(slug, str):
            raise CrmValidationError(f"slug must be a string; got {shown(slug)}")
        shared = self._shared
        cached = shared.schemas.get(slug)
        now = time.monotonic()
        if cached is not None and now - cached.loaded < shared.cache_seconds:
            return cached
        entity = self.store.get_entity(slug)
        if entity is None:
            known = [e.slug for e in self.store.list_entities()]
            raise UnknownEntityError(
                f"no CRM entity {shown(slug)}.{suggest(slug, known)} Known entities: "
                f"{', '.join(known) or 'none'} (create it with EnsureCrmEntity)"
            )
        schema = _Schema(
            entity,
            {f.key: f for f in entity.fields},
            now,
            any(f.type in REFERENCE_TYPES for f in entity.fields),
        )
        with shared.lock:
            shared.schemas[slug] = schema
        return schema

    def _forget_schema(self, slug: str) -> None:
        with self._shared.lock:
            self._shared.schemas.pop(slug, None)

    def forget_entity(self, slug: str) -> None:
        """Drop the cached definition of ``slug`` (this service and all its views): the next
        call reads it from the store. `crm_templates.entity_admin` calls it after each edit."""
        self._forget_schema(slug)

    def refresh_entities(self) -> None:
        """Drop cached entity definitions that changed in the store since they were read —
        by another process too (issue 12, item 2: an admin edit is seen by every process of a
        site at its next request, not after ``entity_cache_seconds``). One store query
        (`Store.entity_versions`); the page server calls it once per page request."""
        if not self._shared.schemas:
            return
        self.apply_entity_versions(self._store.entity_versions())

    def apply_entity_versions(self, versions: Mapping[str, int]) -> set[str]:
        """`refresh_entities` with the versions already read (``Store.entity_versions``, or
        the compiled reads' prefetch, which reads them in the same round trip): drops each
        cached definition whose stored version differs and counts the others as just read
        (their ``entity_cache_seconds`` start again). Returns the slugs dropped."""
        shared = self._shared
        dropped: set[str] = set()
        now = time.monotonic()
        with shared.lock:
            for slug, schema in list(shared.schemas.items()):
                if versions.get(slug) != schema.entity.version:
                    del shared.schemas[slug]
                    dropped.add(slug)
                else:
                    shared.schemas[slug] = replace(schema, loaded=now)
        return dropped

    def known_entity(self, slug: str) -> Entity | None:
        """The cached definition of ``slug`` however old, or None: for a caller that checks
        its version in the same round trip (`apply_entity_versions`)."""
        schema = self._shared.schemas.get(slug)
        return None if schema is None else schema.entity

    def get_entity(self, slug: str) -> Entity:
        """The entity with this slug (`UnknownEntityError` if there is none)."""
        return self._schema(slug).entity

    def list_entities(self) -> list[Entity]:
        """Every entity, by slug."""
        return self.store.list_entities()

    @staticmethod
    def _field(schema: _Schema, key: Any, option: str = "fieldKey") -> Field:
        if not isinstance(key, str):
            raise CrmValidationError(f"{option} must be a string; got {shown(key)}")
        field = schema.fields.get(key)
        if field is None:
            declared = list(schema.fields)
            raise UnknownFieldError(
                f"entity {shown(schema.entity.slug)} declares no field {shown(key)}."
                f"{suggest(key, declared)} Declared keys: {', '.join(declared) or 'none'}"
            )
        return field

    # --- option helpers -------------------------------------------------------------------

    def _current_customer(self, *, create: bool) -> str | None:
        customer = self._customer
        if customer is None or isinstance(customer, str):
            return customer
        return customer(create)

    def _reference(self, o: Mapping[str, Any], *, write: bool) -> tuple[str, str] | None:
        """The (referenceType, referenceId) pair, defaulting to the current customer."""
        rtype = o.get("referenceType", "customer")
        rid = o.get("referenceId")
        if rid is None:
            if rtype != "customer":
                raise MissingOptionError(
                    f"referenceId is required when referenceType is {shown(rtype)} (only "
                    "'customer' defaults to the current customer)"
                )
            rid = self._current_customer(create=write)
            if rid is None:
                if write:
                    raise MissingOptionError(
                        "there is no current customer: pass referenceId (and referenceType), or "
                        "render with customer_id / bind the service to a customer"
                    )
                return None
        if type(rtype) is str and type(rid) is str:
            _check_reference_cached(rtype, rid)
        else:
            check_reference(rtype, rid)  # raises its precise message
        return rtype, rid

    @staticmethod
    def _limit(o: Mapping[str, Any]) -> int:
        limit = o.get("limit", DEFAULT_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise CrmValidationError(
                f"limit must be a whole number of at least 1; got {shown(limit)}"
            )
        return min(limit, MAX_LIMIT)

    @staticmethod
    def _flag(o: Mapping[str, Any], name: str) -> bool:
        value = o.get(name, False)
        if not isinstance(value, bool):
            raise CrmValidationError(f"{name} must be true or false; got {shown(value)}")
        return value

    def _coerce(self, schema: _Schema, values: Mapping[str, Any]) -> dict[str, Any]:
        fields = schema.fields
        out = {}
        for key, value in values.items():
            field = fields.get(key) if type(key) is str else None
            out[key] = coerce(field or self._field(schema, key), value)
        if schema.has_references:
            self._check_targets(schema, out)
        return out

    def _check_targets(
        self,
        schema: _Schema,
        values: Mapping[str, Any],
        known: Mapping[str, Entry] | None = None,
    ) -> None:
        """Reference values must name existing entries of the field's target entity — for a
        view, shared entries or its own customer's (`access.may_reach`; another customer's
        entry is answered like a missing one). ``known``: entries by id to take instead of
        reading the store (an import's prefetch and its own rows)."""
        if not schema.has_references:
            return
        wanted: dict[str, str] = {}
        for key, value in values.items():
            field = schema.fields[key]
            if field.type in REFERENCE_TYPES and value is not None:
                for ident in [value] if isinstance(value, str) else value:
                    wanted[ident] = key
        if not wanted:
            return
        known = known or {}
        found = {i: known[i] for i in wanted if i in known}
        missing = [i for i in wanted if i not in found]
        if missing:
            found.update(self.store.get_entries_by_ids(missing))
        owner = None if self.trusted else self._current_customer(create=False)
        for ident, key in wanted.items():
            target = schema.fields[key].target_entity
            entry = found.get(ident)
            if (
                entry is None
                or entry.entity != target
                or (not self.trusted and not may_reach(entry, owner))
            ):
                raise EntryNotFoundError(
                    f"field {shown(key)} references {shown(ident)}, which is not an entry of "
                    f"{shown(target)}"
                )

    def _now(self) -> str:
        return utc_now()

    def _new_entry(
        self,
        schema: _Schema,
        ref: tuple[str, str],
        values: dict[str, Any],
        *,
        title: str = "",
        placement: tuple[str | None, str | None] | None = None,
    ) -> Entry:
        now = self._now()
        pipeline_id, stage_id = placement or self._default_placement(schema.entity)
        return Entry(
            id=new_id(),
            entity=schema.entity.slug,
            reference_type=ref[0],
            reference_id=ref[1],
            values=values,
            title=title,
            pipeline_id=pipeline_id,
            stage_id=stage_id,
            created_at=now,
            updated_at=now,
        )

    @staticmethod
    def _default_placement(entity: Entity) -> tuple[str | None, str | None]:
        if entity.mode != "crm" or not entity.pipelines or not entity.pipelines[0].stages:
            return None, None
        first = entity.pipelines[0]
        return first.id, first.stages[0].id

    def _retry(self, attempt: Callable[[], T]) -> T:
        """Run a read-modify-write attempt, retrying when a concurrent writer won the race.

        Jittered exponential backoff bounded by the store's ``conflict_deadline`` (seconds,
        default 10; issue 14 item 3): see `crm_templates.conflicts`. Raises `ConflictError`
        only once that time has passed.
        """

        store = self._shared.store
        if not events.wanted(store):  # nobody wants its events: no unit, no closure
            return events.unheard(lambda: retry_conflicts(attempt, deadline_of(store)))

        def attempt_as_unit() -> T:
            # A unit per attempt: a failed attempt's uncommitted changes send no signal.
            with events.unit():
                return attempt()

        return retry_conflicts(attempt_as_unit, deadline_of(store))

    def _write(
        self,
        spec: FunctionSpec,
        o: Mapping[str, Any],
        apply: Callable[[], WriteResult],
    ) -> WriteResult:
        """Apply now, or queue on the background writer when ``async`` is true (a write that
        only inserts a new entry is queued by `_insert` itself, as data)."""
        store = self._shared.store
        if not self._flag(o, "async"):
            if not events.wanted(store):  # nobody wants its events: no actor, no unit
                return events.unheard(apply)
            with events.unit(self._actor()):
                return apply()
        # Who writes, taken now: an async write runs later on the writer's thread.
        actor = self._actor()

        def run() -> WriteResult:
            if not events.wanted(store):
                return events.unheard(apply)
            with events.unit(actor):
                return apply()

        self._shared.writer.submit(PendingWrite(spec.name, dict(o), run, (), actor))
        return WriteResult(ok=True, pending=True)

    def _actor(self) -> events.Actor:
        """Who makes a write now (`events.actor_for`: `acting_as`'s actor, else this view's
        customer without creating one, else ``system``)."""
        return events.actor_for(self._current_customer(create=False))

    def _insert(self, spec: FunctionSpec, o: Mapping[str, Any], entry: Entry) -> WriteResult:
        """Write one new entry (now or queued); the id is known up front, so both return it."""
        if o.get("async") is True:
            # Queued: the writer inserts it with its neighbours, or alone when replaying
            # (``apply=None``; issue 14, B3). Who writes is taken now, as `_write` does.
            self._shared.writer.submit(
                PendingWrite(spec.name, dict(o), None, (entry,), self._actor())
            )
            return WriteResult(ok=True, pending=True, id=entry.id)

        def apply() -> WriteResult:
            self.store.insert_entries([entry])
            events.note("entry.created", self.store, entry)
            return WriteResult(ok=True, id=entry.id, created=True)

        result = self._write(spec, o, apply)
        result.setdefault("id", entry.id)
        return result

    @staticmethod
    def _preview(name: str) -> WriteResult:
        """A CRM write function's answer in a read-only view: refused, but not raised, so a
        template that writes still renders in a preview."""
        return WriteResult(ok=False, error="preview", preview=True, message=preview_message(name))

    @staticmethod
    def _opts(name: str, options: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> dict:
        return parse_options(FUNCTIONS[name], options, kwargs)

    # --- pipelines ------------------------------------------------------------------------

    @staticmethod
    def _pipeline(entity: Entity, o: Mapping[str, Any]) -> Pipeline | None:
        for option, attr in (("pipelineId", "id"), ("pipelineSlug", "slug"), ("pipeline", None)):
            if option not in o:
                continue
            value = o[option]
            for p in entity.pipelines:
                if (attr != "slug" and p.id == value) or (attr != "id" and p.slug == value):
                    return p
            known = ", ".join(f"{p.slug} ({p.id})" for p in entity.pipelines) or "none"
            raise CrmValidationError(
                f"entity {shown(entity.slug)} has no pipeline {shown(value)} ({option}); "
                f"pipelines: {known}"
            )
        return None

    @staticmethod
    def _stage(
        entity: Entity, pipeline: Pipeline | None, o: Mapping[str, Any]
    ) -> tuple[Pipeline, Stage] | None:
        for option, attr in (("stageId", "id"), ("stageSlug", "slug"), ("stage", None)):
            if option not in o:
                continue
            value = o[option]
            scope = [pipeline] if pipeline is not None else list(entity.pipelines)
            matches = [
                (p, s)
                for p in scope
                for s in p.stages
                if (attr != "slug" and s.id == value) or (attr != "id" and s.slug == value)
            ]
            if not matches:
                known = ", ".join(f"{p.slug}/{s.slug}" for p in scope for s in p.stages)
                raise CrmValidationError(
                    f"entity {shown(entity.slug)} has no stage {shown(value)} ({option}); stages: "
                    f"{known or 'none'}"
                )
            if len(matches) > 1:
                names = ", ".join(p.slug for p, _ in matches)
                raise CrmValidationError(
                    f"stage {shown(value)} is in several pipelines of {shown(entity.slug)} "
                    f"({names}); "
                    "pass pipelineSlug or pipelineId to choose one"
                )
            return matches[0]
        return None

    def _placement(
        self, entity: Entity, o: Mapping[str, Any]
    ) -> tuple[str | None, str | None] | None:
        """Pipeline and stage chosen by the options, or None when the options name neither."""
        pipeline = self._pipeline(entity, o)
        found = self._stage(entity, pipeline, o)
        if found is not None:
            return found[0].id, found[1].id
        if pipeline is not None:
            if not pipeline.stages:
                raise CrmValidationError(f"pipeline {shown(pipeline.slug)} has no stages")
            return pipeline.id, pipeline.stages[0].id
        return None

    def _checked_placement(
        self, entity: Entity, o: Mapping[str, Any]
    ) -> tuple[str | None, str | None] | None:
        """`_placement`, refusing a pipeline or stage for a data-mode entity."""
        placement = self._placement(entity, o)
        if placement is not None and entity.mode == "data":
            raise CrmValidationError(f"entity {shown(entity.slug)} is in data mode: no pipelines")
        return placement

    # --- bulk import (crm_templates.transfer; issue 11, item 5) ------------------------------

    def placement_for(
        self, slug: str, pipeline: str | None = None, stage: str | None = None
    ) -> tuple[str | None, str | None] | None:
        """The ``(pipeline_id, stage_id)`` a new entry of ``slug`` gets for a pipeline and a
        stage given by id or slug, as CreateCrmEntry's ``pipeline``/``stage`` options choose
        it; None when neither is given (the caller keeps or defaults the placement, see
        `default_placement`). Raises `CrmValidationError` for an unknown or ambiguous pipeline
        or stage, or any placement on a data-mode entity; `UnknownEntityError` for the slug."""
        o = {k: v for k, v in (("pipeline", pipeline), ("stage", stage)) if v is not None}
        return self._checked_placement(self._schema(slug).entity, o)

    def default_placement(self, slug: str) -> tuple[str | None, str | None]:
        """Where a new entry of ``slug`` lands without options: the first pipeline's first
        stage in CRM mode, ``(None, None)`` in data mode (SPEC §3)."""
        return self._default_placement(self._schema(slug).entity)

    def check_targets(
        self, slug: str, values: Mapping[str, Any], *, known: Mapping[str, Entry] | None = None
    ) -> None:
        """Check the reference values of already coerced ``values`` of ``slug``: each must be
        an entry of the field's target entity (`EntryNotFoundError` otherwise). ``known``
        holds entries by id to use instead of reading the store (e.g. an import's own rows)."""
        self._check_targets(self._schema(slug), values, known)

    # === the CRM functions ================================================================

    def ensure_entity(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> WriteResult:
        """EnsureCrmEntity: create an entity, or add only its missing fields and pipelines.

        ``preset: 'leads' | 'contacts' | 'deals'`` supplies that kind's standard fields and
        pipeline; explicit ``fields``/``pipelines`` add to them (`crm_templates.presets`;
        issue 9, item 8). ``async``, ``referenceType`` and ``referenceId`` are accepted, as on
        every seed function, and ignored: the entity is always ensured before this returns.
        """
        o = self._opts("EnsureCrmEntity", options, kwargs)
        if self.read_only:
            return self._preview("EnsureCrmEntity")
        slug = check_slug(o["slug"])
        check_unicode(o, "EnsureCrmEntity")
        self._flag(o, "async")
        if "referenceType" in o or "referenceId" in o:
            check_reference(o.get("referenceType", "customer"), o.get("referenceId", "-"))
        o = apply_preset(o)
        fields = parse_fields(o.get("fields"))
        pipelines = parse_pipelines(o.get("pipelines"))
        mode = o.get("entityMode")
        if mode is not None and mode not in ("crm", "data"):
            raise CrmValidationError(f"entityMode must be 'crm' or 'data'; got {shown(mode)}")

        def attempt() -> WriteResult:
            existing = self.store.get_entity(slug)
            if existing is None:
                entity = build_entity(
                    slug,
                    name=o.get("name"),
                    singular_name=o.get("singularName"),
                    plural_name=o.get("pluralName"),
                    icon=o.get("icon"),
                    color=o.get("color"),
                    mode=mode,
                    fields=fields,
                    pipelines=pipelines,
                )
                try:
                    self.store.create_entity(entity)
                except DuplicateError:  # created concurrently: merge into it instead
                    raise ConflictError(slug) from None
                return WriteResult(
                    ok=True,
                    id=entity.id,
                    slug=slug,
                    created=True,
                    fields_added=[f.key for f in fields],
                    fields_skipped=[],
                    pipelines_added=[p.slug for p in entity.pipelines],
                )
            have = {f.key for f in existing.fields}
            add = [f for f in fields if f.key not in have]
            have_pipes = {p.slug for p in existing.pipelines}
            add_pipes = (
                [p for p in pipelines if p.slug not in have_pipes] if existing.mode == "crm" else []
            )
            if add or add_pipes:
                self.store.update_entity(
                    replace(
                        existing,
                        fields=existing.fields + tuple(add),
                        pipelines=existing.pipelines + tuple(add_pipes),
                    ),
                    existing.version,
                )
            return WriteResult(
                ok=True,
                id=existing.id,
                slug=slug,
                created=False,
                fields_added=[f.key for f in add],
                fields_skipped=[f.key for f in fields if f.key in have],
                pipelines_added=[p.slug for p in add_pipes],
            )

        try:
            return self._retry(attempt)
        finally:
            self._forget_schema(slug)

    def create_entry(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> WriteResult:
        """CreateCrmEntry: always create a new entry; returns ``{ok, id, created}``."""
        spec = FUNCTIONS["CreateCrmEntry"]
        o = parse_options(spec, options, kwargs)
        schema = self._schema(o["slug"])
        if self.read_only:
            return self._preview(spec.name)
        title = check_plain_string("title", o.get("title")) or ""
        raw_values = o.get("values") or {}
        if not isinstance(raw_values, Mapping):
            raise CrmValidationError(
                f"values must be a {{key: value}} mapping; got {shown(raw_values)}"
            )
        values = self._coerce(schema, raw_values)
        placement = self._checked_placement(schema.entity, o)
        ref = self._reference(o, write=True)
        assert ref is not None
        entry = self._new_entry(schema, ref, values, title=title, placement=placement)

        return self._insert(spec, o, entry)

    def get_entries(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[Entry]:
        """GetCrmEntries: the reference's entries of one entity, newest first."""
        query = self._listing("GetCrmEntries", self._opts("GetCrmEntries", options, kwargs))
        return [] if query is None else self._read_listing(query)

    def listing_query(
        self,
        function: str,
        options: Mapping[str, Any] | None = None,
        /,
        *,
        known: bool = False,
        **kwargs: Any,
    ) -> ListingQuery | None:
        """The store query ``function`` (``"GetCrmEntries"`` or ``"GetCrmFieldValues"``) makes
        for these options, checked exactly as the function checks them (raising the same
        `CrmError` errors); None when there is no current customer to read for (the function then
        answers ``[]``). The Jinja extension's compiled reads fetch planned listings with it,
        in the page's one store round trip (issue 14); `listing_answer` shapes what they
        found as the function would.

        ``known=True`` checks against the cached entity definition however old (as
        `known_entity`), for a caller that reads the entity versions in the same round trip
        and drops the answer when `apply_entity_versions` drops the definition; only an
        entity not cached at all is read now."""
        if function not in ("GetCrmEntries", "GetCrmFieldValues"):
            raise CrmUsageError(
                f"listing_query takes GetCrmEntries or GetCrmFieldValues; got {function!r}"
            )
        return self._listing(function, self._opts(function, options, kwargs), known)

    @staticmethod
    def listing_answer(query: ListingQuery, entries: Sequence[Entry]) -> list[Any]:
        """What the listing function of ``query`` answers for the entries the store found
        (newest first): the entries, or the field's values."""
        if query.key is None:
            return list(entries)
        key = query.key
        return [e.values[key] for e in entries]

    def _read_listing(self, query: ListingQuery) -> list[Any]:
        """The answer of a checked listing, read from the store now."""
        entries = self.store.find_entries(
            query.entity,
            query.reference_type,
            query.reference_id,
            has_key=query.key,
            limit=query.limit,
        )
        return self.listing_answer(query, entries)

    def _listing(
        self, function: str, o: Mapping[str, Any], known: bool = False
    ) -> ListingQuery | None:
        schema = self._shared.schemas.get(o["slug"]) if known and type(o["slug"]) is str else None
        if schema is None:
            schema = self._schema(o["slug"])
        self._flag(o, "async")  # accepted and ignored: reads are synchronous (the seed)
        key = self._field(schema, o["fieldKey"]).key if function == "GetCrmFieldValues" else None
        limit = self._limit(o)
        ref = self._reference(o, write=False)
        if ref is None:
            return None
        return ListingQuery(schema.entity.slug, ref[0], ref[1], key, limit)

    def get_field(self, options: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Any:
        """GetCrmField: the key's value in the newest entry holding it, or None."""
        o = self._opts("GetCrmField", options, kwargs)
        schema = self._schema(o["slug"])
        self._flag(o, "async")  # accepted and ignored: reads are synchronous (the seed)
        key = self._field(schema, o["fieldKey"]).key
        ref = self._reference(o, write=False)
        if ref is None:
            return None
        return self.store.latest_values(schema.entity.slug, *ref, [key]).get(key)

    def get_fields(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> dict[str, Any]:
        """GetCrmFields: ``{key: value}`` for several keys in one read (missing → None)."""
        o = self._opts("GetCrmFields", options, kwargs)
        schema = self._schema(o["slug"])
        self._flag(o, "async")  # accepted and ignored: reads are synchronous (the seed)
        keys = o["fieldKeys"]
        if isinstance(keys, str) or not isinstance(keys, Sequence) or not keys:
            raise CrmValidationError(
                f"fieldKeys must be a non-empty list of keys; got {shown(keys)}"
            )
        keys = [self._field(schema, k, "fieldKeys").key for k in keys]
        ref = self._reference(o, write=False)
        found = {} if ref is None else self.store.latest_values(schema.entity.slug, *ref, keys)
        return {k: found.get(k) for k in keys}

    def _upsert(
        self, schema: _Schema, ref: tuple[str, str], values: dict[str, Any], force: bool
    ) -> WriteResult:
        """Merge values into the entry holding one of the keys, else the newest, else a new one.

        ``force`` skips the per-key scan: one merge into the newest entry (one statement on
        SQLite), falling back to creating the first entry.
        """
        store = self.store
        slug = schema.entity.slug

        def attempt() -> WriteResult:
            if force:
                merged = store.merge_into_newest(slug, *ref, values, self._now())
                if merged is not None:
                    events.note(
                        "entry.updated",
                        store,
                        entity=slug,
                        entry_id=merged,
                        reference=ref,
                        changes=values,
                    )
                    return WriteResult(ok=True, id=merged, created=False)
            with store.atomic():
                recent = store.find_entries(slug, *ref, limit=1 if force else SCAN_DEPTH)
                target = None
                if not force:
                    target = next((e for e in recent if any(k in e.values for k in values)), None)
                if target is None and recent:
                    target = recent[0]
                if target is None:
                    entry = self._new_entry(schema, ref, values)
                    store.insert_entries([entry])
                    events.note("entry.created", store, entry)
                    return WriteResult(ok=True, id=entry.id, created=True)
                updated = replace(
                    target, values={**target.values, **values}, updated_at=self._now()
                )
                stored = store.update_entry(updated, target.version)
                events.note("entry.updated", store, stored, changes=values)
                return WriteResult(ok=True, id=target.id, created=False)

        return self._retry(attempt)

    def set_field(self, options: Mapping[str, Any] | None = None, /, **kwargs: Any) -> WriteResult:
        """SetCrmField: upsert one value per key (``force`` merges into the newest entry)."""
        if type(self) is Crm:  # a subclass may override any step below
            merged = fast_writes.set_field(self, options, kwargs)
            if merged is not None:
                return WriteResult(ok=True, id=merged, created=False)
        spec = FUNCTIONS["SetCrmField"]
        o = parse_options(spec, options, kwargs)
        schema = self._schema(o["slug"])
        field = self._field(schema, o["fieldKey"])
        values = self._coerce(schema, {field.key: o["value"]})
        force = self._flag(o, "force")
        if self.read_only:
            return self._preview(spec.name)
        ref = self._reference(o, write=True)
        assert ref is not None
        return self._write(spec, o, lambda: self._upsert(schema, ref, values, force))

    def set_fields(self, options: Mapping[str, Any] | None = None, /, **kwargs: Any) -> WriteResult:
        """SetCrmFields: several values in one read/write cycle."""
        if type(self) is Crm:  # a subclass may override any step below
            merged = fast_writes.set_fields(self, options, kwargs)
            if merged is not None:
                return WriteResult(ok=True, id=merged, created=False)
        spec = FUNCTIONS["SetCrmFields"]
        o = parse_options(spec, options, kwargs)
        schema = self._schema(o["slug"])
        raw = o["fields"]
        pairs: dict[str, Any] = {}
        if isinstance(raw, Mapping):
            pairs = dict(raw)
        elif isinstance(raw, Sequence) and not isinstance(raw, str):
            for item in raw:
                key, value = self._field_item(item)
                pairs[key] = value
        else:
            raise CrmValidationError(
                f"fields must be a list of {{fieldKey, value}} or a {{key: value}} mapping; "
                f"got {shown(raw)}"
            )
        if not pairs:
            raise CrmValidationError("fields is empty: give at least one field to set")
        values = self._coerce(schema, pairs)
        force = self._flag(o, "force")
        if self.read_only:
            return self._preview(spec.name)
        ref = self._reference(o, write=True)
        assert ref is not None
        return self._write(spec, o, lambda: self._upsert(schema, ref, values, force))

    @staticmethod
    def _field_item(item: Any) -> tuple[Any, Any]:
        """One ``{fieldKey, value}`` item of SetCrmFields' ``fields`` list; ``field_key`` is the
        seed's other spelling (issue 9, item 7). Any other key is an error, as for options."""
        if not isinstance(item, Mapping):
            raise CrmValidationError(
                f"fields items must be {{fieldKey, value}} mappings; got {shown(item)}"
            )
        unknown = [k for k in item if k not in _FIELD_ITEM_KEYS]
        if unknown:
            hint = suggest(unknown[0], _FIELD_ITEM_KEYS) if isinstance(unknown[0], str) else ""
            raise CrmValidationError(
                f"fields item {shown(item)} has an unknown key {shown(unknown[0])}.{hint} "
                "Accepted: fieldKey (or field_key), value"
            )
        keys = [item[k] for k in ("fieldKey", "field_key") if k in item]
        if any(not isinstance(k, str) for k in keys):
            bad = next(k for k in keys if not isinstance(k, str))
            raise CrmValidationError(f"fields items' fieldKey must be a string; got {shown(bad)}")
        if not keys or "value" not in item:
            raise CrmValidationError(
                f"fields items must be {{fieldKey, value}} mappings; got {shown(item)}"
            )
        if len(keys) == 2 and keys[0] != keys[1]:
            raise CrmValidationError(
                f"fields item {shown(item)} has both fieldKey and field_key with different "
                "values; "
                "pass one of them"
            )
        return keys[0], item["value"]

    def add_field_value(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> WriteResult:
        """AddCrmFieldValue: always a new entry holding the value (history)."""
        if not kwargs and type(self) is Crm:  # a subclass may override any step below
            fast = fast_writes.add_field_value(self, options)
            if fast is not None:
                return fast
        spec = FUNCTIONS["AddCrmFieldValue"]
        o = parse_options(spec, options, kwargs)
        schema = self._schema(o["slug"])
        field = self._field(schema, o["fieldKey"])
        values = self._coerce(schema, {field.key: o["value"]})
        if self.read_only:
            return self._preview(spec.name)
        ref = self._reference(o, write=True)
        assert ref is not None
        entry = self._new_entry(schema, ref, values)

        return self._insert(spec, o, entry)

    def get_field_values(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> list[Any]:
        """GetCrmFieldValues: the key's values across entries, newest first."""
        o = self._opts("GetCrmFieldValues", options, kwargs)
        query = self._listing("GetCrmFieldValues", o)
        return [] if query is None else self._read_listing(query)

    def clear_entries(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> WriteResult:
        """ClearCrmEntries: delete every entry of the entity for the reference."""
        spec = FUNCTIONS["ClearCrmEntries"]
        o = parse_options(spec, options, kwargs)
        schema = self._schema(o["slug"])
        if self.read_only:
            return self._preview(spec.name)
        ref = self._reference(o, write=False)
        if ref is None:
            return WriteResult(ok=True, deleted=0)
        slug = schema.entity.slug
        store = self.store

        def apply() -> WriteResult:
            if not events.listening("entry.deleted", store):
                return WriteResult(ok=True, deleted=store.delete_entries(slug, *ref))
            # Someone listens: find the entries first, so each delete can be reported. On
            # SQLite the section is one transaction; on a search cluster an entry created
            # between the find and the delete is deleted unreported.
            with store.atomic():
                doomed = store.find_entries(slug, *ref, limit=None)
                deleted = store.delete_entries(slug, *ref) if doomed else 0
                for e in doomed:
                    events.note("entry.deleted", store, e)
            return WriteResult(ok=True, deleted=deleted)

        return self._write(spec, o, apply)

    def _relation_entry(self, slug: str, ref: tuple[str, str], key: str) -> Entry | None:
        """The entry a relation call without ``entryId`` acts on: the newest entry holding the
        relation key (a stored null counts, as for GetCrmField), else the newest entry, else
        None (issue 9, item 5: acting on the newest entry lost the links held by an older one).

        Unlike SetCrmField's scan of the newest 100 entries, the holder is found at any depth:
        a remove written onto an entry that never held the key would hide every link.
        """
        store = self.store
        holding = store.find_entries(slug, *ref, has_key=key, limit=1)
        if holding:
            return holding[0]
        newest = store.find_entries(slug, *ref, limit=1)
        return newest[0] if newest else None

    def _relation(self, name: str, options: Any, kwargs: Mapping[str, Any]) -> WriteResult:
        spec = FUNCTIONS[name]
        o = parse_options(spec, options, kwargs)
        schema = self._schema(o["slug"])
        field = self._field(schema, o["relationKey"], "relationKey")
        if field.type not in REFERENCE_TYPES:
            raise CrmValidationError(
                f"relationKey {shown(field.key)} is a {field.type} field; relations need a "
                "reference or multi_reference field"
            )
        target_id = coerce(replace(field, type="reference"), o["targetEntryId"])
        if target_id is None:  # coerce reads None as "clear the value"; a link needs an id
            raise CrmValidationError(
                f"{name} needs targetEntryId: the id of an entry of "
                f"{shown(field.target_entity)}; got None"
            )
        adding = name == "SetCrmRelation"
        if adding:
            self._check_targets(schema, {field.key: target_id})
        entry_id = o.get("entryId")
        if entry_id is not None and not isinstance(entry_id, str):
            raise CrmValidationError(f"entryId must be a string; got {shown(entry_id)}")
        if self.read_only:
            return self._preview(spec.name)
        ref = None if entry_id is not None else self._reference(o, write=adding)
        store = self.store

        def attempt() -> WriteResult:
            with store.atomic():
                if entry_id is not None:
                    entry = store.get_entry(entry_id)
                    if (
                        entry is None
                        or entry.entity != schema.entity.slug
                        or (
                            not self.trusted
                            and not may_reach(entry, self._current_customer(create=False))
                        )
                    ):
                        raise EntryNotFoundError(
                            f"entryId {shown(entry_id)} is not an entry of "
                            f"{shown(schema.entity.slug)}"
                        )
                elif ref is None:
                    return WriteResult(ok=True, id=None, changed=False)
                else:
                    entry = self._relation_entry(schema.entity.slug, ref, field.key)
                current = None if entry is None else entry.values.get(field.key)
                if field.type == "reference":
                    new: Any = target_id if adding else (None if current == target_id else current)
                else:
                    ids = list(current or [])
                    new = (
                        ([*ids, target_id] if target_id not in ids else ids)
                        if adding
                        else [i for i in ids if i != target_id]
                    )
                if entry is None:
                    if not adding:
                        return WriteResult(ok=True, id=None, changed=False)
                    assert ref is not None
                    created = self._new_entry(schema, ref, {field.key: new})
                    store.insert_entries([created])
                    events.note("entry.created", store, created)
                    return WriteResult(ok=True, id=created.id, changed=True)
                # Nothing to remove leaves the entry alone: one that never held the key does not
                # gain an empty list (issue 10: it did, and reported changed: True).
                if new == current or (not adding and current is None):
                    return WriteResult(ok=True, id=entry.id, changed=False)
                values = {**entry.values, field.key: new}
                stored = store.update_entry(
                    replace(entry, values=values, updated_at=self._now()), entry.version
                )
                events.note("entry.updated", store, stored, changes={field.key: new})
                return WriteResult(ok=True, id=entry.id, changed=True)

        return self._write(spec, o, lambda: self._retry(attempt))

    def set_relation(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> WriteResult:
        """SetCrmRelation: link an entry to a target entry.

        The entry is ``entryId``'s, else the newest one holding ``relationKey``, else the
        newest, else a new one. A ``reference`` field holds one id (replaced), a
        ``multi_reference`` an ordered set (appended once). Returns ``{ok, id, changed}``.
        """
        return self._relation("SetCrmRelation", options, kwargs)

    def remove_relation(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> WriteResult:
        """RemoveCrmRelation: unlink a target entry from the entry SetCrmRelation would use.

        Without such an entry, or when it does not link the target, nothing changes
        (``{ok: True, changed: False}``).
        """
        return self._relation("RemoveCrmRelation", options, kwargs)

    def _move(
        self,
        name: str,
        options: Any,
        kwargs: Mapping[str, Any],
        resolve: Callable[[Entity, Mapping[str, Any]], tuple[Pipeline, Stage]],
    ) -> WriteResult:
        spec = FUNCTIONS[name]
        o = parse_options(spec, options, kwargs)
        schema = self._schema(o["slug"])
        entity = schema.entity
        all_entries = self._flag(o, "allEntries")
        self._flag(o, "async")
        if entity.mode != "crm":
            return WriteResult(
                ok=False,
                moved=0,
                totalMatched=0,
                pipeline_id=None,
                stage_id=None,
                error=f"entity {shown(entity.slug)} is in data mode and has no pipelines",
            )
        pipeline, stage = resolve(entity, o)
        if self.read_only:
            return self._preview(spec.name)
        ref = self._reference(o, write=False)
        store = self.store
        # Who moved it, taken now: an async move runs later on the writer's thread.
        actor = customer_actor(self._current_customer(create=False))

        def attempt() -> WriteResult:
            with store.atomic():
                if ref is None:
                    entries: list[Entry] = []
                    total = 0
                else:
                    entries = store.find_entries(
                        entity.slug, *ref, limit=None if all_entries else 1
                    )
                    total = len(entries) if all_entries else store.count_entries(entity.slug, *ref)
                now = self._now()
                for e in entries:
                    stored = store.update_entry(
                        replace(e, pipeline_id=pipeline.id, stage_id=stage.id, updated_at=now),
                        e.version,
                    )
                    # Recorded per entry, right after its move: a document store applies the
                    # moves before a conflict one by one, and a retry finds them in place.
                    moved = stage_changes([e], pipeline.id, stage.id, now, actor)
                    if moved:
                        store.append_stage_changes(moved)
                        events.note("entry.stage_changed", store, stored, before=e, at=now)
            result = WriteResult(
                ok=bool(entries),
                moved=len(entries),
                totalMatched=total,
                pipeline_id=pipeline.id,
                stage_id=stage.id,
            )
            if not entries:
                result["error"] = f"no entry of {shown(entity.slug)} for this reference to move"
            return result

        return self._write(spec, o, lambda: self._retry(attempt))

    def move_lead(self, options: Mapping[str, Any] | None = None, /, **kwargs: Any) -> WriteResult:
        """MoveCrmLead: move the newest (or every) entry to a pipeline and stage."""

        def resolve(entity: Entity, o: Mapping[str, Any]) -> tuple[Pipeline, Stage]:
            pipeline = self._pipeline(entity, o)
            found = self._stage(entity, pipeline, o)
            if found is not None:
                return found
            if pipeline is None:
                raise MissingOptionError(
                    "MoveCrmLead requires pipelineId/pipelineSlug and stageId/stageSlug"
                )
            return pipeline, pipeline.stages[0]

        return self._move("MoveCrmLead", options, kwargs, resolve)

    def move_to_stage(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> WriteResult:
        """MoveCrmToStage: move to a stage; the pipeline is resolved from the stage."""

        def resolve(entity: Entity, o: Mapping[str, Any]) -> tuple[Pipeline, Stage]:
            found = self._stage(entity, self._pipeline(entity, o), o)
            if found is None:
                raise MissingOptionError(
                    "MoveCrmToStage requires stageSlug or stageId, e.g. "
                    "MoveCrmToStage({'slug': ..., 'stageSlug': 'won'})"
                )
            return found

        return self._move("MoveCrmToStage", options, kwargs, resolve)

    def move_to_pipeline(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> WriteResult:
        """MoveCrmToPipeline: move into a pipeline, landing on its first stage unless given."""

        def resolve(entity: Entity, o: Mapping[str, Any]) -> tuple[Pipeline, Stage]:
            pipeline = self._pipeline(entity, o)
            if pipeline is None:
                raise MissingOptionError(
                    "MoveCrmToPipeline requires pipelineSlug or pipelineId, e.g. "
                    "MoveCrmToPipeline({'slug': ..., 'pipelineSlug': 'sales'})"
                )
            found = self._stage(entity, pipeline, o)
            return found if found is not None else (pipeline, pipeline.stages[0])

        return self._move("MoveCrmToPipeline", options, kwargs, resolve)

    def move_to_entity(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> WriteResult:
        """MoveCrmToEntity: copy mapped values of the newest source entry into a new target entry.

        ``fromSlug`` and ``toSlug`` must differ; ``fieldMap`` is a non-empty
        ``{sourceKey: targetKey}`` mapping. ``allEntries: true`` copies every source entry of
        the reference, each into its own new target entry (created oldest first, so the
        targets keep the sources' order). ``removeFromOld: true`` deletes the source entries
        that were copied (the lead became a deal). Values are coerced to the target's field
        types; one mismatch writes nothing.

        Returns ``{ok, id, ids, moved, removed_from_old}``: ``id`` is the target entry made
        from the newest source, ``ids`` every target made (newest first), ``moved`` the number
        of field values copied (summed over entries). With no source entry:
        ``{ok: False, moved: 0, removed_from_old: False, error}``.
        """
        spec = FUNCTIONS["MoveCrmToEntity"]
        o = parse_options(spec, options, kwargs)
        if o["fromSlug"] == o["toSlug"]:
            raise CrmValidationError(
                f"MoveCrmToEntity copies between two entities; fromSlug and toSlug are both "
                f"{shown(o['fromSlug'])} (use SetCrmFields to change an entry of one entity)"
            )
        source = self._schema(o["fromSlug"])
        target = self._schema(o["toSlug"])
        field_map = o["fieldMap"]
        if not isinstance(field_map, Mapping) or not field_map:
            raise CrmValidationError(
                "fieldMap must be a non-empty {sourceKey: targetKey} mapping; got "
                f"{shown(field_map)}"
            )
        for src, dst in field_map.items():
            self._field(source, src, "fieldMap key")
            self._field(target, dst, "fieldMap value")
        remove = self._flag(o, "removeFromOld")
        all_entries = self._flag(o, "allEntries")
        placement = self._placement(target.entity, o)
        if placement is not None and target.entity.mode == "data":
            raise CrmValidationError(
                f"entity {shown(target.entity.slug)} is in data mode: no pipelines"
            )
        if self.read_only:
            return self._preview(spec.name)
        ref = self._reference(o, write=False)
        store = self.store

        def attempt() -> WriteResult:
            with store.atomic():
                sources = (
                    []
                    if ref is None
                    else store.find_entries(
                        source.entity.slug, *ref, limit=None if all_entries else 1
                    )
                )
                if not sources:
                    return WriteResult(
                        ok=False,
                        moved=0,
                        removed_from_old=False,
                        error=f"no entry of {shown(source.entity.slug)} for this reference to move",
                    )
                assert ref is not None
                made: list[Entry] = []
                moved = 0
                for src_entry in reversed(sources):  # oldest first: new ids keep the order
                    copied = self._coerce(
                        target,
                        {
                            dst: src_entry.values[src]
                            for src, dst in field_map.items()
                            if src in src_entry.values
                        },
                    )
                    moved += len(copied)
                    made.append(
                        self._new_entry(
                            target, ref, copied, title=src_entry.title, placement=placement
                        )
                    )
                store.insert_entries(made)
                for e in made:
                    events.note("entry.created", store, e)
                removed = False
                if remove:
                    gone = [store.delete_entry(e.id) for e in sources]
                    for e, deleted in zip(sources, gone, strict=True):
                        if deleted:
                            events.note("entry.deleted", store, e)
                    removed = all(gone)
            ids = [e.id for e in reversed(made)]
            return WriteResult(ok=True, id=ids[0], ids=ids, moved=moved, removed_from_old=removed)

        return self._write(spec, o, lambda: self._retry(attempt))

    def reassign_reference(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> WriteResult:
        """ReassignCrmReference: move one reference's entries onto another (visitor → customer).

        ``slug: '*'`` reassigns the entries of every entity. Per entity: when the target has
        no entries, the source's entries move over unchanged (timestamps, pipeline and stage
        kept, so the history stays in order). When it has some, the source's entries are
        consolidated into the target's newest entry: keys the target holds in none of its
        entries get the source's newest value, keys it already holds keep the target's
        values, and the source's entries are deleted (SPEC §5: the customer's existing values
        win). A second call finds nothing to move (``migrated: 0``).

        Returns ``{ok, migrated, merged}``: ``migrated`` counts the source entries taken,
        ``merged`` is true when some entity was consolidated. Through a view (templates, page
        backends) only the session's own anonymous visitor moves onto the current signed-in
        customer; anything else returns ``{ok: False, error: 'forbidden' |
        'forbidden_target', migrated: 0, message}`` and moves nothing (`ReassignRule`).
        """
        spec = FUNCTIONS["ReassignCrmReference"]
        o = parse_options(spec, options, kwargs)
        slugs = (
            [e.slug for e in self.store.list_entities()]
            if o["slug"] == "*"
            else [self._schema(o["slug"]).entity.slug]
        )
        from_ref = (o["fromReferenceType"], o["fromReferenceId"])
        check_reference(*from_ref)
        to_options = {"referenceType": o.get("toReferenceType", "customer")}
        if "toReferenceId" in o:
            to_options["referenceId"] = o["toReferenceId"]
        self._flag(o, "async")
        if self.read_only:
            return self._preview(spec.name)
        rule = self._reassign
        if rule is not None:
            # Decided before the target is resolved: a refused call creates no customer.
            refusal = rule.refusal(from_ref, self._reference(to_options, write=False))
            if refusal is not None:
                return WriteResult(
                    ok=False, error=refusal, migrated=0, message=REASSIGN_REFUSALS[refusal]
                )
        to_ref = self._reference(to_options, write=True)
        assert to_ref is not None

        def apply() -> WriteResult:
            migrated = 0
            merged = False
            if to_ref != from_ref:
                for slug in slugs:
                    taken, consolidated = self._retry(
                        functools.partial(self._reassign_entity, slug, from_ref, to_ref)
                    )
                    migrated += taken
                    merged = merged or consolidated
            return WriteResult(ok=True, migrated=migrated, merged=merged)

        return self._write(spec, o, apply)

    def _reassign_entity(
        self, slug: str, source: tuple[str, str], target: tuple[str, str]
    ) -> tuple[int, bool]:
        """One entity of a reassign: (source entries taken, whether they were consolidated)."""
        store = self.store
        with store.atomic():
            taken = store.find_entries(slug, *source, limit=None)
            if not taken:
                return 0, False
            now = self._now()
            newest = store.find_entries(slug, *target, limit=1)
            if not newest:
                for e in taken:
                    stored = store.update_entry(
                        replace(
                            e, reference_type=target[0], reference_id=target[1], updated_at=now
                        ),
                        e.version,
                    )
                    events.note("entry.updated", store, stored, previous_reference=source)
                return len(taken), False
            keys = sorted({k for e in taken for k in e.values})
            held = store.latest_values(slug, *target, keys)
            added: dict[str, Any] = {}
            for e in taken:  # newest first: the source's newest value of each key
                for key, value in e.values.items():
                    if key not in held:
                        added.setdefault(key, value)
            if added:
                keep = newest[0]
                stored = store.update_entry(
                    replace(keep, values={**keep.values, **added}, updated_at=now), keep.version
                )
                events.note("entry.updated", store, stored, changes=added)
            for e in taken:
                if store.delete_entry(e.id):
                    events.note("entry.deleted", store, e)
            return len(taken), True

    # === Python-only helpers (admin, server, CLI) ==========================================

    def get_entry(self, entry_id: str) -> Entry | None:
        """One entry by id."""
        return self.store.get_entry(entry_id)

    def get_entries_by_ids(self, ids: Iterable[str]) -> dict[str, Entry]:
        """Entries by id, in one lookup (reference labels)."""
        return self.store.get_entries_by_ids(list(ids))

    def entries_for_reference(
        self, reference_type: str, reference_id: str, *, limit: int | None = 200
    ) -> list[Entry]:
        """Every entity's entries for one reference, newest first (the customer CRM tab)."""
        check_reference(reference_type, reference_id)
        return self.store.find_entries(None, reference_type, reference_id, limit=limit)

    @_writes
    def update_entry(
        self,
        entry_id: str,
        values: Mapping[str, Any] | None = None,
        *,
        title: str | None = None,
        respect_ui_editable: bool = False,
        expected_version: int | None = None,
    ) -> Entry:
        """Edit one entry's values/title (admin inline edit honours ``ui_editable``).

        ``expected_version`` (the version the editor was shown) refuses the edit with
        `StaleEntryError` when the entry changed since; None merges into whatever is stored.

        Raises `CrmValidationError` for an id that is not a string or values that are not a
        mapping, `EntryNotFoundError` for an unknown id."""
        if not isinstance(entry_id, str):
            raise CrmValidationError(f"entry_id must be a string; got {shown(entry_id)}")
        if values is not None and not isinstance(values, Mapping):
            raise CrmValidationError(
                f"values must be a {{key: value}} mapping; got {shown(values)}"
            )
        entry = self.store.get_entry(entry_id)
        if entry is None:
            raise EntryNotFoundError(f"no entry {shown(entry_id)}")
        schema = self._schema(entry.entity)
        changes = self._coerce(schema, values or {})
        if respect_ui_editable:
            locked = [k for k in changes if not schema.fields[k].ui_editable]
            if locked:
                raise CrmValidationError(
                    f"field(s) {', '.join(locked)} of {shown(entry.entity)} are not editable in "
                    "the admin (ui_editable: false); they are set by scripts only"
                )
        title = check_plain_string("title", title)

        def attempt() -> Entry:
            current = self.store.get_entry(entry_id)
            if current is None:
                raise EntryNotFoundError(f"no entry {shown(entry_id)}")
            if expected_version is not None and current.version != expected_version:
                raise StaleEntryError(
                    f"entry {entry_id!r} was changed by someone else (version "
                    f"{expected_version} → {current.version}); reload it and try again"
                )
            stored = self.store.update_entry(
                replace(
                    current,
                    values={**current.values, **changes},
                    title=current.title if title is None else title,
                    updated_at=self._now(),
                ),
                current.version,
            )
            events.note(
                "entry.updated",
                self.store,
                stored,
                changes=changes,
                title=title if title is not None and title != current.title else None,
            )
            return stored

        with events.unit(self._actor()):
            return self._retry(attempt)

    @_writes
    def delete_entry(self, entry_id: str, *, expected_version: int | None = None) -> bool:
        """Delete one entry by id; False when there is none. With ``expected_version`` only
        while the entry is still at that version, atomically (`StaleEntryError` otherwise,
        nothing deleted; issue 13, item 4)."""
        with events.unit(self._actor()):
            before = (
                self.store.get_entry(entry_id)
                if isinstance(entry_id, str) and events.listening("entry.deleted", self.store)
                else None
            )
            if expected_version is None:
                deleted = self.store.delete_entry(entry_id)
            else:
                try:
                    deleted = self.store.delete_entry_at_version(entry_id, expected_version)
                except ConflictError as exc:
                    raise StaleEntryError(str(exc)) from None
            if deleted and before is not None:
                events.note("entry.deleted", self.store, before)
            return deleted

    # --- customers ------------------------------------------------------------------------

    @staticmethod
    def normalise_email(email: str) -> str:
        """The canonical (validated, lower-case) form used for uniqueness."""
        from email_validator import EmailNotValidError, validate_email

        try:
            return str(validate_email(email, check_deliverability=False).normalized).lower()
        except (EmailNotValidError, TypeError) as exc:
            raise CrmValidationError(f"not a valid email address: {shown(email)} ({exc})") from None

    @_writes
    def create_customer(
        self,
        email: str | None = None,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
    ) -> Customer:
        """A new customer (anonymous when no email); `DuplicateError` if the email is taken."""
        customer = Customer(
            id=new_id("cus_"),
            email=self.normalise_email(email) if email else None,
            first_name=check_plain_string("first_name", first_name),
            last_name=check_plain_string("last_name", last_name),
            created_at=utc_now(),
        )
        try:
            self.store.create_customer(customer)
        except DuplicateError:
            raise DuplicateError(f"a customer with email {shown(customer.email)} exists") from None
        return customer

    def get_customer(self, customer_id: str) -> Customer | None:
        """The customer with this id."""
        return self.store.get_customer(customer_id)

    def find_customer(self, email: str) -> Customer | None:
        """The customer with this email."""
        return self.store.get_customer_by_email(self.normalise_email(email))

    @_writes
    def update_customer(self, customer: Customer) -> Customer:
        """Save changed names or email (email normalised and kept unique)."""
        if customer.email:
            customer = replace(customer, email=self.normalise_email(customer.email))
        try:
            self.store.update_customer(customer)
        except DuplicateError:
            raise DuplicateError(f"a customer with email {shown(customer.email)} exists") from None
        return customer
