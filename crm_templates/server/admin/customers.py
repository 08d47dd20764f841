"""``/admin/customers``: find a customer, and their details with the **CRM tab** (issue 12,
item 5; SPEC §8 "customer details with a CRM tab listing all of that customer's entries
across entities").

- ``GET /admin/customers?q=TEXT&page=N`` — customers newest first, `PAGE` per page; ``q``
  keeps those whose id, email or name contains it (case-insensitive, the rule of
  `crm_templates.customer_list`), an exact id or email first. Pages are bounded by `MAX_PAGE`.
- ``GET /admin/customers/<id>`` — the CRM tab: every entry referencing the customer, across
  every entity, grouped by entity (in the site's entity order), values rendered with
  ``renderers`` (safe HTML), each linked to ``/admin/entries/<entry_id>``; at most
  `MAX_ENTRIES` (the newest), saying so when there are more. ``?tab=details`` shows the
  customer record. Both carry "Preview pages as this customer" (``/?preview_customer=<id>``)
  and "Sign this customer out everywhere".
- ``POST /admin/customers/<id>/sign-out-everywhere`` (CSRF) — bumps the customer's session
  generation (`crm_templates.server.sessions`), which ends every signed-in session of theirs
  in every process; recorded in the audit trail.

404 for an id that is not a customer's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import abort, redirect, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

import renderers

from ...customer_list import iter_customers, matches
from ...errors import CrmValidationError
from ...model import Customer, Entity, Entry
from ...whole_numbers import parse_whole_number
from .. import sessions
from ..state import state
from . import bp
from .context import NAVIGATION, record_action, render_admin

PAGE = 50
MAX_PAGE = 2_000  # 100,000 customers deep; past that, search
MAX_ENTRIES = 500
TABS = ("crm", "details")

NAVIGATION.append(("Customers", "crm_admin.customers"))


@dataclass
class EntryRow:
    """One entry of the CRM tab: its title, stage and rendered values."""

    entry: Entry
    stage: str | None
    values: list[tuple[str, Markup]] = field(default_factory=list)


@dataclass
class EntityGroup:
    """The customer's entries of one entity."""

    slug: str
    name: str
    rows: list[EntryRow] = field(default_factory=list)


def _page_number() -> int:
    raw = request.args.get("page", "1")
    page = parse_whole_number(raw)
    if page is None or not 1 <= page <= MAX_PAGE:
        abort(400, f"page must be a whole number from 1 to {MAX_PAGE}; search to go further.")
    return page


def _search(text: str, page: int) -> tuple[list[Customer], bool]:
    """One page of customers matching ``text``; and whether there are more."""
    store = state().crm.store
    exact: list[Customer] = []
    by_id = store.get_customer(text) if len(text) <= 200 else None
    if by_id is not None:
        exact.append(by_id)
    if "@" in text:
        try:
            email = state().crm.normalise_email(text)
        except CrmValidationError:
            email = None
        by_email = store.get_customer_by_email(email) if email else None
        if by_email is not None and by_email not in exact:
            exact.append(by_email)
    wanted = page * PAGE + 1  # enough for this page and to know there is a next one
    found = list(exact)
    for customer in iter_customers(store):
        if len(found) >= wanted:
            break
        if customer not in exact and matches(customer, text):
            found.append(customer)
    start = (page - 1) * PAGE
    return found[start : start + PAGE], len(found) > start + PAGE


@bp.get("/customers")
def customers() -> ResponseReturnValue:
    """The customers list and search."""
    text = request.args.get("q", "").strip()
    if len(text) > 320:
        abort(400, "Search for at most 320 characters.")
    page = _page_number()
    store = state().crm.store
    if text:
        shown, more = _search(text, page)
    else:
        batch = store.list_customers(limit=PAGE + 1, offset=(page - 1) * PAGE)
        shown, more = batch[:PAGE], len(batch) > PAGE

    def page_url(number: int) -> str:
        args: dict[str, Any] = {"page": number}
        if text:
            args["q"] = text
        return url_for("crm_admin.customers", **args)

    return render_admin(
        "admin/customers.html",
        title="Customers",
        breadcrumbs=[],
        customers=shown,
        query=text,
        page=page,
        previous_url=page_url(page - 1) if page > 1 else None,
        next_url=page_url(page + 1) if more and page < MAX_PAGE else None,
        total=store.count_customers(),
    )


def _customer_or_404(customer_id: str) -> Customer:
    customer = state().crm.store.get_customer(customer_id) if len(customer_id) <= 200 else None
    if customer is None:
        abort(404, f"There is no customer {customer_id!r}.")
    return customer


def _render_options() -> renderers.RenderOptions:
    options = getattr(state().env, "crm_render_options", None)
    return options if isinstance(options, renderers.RenderOptions) else renderers.RenderOptions()


def _stage_label(entity: Entity | None, entry: Entry) -> str | None:
    if entity is None or entry.stage_id is None:
        return None
    for pipeline in entity.pipelines:
        for stage in pipeline.stages:
            if stage.id == entry.stage_id:
                return f"{pipeline.name}: {stage.name}"
    return entry.stage_id


def _render_values(
    entity: Entity | None, values: Mapping[str, Any], options: renderers.RenderOptions
) -> list[tuple[str, Markup]]:
    """``(label, safe HTML)`` for each stored value: declared fields in their order with their
    renderer, then undeclared keys as JSON."""
    shown: list[tuple[str, Markup]] = []
    declared = set()
    for declared_field in entity.fields if entity is not None else ():
        declared.add(declared_field.key)
        if declared_field.key in values:
            try:
                html = renderers.render(values[declared_field.key], declared_field, options)
            except renderers.RendererError as exc:
                html = Markup('<span class="admin-error">{}</span>').format(exc)
            shown.append((declared_field.label or declared_field.key, html))
    for key in values:
        if key not in declared:
            html = renderers.render(values[key], {"key": key, "type": "json"}, options)
            shown.append((key, html))
    return shown


def crm_tab(customer_id: str) -> tuple[list[EntityGroup], bool]:
    """The CRM tab's content: the customer's entries grouped by entity (site order, then any
    entity no longer declared), newest first within each; and whether more than
    `MAX_ENTRIES` exist (only the newest are shown). Only entries whose reference is this
    customer (``reference_type == "customer"``) are read."""
    crm = state().crm
    entries = crm.store.find_entries(None, "customer", customer_id, limit=MAX_ENTRIES + 1)
    more = len(entries) > MAX_ENTRIES
    entities = {entity.slug: entity for entity in crm.list_entities()}
    groups: dict[str, EntityGroup] = {
        slug: EntityGroup(slug, entity.name) for slug, entity in entities.items()
    }
    options = _render_options()
    for entry in entries[:MAX_ENTRIES]:
        # Defence in depth: the store filtered by reference already.
        if entry.reference_type != "customer" or entry.reference_id != customer_id:
            continue
        entity = entities.get(entry.entity)
        group = groups.setdefault(entry.entity, EntityGroup(entry.entity, entry.entity))
        group.rows.append(
            EntryRow(
                entry, _stage_label(entity, entry), _render_values(entity, entry.values, options)
            )
        )
    return [group for group in groups.values() if group.rows], more


@bp.get("/customers/<customer_id>")
def customer(customer_id: str) -> ResponseReturnValue:
    """A customer's page: the CRM tab (default) or the details tab."""
    found = _customer_or_404(customer_id)
    tab = request.args.get("tab", "crm")
    if tab not in TABS:
        abort(400, f"tab must be one of {', '.join(TABS)}.")
    groups, more = crm_tab(found.id) if tab == "crm" else ([], False)
    return render_admin(
        "admin/customer.html",
        title=found.name or found.id,
        breadcrumbs=[("Customers", url_for("crm_admin.customers"))],
        customer=found,
        tab=tab,
        groups=groups,
        more=more,
        max_entries=MAX_ENTRIES,
        entry_count=state().crm.store.count_entries(None, "customer", found.id),
        signed_out=request.args.get("signed_out") == "1",
        preview_url="/?" + "preview_customer=" + _quote(found.id),
    )


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


@bp.post("/customers/<customer_id>/sign-out-everywhere")
def sign_out_customer_everywhere(customer_id: str) -> ResponseReturnValue:
    """End every signed-in session of the customer, in every browser and process."""
    found = _customer_or_404(customer_id)
    generation = sessions.bump(sessions.customer_generation_key(found.id))
    record_action(
        "customer.sign_out_everywhere",
        details={"customer_id": found.id, "generation": generation},
    )
    return redirect(url_for("crm_admin.customer", customer_id=found.id, signed_out=1), code=303)
