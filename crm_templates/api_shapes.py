"""The REST API's resource shapes and look-ups (issue 13, item 1), kept in the core so that
anything answering in the platform's shape (the API, exports, scripts) uses one definition.

The platform's REST API (the seed) nests entities → pipelines → stages and fields, and returns
an entry's ``values`` as a list of ``{key, value}`` pairs; templates and our own JSON use the
``values_flat`` object. `entry_json` gives both. Pipelines and stages are addressed by their
ids (``pip_…``, ``stg_…``, unique across entities); a field has no id of its own in the data
model, so its API id is ``<entity slug>:<field key>`` (`field_id`; neither part can hold a
colon: SPEC §3).

`delete_entity` is the one entity-removal rule (the API's ``DELETE /entities/{slug}``):
refused while another entity's reference field points at it; an entity holding entries is
removed, with its entries, only when confirmed.

Core module: no Jinja, Flask or renderers (SPEC §2).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import CrmError, CrmValidationError, UnknownEntityError
from .model import Customer, Entity, Entry, Field, Pipeline, Stage, field_to_dict
from .service import Crm

FIELD_ID_SEPARATOR = ":"


class EntityHoldsData(CrmError):
    """`delete_entity` without ``confirm`` on an entity with entries; nothing was changed.
    ``count`` is how many entries it holds."""

    def __init__(self, slug: str, count: int) -> None:
        super().__init__(
            f"entity {slug!r} holds {count} {'entry' if count == 1 else 'entries'}; confirm "
            "(?confirm=true) to delete the entity and its entries"
        )
        self.slug = slug
        self.count = count


class EntityInUse(CrmValidationError):
    """`delete_entity` of an entity that other entities' reference fields point at."""


# --- shapes ---------------------------------------------------------------------------------


def entry_json(
    entry: Entry, customer: Customer | None = None, *, with_customer: bool = False
) -> dict[str, Any]:
    """An entry in the API's shape: the stored fields, ``values`` as ``[{key, value}]`` (the
    platform's form, in the order the entry holds them), ``values_flat`` as ``{key: value}``,
    and — when ``with_customer`` — ``customer`` (the referenced customer, or None)."""
    out: dict[str, Any] = {
        "id": entry.id,
        "entity": entry.entity,
        "title": entry.title,
        "reference_type": entry.reference_type,
        "reference_id": entry.reference_id,
        "pipeline_id": entry.pipeline_id,
        "stage_id": entry.stage_id,
        "values": [{"key": k, "value": v} for k, v in entry.values.items()],
        "values_flat": dict(entry.values),
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
        "version": entry.version,
    }
    if with_customer:
        out["customer"] = customer.to_dict() if customer is not None else None
    return out


def field_id(entity: Entity, field: Field) -> str:
    """A field's API id: ``<entity slug>:<field key>``."""
    return f"{entity.slug}{FIELD_ID_SEPARATOR}{field.key}"


def field_json(entity: Entity, field: Field) -> dict[str, Any]:
    """A field definition with its id, entity and position (0-based)."""
    stored = field_to_dict(field)
    return {
        "id": field_id(entity, field),
        "entity": entity.slug,
        "key": field.key,
        "position": entity.fields.index(field),
        "label": field.label,
        "type": field.type,
        "options": stored.get("options", []),
        "ui_editable": field.ui_editable,
        "reporting_config": stored.get("reporting_config"),
        "target_entity": field.target_entity,
        "display_field": field.display_field,
        "validation_rules": field.validation_rules,
        "visible_to_team_ids": stored.get("visible_to_team_ids"),
    }


def stage_json(entity: Entity, pipeline: Pipeline, stage: Stage) -> dict[str, Any]:
    """A stage with its entity and pipeline id."""
    return {
        "id": stage.id,
        "entity": entity.slug,
        "pipeline_id": pipeline.id,
        "slug": stage.slug,
        "name": stage.name,
        "position": stage.position,
        "color": stage.color,
        "semantic_status": stage.semantic_status,
        "probability": stage.probability,
    }


def pipeline_json(entity: Entity, pipeline: Pipeline) -> dict[str, Any]:
    """A pipeline with its stages (in order) and its position among the entity's pipelines
    (the first one is where new entries land)."""
    return {
        "id": pipeline.id,
        "entity": entity.slug,
        "slug": pipeline.slug,
        "name": pipeline.name,
        "position": entity.pipelines.index(pipeline),
        "stages": [stage_json(entity, pipeline, s) for s in pipeline.stages],
    }


def entity_json(entity: Entity) -> dict[str, Any]:
    """An entity with its fields and pipelines."""
    return {
        "id": entity.id,
        "slug": entity.slug,
        "name": entity.name,
        "singular_name": entity.singular_name,
        "plural_name": entity.plural_name,
        "icon": entity.icon,
        "color": entity.color,
        "mode": entity.mode,
        "fields": [field_json(entity, f) for f in entity.fields],
        "pipelines": [pipeline_json(entity, p) for p in entity.pipelines],
        "created_at": entity.created_at,
        "version": entity.version,
    }


# --- look-ups -------------------------------------------------------------------------------


def find_entity(crm: Crm, slug: str) -> Entity | None:
    """The entity with this slug, or None (also for a string that cannot be a slug)."""
    try:
        return crm.get_entity(slug)
    except (UnknownEntityError, CrmValidationError):
        return None


def find_pipeline(entities: Iterable[Entity], pipeline_id: str) -> tuple[Entity, Pipeline] | None:
    """The entity and pipeline with this pipeline id, or None."""
    for entity in entities:
        for pipeline in entity.pipelines:
            if pipeline.id == pipeline_id:
                return entity, pipeline
    return None


def find_stage(entities: Iterable[Entity], stage_id: str) -> tuple[Entity, Pipeline, Stage] | None:
    """The entity, pipeline and stage with this stage id, or None."""
    for entity in entities:
        for pipeline in entity.pipelines:
            for stage in pipeline.stages:
                if stage.id == stage_id:
                    return entity, pipeline, stage
    return None


def find_field(crm: Crm, ident: str) -> tuple[Entity, Field] | None:
    """The entity and field with this API id (``slug:key``), or None."""
    slug, sep, key = ident.partition(FIELD_ID_SEPARATOR)
    if not sep:
        return None
    entity = find_entity(crm, slug)
    if entity is None:
        return None
    field = next((f for f in entity.fields if f.key == key), None)
    return None if field is None else (entity, field)


# --- removal --------------------------------------------------------------------------------


def delete_entity(crm: Crm, slug: str, *, confirm: bool = False) -> bool:
    """Delete entity ``slug``; False when there is none.

    Refused with `EntityInUse` while another entity has a reference field targeting it (remove
    or retarget that field first), and with `EntityHoldsData` (with the count) while it has
    entries and ``confirm`` is not True; confirmed, its entries are deleted first, then the
    definition. Stage history and audit records of the entries stay (they are the trail).
    """
    entity = find_entity(crm, slug)
    if entity is None:
        return False
    users = [
        f"{other.slug}.{f.key}"
        for other in crm.store.list_entities()
        if other.slug != slug
        for f in other.fields
        if f.target_entity == slug
    ]
    if users:
        raise EntityInUse(
            f"entity {slug!r} is the target of reference field(s) {', '.join(users)}; remove "
            "or retarget them first"
        )
    held = crm.store.count_entries(slug)
    if held and confirm is not True:
        raise EntityHoldsData(slug, held)
    try:
        if held:
            crm.store.delete_entries(slug)
        return crm.store.delete_entity(slug)
    finally:
        crm.forget_entity(slug)


__all__ = [
    "EntityHoldsData",
    "EntityInUse",
    "delete_entity",
    "entity_json",
    "entry_json",
    "field_id",
    "field_json",
    "find_entity",
    "find_field",
    "find_pipeline",
    "find_stage",
    "pipeline_json",
    "stage_json",
]
