"""The function table: seed names, accepted options, aliases and failure values (SPEC §4 and §5).

Every later layer (the Jinja extension, page backends, lint) reads this table instead of
repeating the mapping. Options arrive as one mapping, keyword arguments, or both (keywords win);
aliases are folded onto the canonical camelCase names; an unknown option is an error that names
the accepted ones and suggests the nearest.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import CrmValidationError, MissingOptionError, UnknownOptionError
from .values import shown

REF = ("referenceType", "referenceId")
WRITE = ("async",)
# The seed: "Read functions are always synchronous" — reads accept ``async`` and ignore it
# (issue 9, item 7), so one options object can be passed to any function.
READ = ("async",)


@dataclass(frozen=True)
class FunctionSpec:
    """One CRM function: its seed name, service method, options and failure value."""

    name: str
    method: str
    kind: Literal["read", "write"]
    options: tuple[str, ...]
    required: tuple[str, ...]
    failure: Any
    #: ``options`` and ``required`` as sets, for the canonical-names fast path.
    accepted: frozenset[str] = field(init=False, repr=False, compare=False)
    must: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "accepted", frozenset(self.options))
        object.__setattr__(self, "must", frozenset(self.required))

    @property
    def camel_name(self) -> str:
        """The camelCase spelling (``setCrmField``)."""
        return self.name[0].lower() + self.name[1:]

    def failure_value(self, error: str) -> Any:
        """The documented value returned by the ``log`` error policy."""
        if self.failure == "result":
            return {"ok": False, "error": error}
        return type(self.failure)() if isinstance(self.failure, (list, dict)) else self.failure


def _spec(
    name: str,
    method: str,
    kind: Literal["read", "write"],
    options: tuple[str, ...],
    required: tuple[str, ...],
    failure: Any,
) -> FunctionSpec:
    return FunctionSpec(name, method, kind, options, required, failure)


_PIPE = ("pipelineId", "pipelineSlug", "pipeline")
_STAGE = ("stageId", "stageSlug", "stage")

FUNCTIONS: dict[str, FunctionSpec] = {
    s.name: s
    for s in (
        _spec(
            "EnsureCrmEntity", "ensure_entity", "write",
            ("slug", "name", "singularName", "pluralName", "icon", "color", "entityMode",
             "fields", "pipelines", "preset", *REF, *WRITE),
            ("slug",), "result",
        ),
        _spec("CreateCrmEntry", "create_entry", "write",
              ("slug", "title", "values", *_PIPE, *_STAGE, *REF, *WRITE), ("slug",), "result"),
        _spec("GetCrmEntries", "get_entries", "read", ("slug", "limit", *REF, *READ), ("slug",),
              []),
        _spec("GetCrmField", "get_field", "read", ("slug", "fieldKey", *REF, *READ),
              ("slug", "fieldKey"), None),
        _spec("GetCrmFields", "get_fields", "read", ("slug", "fieldKeys", *REF, *READ),
              ("slug", "fieldKeys"), {}),
        _spec("SetCrmField", "set_field", "write",
              ("slug", "fieldKey", "value", "force", *REF, *WRITE),
              ("slug", "fieldKey", "value"), "result"),
        _spec("SetCrmFields", "set_fields", "write", ("slug", "fields", "force", *REF, *WRITE),
              ("slug", "fields"), "result"),
        _spec("AddCrmFieldValue", "add_field_value", "write",
              ("slug", "fieldKey", "value", *REF, *WRITE), ("slug", "fieldKey", "value"),
              "result"),
        _spec("GetCrmFieldValues", "get_field_values", "read",
              ("slug", "fieldKey", "limit", *REF, *READ), ("slug", "fieldKey"), []),
        _spec("ClearCrmEntries", "clear_entries", "write", ("slug", *REF, *WRITE), ("slug",),
              "result"),
        _spec("SetCrmRelation", "set_relation", "write",
              ("slug", "relationKey", "targetEntryId", "entryId", *REF, *WRITE),
              ("slug", "relationKey", "targetEntryId"), "result"),
        _spec("RemoveCrmRelation", "remove_relation", "write",
              ("slug", "relationKey", "targetEntryId", "entryId", *REF, *WRITE),
              ("slug", "relationKey", "targetEntryId"), "result"),
        _spec("MoveCrmLead", "move_lead", "write",
              ("slug", *_PIPE, *_STAGE, "allEntries", *REF, *WRITE), ("slug",), "result"),
        _spec("MoveCrmToStage", "move_to_stage", "write",
              ("slug", *_STAGE, *_PIPE, "allEntries", *REF, *WRITE), ("slug",), "result"),
        _spec("MoveCrmToPipeline", "move_to_pipeline", "write",
              ("slug", *_PIPE, *_STAGE, "allEntries", *REF, *WRITE), ("slug",), "result"),
        _spec("MoveCrmToEntity", "move_to_entity", "write",
              ("fromSlug", "toSlug", "fieldMap", *_PIPE, *_STAGE, "removeFromOld", "allEntries",
               *REF, *WRITE),
              ("fromSlug", "toSlug", "fieldMap"), "result"),
        _spec("ReassignCrmReference", "reassign_reference", "write",
              ("slug", "fromReferenceType", "fromReferenceId", "toReferenceType",
               "toReferenceId", *WRITE),
              ("slug", "fromReferenceType", "fromReferenceId"), "result"),
    )
}  # fmt: skip

BY_NAME: dict[str, FunctionSpec] = {}
for _s in FUNCTIONS.values():
    BY_NAME[_s.name] = _s
    BY_NAME[_s.camel_name] = _s
BY_METHOD: dict[str, FunctionSpec] = {s.method: s for s in FUNCTIONS.values()}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# Seed aliases, plus the snake_case spelling of every option (``field_key``, ``all_entries`` …).
# ``crm_async`` is the seed platform's legacy name for ``async`` (issue 9, item 7); ``async_``
# lets Python callers pass it as a keyword.
ALIASES: dict[str, str] = {
    "crmEntitySlug": "slug",
    "crm_entity_slug": "slug",
    "async_": "async",
    "crm_async": "async",
}
for _s in FUNCTIONS.values():
    for _o in _s.options:
        ALIASES.setdefault(_snake(_o), _o)
ALIASES.pop("async", None)


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A "did you mean" hint, or an empty string."""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


# JSON values may nest 64 levels (fieldtypes); option structure (fields → item → value) adds a
# few more.
MAX_OPTION_DEPTH = 80
_CONTAINERS = (dict, list, tuple, set, frozenset)
# Option values that hold nothing to walk (a bool is an int, but of one bit).
_FLAT = frozenset({str, type(None), bool, float})
# Options holding field values, which `values.coerce` checks (depth, size, digits) with
# messages naming the field (their structure's messages use `values.shown`).
_FIELD_VALUES = frozenset({"value", "values"})


# Python will not print an int past ~4,300 digits, so any message naming one would raise.
MAX_OPTION_INT_BITS = 13_000


def _check_depth(spec: FunctionSpec, options: Mapping[str, Any]) -> None:
    """Refuse an option value nested deeper than `MAX_OPTION_DEPTH`, or holding an int too
    long to print (iteratively: a recursive walk would fail on the very input it guards
    against)."""
    for key, value in options.items():
        if type(value) in _FLAT or key in _FIELD_VALUES:
            continue  # the common case first; field values get their type's own check
        if key == "fields" and spec.name == "SetCrmFields":
            continue  # field values too (EnsureCrmEntity's `fields` are definitions)
        stack: list[tuple[Any, int]] = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if isinstance(item, int) and item.bit_length() > MAX_OPTION_INT_BITS:
                raise CrmValidationError(
                    f"{spec.name}: option {key!r} holds a number of more than 3,900 digits"
                )
            if not isinstance(item, _CONTAINERS):
                continue
            if depth > MAX_OPTION_DEPTH:
                raise CrmValidationError(
                    f"{spec.name}: option {key!r} is nested more than {MAX_OPTION_DEPTH} levels "
                    "deep"
                )
            if isinstance(item, Mapping):
                stack.extend((k, depth + 1) for k in item if isinstance(k, int))
                item = item.values()
            stack.extend((c, depth + 1) for c in item if isinstance(c, (int, *_CONTAINERS)))


def parse_options(
    spec: FunctionSpec, options: Mapping[str, Any] | None, kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Fold the options mapping and keyword arguments onto canonical names and check them.

    Raises `UnknownOptionError`, `MissingOptionError`, or `CrmValidationError` for an option
    nested deeper than `MAX_OPTION_DEPTH` (its message, or any later one, could not even show
    it: Python's repr gives up on a few thousand levels; issue 9: only CrmError escapes)."""
    if not kwargs and type(options) is dict:
        keys = options.keys()
        # The common case — canonical names only — needs no alias folding.
        if keys <= spec.accepted and keys >= spec.must:
            _check_depth(spec, options)
            return dict(options)
    elif not options and type(kwargs) is dict:
        keys = kwargs.keys()
        if keys <= spec.accepted and keys >= spec.must:
            _check_depth(spec, kwargs)
            return dict(kwargs)
    accepted = spec.options
    out: dict[str, Any] = {}
    for source in (options, kwargs):
        if not source:
            continue
        if not isinstance(source, Mapping):
            raise UnknownOptionError(
                f"{spec.name} takes one options mapping, e.g. {spec.name}({{'slug': ...}}); "
                f"got {shown(source)}"
            )
        seen_here: dict[str, str] = {}
        if any(type(k) is not str for k in source):
            bad = next(k for k in source if type(k) is not str)
            raise UnknownOptionError(
                f"{spec.name}: option names are strings; got {shown(bad)}. Accepted options: "
                f"{', '.join(accepted)}"
            )
        _check_depth(spec, source)  # before the comparison below, which recurses
        for raw_key, value in source.items():
            key = ALIASES.get(raw_key, raw_key)
            if key not in accepted:
                raise UnknownOptionError(
                    f"{spec.name} got an unknown option {raw_key!r}.{suggest(raw_key, accepted)} "
                    f"Accepted options: {', '.join(accepted)}"
                )
            if key in seen_here and out[key] != value:
                raise UnknownOptionError(
                    f"{spec.name} got both {seen_here[key]!r} and {raw_key!r} with different "
                    f"values; pass one of them"
                )
            seen_here[key] = raw_key
            out[key] = value
    _check_depth(spec, out)
    missing = [name for name in spec.required if name not in out]
    if missing:
        raise MissingOptionError(
            f"{spec.name} requires the option{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)}, e.g. "
            f"{spec.name}({{{', '.join(f'{m!r}: ...' for m in spec.required)}}})"
        )
    return out
