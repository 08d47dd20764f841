"""The reference of every key of ``crm.yaml`` and ``seed.yaml``, rendered as Markdown from the
shipped JSON Schemas' descriptions (``crm-templates schema crm|seed --markdown``), so the
documentation and the schema cannot drift apart (issue 11, item 4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .documents import shipped_schema

# One table per kind of mapping: (heading, where it appears, JSON pointer of its schema).
SECTIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "crm": (
        ("Top level", "the file", "#/$defs/file"),
        ("Entity", "`entities[]`", "#/$defs/entity"),
        ("Field", "`entities[].fields[]`", "#/$defs/field"),
        ("Choice", "`entities[].fields[].options[]` (or a plain string)", "#/$defs/option/then"),
        ("Reporting configuration", "`entities[].fields[].reporting_config`",
         "#/$defs/reportingConfig"),
        ("Baseline", "`entities[].fields[].reporting_config.baseline`",
         "#/$defs/reportingConfig/properties/baseline"),
        ("Pipeline", "`entities[].pipelines[]`", "#/$defs/pipeline"),
        ("Stage", "`entities[].pipelines[].stages[]`", "#/$defs/stage"),
    ),
    "seed": (
        ("Top level", "the file", "#"),
        ("Customer", "`customers[]`", "#/$defs/customer"),
        ("Entry", "`entries[]`", "#/$defs/entry"),
        ("Reference", "`entries[].reference`", "#/$defs/reference"),
    ),
}  # fmt: skip

_TYPES = {
    "object": "mapping",
    "array": "list",
    "string": "string",
    "number": "number",
    "integer": "whole number",
    "boolean": "true/false",
}


def resolve(root: Mapping[str, Any], pointer: str) -> dict[str, Any]:
    """The subschema at a local JSON pointer (``#/$defs/field``)."""
    node: Any = root
    for part in pointer.removeprefix("#").strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    assert isinstance(node, dict)
    return node


def _merged(root: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$ref`` chain folded in (the outer keywords win)."""
    out: dict[str, Any] = {}
    seen = 0
    while True:
        for key, value in schema.items():
            out.setdefault(key, value)
        ref = schema.get("$ref")
        if not isinstance(ref, str) or seen > 10:
            return out
        schema = resolve(root, ref)
        seen += 1


def describe_type(root: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    """A short type text for a reference table: ``slug``, ``list of field definitions``…"""
    s = _merged(root, schema)
    if "enum" in s:
        values = [f"`{v}`" for v in s["enum"] if v is not None]
        return "one of " + ", ".join(values)
    if "anyOf" in s:
        parts = [describe_type(root, sub) for sub in s["anyOf"]]
        return " or ".join(p for p in parts if p and p != "empty")
    title = s.get("title")
    types = s.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if title and not title.startswith("a list"):
        return title.removeprefix("a ").removeprefix("an ")
    if types == ["null"]:
        return "empty"
    if "array" in types and isinstance(s.get("items"), Mapping):
        item = describe_type(root, s["items"])
        return f"list of {item}s" if item and " or " not in item else f"list ({item})"
    names = [_TYPES[t] for t in types if t in _TYPES]
    return " or ".join(names) or "any"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def schema_reference(name: str) -> str:
    """The Markdown reference of schema ``name`` (``crm`` or ``seed``): its description, then
    one table per kind of mapping listing every key with its type, whether it is required, and
    its description. camelCase spellings appear beside their snake_case key."""
    root = shipped_schema(name)
    title = root["title"]
    lines = [f"### `{title}`", "", root["description"], ""]
    for heading, where, pointer in SECTIONS[name]:
        section = _merged(root, resolve(root, pointer))
        required = set(section.get("required", ()))
        lines += [f"#### {heading}", "", f"In {where}.", ""]
        lines += ["| key | type | required | description |", "|---|---|---|---|"]
        properties: Mapping[str, Any] = section.get("properties", {})
        aliases: dict[str, str] = {}
        for key, prop in properties.items():
            ref = prop.get("$ref", "") if set(prop) == {"$ref"} else ""
            if "/properties/" in ref:
                aliases[ref.rsplit("/", 1)[1]] = key
        for key, prop in properties.items():
            if key in aliases.values():
                continue
            shown = f"`{key}`" + (f" (`{aliases[key]}`)" if key in aliases else "")
            description = _merged(root, prop).get("description", "")
            lines.append(
                f"| {shown} | {_cell(describe_type(root, prop))} | "
                f"{'yes' if key in required else ''} | {_cell(description)} |"
            )
        lines.append("")
    return "\n".join(lines)


__all__ = ["SECTIONS", "describe_type", "resolve", "schema_reference"]
