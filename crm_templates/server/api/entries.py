"""Entries (issue 13, item 1): list with filters and pagination, create, read, update,
delete, move to a stage.

- ``GET /entities/{slug}/entries`` — newest first. Filters: ``pipeline_id``, ``stage_id``,
  ``reference_type``, ``reference_id`` (equality), ``q`` (text in the title or any value, the
  admin's search), ``field_key`` + ``field_value`` (entries whose value under the key equals the
  value as the field's type reads it, or, for a list value, holds it), ``include_customer``
  (each entry gets ``customer``: the customer it references, or null). Pagination:
  ``per_page`` (1–100, default 25) and either ``cursor`` (the opaque, signed ``next_cursor`` of
  the previous page: a keyset seek, as cheap 100,000 entries deep as on the first page) or
  ``page`` (1-based, for small offsets: at most `MAX_OFFSET` entries are skipped; deeper, use
  the cursor). The answer says how to go on: ``has_more``, ``next_cursor``, ``next_url`` and a
  ``Link: <…>; rel="next"`` header. With ``field_key``, at most `MAX_SCAN` entries are examined
  per request: a page may then hold fewer than ``per_page`` entries and still have a next one.
- ``POST /entities/{slug}/entries`` — CreateCrmEntry: ``{title, values, reference_type
  (default "customer"), reference_id, pipeline_id, stage_id}``; values coerced and validated
  by the core exactly as SetCrmFields does. 201 with ``Location`` and ``ETag``.
- ``GET|PUT|DELETE /entries/{entry_id}`` — PUT merges ``values`` (a flat object) and ``title``
  into the stored entry (`Crm.update_entry`).
- ``PUT /entries/{entry_id}/stage`` — ``{stage_id, pipeline_id}`` (ids or slugs) through
  `crm_templates.stage_history.move_entry` (the stage history names the key).

Locked fields (``ui_editable: false``) can be written through the API: the lock keeps the
admin's inline editing (and customers) off a field that scripts set, and an API key is a
script's credential, not a customer's. Every write is audited (``entry.create``,
``entry.update``, ``entry.delete``, ``entry.stage``).
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlencode

from flask import current_app, request, url_for
from itsdangerous import BadSignature, URLSafeSerializer

from ...api_shapes import entry_json, find_entity
from ...errors import CrmError, EntryNotFoundError, StaleEntryError
from ...model import Customer, Entity, Entry
from ...stage_history import move_entry
from ...storage.listing import EntryQuery, Key
from ...values import check_plain_string, check_reference, coerce
from . import actor, bp, crm, record
from . import schemas as s
from .conditional import check_version, etag, if_match
from .errors import ApiError, from_crm_error
from .spec import operation

MAX_OFFSET = 10_000
MAX_SCAN = 5_000
_CHUNK = 500
_CURSOR_SALT = "crm-api-entries-cursor"
ENTRY_ERRORS = (400, 401, 403, 404, 409, 415, 422, 429)


def entity_or_404(slug: str) -> Entity:
    """The entity, or 404 in the error shape."""
    entity = find_entity(crm(), slug)
    if entity is None:
        raise ApiError(404, f"There is no entity {slug!r}.")
    return entity


def entry_or_404(entry_id: str) -> Entry:
    """The entry, or 404 in the error shape."""
    entry = crm().get_entry(entry_id)
    if entry is None:
        raise ApiError(404, f"There is no entry {entry_id!r}.")
    return entry


# --- cursors --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _serializer(secret_key: str | bytes) -> URLSafeSerializer:
    # Made once per secret key: building one costs more than signing a cursor with it.
    return URLSafeSerializer(secret_key, salt=_CURSOR_SALT)


def _signer() -> URLSafeSerializer:
    return _serializer(current_app.secret_key or "")


def cursor_token(slug: str, key: Key) -> str:
    """The opaque ``next_cursor`` continuing after ``key`` in entity ``slug``'s listing."""
    return str(_signer().dumps([slug, key[0], key[1]]))


def cursor_key(token: str, slug: str) -> Key:
    """The key inside a cursor; 422 for a forged, damaged or foreign one."""
    try:
        data = _signer().loads(token)
    except BadSignature:
        data = None
    if not (isinstance(data, list) and len(data) == 3 and all(isinstance(p, str) for p in data)):
        message = "the cursor is not valid: use next_cursor exactly as answered, or start over"
        raise ApiError(422, message, {"cursor": [message]})
    if data[0] != slug:
        message = f"the cursor was made for entity {data[0]!r}, not {slug!r}"
        raise ApiError(422, message, {"cursor": [message]})
    return data[1], data[2]


# --- listing --------------------------------------------------------------------------------


def _value_matcher(entity: Entity, key: str, raw: str) -> Any:
    field = next((f for f in entity.fields if f.key == key), None)
    if field is None:
        known = ", ".join(f.key for f in entity.fields) or "none"
        message = f"entity {entity.slug!r} has no field {key!r}; fields: {known}"
        raise ApiError(422, message, {"field_key": [message]})
    try:
        wanted = coerce(field, raw)
    except CrmError:
        wanted = raw

    def matches(entry: Entry) -> bool:
        if key not in entry.values:
            return False
        value = entry.values[key]
        if isinstance(value, list):
            return wanted in value or raw in value
        return bool(value in (wanted, raw))

    return matches


def _customers(entries: list[Entry]) -> dict[str, Customer]:
    ids = {e.reference_id for e in entries if e.reference_type == "customer"}
    found: dict[str, Customer] = {}
    for ident in ids:
        customer = crm().get_customer(ident)
        if customer is not None:
            found[ident] = customer
    return found


def entries_json(entries: list[Entry], include_customer: bool) -> list[dict[str, Any]]:
    """Entries in the API's shape, with their customers when asked."""
    if not include_customer:
        return [entry_json(e) for e in entries]
    customers = _customers(entries)
    return [
        entry_json(
            e,
            customers.get(e.reference_id) if e.reference_type == "customer" else None,
            with_customer=True,
        )
        for e in entries
    ]


@operation(
    bp,
    "GET",
    "/entities/{slug}/entries",
    summary="List an entity's entries (filters, page or cursor)",
    tag="Entries",
    query=s.ENTRY_FILTERS,
    response=s.ref("EntryList"),
    errors=ENTRY_ERRORS,
    paged=True,
)
def list_entries(slug: str, query: dict[str, Any]) -> Any:
    """Newest first; see the module docstring for filters and pagination."""
    entity = entity_or_404(slug)
    per_page = query.get("per_page", 25)
    page = query.get("page")
    token = query.get("cursor")
    if page is not None and token is not None:
        message = "give page or cursor, not both"
        raise ApiError(422, message, {"page": [message], "cursor": [message]})
    if ("field_key" in query) != ("field_value" in query):
        message = "field_key and field_value go together"
        raise ApiError(422, message, {"field_key": [message], "field_value": [message]})
    skip = (page - 1) * per_page if page else 0
    if skip > MAX_OFFSET:
        message = (
            f"page skips {skip} entries; at most {MAX_OFFSET} can be skipped by page number: "
            "follow next_cursor instead"
        )
        raise ApiError(422, message, {"page": [message]})
    try:
        listing = EntryQuery(
            entity=entity.slug,
            pipeline_id=query.get("pipeline_id"),
            stage_id=query.get("stage_id"),
            reference_type=query.get("reference_type"),
            reference_id=query.get("reference_id"),
            search=query.get("q") or None,
        )
    except CrmError as exc:
        raise from_crm_error(exc, "q") from None
    matches = (
        _value_matcher(entity, query["field_key"], query["field_value"])
        if "field_key" in query
        else None
    )
    after = cursor_key(token, entity.slug) if token else None
    store = crm().store
    found: list[Entry] = []
    scanned = 0
    more = False
    if matches is None and not skip:
        found = store.list_entries_page(listing, after=after, limit=per_page + 1)
        more = len(found) > per_page
        found = found[:per_page]
        last = listing.key_of(found[-1]) if found else None
    else:
        last = after
        while True:
            batch = store.list_entries_page(listing, after=last, limit=_CHUNK)
            for entry in batch:
                if matches is not None and not matches(entry):
                    last = listing.key_of(entry)
                    continue
                if skip:
                    skip -= 1
                    last = listing.key_of(entry)
                    continue
                if len(found) == per_page:
                    more = True
                    break
                found.append(entry)
                last = listing.key_of(entry)
            scanned += len(batch)
            if more or len(batch) < _CHUNK:
                break
            if scanned >= MAX_SCAN + skip:
                more = True  # examined enough for one request: continue from `last`
                break
    next_cursor = cursor_token(entity.slug, last) if more and last is not None else None
    body: dict[str, Any] = {
        "data": entries_json(found, bool(query.get("include_customer"))),
        "per_page": per_page,
        "page": page,
        "has_more": more,
        "next_cursor": next_cursor,
        "next_url": None,
    }
    headers: dict[str, str] = {}
    if next_cursor is not None:
        args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "cursor")]
        next_url = f"{request.path}?{urlencode([*args, ('cursor', next_cursor)])}"
        body["next_url"] = next_url
        headers["Link"] = f'<{next_url}>; rel="next"'
    return body, 200, headers


# --- one entry ------------------------------------------------------------------------------


def check_values(entity: Entity, values: Any) -> None:
    """422 naming every value the core refuses (``values.<key>``: unknown key, or a value its
    field's type does not accept — `crm_templates.values.coerce`, what SetCrmFields runs), so a
    client learns about all of them at once. The service validates again when it writes."""
    if not isinstance(values, dict):
        return
    fields = {f.key: f for f in entity.fields}
    errors: dict[str, list[str]] = {}
    for key, value in values.items():
        field = fields.get(key)
        if field is None:
            known = ", ".join(fields) or "none"
            errors[f"values.{key}"] = [
                f"entity {entity.slug!r} has no field {key!r}; fields: {known}"
            ]
            continue
        try:
            coerce(field, value)
        except CrmError as exc:
            errors[f"values.{key}"] = [str(exc)]
    if errors:
        raise ApiError(422, "A value was not accepted.", errors)


def check_fields(checks: dict[str, Any]) -> None:
    """422 naming each body field the core refuses. ``checks`` maps a body field (``title``,
    ``reference_id`` …) to a callable running the core's own check of it (the same functions
    CreateCrmEntry and `Crm.update_entry` run), so a refusal names the field the client sent
    instead of the core's option name with ``errors: {}`` (found in the issue-13 attack
    review). The service checks again when it writes."""
    errors: dict[str, list[str]] = {}
    for field, check in checks.items():
        try:
            check()
        except CrmError as exc:
            errors[field] = [str(exc)]
    if errors:
        message = next(iter(errors.values()))[0] if len(errors) == 1 else None
        raise ApiError(422, message or "A value was not accepted.", errors)


def _answer(entry: Entry, status: int = 200) -> Any:
    return entry_json(entry), status, etag(entry.version)


@operation(
    bp,
    "POST",
    "/entities/{slug}/entries",
    summary="Create an entry (CreateCrmEntry)",
    tag="Entries",
    body=s.ENTRY_CREATE,
    response=s.ref("Entry"),
    status=201,
    errors=ENTRY_ERRORS,
    etag=True,
    links={
        name: (target, {"entry_id": "$response.body#/id"})
        for name, target in (
            ("GetEntry", "get_entry"),
            ("UpdateEntry", "update_entry"),
            ("MoveEntry", "move_entry_stage"),
            ("DeleteEntry", "delete_entry"),
        )
    },
)
def create_entry(slug: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    """Values are a flat object, coerced and validated as SetCrmFields does; the entry lands
    on ``stage_id``/``pipeline_id`` (ids or slugs) or the default pipeline's first stage."""
    entity = entity_or_404(slug)
    check_values(entity, body.get("values"))
    pipeline, stage = body.get("pipeline_id"), body.get("stage_id")
    checks: dict[str, Any] = {
        "title": lambda: check_plain_string("title", body.get("title")),
        "reference_type": lambda: check_reference(body.get("reference_type", "customer"), "x"),
        "reference_id": lambda: check_reference("customer", body["reference_id"]),
        "pipeline_id": lambda: crm().placement_for(entity.slug, pipeline),
    }
    check_fields(checks)
    check_fields({"stage_id": lambda: crm().placement_for(entity.slug, pipeline, stage)})
    options: dict[str, Any] = {
        "slug": entity.slug,
        "referenceType": body.get("reference_type", "customer"),
        "referenceId": body["reference_id"],
    }
    if body.get("title") is not None:
        options["title"] = body["title"]
    if body.get("values") is not None:
        options["values"] = body["values"]
    if body.get("pipeline_id") is not None:
        options["pipeline"] = body["pipeline_id"]
    if body.get("stage_id") is not None:
        options["stage"] = body["stage_id"]
    result = crm().create_entry(options)
    entry = entry_or_404(result["id"])
    record("entry.create", entry_id=entry.id, entity=entity.slug)
    data, status, headers = _answer(entry, 201)
    headers["Location"] = url_for("crm_api.get_entry", entry_id=entry.id)
    return data, status, headers


@operation(
    bp,
    "GET",
    "/entries/{entry_id}",
    summary="Read an entry",
    tag="Entries",
    query={"include_customer": s.ENTRY_FILTERS["include_customer"]},
    response=s.ref("Entry"),
    errors=(401, 403, 404, 422, 429),
    etag=True,
)
def get_entry(entry_id: str, query: dict[str, Any]) -> Any:
    """The entry, with ``ETag: "<version>"``."""
    entry = entry_or_404(entry_id)
    return entries_json([entry], bool(query.get("include_customer")))[0], 200, etag(entry.version)


@operation(
    bp,
    "PUT",
    "/entries/{entry_id}",
    summary="Update an entry's values and title",
    tag="Entries",
    body=s.ENTRY_UPDATE,
    response=s.ref("Entry"),
    errors=ENTRY_ERRORS,
    if_match=True,
    etag=True,
)
def update_entry(entry_id: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    """Merges ``values`` (flat; null clears a value) and ``title``; with ``If-Match`` refused
    with 409 when the entry changed."""
    wanted = if_match()
    entry = entry_or_404(entry_id)
    values = body.get("values") or {}
    check_values(entity_or_404(entry.entity), values)
    check_fields({"title": lambda: check_plain_string("title", body.get("title"))})
    try:
        stored = crm().update_entry(
            entry_id, values, title=body.get("title"), expected_version=wanted
        )
    except EntryNotFoundError as exc:
        if crm().get_entry(entry_id) is None:
            raise ApiError(404, f"There is no entry {entry_id!r}.") from None
        raise from_crm_error(exc) from None
    except StaleEntryError as exc:
        raise ApiError(409, str(exc), {"If-Match": [str(exc)]}) from None
    record(
        "entry.update",
        entry_id=entry_id,
        entity=stored.entity,
        details={"fields": sorted(values), "title": body.get("title") is not None},
    )
    return _answer(stored)


@operation(
    bp,
    "DELETE",
    "/entries/{entry_id}",
    summary="Delete an entry",
    tag="Entries",
    response=s.ref("Deleted"),
    errors=(400, 401, 403, 404, 409, 429),
    if_match=True,
)
def delete_entry(entry_id: str, query: dict[str, Any]) -> Any:
    """With ``If-Match`` refused with 409 when the entry changed."""
    wanted = if_match()
    entry = entry_or_404(entry_id)
    check_version(entry.version, wanted, f"entry {entry_id!r}")
    try:
        # With If-Match the store deletes only at that version, atomically: an update landing
        # after the check above is not deleted with the entry.
        deleted = crm().delete_entry(entry_id, expected_version=wanted)
    except StaleEntryError as exc:
        raise ApiError(409, str(exc), {"If-Match": [str(exc)]}) from None
    if not deleted:
        raise ApiError(404, f"There is no entry {entry_id!r}.")
    record("entry.delete", entry_id=entry_id, entity=entry.entity)
    return {"deleted": True, "id": entry_id}


@operation(
    bp,
    "PUT",
    "/entries/{entry_id}/stage",
    summary="Move an entry to a stage",
    tag="Entries",
    body=s.ENTRY_STAGE,
    response=s.ref("Entry"),
    errors=ENTRY_ERRORS,
    if_match=True,
    etag=True,
)
def move_entry_stage(entry_id: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    """``stage_id`` and ``pipeline_id`` take ids or slugs (MoveCrmLead's rules); the move is
    recorded in the stage history with the key as the actor."""
    wanted = if_match()
    before = entry_or_404(entry_id)
    try:
        moved = move_entry(
            crm(),
            entry_id,
            stage=body["stage_id"],
            pipeline=body.get("pipeline_id"),
            actor=actor(),
            expected_version=wanted,
        )
    except StaleEntryError as exc:
        raise ApiError(409, str(exc), {"If-Match": [str(exc)]}) from None
    except EntryNotFoundError:
        raise ApiError(404, f"There is no entry {entry_id!r}.") from None
    except CrmError as exc:
        raise from_crm_error(exc, "stage_id") from None
    record(
        "entry.stage",
        entry_id=entry_id,
        entity=moved.entity,
        details={"from": before.stage_id, "to": moved.stage_id},
    )
    return _answer(moved)
