"""``/admin/``: the entities with their entry counts and links onward, the newest entries
across entities, the customer count, and what to do first on a fresh store (issue 12, item 8).

Cost: one ``count_entries`` and one keyset page of `RECENT` entries per entity
(`crm_templates.storage.listing`: the ``(entity, created_at, id)`` index on SQLite, a sorted
``size`` query on the search backend), never a scan of all entries; the newest `RECENT` of
those pages are shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import url_for
from flask.typing import ResponseReturnValue

from ...colours import css_colour
from ...model import Entity, Entry
from ...storage.listing import EntryQuery
from ..state import state
from . import bp
from .context import render_admin

RECENT = 10
FALLBACK_SWATCH = "#64748b"  # slate: an entity without a (valid) colour


@dataclass(frozen=True)
class EntityRow:
    """One entity on the dashboard: its count, safe swatch colour and the URLs of its pages."""

    entity: Entity
    count: int
    swatch: str
    boards: tuple[tuple[str, str], ...]  # (pipeline name, board URL)


def swatch(colour: str | None) -> str:
    """The entity's colour re-validated at render time (`css_colour`: whatever the store holds,
    only a parsed colour reaches the ``style`` attribute), else `FALLBACK_SWATCH`."""
    return css_colour(colour) or FALLBACK_SWATCH


def recent_entries(entities: list[Entity], limit: int = RECENT) -> list[Entry]:
    """The ``limit`` newest entries (by ``created_at``, then id) across ``entities``: one keyset
    page of ``limit`` per entity, merged. Costs ``len(entities)`` indexed reads of ``limit``
    rows, whatever the number of entries."""
    store = state().crm.store
    found: list[Entry] = []
    for entity in entities:
        found.extend(store.list_entries_page(EntryQuery(entity=entity.slug), limit=limit))
    found.sort(key=lambda entry: (entry.created_at, entry.id), reverse=True)
    return found[:limit]


@bp.get("/")
def dashboard() -> ResponseReturnValue:
    """Entities (name, mode, entries, links to their page, entries, reports and boards), the
    newest entries, and the store's customer count; empty states say what to do next."""
    crm = state().crm
    store = crm.store
    entities = list(crm.list_entities())
    rows = [
        EntityRow(
            entity=entity,
            count=store.count_entries(entity.slug),
            swatch=swatch(entity.color),
            boards=tuple(
                (
                    pipeline.name,
                    url_for("crm_admin.board", slug=entity.slug, pipeline_slug=pipeline.slug),
                )
                for pipeline in entity.pipelines
            ),
        )
        for entity in entities
    ]
    names = {entity.slug: entity for entity in entities}
    return render_admin(
        "admin/dashboard.html",
        title="Dashboard",
        rows=rows,
        recent=recent_entries(entities),
        entities_by_slug=names,
        customer_count=store.count_customers(),
    )
