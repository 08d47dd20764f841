"""The json type: a collapsible, depth-limited tree of escaped keys and values."""

from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

import fieldtypes

from .field import FieldInfo
from .markup import classes, element, join
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


def _scalar(value: Any) -> Markup:
    kind = "null" if value is None else type(value).__name__
    literal = json.dumps(value, ensure_ascii=False, default=str)
    return element("code", literal, class_=f"crm-json-{kind}")


def _node(value: Any, depth: int, max_depth: int) -> Markup:
    entries: list[tuple[str | None, Any]]
    if isinstance(value, Mapping):
        entries = [(str(key), item) for key, item in value.items()]
        summary = f"{{…}} {len(entries)} {'key' if len(entries) == 1 else 'keys'}"
    elif isinstance(value, (list, tuple)):
        entries = [(None, item) for item in value]
        summary = f"[…] {len(entries)} {'item' if len(entries) == 1 else 'items'}"
    else:
        return _scalar(value)
    if not entries:
        return element("code", "{}" if isinstance(value, Mapping) else "[]")
    if depth > max_depth:
        # The limit keeps huge or self-referencing structures from running away.
        return element("span", "…", class_="crm-json-more", title="nested too deeply")
    rows = []
    for key, item in entries:
        label = (
            Markup("")
            if key is None
            else element("span", key, class_="crm-json-key") + Markup(": ")
        )
        rows.append(element("li", label + _node(item, depth + 1, max_depth)))
    return element(
        "details",
        element("summary", summary) + element("ul", join(rows)),
        open=depth == 1,
    )


class JsonRenderer(FieldRenderer):
    """Objects and arrays as nested ``<details>``; beyond ``json_max_depth`` levels, "…"."""

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
