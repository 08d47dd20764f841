"""How the admin shows and edits one value (issue 12, item 3): rendered with `renderers`, an
edit form per editable field, a lock for ``ui_editable: false``, and the form's text turned
back into what the core's validation takes (`form_value`).

Shared by the entries table (`entries`), the entry detail and the edit answers (`entry_edits`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from typing import Any
from urllib.parse import quote

from flask import g, url_for
from markupsafe import Markup
from werkzeug.datastructures import MultiDict

import renderers

from ...errors import CrmError
from ...model import Entity, Entry, Field
from ..state import state

#: The accessible name of the lock shown for ``ui_editable: false`` (the seed: "display with a
#: lock icon in the admin UI and cannot be inline-edited").
LOCKED_LABEL = "Locked: not editable in the admin"
TEXT_TYPES = frozenset({"text", "textarea", "rich_text", "wysiwyg"})
LONG_TYPES = frozenset({"textarea", "rich_text", "wysiwyg", "json"})
INPUT_TYPES = {"number": "number", "date": "date", "email": "email", "url": "url",
               "phone": "tel", "color": "color"}  # fmt: skip
_SPLIT_IDS = re.compile(r"[\s,]+")


def admin_root() -> str:
    """``/admin/`` as this request sees it (one `url_for` per request, not one per cell)."""
    cached: str | None = getattr(g, "crm_admin_root", None)
    if cached is None:
        cached = g.crm_admin_root = url_for("crm_admin.dashboard")
    return cached


def entry_url(entry_id: str) -> str:
    """The admin URL of an entry's detail page."""
    return f"{admin_root()}entries/{quote(entry_id, safe='')}"


def customer_url(customer_id: str) -> str:
    """The admin's customer page (the customers view of issue 12, item 5)."""
    return f"{admin_root()}customers/{quote(customer_id, safe='')}"


def reference_link(reference_type: str, reference_id: str) -> str | None:
    """Where an entry's reference leads in the admin: customers have a page, others none."""
    return customer_url(reference_id) if reference_type == "customer" else None


class Labels:
    """Entry labels for reference values, fetched in one batch per page (`prefetch`)."""

    def __init__(self, entities: Mapping[str, Entity]) -> None:
        self.entities = dict(entities)
        self.known: dict[str, Entry | None] = {}

    def prefetch(self, ids: Iterable[str]) -> None:
        """Fetch every id not known yet, in one store look-up."""
        wanted = [i for i in dict.fromkeys(ids) if i not in self.known]
        if wanted:
            found = state().crm.get_entries_by_ids(wanted)
            for ident in wanted:
                self.known[ident] = found.get(ident)

    def entity(self, slug: str) -> Entity | None:
        """An entity by slug (cached for the request)."""
        if slug not in self.entities:
            try:
                self.entities[slug] = state().crm.get_entity(slug)
            except CrmError:  # a removed entity: its entries show without the definition
                return None
        return self.entities[slug]

    def label(self, entry: Entry | None, ident: str, display: str | None = None) -> str:
        """The entry's display field, else its title, else the id."""
        if entry is None:
            return ident
        shown = entry.values.get(display) if display else None
        if shown not in (None, ""):
            return str(shown)
        return entry.title or ident

    def labels(self, target: str, ids: Sequence[str], display: str | None) -> dict[str, str]:
        """``{id: label}`` for ids of ``target`` (another entity's entry shows as its id)."""
        self.prefetch(ids)
        out = {}
        for ident in ids:
            entry = self.known.get(ident)
            if entry is not None and entry.entity != target:
                entry = None
            out[ident] = self.label(entry, ident, display)
        return out

    def options(self, f: Field) -> renderers.RenderOptions:
        """The render options for field ``f``: the app's, with reference labels and links."""
        base: renderers.RenderOptions = state().crm_state.render_options
        if f.type not in ("reference", "multi_reference"):
            return base
        return replace(
            base,
            reference_labels=lambda target, ids: self.labels(target, ids, f.display_field),
            reference_url=lambda _target, ident: entry_url(ident),
        )

    def render(self, entry: Entry, f: Field) -> Markup:
        """The value of ``f`` in ``entry`` as safe HTML (empty when not set)."""
        if f.key not in entry.values or entry.values[f.key] is None:
            return Markup("")
        try:
            return renderers.render(entry.values[f.key], f, self.options(f))
        except renderers.RendererError:
            return Markup("<code>{}</code>").format(json.dumps(entry.values[f.key])[:200])


def reference_ids(entries: Iterable[Entry], fields: Iterable[Field]) -> list[str]:
    """Every entry id the reference fields of ``entries`` hold (for `Labels.prefetch`)."""
    keys = [f.key for f in fields if f.type in ("reference", "multi_reference")]
    ids: list[str] = []
    for entry in entries:
        for key in keys:
            value = entry.values.get(key)
            if isinstance(value, str):
                ids.append(value)
            elif isinstance(value, list):
                ids += [v for v in value if isinstance(v, str)]
    return ids


@dataclass
class Cell:
    """One value as a template shows it: rendered HTML, the edit form's state, a lock."""

    entry: Entry
    field: Field
    html: Markup
    form_text: str = ""
    selected: list[str] = dc_field(default_factory=list)
    error: str | None = None
    submitted: str | None = None

    @property
    def locked(self) -> bool:
        return not self.field.ui_editable

    @property
    def dom_id(self) -> str:
        return f"v-{self.entry.id}-{self.field.key}"

    @property
    def input_type(self) -> str:
        return INPUT_TYPES.get(self.field.type, "text")

    @property
    def long(self) -> bool:
        return self.field.type in LONG_TYPES

    @property
    def action(self) -> str:
        return f"{entry_url(self.entry.id)}/values/{quote(self.field.key, safe='')}"


def form_text(f: Field, value: Any) -> str:
    """A stored value as the text an edit input starts with."""
    if value is None:
        return ""
    if f.type == "number" and isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if f.type == "boolean":
        return "true" if value is True else "false" if value is False else ""
    if f.type == "multi_reference" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if f.type == "json" or not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return value


def make_cell(labels: Labels, entry: Entry, f: Field) -> Cell:
    """The cell of ``f`` in ``entry``."""
    value = entry.values.get(f.key)
    selected = (
        [str(v) for v in value] if f.type == "multiselect" and isinstance(value, list) else []
    )
    return Cell(entry, f, labels.render(entry, f), form_text(f, value), selected)


def with_error(cell: Cell, message: str, form: MultiDict[str, str]) -> Cell:
    """``cell`` showing ``message`` and what was sent (so nothing typed is lost)."""
    submitted = form.getlist("value")
    cell.error = message
    if cell.field.type == "multiselect":
        cell.selected = submitted
    else:
        cell.form_text = submitted[0] if submitted else ""
    return cell


def form_value(f: Field, form: MultiDict[str, str]) -> Any:
    """What the form's ``value`` gives the core for field ``f`` (the core validates it).

    Text types keep their text as sent (an empty box stores ``""``); every other type treats
    an empty box as "no value" (None clears it); multiselect takes every checked ``value``;
    multi_reference takes ids separated by commas or spaces; json takes JSON text.
    """
    if f.type == "multiselect":
        return [v for v in form.getlist("value") if v != ""]
    raw = form.get("value", "")
    if f.type in TEXT_TYPES:
        return raw
    text = raw.strip()
    if text == "":
        return [] if f.type == "multi_reference" else None
    if f.type == "multi_reference":
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                return text
            return items
        return [part for part in _SPLIT_IDS.split(text) if part]
    return text
