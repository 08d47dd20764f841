"""Entries in the admin (issue 12, item 3): one entity's entries as a table, one entry's page.

``GET /admin/entities/<slug>/entries`` — a table of the entity's entries, 50 a page, read with
keyset pagination (`crm_templates.storage.listing`): the "Next page" link carries ``after``, an
opaque token signed with the app's secret key that holds the sort order and the key of the last
entry shown, so the page 2,000 deep costs what the first costs, and entries added meanwhile
never repeat an entry or skip one. Query parameters (all optional):

- ``q`` — text found in the title or any value (case-insensitive), at most 200 characters;
- ``stage`` (id or slug), ``pipeline`` (id or slug) — entries in that stage / pipeline;
- ``reference_type``, ``reference_id`` — entries attached to that record;
- ``sort`` — ``-created`` (newest first, the default), ``created``, ``-updated``, ``updated``;
- ``after`` — the token of a "Next page" link.

A bad parameter (unknown stage or pipeline, a stage on a data-mode entity, a bad sort, a token
that is forged, damaged or made for another entity or sort) answers 400 saying what is wrong;
an unknown entity 404.

``GET /admin/entries/<entry_id>`` — every value (rendered, editable unless locked), the stage
with a move form (CRM-mode entities), the relations both ways as labelled links, the stage
history (who, when, from → to), and the audit trail (``{% block audit %}``).

The writes (edit one value, move to a stage) are in `entry_edits`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import abort, current_app, request, url_for
from flask.typing import ResponseReturnValue
from itsdangerous import BadSignature, URLSafeSerializer
from markupsafe import Markup
from werkzeug.datastructures import MultiDict

from ...errors import CrmError, CrmValidationError, UnknownEntityError
from ...extension import stage_badge
from ...model import Entity, Entry, Field, Pipeline, Stage
from ...stage_history import history, stage_names
from ...storage.listing import MAX_SEARCH, EntryQuery, Key
from ...values import check_reference
from ..state import state
from . import bp
from .audit import audit_context
from .context import render_admin
from .entry_cells import (
    Cell,
    Labels,
    entry_url,
    make_cell,
    reference_ids,
    reference_link,
    with_error,
)

PAGE = 50
SORT_CHOICES = {
    "-created": ("created", True, "Newest first"),
    "created": ("created", False, "Oldest first"),
    "-updated": ("updated", True, "Recently updated"),
    "updated": ("updated", False, "Least recently updated"),
}
_CURSOR_SALT = "crm-admin-entries-cursor"


# --- cursors ------------------------------------------------------------------------------


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key or "", salt=_CURSOR_SALT)


def cursor_token(slug: str, sort: str, key: Key) -> str:
    """The opaque ``after`` token continuing after ``key`` in ``sort`` order of entity ``slug``
    (the entity is in the token so that a token replayed on another entity's table is refused
    rather than silently starting that table at a foreign position)."""
    return str(_signer().dumps([slug, sort, key[0], key[1]]))


def cursor_key(token: str, slug: str, sort: str) -> Key:
    """The key inside an ``after`` token; 400 for a forged or damaged one, or one made for
    another entity or another sort."""
    try:
        data = _signer().loads(token)
    except BadSignature:
        abort(400, "The page cursor ('after') is not valid: follow the Next page link again, or "
                   "start from the first page.")  # fmt: skip
    if not (isinstance(data, list) and len(data) == 4 and all(isinstance(p, str) for p in data)):
        abort(400, "The page cursor ('after') is not valid: start from the first page.")
    if data[0] != slug:
        abort(400, f"The page cursor ('after') was made for the entity {data[0]!r}, not "
                   f"{slug!r}: start from the first page.")  # fmt: skip
    if data[1] != sort:
        abort(400, f"The page cursor ('after') was made for the sort {data[1]!r}, not {sort!r}: "
                   "start from the first page.")  # fmt: skip
    return data[2], data[3]


# --- entities and stages ------------------------------------------------------------------


def entity_or_404(slug: str) -> Entity:
    """The entity with this slug, or 404."""
    try:
        return state().crm.get_entity(slug)
    except (UnknownEntityError, CrmValidationError):
        abort(404, f"There is no entity {slug!r}.")


def find_stage(entity: Entity, stage_id: str | None) -> tuple[Pipeline, Stage] | None:
    """The pipeline and stage with this stage id, or None."""
    for p in entity.pipelines:
        for s in p.stages:
            if s.id == stage_id:
                return p, s
    return None


def _pick_pipeline(entity: Entity, value: str) -> Pipeline:
    for p in entity.pipelines:
        if value in (p.id, p.slug):
            return p
    known = ", ".join(p.slug for p in entity.pipelines) or "none"
    abort(400, f"Entity {entity.slug!r} has no pipeline {value!r}; pipelines: {known}.")


def _pick_stage(entity: Entity, pipeline: Pipeline | None, value: str) -> Stage:
    scope = [pipeline] if pipeline is not None else list(entity.pipelines)
    matches = [(p, s) for p in scope for s in p.stages if value in (s.id, s.slug)]
    if not matches:
        known = ", ".join(f"{p.slug}/{s.slug}" for p in scope for s in p.stages) or "none"
        abort(400, f"Entity {entity.slug!r} has no stage {value!r}; stages: {known}.")
    if len(matches) > 1:
        abort(400, f"Stage {value!r} is in several pipelines of {entity.slug!r}: add "
                   "pipeline=<slug> to choose one.")  # fmt: skip
    return matches[0][1]


# --- the table ----------------------------------------------------------------------------


def listing_query(entity: Entity, args: Mapping[str, str]) -> tuple[EntryQuery, str, Key | None]:
    """The store query, the sort choice and the ``after`` key the parameters ask for (400 for
    a bad one; see the module docstring)."""
    sort_choice = args.get("sort") or "-created"
    if sort_choice not in SORT_CHOICES:
        abort(400, f"sort must be one of {', '.join(SORT_CHOICES)}; got {sort_choice!r}.")
    sort, descending, _label = SORT_CHOICES[sort_choice]
    search = (args.get("q") or "").strip() or None
    if search is not None and len(search) > MAX_SEARCH:
        abort(400, f"A search (q) is at most {MAX_SEARCH} characters; got {len(search)}.")
    pipeline_arg, stage_arg = args.get("pipeline") or None, args.get("stage") or None
    pipeline_id = stage_id = None
    if (pipeline_arg or stage_arg) and entity.mode != "crm":
        abort(400, f"Entity {entity.slug!r} is in data mode: it has no pipelines or stages.")
    pipeline = _pick_pipeline(entity, pipeline_arg) if pipeline_arg else None
    if pipeline is not None:
        pipeline_id = pipeline.id
    if stage_arg:
        stage_id = _pick_stage(entity, pipeline, stage_arg).id
    reference_type = args.get("reference_type") or None
    reference_id = args.get("reference_id") or None
    if reference_id is not None:
        reference_type = reference_type or "customer"
        try:
            check_reference(reference_type, reference_id)
        except CrmValidationError as exc:
            abort(400, str(exc))
    elif reference_type is not None:
        try:
            check_reference(reference_type, "x")
        except CrmValidationError as exc:
            abort(400, str(exc))
    query = EntryQuery(
        entity.slug,
        pipeline_id=pipeline_id,
        stage_id=stage_id,
        reference_type=reference_type,
        reference_id=reference_id,
        search=search,
        sort=sort,
        descending=descending,
    )
    after = args.get("after")
    return query, sort_choice, cursor_key(after, entity.slug, sort_choice) if after else None


def _stage_badge(entity: Entity, entry: Entry) -> Markup:
    found = find_stage(entity, entry.stage_id)
    return stage_badge(found[1]) if found else Markup("")


def _page_url(slug: str, args: Mapping[str, str], **changes: str | None) -> str:
    params: dict[str, Any] = {k: v for k, v in args.items() if v and k != "after"}
    params.update({k: v for k, v in changes.items() if v})
    return url_for("crm_admin.entity_entries", slug=slug, **params)


def table_page(
    slug: str,
    args: Mapping[str, str],
    *,
    error: tuple[str, str, str, MultiDict[str, str]] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    """The entries table; ``error`` = (entry id, field key, message, form sent) re-shows a
    refused edit next to its value."""
    entity = entity_or_404(slug)
    query, sort_choice, after = listing_query(entity, args)
    store = state().crm.store
    entries = store.list_entries_page(query, after=after, limit=PAGE + 1)
    next_url = None
    if len(entries) > PAGE:
        entries = entries[:PAGE]
        token = cursor_token(entity.slug, sort_choice, query.key_of(entries[-1]))
        next_url = _page_url(slug, args, after=token)
    labels = Labels({entity.slug: entity})
    labels.prefetch(reference_ids(entries, entity.fields))
    rows = []
    for entry in entries:
        cells = []
        for f in entity.fields:
            cell = make_cell(labels, entry, f)
            if error and error[0] == entry.id and error[1] == f.key:
                with_error(cell, error[2], error[3])
            cells.append(cell)
        rows.append(
            {
                "entry": entry,
                "url": entry_url(entry.id),
                "stage": _stage_badge(entity, entry),
                "reference_url": reference_link(entry.reference_type, entry.reference_id),
                "cells": cells,
            }
        )
    filtered = bool(query.search or query.filters())
    return render_admin(
        "admin/entries.html",
        title=f"{entity.name}: entries",
        breadcrumbs=[("Entities", "/admin/entities"), (entity.name, f"/admin/entities/{slug}")],
        status=status,
        entity=entity,
        rows=rows,
        fields=entity.fields,
        filtered=filtered,
        args=args,
        sort_choices=[(value, label) for value, (_s, _d, label) in SORT_CHOICES.items()],
        sort_choice=sort_choice,
        sort_label=SORT_CHOICES[sort_choice][2],
        next_url=next_url,
        first_url=_page_url(slug, args) if after else None,
        here=_page_url(slug, args, after=args.get("after")),
        entries_css=url_for("crm_admin.static", filename="entries.css"),
        entries_js=url_for("crm_admin.static", filename="entries.js"),
    )


@bp.get("/entities/<slug>/entries")
def entity_entries(slug: str) -> ResponseReturnValue:
    """The entries table (see the module docstring)."""
    return table_page(slug, request.args)


# --- the entry page -----------------------------------------------------------------------


def entry_or_404(entry_id: str) -> Entry:
    """The entry with this id, or 404."""
    try:
        entry = state().crm.get_entry(entry_id)
    except CrmError:
        entry = None
    if entry is None:
        abort(404, f"There is no entry {entry_id!r}.")
    return entry


def _relations_out(labels: Labels, entity: Entity, entry: Entry) -> list[dict[str, Any]]:
    """The entries this one points to, one item per reference field holding ids."""
    out = []
    for f in entity.fields:
        if f.type not in ("reference", "multi_reference"):
            continue
        value = entry.values.get(f.key)
        ids = [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]
        if not ids:
            continue
        labels.prefetch(ids)
        links = []
        for ident in ids:
            target = labels.known.get(ident)
            label = labels.label(target, ident, f.display_field)
            links.append((label, entry_url(ident) if target is not None else None))
        target_entity = labels.entity(f.target_entity or "")
        out.append(
            {
                "field": f,
                "target": target_entity.name if target_entity else (f.target_entity or ""),
                "links": links,
            }
        )
    return out


def _holds(value: Any, entry_id: str) -> bool:
    return value == entry_id or (isinstance(value, list) and entry_id in value)


def _relations_in(labels: Labels, entry: Entry) -> list[dict[str, Any]]:
    """The entries that point here: (entity, field) → linked entries."""
    pointing: list[tuple[Entity, Field]] = [
        (e, f)
        for e in state().crm.list_entities()
        for f in e.fields
        if f.type in ("reference", "multi_reference") and f.target_entity == entry.entity
    ]
    if not pointing:
        return []
    found = state().crm.store.referencing_entries(
        entry.id, [(e.slug, f.key) for e, f in pointing], limit=200
    )
    out = []
    for e, f in pointing:
        holders = [x for x in found if x.entity == e.slug and _holds(x.values.get(f.key), entry.id)]
        if holders:
            out.append(
                {
                    "entity": e,
                    "field": f,
                    "links": [(x.title or x.id, entry_url(x.id)) for x in holders],
                }
            )
    return out


def detail_page(
    entry: Entry,
    *,
    error: tuple[str, str, MultiDict[str, str]] | None = None,
    stage_error: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    """The entry page; ``error`` = (field key, message, form sent) re-shows a refused edit,
    ``stage_error`` a refused move."""
    entity = entity_or_404(entry.entity)
    labels = Labels({entity.slug: entity})
    labels.prefetch(reference_ids([entry], entity.fields))
    cells: list[Cell] = []
    for f in entity.fields:
        cell = make_cell(labels, entry, f)
        if error and error[0] == f.key:
            with_error(cell, error[1], error[2])
        cells.append(cell)
    names = stage_names(entity)
    changes = [
        {
            "at": c.at,
            "actor": c.actor,
            "from": names.get(c.from_stage_id, c.from_stage_id or "—"),
            "to": names.get(c.to_stage_id, c.to_stage_id or "—"),
        }
        for c in history(state().crm, entry.id)
    ]
    undeclared = sorted(k for k in entry.values if k not in set(entity.field_keys))
    title = entry.title or f"{entity.singular_name} {entry.id}"
    return render_admin(
        "admin/entry.html",
        **audit_context(entry.id),
        customers_css=url_for("crm_admin.static", filename="customers.css"),
        title=title,
        breadcrumbs=[
            ("Entities", "/admin/entities"),
            (entity.name, f"/admin/entities/{entity.slug}"),
            ("Entries", url_for("crm_admin.entity_entries", slug=entity.slug)),
        ],
        status=status,
        entity=entity,
        entry=entry,
        cells=cells,
        undeclared=undeclared,
        stage=_stage_badge(entity, entry),
        current_stage=find_stage(entity, entry.stage_id),
        stage_error=stage_error,
        reference_url=reference_link(entry.reference_type, entry.reference_id),
        relations_out=_relations_out(labels, entity, entry),
        relations_in=_relations_in(labels, entry),
        changes=changes,
        here=url_for("crm_admin.entry_detail", entry_id=entry.id),
        entries_css=url_for("crm_admin.static", filename="entries.css"),
        entries_js=url_for("crm_admin.static", filename="entries.js"),
    )


@bp.get("/entries/<entry_id>")
def entry_detail(entry_id: str) -> ResponseReturnValue:
    """One entry's page (see the module docstring)."""
    return detail_page(entry_or_404(entry_id))
