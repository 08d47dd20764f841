"""Parsing and validating entity definitions (EnsureCrmEntity options and schema files).

Both snake_case and camelCase spellings are accepted for nested keys (``ui_editable`` /
``uiEditable``, ``reporting_config`` / ``reportingConfig`` …), as the seed platform's scripts use
both. Every problem is reported as a `CrmValidationError` naming the path of the bad key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fieldtypes import has_lone_surrogates

from .colours import check_colour
from .errors import CrmValidationError
from .ids import new_id, utc_now
from .model import (
    AGGREGATION_TYPES,
    CHART_TYPES,
    ENTITY_MODES,
    FIELD_TYPES,
    OPTION_TYPES,
    REFERENCE_TYPES,
    SEMANTIC_STATUSES,
    Entity,
    Field,
    Option,
    Pipeline,
    ReportingConfig,
    Stage,
)
from .values import shown

#: What a field definition may say besides its ``key`` (its identity), in the order the
#: docs list them (SPEC §3); the admin's field editor changes these (`entity_admin`).
FIELD_ATTRIBUTES = (
    "label",
    "type",
    "options",
    "ui_editable",
    "reporting_config",
    "target_entity",
    "display_field",
    "validation_rules",
    "visible_to_team_ids",
)
#: What a stage definition may say besides its ``slug`` (SPEC §3).
STAGE_ATTRIBUTES = ("name", "color", "semantic_status", "probability")


SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*\Z")  # \Z: "$" would let "x\n" through
FIELD_KEY_RE = re.compile(r"^[a-zA-Z0-9_.-]+\Z")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _normalise(d: Any, allowed: Sequence[str], where: str) -> dict[str, Any]:
    """Map camelCase spellings onto snake_case ones and reject unknown keys."""
    if not isinstance(d, Mapping):
        raise CrmValidationError(f"{where} must be a mapping; got {shown(d)}")
    spellings = {name: name for name in allowed} | {_camel(name): name for name in allowed}
    out: dict[str, Any] = {}
    for key, value in d.items():
        canonical = spellings.get(key)
        if canonical is None:
            raise CrmValidationError(
                f"{where} has an unknown key {shown(key)}; accepted: {', '.join(allowed)}"
            )
        out[canonical] = value
    return out


def check_slug(slug: Any, what: str = "slug") -> str:
    """A valid entity/pipeline/stage slug, or a validation error."""
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise CrmValidationError(
            f"{what} must match ^[a-z0-9][a-z0-9_-]*$ (e.g. 'weight-tracker'); got {shown(slug)}"
        )
    return slug


def _text(value: Any, where: str, default: str | None = None) -> str | None:
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > 200:
        raise CrmValidationError(
            f"{where} must be a string of at most 200 characters; got {shown(value)}"
        )
    return value


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CrmValidationError(f"{where} must be a number; got {shown(value)}")
    try:
        number = float(value)
    except (OverflowError, ValueError):
        number = math.inf
    if not math.isfinite(number):
        raise CrmValidationError(f"{where} must be a finite number; got {shown(value)}")
    return number


def parse_reporting_config(d: Any, where: str) -> ReportingConfig | None:
    """Parse a field's ``reporting_config`` (camelCase accepted)."""
    if d is None:
        return None
    rc = _normalise(
        d,
        ("reportable", "aggregation_type", "baseline", "bucket_size", "preferred_chart"),
        where,
    )
    agg = rc.get("aggregation_type")
    if agg is not None and agg not in AGGREGATION_TYPES:
        raise CrmValidationError(f"{where}.aggregation_type must be one of {AGGREGATION_TYPES}")
    chart = rc.get("preferred_chart")
    if chart is not None and chart not in CHART_TYPES:
        raise CrmValidationError(f"{where}.preferred_chart must be one of {CHART_TYPES}")
    bucket = _number(rc.get("bucket_size"), f"{where}.bucket_size")
    if bucket is not None and bucket <= 0:
        raise CrmValidationError(f"{where}.bucket_size must be greater than 0; got {bucket}")
    baseline = rc.get("baseline")
    lo = hi = None
    if baseline is not None:
        b = _normalise(baseline, ("min", "max"), f"{where}.baseline")
        lo = _number(b.get("min"), f"{where}.baseline.min")
        hi = _number(b.get("max"), f"{where}.baseline.max")
        if lo is not None and hi is not None and lo > hi:
            raise CrmValidationError(f"{where}.baseline.min must not exceed baseline.max")
    reportable = rc.get("reportable", True)
    if not isinstance(reportable, bool):
        raise CrmValidationError(f"{where}.reportable must be true or false")
    return ReportingConfig(
        reportable=reportable,
        aggregation_type=agg,
        baseline_min=lo,
        baseline_max=hi,
        bucket_size=bucket,
        preferred_chart=chart,
    )


MAX_RULES_BYTES = 10_000
MAX_RULES_DEPTH = 32
MAX_TEAM_IDS = 1000


def parse_validation_rules(value: Any, where: str) -> Any:
    """A field's ``validation_rules``: a JSON object or list, at most 10 KB serialised and 32
    levels deep, finite numbers only; returned as a fresh copy made of plain JSON types (keys
    become strings, tuples lists); None stays None.

    The seed platform's admin keeps these per field; crm-templates stores and returns them
    but does not enforce them (issue 9, item 7).
    """
    if value is None:
        return None
    if not isinstance(value, Mapping | list | tuple):
        raise CrmValidationError(
            f"{where} must be a JSON object or list (e.g. {{'required': true}}); got {shown(value)}"
        )
    # Depth first, without recursion: json.dumps of a very deep value raises RecursionError,
    # and a stored one would make the entity unreadable. Depth counts objects and lists, as
    # the request-body check does (`{"a": 1}` is one level, `[[1]]` two): pass n looks at
    # the containers n levels deep (issue 10: a scalar at the bottom counted as a level).
    level: list[Any] = [value]
    seen = 0
    for _ in range(MAX_RULES_DEPTH):
        children = [
            child
            for item in level
            for child in (item.values() if isinstance(item, Mapping) else item)
        ]
        seen += len(children)
        if seen > MAX_RULES_BYTES:  # every JSON value takes at least one byte
            raise CrmValidationError(f"{where} must be at most 10 KB as JSON")
        level = [child for child in children if isinstance(child, Mapping | list | tuple)]
        if not level:
            break
    else:
        raise CrmValidationError(
            f"{where} must be plain JSON (nested too deeply: at most {MAX_RULES_DEPTH} levels)"
        )
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise CrmValidationError(f"{where} must be plain JSON ({exc})") from None
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise CrmValidationError(f"{where} must be valid Unicode text (a lone surrogate)") from None
    if size > MAX_RULES_BYTES:
        raise CrmValidationError(f"{where} must be at most 10 KB as JSON; got {size} bytes")
    return json.loads(text)


def parse_team_ids(value: Any, where: str) -> tuple[str | int, ...] | None:
    """A field's ``visible_to_team_ids``: a list of team ids (non-empty strings of at most 200
    characters, or whole numbers), duplicates dropped; None stays None.

    Stored and returned for the seed platform's admin; not enforced (crm-templates has no
    teams; issue 9, item 7).
    """
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise CrmValidationError(f"{where} must be a list of team ids; got {shown(value)}")
    if len(value) > MAX_TEAM_IDS:
        raise CrmValidationError(f"{where} holds more than {MAX_TEAM_IDS} team ids")
    ids: list[str | int] = []
    for item in value:
        valid_str = isinstance(item, str) and 0 < len(item) <= 200
        valid_int = isinstance(item, int) and not isinstance(item, bool) and abs(item) < 2**63
        if not (valid_str or valid_int):
            raise CrmValidationError(
                f"{where} items must be team ids (strings of 1-200 characters or whole "
                f"numbers); got {shown(item)}"
            )
        if item not in ids:
            ids.append(item)
    return tuple(ids)


def parse_field(d: Any, where: str = "field") -> Field:
    """Parse one field definition."""
    spec = _normalise(
        d,
        ("key", *FIELD_ATTRIBUTES),
        where,
    )
    key = spec.get("key")
    if not isinstance(key, str) or not FIELD_KEY_RE.match(key):
        raise CrmValidationError(f"{where}.key must match ^[a-zA-Z0-9_.-]+$; got {shown(key)}")
    where = f"field {shown(key)}"
    ftype = spec.get("type", "text")
    if ftype not in FIELD_TYPES:
        raise CrmValidationError(
            f"{where} has unknown type {shown(ftype)}; known types: {', '.join(FIELD_TYPES)}"
        )
    options: list[Option] = []
    raw_options = spec.get("options")
    if ftype in OPTION_TYPES:
        if not isinstance(raw_options, Sequence) or isinstance(raw_options, str) or not raw_options:
            raise CrmValidationError(f"{where} ({ftype}) requires a non-empty options list")
        for item in raw_options:
            if isinstance(item, str):
                options.append(Option(item, item))
            elif isinstance(item, Mapping) and isinstance(item.get("value"), str):
                label = item.get("label", item["value"])
                options.append(Option(item["value"], str(label)))
            else:
                raise CrmValidationError(
                    f"{where} options must be strings or {{value, label}} mappings; "
                    f"got {shown(item)}"
                )
        if len({o.value for o in options}) != len(options):
            raise CrmValidationError(f"{where} has duplicate option values")
    elif raw_options:
        raise CrmValidationError(f"{where} ({ftype}) takes no options; only select/multiselect do")
    target = spec.get("target_entity")
    if ftype in REFERENCE_TYPES:
        check_slug(target, f"{where}.target_entity")
    elif target is not None:
        raise CrmValidationError(f"{where} ({ftype}) takes no target_entity")
    display = spec.get("display_field")
    if display is not None and (not isinstance(display, str) or not FIELD_KEY_RE.match(display)):
        raise CrmValidationError(f"{where}.display_field must be a field key; got {shown(display)}")
    ui_editable = spec.get("ui_editable", True)
    if not isinstance(ui_editable, bool):
        raise CrmValidationError(f"{where}.ui_editable must be true or false")
    return Field(
        key=key,
        label=_text(spec.get("label"), f"{where}.label", key) or key,
        type=ftype,
        options=tuple(options),
        ui_editable=ui_editable,
        reporting_config=parse_reporting_config(
            spec.get("reporting_config"), f"{where}.reporting_config"
        ),
        target_entity=target,
        display_field=display,
        validation_rules=parse_validation_rules(
            spec.get("validation_rules"), f"{where}.validation_rules"
        ),
        visible_to_team_ids=parse_team_ids(
            spec.get("visible_to_team_ids"), f"{where}.visible_to_team_ids"
        ),
    )


def parse_fields(items: Any) -> list[Field]:
    """Parse a list of field definitions; keys must be unique."""
    if items is None:
        return []
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise CrmValidationError(f"fields must be a list of field definitions; got {shown(items)}")
    fields = [parse_field(item, f"fields[{i}]") for i, item in enumerate(items)]
    seen: set[str] = set()
    for f in fields:
        if f.key in seen:
            raise CrmValidationError(f"field key {shown(f.key)} is declared twice")
        seen.add(f.key)
    return fields


def parse_stage(d: Any, position: int, where: str) -> Stage:
    """Parse one stage definition (a fresh id is assigned)."""
    spec = _normalise(d, ("slug", *STAGE_ATTRIBUTES, "id", "position"), where)
    slug = check_slug(spec.get("slug"), f"{where}.slug")
    status = spec.get("semantic_status", "open")
    if status not in SEMANTIC_STATUSES:
        raise CrmValidationError(f"{where}.semantic_status must be one of {SEMANTIC_STATUSES}")
    prob = _number(spec.get("probability"), f"{where}.probability")
    if prob is not None and not 0 <= prob <= 100:
        raise CrmValidationError(f"{where}.probability must be between 0 and 100; got {prob}")
    return Stage(
        id=new_id("stg_"),
        slug=slug,
        name=_text(spec.get("name"), f"{where}.name", slug.replace("-", " ").title()) or slug,
        position=position,
        color=check_colour(spec.get("color"), f"{where}.color"),
        semantic_status=status,
        probability=prob,
    )


def parse_pipeline(d: Any, where: str) -> Pipeline:
    """Parse one pipeline with its ordered stages (fresh ids are assigned)."""
    spec = _normalise(d, ("slug", "name", "stages", "id"), where)
    slug = check_slug(spec.get("slug"), f"{where}.slug")
    raw_stages = spec.get("stages")
    if not isinstance(raw_stages, Sequence) or isinstance(raw_stages, str) or not raw_stages:
        raise CrmValidationError(f"{where} (pipeline {shown(slug)}) needs a non-empty stages list")
    stages = [parse_stage(s, i, f"{where}.stages[{i}]") for i, s in enumerate(raw_stages)]
    if len({s.slug for s in stages}) != len(stages):
        raise CrmValidationError(f"pipeline {shown(slug)} has duplicate stage slugs")
    return Pipeline(
        id=new_id("pip_"),
        slug=slug,
        name=_text(spec.get("name"), f"{where}.name", slug.replace("-", " ").title()) or slug,
        stages=tuple(stages),
    )


def parse_pipelines(items: Any) -> list[Pipeline]:
    """Parse a list of pipelines; slugs must be unique."""
    if items is None:
        return []
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise CrmValidationError(f"pipelines must be a list; got {shown(items)}")
    pipelines = [parse_pipeline(p, f"pipelines[{i}]") for i, p in enumerate(items)]
    if len({p.slug for p in pipelines}) != len(pipelines):
        raise CrmValidationError("pipelines have duplicate slugs")
    return pipelines


def default_pipeline() -> Pipeline:
    """The pipeline a CRM-mode entity gets when it declares none."""
    return parse_pipeline(
        {
            "slug": "default",
            "name": "Default",
            "stages": [
                {"slug": "new", "name": "New", "semantic_status": "open", "color": "#64748b"},
                {"slug": "active", "name": "In progress", "semantic_status": "active",
                 "color": "#2563eb"},
                {"slug": "won", "name": "Won", "semantic_status": "won", "color": "#16a34a"},
                {"slug": "lost", "name": "Lost", "semantic_status": "lost", "color": "#dc2626"},
            ],
        },
        "default pipeline",
    )  # fmt: skip


def check_unicode(definition: Any, where: str) -> None:
    """Refuse any string (key or value, at any depth) that is not valid Unicode text — a lone
    surrogate — in an entity definition: stored, it would fail every page printing that label
    or name (issue 9). Iterative, and `functions.parse_options` has bounded the depth."""
    stack = [definition]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogates(item):
                raise CrmValidationError(
                    f"{where}: {shown(item)} is not valid Unicode text (a lone surrogate)"
                )
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)


def build_entity(
    slug: str,
    *,
    name: Any = None,
    singular_name: Any = None,
    plural_name: Any = None,
    icon: Any = None,
    color: Any = None,
    mode: Any = None,
    fields: list[Field],
    pipelines: list[Pipeline],
) -> Entity:
    """A new entity from validated parts (CRM mode without pipelines gets the default one)."""
    mode = mode or "crm"
    if mode not in ENTITY_MODES:
        raise CrmValidationError(f"entityMode must be 'crm' or 'data'; got {shown(mode)}")
    if mode == "data" and pipelines:
        raise CrmValidationError(f"entity {shown(slug)} is in data mode, which has no pipelines")
    if mode == "crm" and not pipelines:
        pipelines = [default_pipeline()]
    display = _text(name, "name", slug) or slug
    return Entity(
        id=new_id("ent_"),
        slug=slug,
        name=display,
        singular_name=_text(singular_name, "singularName", display) or display,
        plural_name=_text(plural_name, "pluralName", display) or display,
        icon=_text(icon, "icon"),
        color=check_colour(color, "color"),
        mode=mode,
        fields=tuple(fields),
        pipelines=tuple(pipelines),
        created_at=utc_now(),
    )
