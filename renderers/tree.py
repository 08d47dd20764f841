"""The json type: a labelled key/value list of escaped keys and values, nested parts
collapsible, depth-limited."""

from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

import fieldtypes

from .field import FieldInfo
from .markup import classes, element, join, shown
from .options import RenderOptions
from .registry import FieldRenderer

# The text form of a structure json cannot encode (circular, or too deep for the stack).
_SHORT = reprlib.Repr()
_SHORT.maxlevel = 8


def to_json_value(value: Any) -> Any:
    """Parse a JSON document given as a string; a string that is not one (or is deeper or
    longer than `fieldtypes.parse_json_text` reads) is a JSON string."""
    if isinstance(value, str):
        try:
            return fieldtypes.parse_json_text(value)
        except fieldtypes.InvalidValue:
            return value
    return value


def _literal(value: Any) -> str:
    """A scalar as it reads: a string as its text (``""`` when empty), anything else as its
    JSON literal (``12.5``, ``true``, ``null``); never raises (a 5,000-digit int or an object
    json cannot encode is shown with `shown`)."""
    if isinstance(value, str):
        return shown(value) if value else '""'
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError, OverflowError):
        return shown(value)


def _scalar(value: Any) -> Markup:
    kind = "null" if value is None else type(value).__name__
    return element("span", _literal(value), class_=f"crm-json-value crm-json-{kind}")


def _is_container(value: Any) -> bool:
    return isinstance(value, (Mapping, list, tuple))


def _count(value: Any) -> str:
    n = len(value)
    if isinstance(value, Mapping):
        return f"{n} {'key' if n == 1 else 'keys'}"
    return f"{n} {'item' if n == 1 else 'items'}"


def _node(value: Any, depth: int, max_depth: int) -> Markup:
    """``value`` at ``depth`` (1 = the field's value): an object as a ``<dl>`` of key/value
    pairs, an array of scalars as a ``<ul>``, any other array as an ``<ol>``, a scalar as a
    ``<span>``; containers below the top level are wrapped in a closed ``<details>`` by the
    caller. Beyond ``max_depth`` levels of containers, "…"."""
    if not _is_container(value):
        return _scalar(value)
    if not value:
        return element(
            "span", "{}" if isinstance(value, Mapping) else "[]", class_="crm-json-empty"
        )
    if depth > max_depth:
        # The limit keeps huge or self-referencing structures from running away.
        return element("span", "…", class_="crm-json-more", title="nested too deeply")
    if isinstance(value, Mapping):
        pairs = [
            element(
                "div",
                element("dt", shown(key), class_="crm-json-key")
                + element("dd", _child(item, depth, max_depth)),
            )
            for key, item in value.items()
        ]
        return element("dl", join(pairs), class_="crm-json-object")
    # An array's items are not collapsible one by one: the array (when nested) already is.
    items = [element("li", _child(item, depth, max_depth, collapsible=False)) for item in value]
    if any(_is_container(item) for item in value):
        return element("ol", join(items), class_="crm-json-array")
    return element("ul", join(items), class_="crm-json-list")


def _child(value: Any, depth: int, max_depth: int, *, collapsible: bool = True) -> Markup:
    """A value inside a container: a non-empty nested object or array of containers under a
    key is collapsible (``<details>``, closed, its summary counting its keys or items)."""
    inner = _node(value, depth + 1, max_depth)
    if not collapsible or not _is_container(value) or not value or depth + 1 > max_depth:
        return inner
    if not isinstance(value, Mapping) and not any(_is_container(item) for item in value):
        return inner  # a list of scalars reads best as it is
    return element("details", element("summary", _count(value)) + inner)


class JsonRenderer(FieldRenderer):
    """A JSON value as a labelled key/value list (issue 11, item 8): an object is a ``<dl>``,
    an array of scalars a ``<ul>``, other arrays an ``<ol>``; only nested objects and arrays
    of containers are collapsible (``<details>``); beyond ``json_max_depth`` levels, "…".
    Every key and value is escaped text; rendering never raises."""

    name = "json"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        tree = _node(to_json_value(value), 1, options.json_max_depth)
        return element("div", tree, class_=classes(field))

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
        data = to_json_value(value)
        try:
            return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
        except (ValueError, RecursionError):  # a circular or very deep Python structure
            return _SHORT.repr(data)
