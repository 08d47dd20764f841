"""Types shown by label: select, multiselect, reference, multi_reference."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from markupsafe import Markup

from .field import FieldInfo
from .markup import classes, element, join
from .options import RenderOptions
from .registry import FieldRenderer
from .urls import safe_url


def as_list(value: Any) -> list[Any]:
    """A list of items from a list/tuple/set value, or a one-item list for a scalar."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        return [value]
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)  # sets have no order; keep the output stable
    return list(value)


class SelectRenderer(FieldRenderer):
    """The option's label; an unknown value is shown escaped as it is."""

    name = "select"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        return element("span", field.label_for(value), class_=classes(field), data_value=str(value))

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
        return field.label_for(value)


class MultiselectRenderer(FieldRenderer):
    """A tag list (``<ul class="crm-tags">``) of option labels."""

    name = "multiselect"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        items = (
            element("li", field.label_for(item), data_value=str(item)) for item in as_list(value)
        )
        return element("ul", join(items), class_=classes(field, "crm-tags"))

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
        return ", ".join(field.label_for(item) for item in as_list(value))


def _labels(ids: list[str], field: FieldInfo, options: RenderOptions) -> dict[str, str]:
    """One batched ``reference_labels`` call for every id (the id itself when unresolved)."""
    labels: Mapping[str, Any] = {}
    if options.reference_labels is not None and field.target_entity:
        labels = options.reference_labels(field.target_entity, list(dict.fromkeys(ids)))
    return {id_: str(labels[id_]) if labels.get(id_) is not None else id_ for id_ in ids}


class ReferenceRenderer(FieldRenderer):
    """The target entry's label, linked when ``options.reference_url`` gives a safe URL."""

    name = "reference"

    def _item(self, id_: str, label: str, field: FieldInfo, options: RenderOptions) -> Markup:
        url = None
        if options.reference_url is not None and field.target_entity:
            url = safe_url(options.reference_url(field.target_entity, id_), allow_relative=True)
        if url is None:
            return element("span", label, data_id=id_)
        return element("a", label, href=url, data_id=id_)

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        ids = [str(item) for item in as_list(value)]
        labels = _labels(ids, field, options)
        items = [self._item(id_, labels[id_], field, options) for id_ in ids]
        return self._wrap(items, field)

    def _wrap(self, items: list[Markup], field: FieldInfo) -> Markup:
        return element("span", join(items, ", "), class_=classes(field))

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
        ids = [str(item) for item in as_list(value)]
        labels = _labels(ids, field, options)
        return ", ".join(labels[id_] for id_ in ids)


class MultiReferenceRenderer(ReferenceRenderer):
    """Each target's label as a tag list item; the labels come from one batched look-up."""

    name = "multi_reference"

    def _wrap(self, items: list[Markup], field: FieldInfo) -> Markup:
        return element(
            "ul", join(element("li", item) for item in items), class_=classes(field, "crm-tags")
        )
