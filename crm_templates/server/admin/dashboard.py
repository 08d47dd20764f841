"""``/admin/``: the entities with their entry counts, the newest entries, links onward."""

from __future__ import annotations

from flask.typing import ResponseReturnValue

from ..state import state
from . import bp
from .context import render_admin

RECENT = 10


@bp.get("/")
def dashboard() -> ResponseReturnValue:
    """Entities (name, mode, entries) and the store's customer count."""
    crm = state().crm
    store = crm.store
    entities = [(entity, store.count_entries(entity.slug)) for entity in crm.list_entities()]
    return render_admin(
        "admin/dashboard.html",
        title="Dashboard",
        entities=entities,
        customer_count=store.count_customers(),
    )
