"""A fast path for the commonest write: ``AddCrmFieldValue`` with a plain options dict (issue 14,
B3).

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

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .functions import FUNCTIONS
from .ids import new_id, utc_now
from .model import Entity, Entry
from .values import check_reference_cached, coerce

if TYPE_CHECKING:
    from .service import Crm, WriteResult

_SPEC = FUNCTIONS["AddCrmFieldValue"]
_KEYS = _SPEC.accepted  # slug, fieldKey, value, async, referenceType, referenceId
_MUST = _SPEC.must  # slug, fieldKey, value

# The default placement of a new entry, per entity definition (bounded: cleared when full).
_placements: dict[tuple[str, int, int], tuple[str | None, str | None]] = {}
PLACEMENTS_KEPT = 1024


def _placement(entity: Entity) -> tuple[str | None, str | None]:
    key = (entity.slug, entity.version, id(entity))
    found = _placements.get(key)
    if found is None:
        if entity.mode != "crm" or not entity.pipelines or not entity.pipelines[0].stages:
            found = (None, None)
        else:
            first = entity.pipelines[0]
            found = (first.id, first.stages[0].id)
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
    shared = crm._shared
    schema = shared.schemas.get(slug)
    if (
        schema is None
        or schema.has_references
        or time.monotonic() - schema.loaded >= shared.cache_seconds
    ):
        return None
    field = schema.fields.get(key)
    if field is None:
        return None
    rtype = options.get("referenceType", "customer")
    rid = options.get("referenceId")
    if rid is None:
        rid = crm._customer
        if rtype != "customer" or type(rid) is not str:
            return None
    if type(rtype) is not str or type(rid) is not str:
        return None
    value = options["value"]
    stored = None if value is None else coerce(field, value)
    check_reference_cached(rtype, rid)
    now = utc_now()
    pipeline_id, stage_id = _placement(schema.entity)
    entry = Entry(new_id(), slug, rtype, rid, {key: stored}, "", pipeline_id, stage_id, now, now)
    return crm._insert(_SPEC, options, entry)  # `Crm._write` keeps a copy for the writer
