"""The JSON Schemas (draft 2020-12) of the API's bodies and answers, defined once: the routes
validate requests with them (`spec.operation`) and the OpenAPI document is made of them.

Request schemas check the shape (types, required keys, unknown keys); the CRM rules (field
types and values, slugs, colours, stage names …) are the core's, which answer 422 with its
message — the same rules as EnsureCrmEntity, SetCrmFields and the admin.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

TEXT: Schema = {"type": "string"}
TEXT_OR_NULL: Schema = {"type": ["string", "null"]}
ANY: Schema = {}


def ref(name: str) -> Schema:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    """An object schema refusing unknown keys."""
    out: Schema = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        out["required"] = list(required)
    out.update(extra)
    return out


def listing(item: str) -> Schema:
    """A page of items with how to get the next one."""
    return obj(
        {
            "data": {"type": "array", "items": ref(item)},
            "per_page": {"type": "integer"},
            "page": {"type": ["integer", "null"]},
            "has_more": {"type": "boolean"},
            "next_cursor": TEXT_OR_NULL,
            "next_url": TEXT_OR_NULL,
        },
        ("data", "per_page", "has_more", "next_cursor"),
    )


def items(item: str) -> Schema:
    """A whole (unpaged) list."""
    return obj({"data": {"type": "array", "items": ref(item)}}, ("data",))


_STAGE_PROPS: dict[str, Schema] = {
    "name": TEXT_OR_NULL,
    "color": TEXT_OR_NULL,
    "semantic_status": {"type": ["string", "null"]},
    "probability": {"type": ["number", "null"]},
}
_FIELD_PROPS: dict[str, Schema] = {
    "label": TEXT_OR_NULL,
    "type": TEXT_OR_NULL,
    "options": {"type": ["array", "null"]},
    "ui_editable": {"type": ["boolean", "null"]},
    "reporting_config": {"type": ["object", "null"]},
    "target_entity": TEXT_OR_NULL,
    "display_field": TEXT_OR_NULL,
    "validation_rules": ANY,
    "visible_to_team_ids": {"type": ["array", "null"]},
}

COMPONENTS: dict[str, Schema] = {
    "Error": obj(
        {
            "message": TEXT,
            "errors": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": TEXT},
            },
        },
        ("message", "errors"),
    ),
    "Customer": obj(
        {
            "id": TEXT,
            "email": TEXT_OR_NULL,
            "first_name": TEXT_OR_NULL,
            "last_name": TEXT_OR_NULL,
            "created_at": TEXT,
        },
        ("id",),
    ),
    "KeyValue": obj({"key": TEXT, "value": ANY}, ("key", "value")),
    "Entry": obj(
        {
            "id": TEXT,
            "entity": TEXT,
            "title": TEXT,
            "reference_type": TEXT,
            "reference_id": TEXT,
            "pipeline_id": TEXT_OR_NULL,
            "stage_id": TEXT_OR_NULL,
            "values": {"type": "array", "items": ref("KeyValue")},
            "values_flat": {"type": "object"},
            "created_at": TEXT,
            "updated_at": TEXT,
            "version": {"type": "integer"},
            "customer": {"anyOf": [ref("Customer"), {"type": "null"}]},
        },
        ("id", "entity", "reference_type", "reference_id", "values", "values_flat", "version"),
    ),
    "Stage": obj(
        {
            "id": TEXT,
            "entity": TEXT,
            "pipeline_id": TEXT,
            "slug": TEXT,
            "name": TEXT,
            "position": {"type": "integer"},
            "color": TEXT_OR_NULL,
            "semantic_status": TEXT,
            "probability": {"type": ["number", "null"]},
        },
        ("id", "entity", "pipeline_id", "slug", "name", "position"),
    ),
    "Pipeline": obj(
        {
            "id": TEXT,
            "entity": TEXT,
            "slug": TEXT,
            "name": TEXT,
            "position": {"type": "integer"},
            "stages": {"type": "array", "items": ref("Stage")},
        },
        ("id", "entity", "slug", "name", "stages"),
    ),
    "Field": obj(
        {
            "id": TEXT,
            "entity": TEXT,
            "key": TEXT,
            "position": {"type": "integer"},
            "label": TEXT,
            "type": TEXT,
            "options": {"type": "array"},
            "ui_editable": {"type": "boolean"},
            "reporting_config": {"type": ["object", "null"]},
            "target_entity": TEXT_OR_NULL,
            "display_field": TEXT_OR_NULL,
            "validation_rules": ANY,
            "visible_to_team_ids": {"type": ["array", "null"]},
        },
        ("id", "entity", "key", "label", "type"),
    ),
    "Entity": obj(
        {
            "id": TEXT,
            "slug": TEXT,
            "name": TEXT,
            "singular_name": TEXT,
            "plural_name": TEXT,
            "icon": TEXT_OR_NULL,
            "color": TEXT_OR_NULL,
            "mode": TEXT,
            "fields": {"type": "array", "items": ref("Field")},
            "pipelines": {"type": "array", "items": ref("Pipeline")},
            "created_at": TEXT,
            "version": {"type": "integer"},
        },
        ("id", "slug", "name", "mode", "fields", "pipelines", "version"),
    ),
    "Preset": obj(
        {
            "slug": TEXT,
            "name": TEXT,
            "singular_name": TEXT,
            "plural_name": TEXT,
            "color": TEXT_OR_NULL,
            "fields": {"type": "array"},
            "pipelines": {"type": "array"},
        },
        ("slug", "name", "fields", "pipelines"),
    ),
    "Deleted": obj({"deleted": {"type": "boolean"}, "id": TEXT}, ("deleted", "id")),
    "EntryList": listing("Entry"),
    "EntityList": items("Entity"),
    "PipelineList": items("Pipeline"),
    "StageList": items("Stage"),
    "FieldList": items("Field"),
    "PresetList": items("Preset"),
    "CustomerEntries": obj(
        {
            "customer": ref("Customer"),
            "data": {"type": "array", "items": ref("Entry")},
            "has_more": {"type": "boolean"},
        },
        ("customer", "data", "has_more"),
    ),
}

# --- request bodies -------------------------------------------------------------------------

ENTITY_CREATE = obj(
    {
        "slug": TEXT,
        "name": TEXT_OR_NULL,
        "singular_name": TEXT_OR_NULL,
        "plural_name": TEXT_OR_NULL,
        "icon": TEXT_OR_NULL,
        "color": TEXT_OR_NULL,
        "mode": {"enum": ["crm", "data"]},
        "preset": TEXT_OR_NULL,
        "fields": {"type": "array", "items": {"type": "object"}},
        "pipelines": {"type": "array", "items": {"type": "object"}},
    },
    ("slug",),
)
ENTITY_UPDATE = obj(
    {
        "name": TEXT_OR_NULL,
        "singular_name": TEXT_OR_NULL,
        "plural_name": TEXT_OR_NULL,
        "icon": TEXT_OR_NULL,
        "color": TEXT_OR_NULL,
        "mode": {"enum": ["crm", "data"]},
    }
)
PIPELINE_CREATE = obj(
    {"slug": TEXT, "name": TEXT_OR_NULL, "stages": {"type": "array", "items": {"type": "object"}}},
    ("slug",),
)
PIPELINE_UPDATE = obj({"name": TEXT_OR_NULL})
STAGE_CREATE = obj({"slug": TEXT, **_STAGE_PROPS}, ("slug",))
STAGE_UPDATE = obj(dict(_STAGE_PROPS))
STAGE_REORDER = obj(
    {
        "pipeline_id": TEXT,
        "order": {"type": "array", "items": TEXT, "minItems": 1, "maxItems": 1000},
    },
    ("pipeline_id", "order"),
)
FIELD_CREATE = obj({"key": TEXT, **_FIELD_PROPS}, ("key",))
FIELD_UPDATE = obj(dict(_FIELD_PROPS))
ENTRY_CREATE = obj(
    {
        "title": TEXT_OR_NULL,
        "values": {"type": "object"},
        "reference_type": TEXT,
        "reference_id": TEXT,
        "pipeline_id": TEXT_OR_NULL,
        "stage_id": TEXT_OR_NULL,
    },
    ("reference_id",),
)
ENTRY_UPDATE = obj({"title": TEXT_OR_NULL, "values": {"type": "object"}})
ENTRY_STAGE = obj({"stage_id": TEXT, "pipeline_id": TEXT_OR_NULL}, ("stage_id",))

# --- query parameters -----------------------------------------------------------------------

PER_PAGE: Schema = {"type": "integer", "minimum": 1, "maximum": 100, "default": 25}
PAGE: Schema = {"type": "integer", "minimum": 1, "maximum": 100000}
CURSOR: Schema = {"type": "string", "maxLength": 1000}
CONFIRM: Schema = {"type": "boolean", "default": False}
ENTRY_FILTERS: dict[str, Schema] = {
    "pipeline_id": {"type": "string", "maxLength": 200},
    "stage_id": {"type": "string", "maxLength": 200},
    "reference_type": {"type": "string", "maxLength": 200},
    "reference_id": {"type": "string", "maxLength": 200},
    "q": {"type": "string", "maxLength": 200},
    "field_key": {"type": "string", "maxLength": 200},
    "field_value": {"type": "string", "maxLength": 1000},
    "include_customer": {"type": "boolean", "default": False},
    "per_page": PER_PAGE,
    "page": PAGE,
    "cursor": CURSOR,
}
