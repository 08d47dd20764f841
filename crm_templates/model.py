"""Records of the data model (SPEC §3): frozen dataclasses, plus their dict (storage) form.

Behaviour lives in the service (`crm_templates.service`); these are plain values. The dict
converters are shared by every backend so that a record round-trips identically everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

FIELD_TYPES: tuple[str, ...] = (
    "text",
    "textarea",
    "rich_text",
    "wysiwyg",
    "email",
    "phone",
    "url",
    "number",
    "date",
    "datetime",
    "boolean",
    "select",
    "multiselect",
    "color",
    "image",
    "file",
    "json",
    "reference",
    "multi_reference",
)
REFERENCE_TYPES = frozenset({"reference", "multi_reference"})
OPTION_TYPES = frozenset({"select", "multiselect"})
ENTITY_MODES = ("crm", "data")
SEMANTIC_STATUSES = ("open", "active", "won", "lost")
AGGREGATION_TYPES = ("numeric", "categorical", "date", "boolean")
CHART_TYPES = ("kpi", "histogram", "pie", "bar", "line")


@dataclass(frozen=True, slots=True)
class Option:
    """One choice of a select/multiselect field."""

    value: str
    label: str


@dataclass(frozen=True, slots=True)
class ReportingConfig:
    """How the Reports tab aggregates and charts a field."""

    reportable: bool = True
    aggregation_type: str | None = None
    baseline_min: float | None = None
    baseline_max: float | None = None
    bucket_size: float | None = None
    preferred_chart: str | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """A field definition of an entity."""

    key: str
    label: str
    type: str = "text"
    options: tuple[Option, ...] = ()
    ui_editable: bool = True
    reporting_config: ReportingConfig | None = None
    target_entity: str | None = None
    display_field: str | None = None
    #: The platform's per-field validation settings (a JSON object or list), stored and
    #: returned as given; crm-templates does not enforce them (issue 9, item 7).
    validation_rules: Any = field(default=None, hash=False)
    #: Team ids the platform's admin shows the field to (None: not set); stored and returned,
    #: not enforced (crm-templates has no teams).
    visible_to_team_ids: tuple[str | int, ...] | None = None

    def option_label(self, value: Any) -> str:
        """The label of a select value (the value itself when it is not an option)."""
        for option in self.options:
            if option.value == value:
                return option.label
        return str(value)


@dataclass(frozen=True, slots=True)
class Stage:
    """A stage of a pipeline."""

    id: str
    slug: str
    name: str
    position: int
    color: str | None = None
    semantic_status: str = "open"
    probability: float | None = None


@dataclass(frozen=True, slots=True)
class Pipeline:
    """An ordered list of stages (CRM-mode entities only)."""

    id: str
    slug: str
    name: str
    stages: tuple[Stage, ...] = ()


@dataclass(frozen=True, slots=True)
class Entity:
    """A type of CRM record, with its fields and pipelines."""

    id: str
    slug: str
    name: str
    singular_name: str
    plural_name: str
    icon: str | None = None
    color: str | None = None
    mode: str = "crm"
    fields: tuple[Field, ...] = ()
    pipelines: tuple[Pipeline, ...] = ()
    created_at: str = ""
    version: int = 1

    @property
    def field_keys(self) -> list[str]:
        """The declared keys, in declaration order."""
        return [f.key for f in self.fields]


@dataclass(frozen=True, slots=True)
class Entry:
    """One CRM record attached to a reference (e.g. a customer)."""

    id: str
    entity: str
    reference_type: str
    reference_id: str
    values: dict[str, Any] = field(default_factory=dict)
    title: str = ""
    pipeline_id: str | None = None
    stage_id: str | None = None
    created_at: str = ""
    updated_at: str = ""
    version: int = 1

    @property
    def values_flat(self) -> dict[str, Any]:
        """The values under the seed platform's name, for template compatibility."""
        return self.values

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used by storage, the CLI and JSON responses)."""
        return entry_to_dict(self)


@dataclass(frozen=True, slots=True)
class Customer:
    """A person visiting the sites; entries reference customers by id."""

    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    created_at: str = ""

    @property
    def name(self) -> str:
        """Full name, or the email, or an empty string."""
        full = " ".join(p for p in (self.first_name, self.last_name) if p)
        return full or (self.email or "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return customer_to_dict(self)


# --- dict forms (storage) -------------------------------------------------------------------


def _reporting_to_dict(rc: ReportingConfig | None) -> dict[str, Any] | None:
    if rc is None:
        return None
    out: dict[str, Any] = {"reportable": rc.reportable}
    if rc.aggregation_type:
        out["aggregation_type"] = rc.aggregation_type
    if rc.baseline_min is not None or rc.baseline_max is not None:
        out["baseline"] = {"min": rc.baseline_min, "max": rc.baseline_max}
    if rc.bucket_size is not None:
        out["bucket_size"] = rc.bucket_size
    if rc.preferred_chart:
        out["preferred_chart"] = rc.preferred_chart
    return out


def field_to_dict(f: Field) -> dict[str, Any]:
    """The storage form of a field (also the schema-file form)."""
    out: dict[str, Any] = {"key": f.key, "label": f.label, "type": f.type}
    if f.options:
        out["options"] = [{"value": o.value, "label": o.label} for o in f.options]
    if not f.ui_editable:
        out["ui_editable"] = False
    if f.reporting_config is not None:
        out["reporting_config"] = _reporting_to_dict(f.reporting_config)
    if f.target_entity:
        out["target_entity"] = f.target_entity
    if f.display_field:
        out["display_field"] = f.display_field
    if f.validation_rules is not None:
        out["validation_rules"] = f.validation_rules
    if f.visible_to_team_ids is not None:
        out["visible_to_team_ids"] = list(f.visible_to_team_ids)
    return out


def field_from_dict(d: Mapping[str, Any]) -> Field:
    """Rebuild a stored field (already validated when it was stored)."""
    rc = d.get("reporting_config")
    baseline = (rc or {}).get("baseline") or {}
    return Field(
        key=d["key"],
        label=d.get("label") or d["key"],
        type=d.get("type", "text"),
        options=tuple(Option(o["value"], o["label"]) for o in d.get("options") or ()),
        ui_editable=d.get("ui_editable", True),
        reporting_config=None
        if rc is None
        else ReportingConfig(
            reportable=rc.get("reportable", True),
            aggregation_type=rc.get("aggregation_type"),
            baseline_min=baseline.get("min"),
            baseline_max=baseline.get("max"),
            bucket_size=rc.get("bucket_size"),
            preferred_chart=rc.get("preferred_chart"),
        ),
        target_entity=d.get("target_entity"),
        display_field=d.get("display_field"),
        validation_rules=d.get("validation_rules"),
        visible_to_team_ids=None
        if d.get("visible_to_team_ids") is None
        else tuple(d["visible_to_team_ids"]),
    )


def entity_to_dict(e: Entity) -> dict[str, Any]:
    """The storage form of an entity."""
    return {
        "id": e.id,
        "slug": e.slug,
        "name": e.name,
        "singular_name": e.singular_name,
        "plural_name": e.plural_name,
        "icon": e.icon,
        "color": e.color,
        "mode": e.mode,
        "fields": [field_to_dict(f) for f in e.fields],
        "pipelines": [
            {
                "id": p.id,
                "slug": p.slug,
                "name": p.name,
                "stages": [
                    {
                        "id": s.id,
                        "slug": s.slug,
                        "name": s.name,
                        "position": s.position,
                        "color": s.color,
                        "semantic_status": s.semantic_status,
                        "probability": s.probability,
                    }
                    for s in p.stages
                ],
            }
            for p in e.pipelines
        ],
        "created_at": e.created_at,
        "version": e.version,
    }


def entity_from_dict(d: Mapping[str, Any]) -> Entity:
    """Rebuild a stored entity."""
    return Entity(
        id=d["id"],
        slug=d["slug"],
        name=d["name"],
        singular_name=d["singular_name"],
        plural_name=d["plural_name"],
        icon=d.get("icon"),
        color=d.get("color"),
        mode=d.get("mode", "crm"),
        fields=tuple(field_from_dict(f) for f in d.get("fields") or ()),
        pipelines=tuple(
            Pipeline(
                id=p["id"],
                slug=p["slug"],
                name=p["name"],
                stages=tuple(Stage(**s) for s in p.get("stages") or ()),
            )
            for p in d.get("pipelines") or ()
        ),
        created_at=d.get("created_at", ""),
        version=d.get("version", 1),
    )


def entry_to_dict(e: Entry) -> dict[str, Any]:
    """The storage/JSON form of an entry (``values_flat`` included for seed compatibility)."""
    return {
        "id": e.id,
        "entity": e.entity,
        "title": e.title,
        "reference_type": e.reference_type,
        "reference_id": e.reference_id,
        "pipeline_id": e.pipeline_id,
        "stage_id": e.stage_id,
        "values": e.values,
        "values_flat": e.values,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "version": e.version,
    }


def entry_from_dict(d: Mapping[str, Any]) -> Entry:
    """Rebuild an entry from its dict form."""
    return Entry(
        id=d["id"],
        entity=d["entity"],
        reference_type=d["reference_type"],
        reference_id=d["reference_id"],
        values=dict(d.get("values") or {}),
        title=d.get("title") or "",
        pipeline_id=d.get("pipeline_id"),
        stage_id=d.get("stage_id"),
        created_at=d.get("created_at", ""),
        updated_at=d.get("updated_at", ""),
        version=d.get("version", 1),
    )


def customer_to_dict(c: Customer) -> dict[str, Any]:
    """The storage/JSON form of a customer."""
    return {
        "id": c.id,
        "email": c.email,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "created_at": c.created_at,
    }


def customer_from_dict(d: Mapping[str, Any]) -> Customer:
    """Rebuild a customer."""
    return Customer(
        id=d["id"],
        email=d.get("email"),
        first_name=d.get("first_name"),
        last_name=d.get("last_name"),
        created_at=d.get("created_at", ""),
    )


__all__ = [
    "FIELD_TYPES",
    "Customer",
    "Entity",
    "Entry",
    "Field",
    "Option",
    "Pipeline",
    "ReportingConfig",
    "Stage",
    "replace",
]
