"""Fast paths for the commonest writes (issue 14): ``AddCrmFieldValue`` with a plain options
dict (B3), and ``SetCrmField``/``SetCrmFields`` with ``force: true`` (B2, see `set_field`).

`add_field_value` answers exactly what `Crm.add_field_value`'s general path answers, for the
calls it takes, and returns None for every other call — the general path then parses, checks
and raises as always, so bad input still raises at once in the caller with the same message.
It takes a call when:

- the options are a ``dict`` passed without keyword arguments, its keys among ``slug``,
  ``fieldKey``, ``value``, ``async``, ``referenceType``, ``referenceId``, the first three
  present;
- ``slug``, ``fieldKey`` (and ``referenceType``/``referenceId`` when given) are ``str`` and
  ``async`` is a bool: option parsing and the option nesting check
  (`functions._check_depth`) then have nothing to fold or refuse;
- the service is a `Crm` itself (a subclass may override any step of the general path, such
  as ``_now``), not read-only, its entity definition is cached and fresh, the key is declared
  and the entity has no reference fields (reference values need a store read to check);
- the reference is known without creating a customer (an explicit ``referenceId`` or a view
  bound to a customer id).

What it skips is option folding and copying twice, the general path's helper calls and the
placement lookup (cached per entity version); the value's coercion (`values.coerce`), the
reference check, the id, the timestamps, the `Entry` and the queued write (`Crm._insert`, so
whatever wraps it sees the write) are the same.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import events
from .functions import FUNCTIONS
from .ids import new_id, utc_now
from .model import Entity, Entry
from .values import check_reference_cached, coerce

if TYPE_CHECKING:
    from .service import Crm, WriteResult, _Schema

_SPEC = FUNCTIONS["AddCrmFieldValue"]
_KEYS = _SPEC.accepted  # slug, fieldKey, value, async, referenceType, referenceId
_MUST = _SPEC.must  # slug, fieldKey, value

# `Entry`'s fields in order, each set straight through its slot: the frozen dataclass's own
# ``__init__`` goes through ``object.__setattr__`` per field, twice the time (issue 14, B3).
# Only sound while `Entry` has no ``__post_init__`` (checked here, at import).
_ENTRY_SLOTS = tuple(Entry.__dict__[f.name].__set__ for f in dataclasses.fields(Entry))
assert not hasattr(Entry, "__post_init__") and len(_ENTRY_SLOTS) == 11
_new_object = object.__new__


def _entry(
    ident: str,
    slug: str,
    rtype: str,
    rid: str,
    values: dict[str, Any],
    pipeline_id: str | None,
    stage_id: str | None,
    now: str,
) -> Entry:
    """``Entry(ident, slug, rtype, rid, values, "", pipeline_id, stage_id, now, now)``."""
    entry: Entry = _new_object(Entry)
    s_id, s_entity, s_rtype, s_rid, s_values, s_title, s_pipe, s_stage, s_made, s_upd, s_ver = (
        _ENTRY_SLOTS
    )
    s_id(entry, ident)
    s_entity(entry, slug)
    s_rtype(entry, rtype)
    s_rid(entry, rid)
    s_values(entry, values)
    s_title(entry, "")
    s_pipe(entry, pipeline_id)
    s_stage(entry, stage_id)
    s_made(entry, now)
    s_upd(entry, now)
    s_ver(entry, 1)
    return entry


# The default placement of a new entry, per entity definition (bounded: cleared when full).
_placements: dict[tuple[str, int, int], tuple[str | None, str | None]] = {}
PLACEMENTS_KEPT = 1024


def _placement(crm: Crm, entity: Entity) -> tuple[str | None, str | None]:
    """`Crm._default_placement` of ``entity``, remembered per entity definition."""
    key = (entity.slug, entity.version, id(entity))
    found = _placements.get(key)
    if found is None:
        found = crm._default_placement(entity)
        if len(_placements) >= PLACEMENTS_KEPT:
            _placements.clear()
        _placements[key] = found
    return found


def add_field_value(crm: Crm, options: Mapping[str, Any] | None) -> WriteResult | None:
    """``crm.add_field_value(options)`` when the call qualifies (see the module), else None.

    Raises only what the general path raises for the same call (a value the field refuses:
    `CrmValidationError` from `values.coerce`; a bad reference from `values.check_reference`).
    """
    if type(options) is not dict or crm.read_only:
        return None
    keys = options.keys()
    if not (keys <= _KEYS and keys >= _MUST):
        return None
    slug = options["slug"]
    key = options["fieldKey"]
    asynchronous = options.get("async", False)
    if type(slug) is not str or type(key) is not str or type(asynchronous) is not bool:
        return None
    schema = _fresh_schema(crm, slug)
    if schema is None:
        return None
    field = schema.fields.get(key)
    if field is None:
        return None
    ref = _known_reference(crm, options)
    if ref is None:
        return None
    rtype, rid = ref
    value = options["value"]
    stored = None if value is None else coerce(field, value)
    check_reference_cached(rtype, rid)
    now = utc_now()
    pipeline_id, stage_id = _placement(crm, schema.entity)
    entry = _entry(new_id(), slug, rtype, rid, {key: stored}, pipeline_id, stage_id, now)
    return crm._insert(_SPEC, options, entry)  # `Crm._insert` queues a copy of the options


# --- SetCrmField / SetCrmFields with force (issue 14, B2) -------------------------------------

_SET = FUNCTIONS["SetCrmField"]
_SET_KEYS = _SET.accepted  # slug, fieldKey, value, force, async, referenceType, referenceId
_SET_MUST = _SET.must  # slug, fieldKey, value
_SETS = FUNCTIONS["SetCrmFields"]
_SETS_KEYS = _SETS.accepted  # slug, fields, force, async, referenceType, referenceId
_SETS_MUST = _SETS.must  # slug, fields
_ITEM_KEYS = frozenset({"fieldKey", "value"})


def _options(options: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> Any:
    """The one plain dict holding a call's options (the mapping, or the keywords when no
    mapping is given), else None: both together need the general path's folding."""
    if not kwargs:
        return options
    return kwargs if options is None else None


def _forced_schema(crm: Crm, o: Any, accepted: frozenset[str], must: frozenset[str]) -> Any:
    """The cached, fresh `_Schema` of a forced, synchronous call whose options need no
    parsing, on a store whose forced merge never conflicts and whose events nobody wants;
    else None."""
    if type(o) is not dict or crm.read_only:
        return None
    keys = o.keys()
    if not (keys <= accepted and keys >= must):
        return None
    if o.get("force") is not True or o.get("async", False) is not False:
        return None
    store = crm._store
    if not store.merges_without_conflicts or events.wanted(store):
        return None
    slug = o["slug"]
    if type(slug) is not str:
        return None
    return _fresh_schema(crm, slug)


def _fresh_schema(crm: Crm, slug: str) -> Any:
    """The service's cached `_Schema` of ``slug`` while fresh and free of reference fields
    (their values need a store read to check), else None."""
    shared = crm._shared
    schema = shared.schemas.get(slug)
    if (
        schema is None
        or schema.has_references
        or time.monotonic() - schema.loaded >= shared.cache_seconds
    ):
        return None
    return schema


def _known_reference(crm: Crm, o: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(referenceType, referenceId)`` of the options when known without creating a customer
    (an explicit ``referenceId``, or a view bound to a customer id) and both are ``str``; else
    None. Not yet checked (`values.check_reference_cached`)."""
    rtype = o.get("referenceType", "customer")
    rid = o.get("referenceId")
    if rid is None:
        rid = crm._customer
        if rtype != "customer" or type(rid) is not str:
            return None
    if type(rtype) is not str or type(rid) is not str:
        return None
    return rtype, rid


def _merge(crm: Crm, schema: _Schema, o: dict[str, Any], values: dict[str, Any]) -> str | None:
    """Merge coerced ``values`` into the reference's newest entry, as `Crm._upsert` does with
    ``force``: that entry's id; None (nothing written) when the reference has no entry yet or
    is not known without creating a customer."""
    ref = _known_reference(crm, o)
    if ref is None:
        return None
    rtype, rid = ref
    check_reference_cached(rtype, rid)
    # None: the reference's first entry, which the general path creates.
    return crm._store.merge_into_newest(schema.entity.slug, rtype, rid, values, utc_now())


def set_field(crm: Crm, options: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str | None:
    """``crm.set_field(options, **kwargs)`` when the call qualifies: the id of the entry it
    merged into (the general path answers ``{ok: True, id, created: False}``); else None,
    having done nothing.

    It takes a synchronous call with ``force: true`` whose options are one plain ``dict`` (the
    mapping or the keywords, not both) of canonical names with ``str`` slug, fieldKey and
    reference, on a `Crm` itself (not a subclass, not read-only) whose entity definition is
    cached and fresh and has no reference fields, over a store that merges without conflicts
    (``Store.merges_without_conflicts``: SQLite) and whose events nobody wants
    (`events.wanted` empty: no unit, no actor, no event to build). The reference must be known
    without creating a customer, and must have an entry to merge into (the first entry is
    created by the general path).

    What it skips: option copying and checks that cannot fail for such a call, the closures,
    the event unit and `retry_conflicts` (a single SQLite statement never conflicts). The
    coercion (`values.coerce`), the reference check, the timestamp and the store's
    `merge_into_newest` are the general path's, so it raises what that raises for the same
    call (`CrmValidationError` for a value the field refuses or a bad reference).
    """
    o = _options(options, kwargs)
    schema = _forced_schema(crm, o, _SET_KEYS, _SET_MUST)
    if schema is None:
        return None
    key = o["fieldKey"]
    field = schema.fields.get(key) if type(key) is str else None
    if field is None:
        return None
    value = o["value"]
    return _merge(crm, schema, o, {key: None if value is None else coerce(field, value)})


def set_fields(
    crm: Crm, options: Mapping[str, Any] | None, kwargs: Mapping[str, Any]
) -> str | None:
    """``crm.set_fields(options, **kwargs)`` when the call qualifies (as `set_field`, with
    ``fields`` a non-empty ``{key: value}`` dict or list of ``{fieldKey, value}`` dicts whose
    keys are all declared): the id merged into; else None, having done nothing. Raises what
    the general path raises."""
    o = _options(options, kwargs)
    schema = _forced_schema(crm, o, _SETS_KEYS, _SETS_MUST)
    if schema is None:
        return None
    raw = o["fields"]
    if type(raw) is dict:
        pairs = raw
    elif type(raw) is list:
        pairs = {}
        for item in raw:
            if type(item) is not dict or item.keys() != _ITEM_KEYS:
                return None
            key = item["fieldKey"]
            if type(key) is not str:  # (a list cannot even be a dict key)
                return None
            pairs[key] = item["value"]
    else:
        return None
    fields = schema.fields
    if not pairs or not all(type(k) is str and k in fields for k in pairs):
        return None
    values = {k: None if v is None else coerce(fields[k], v) for k, v in pairs.items()}
    return _merge(crm, schema, o, values)
