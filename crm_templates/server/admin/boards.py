"""Pipeline boards (issue 12, item 4): ``/admin/boards`` lists every entity's pipelines;
``/admin/entities/<slug>/pipelines/<pipeline_slug>`` shows one as a board.

A board is a column per stage in pipeline order: the stage's name and colour, its count of
entries, the sum of a number field (``?sum=<field_key>``; default the first number field) and
the probability-weighted sum, and the most recently updated entries as cards (`DEFAULT_CARDS`,
then an "N more" link to the entries table filtered by the stage). Won and lost stages are
styled apart and say so in text. Each card has a "Move to" form posting to
``POST /admin/entries/<entry_id>/stage`` (`entry_edits.move_stage`); ``board.js`` adds drag and
drop and moves without a reload. The data comes from `crm_templates.boards.load_board` (two store
queries, counts and sums by the store).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from babel.numbers import format_decimal
from flask import abort, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

import renderers

from ...boards import DEFAULT_CARDS, Board, load_board
from ...colours import css_colour
from ...errors import CrmValidationError, UnknownEntityError
from ...model import Entity, Entry, Field
from ..state import state
from . import bp
from .context import NAVIGATION, render_admin

# The navigation entry (appended here, by the module that owns the view).
NAVIGATION.append(("Boards", "crm_admin.boards"))

#: Cards per column (then an "N more" link).
CARDS = DEFAULT_CARDS
#: Values shown on a card besides the title: the summed field's, then up to this many others.
CARD_VALUES = 2
#: Field types too large or too structured for a card.
_NOT_ON_CARDS = frozenset(
    {
        "json",
        "rich_text",
        "wysiwyg",
        "textarea",
        "image",
        "file",
        "reference",
        "multi_reference",
    }
)


def entries_url(slug: str, stage_slug: str | None = None) -> str:
    """The entries table of ``slug`` (the admin-entries view), filtered by stage."""
    url = f"/admin/entities/{quote(slug, safe='')}/entries"
    return f"{url}?{urlencode({'stage': stage_slug})}" if stage_slug else url


def entry_url(entry_id: str) -> str:
    """An entry's admin page."""
    return f"/admin/entries/{quote(entry_id, safe='')}"


def customer_url(customer_id: str) -> str:
    """A customer's admin page (with the CRM tab)."""
    return f"/admin/customers/{quote(customer_id, safe='')}"


def _number(value: float, locale: str) -> str:
    """A total for a column head: grouped, at most two decimals, in the site's locale."""
    return format_decimal(round(value, 2), format="#,##0.##", locale=locale)


def _card_fields(entity: Entity, summed: Field | None) -> list[Field]:
    shown = [summed] if summed is not None else []
    return shown + [f for f in entity.fields if f is not summed and f.type not in _NOT_ON_CARDS]


def _card(
    entry: Entry,
    entity: Entity,
    fields: list[Field],
    names: dict[str, str],
    options: renderers.RenderOptions,
    summed: Field | None,
) -> dict[str, Any]:
    values: list[tuple[str, Markup]] = []
    for f in fields:
        if len(values) > CARD_VALUES:
            break
        value = entry.values.get(f.key)
        if value is None or value == "" or value == []:
            continue
        try:
            values.append((f.label, renderers.render(value, f, options)))
        except renderers.RendererError:
            values.append((f.label, Markup("{}").format(value)))
    amount = entry.values.get(summed.key) if summed is not None else None
    customer = entry.reference_type == "customer"
    return {
        "id": entry.id,
        "title": entry.title.strip() or f"Untitled {entity.singular_name.lower()}",
        "untitled": not entry.title.strip(),
        "url": entry_url(entry.id),
        "shown": values,
        "amount": amount if isinstance(amount, int | float) and not isinstance(amount, bool) else 0,
        "reference_label": names.get(entry.reference_id, entry.reference_id)
        if customer
        else f"{entry.reference_type} {entry.reference_id}",
        "reference_url": customer_url(entry.reference_id) if customer else None,
        "updated_at": entry.updated_at,
    }


def _customer_names(board: Board) -> dict[str, str]:
    """Names of the cards' customers: one look-up per distinct customer shown."""
    crm = state().crm
    ids = {
        e.reference_id
        for column in board.columns
        for e in column.cards
        if e.reference_type == "customer"
    }
    names = {}
    for customer_id in sorted(ids):
        customer = crm.get_customer(customer_id)
        names[customer_id] = (customer.name if customer else "") or customer_id
    return names


@bp.get("/boards")
def boards() -> ResponseReturnValue:
    """Every CRM-mode entity's pipelines, each with its stage and entry counts and a link."""
    crm = state().crm
    rows = []
    for entity in crm.list_entities():
        for pipeline in entity.pipelines:
            totals = crm.store.stage_totals(entity.slug, pipeline.id)
            rows.append(
                {
                    "entity": entity,
                    "pipeline": pipeline,
                    "stages": len(pipeline.stages),
                    "entries": sum(t.count for t in totals.values()),
                    "url": url_for(
                        "crm_admin.board", slug=entity.slug, pipeline_slug=pipeline.slug
                    ),
                }
            )
    return render_admin(
        "admin/boards.html",
        title="Boards",
        rows=rows,
        board_stylesheet=url_for("crm_admin.static", filename="board.css"),
    )


@bp.get("/entities/<slug>/pipelines/<pipeline_slug>")
def board(slug: str, pipeline_slug: str) -> ResponseReturnValue:
    """One pipeline as a board (see the module docstring). 404 for an unknown entity or
    pipeline; 400 naming the number fields for a ``sum`` that is not one."""
    crm = state().crm
    try:
        entity = crm.get_entity(slug)
    except UnknownEntityError:
        abort(404, f"There is no entity {slug!r}.")
    if not any(p.slug == pipeline_slug for p in entity.pipelines):
        abort(404, f"Entity {slug!r} has no pipeline {pipeline_slug!r}.")
    try:
        loaded = load_board(
            crm, slug, pipeline_slug, sum_field=request.args.get("sum"), cards=CARDS
        )
    except CrmValidationError as exc:
        abort(400, f"Cannot show this board: {exc}.")
    options = state().crm_state.render_options
    locale = options.locale
    names = _customer_names(loaded)
    fields = _card_fields(entity, loaded.sum_field)
    columns = []
    for column in loaded.columns:
        stage = column.stage
        columns.append(
            {
                "column": column,
                "stage": stage,
                "colour": css_colour(stage.color),
                "total": _number(column.total, locale),
                "weighted": None if column.weighted is None else _number(column.weighted, locale),
                "probability": None
                if column.probability is None
                else _number(column.probability, locale),
                "cards": [
                    _card(e, entity, fields, names, options, loaded.sum_field) for e in column.cards
                ],
                "more_url": entries_url(entity.slug, stage.slug),
            }
        )
    here = request.full_path.rstrip("?")
    return render_admin(
        "admin/board.html",
        title=f"{entity.name}: {loaded.pipeline.name}",
        breadcrumbs=[("Boards", url_for("crm_admin.boards"))],
        board=loaded,
        entity=entity,
        columns=columns,
        board_total=_number(loaded.total, locale),
        board_weighted=_number(loaded.weighted, locale),
        here=here,
        entries_url=entries_url(entity.slug),
        board_stylesheet=url_for("crm_admin.static", filename="board.css"),
        board_script=url_for("crm_admin.static", filename="board.js"),
    )
