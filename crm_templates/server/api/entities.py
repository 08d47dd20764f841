"""Entity definitions (issue 13, item 1): presets, entities, pipelines, stages and fields,
edited through `crm_templates.entity_admin` — the admin's operations, with its rules (entries
are never rewritten; a field that entries hold is removed only with ``?confirm=true``; a
stage or pipeline that entries sit in is not removed; a type change is refused while values
would not fit).

Versions: every definition belongs to one entity, whose ``version`` is the ``ETag`` of the
entity, its pipelines, stages and fields. ``If-Match`` on a PUT or DELETE refuses the edit with
409 when the entity changed; without it the edit applies to the current definition.

Ids: entities by slug, pipelines and stages by their ids (``pip_…``, ``stg_…``), fields by
``<entity slug>:<key>`` (`crm_templates.api_shapes`). Writes are audited with the admin's action
names (``entity.create``, ``field.update``, ``stage.reorder`` …) and the key as the actor.
"""

from __future__ import annotations

from typing import Any

from flask import url_for

from ... import entity_admin as admin
from ...api_shapes import (
    delete_entity,
    entity_json,
    field_json,
    find_field,
    find_pipeline,
    find_stage,
    pipeline_json,
    stage_json,
)
from ...model import Entity, Field, Pipeline, Stage
from ...presets import PRESETS, preset
from ...schema import check_slug
from . import bp, crm, record
from . import schemas as s
from .conditional import etag, if_match
from .entries import check_fields, entity_or_404
from .errors import ApiError
from .spec import operation

DEF_ERRORS = (400, 401, 403, 404, 409, 415, 422, 429)
CONFIRM = {"confirm": s.CONFIRM}


def _version(entity: Entity) -> int:
    """If-Match's version, or the entity's current one (last write wins)."""
    wanted = if_match()
    return entity.version if wanted is None else wanted


def _pipeline_or_404(pipeline_id: str) -> tuple[Entity, Pipeline]:
    found = find_pipeline(crm().list_entities(), pipeline_id)
    if found is None:
        raise ApiError(404, f"There is no pipeline {pipeline_id!r}.")
    return found


def _stage_or_404(stage_id: str) -> tuple[Entity, Pipeline, Stage]:
    found = find_stage(crm().list_entities(), stage_id)
    if found is None:
        raise ApiError(404, f"There is no stage {stage_id!r}.")
    return found


def _field_or_404(field_id: str) -> tuple[Entity, Field]:
    found = find_field(crm(), field_id)
    if found is None:
        raise ApiError(404, f"There is no field {field_id!r} (field ids are <entity>:<key>).")
    return found


# --- presets --------------------------------------------------------------------------------


@operation(
    bp,
    "GET",
    "/entity-presets",
    summary="The entity presets (leads, contacts, deals)",
    tag="Entities",
    response=s.ref("PresetList"),
)
def list_presets(query: dict[str, Any]) -> Any:
    """Each preset's settings, fields and pipelines, as ``POST /entities`` with ``preset``
    applies them."""
    data = []
    for name in PRESETS:
        d = preset(name)
        data.append(
            {
                "slug": name,
                "name": d["name"],
                "singular_name": d["singularName"],
                "plural_name": d["pluralName"],
                "color": d.get("color"),
                "fields": d["fields"],
                "pipelines": d["pipelines"],
            }
        )
    return {"data": data}


# --- entities -------------------------------------------------------------------------------


@operation(
    bp, "GET", "/entities", summary="List entities", tag="Entities", response=s.ref("EntityList")
)
def list_entities(query: dict[str, Any]) -> Any:
    """Every entity with its fields and pipelines."""
    return {"data": [entity_json(e) for e in crm().list_entities()]}


@operation(
    bp,
    "POST",
    "/entities",
    summary="Create an entity",
    tag="Entities",
    body=s.ENTITY_CREATE,
    response=s.ref("Entity"),
    status=201,
    errors=DEF_ERRORS,
    etag=True,
    links={
        name: (target, {"slug": "$response.body#/slug"})
        for name, target in (
            ("GetEntity", "get_entity"),
            ("UpdateEntity", "update_entity"),
            ("AddField", "create_field"),
            ("AddPipeline", "create_pipeline"),
            ("ListEntries", "list_entries"),
            ("CreateEntry", "create_entry"),
            ("DeleteEntity", "remove_entity"),
        )
    },
)
def create_entity(query: dict[str, Any], body: dict[str, Any]) -> Any:
    """``preset``, ``fields`` and ``pipelines`` take what EnsureCrmEntity takes; an entity with
    that slug already existing is refused (422 on ``slug``)."""
    service = crm()
    slug = body["slug"]
    if any(k in body for k in ("preset", "fields", "pipelines")):
        check_fields({"slug": lambda: check_slug(slug)})  # named, before any store lookup
        if service.store.get_entity(slug) is not None:
            message = f"an entity with slug {slug!r} already exists"
            raise ApiError(422, message, {"slug": [message]})
        options = {
            "slug": slug,
            "name": body.get("name"),
            "singularName": body.get("singular_name"),
            "pluralName": body.get("plural_name"),
            "icon": body.get("icon"),
            "color": body.get("color"),
            "entityMode": body.get("mode"),
            "preset": body.get("preset"),
            "fields": body.get("fields"),
            "pipelines": body.get("pipelines"),
        }
        service.ensure_entity({k: v for k, v in options.items() if v is not None})
        entity = entity_or_404(slug)
    else:
        entity = admin.create_entity(
            service,
            slug,
            name=body.get("name"),
            singular_name=body.get("singular_name"),
            plural_name=body.get("plural_name"),
            icon=body.get("icon"),
            color=body.get("color"),
            mode=body.get("mode", "crm"),
        )
    record("entity.create", entity=entity.slug)
    headers = {**etag(entity.version), "Location": url_for("crm_api.get_entity", slug=entity.slug)}
    return entity_json(entity), 201, headers


@operation(
    bp,
    "GET",
    "/entities/{slug}",
    summary="Read an entity",
    tag="Entities",
    response=s.ref("Entity"),
    etag=True,
)
def get_entity(slug: str, query: dict[str, Any]) -> Any:
    """The entity with ``ETag: "<version>"``."""
    entity = entity_or_404(slug)
    return entity_json(entity), 200, etag(entity.version)


@operation(
    bp,
    "PUT",
    "/entities/{slug}",
    summary="Update an entity's names, icon, colour or mode",
    tag="Entities",
    body=s.ENTITY_UPDATE,
    response=s.ref("Entity"),
    errors=DEF_ERRORS,
    if_match=True,
    etag=True,
)
def update_entity(slug: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    """Keys left out keep their value; ``null`` or ``""`` resets a name to its default."""
    entity = entity_or_404(slug)
    current = {
        "name": entity.name,
        "singular_name": entity.singular_name,
        "plural_name": entity.plural_name,
        "icon": entity.icon,
        "color": entity.color,
    }
    attributes = {k: body.get(k, v) for k, v in current.items()}
    changed = admin.update_entity(
        crm(), entity.slug, _version(entity), mode=body.get("mode"), **attributes
    )
    record("entity.update", entity=slug, details={"changed": sorted(body)})
    return entity_json(changed), 200, etag(changed.version)


@operation(
    bp,
    "DELETE",
    "/entities/{slug}",
    summary="Delete an entity (with its entries: ?confirm=true)",
    tag="Entities",
    query=CONFIRM,
    response=s.ref("Deleted"),
    errors=(400, 401, 403, 404, 409, 422, 429),
    if_match=True,
)
def remove_entity(slug: str, query: dict[str, Any]) -> Any:
    """An entity holding entries needs ``?confirm=true`` (409 otherwise, with the count);
    one that another entity's reference field targets is refused (422)."""
    entity = entity_or_404(slug)
    wanted = if_match()
    if wanted is not None and wanted != entity.version:
        message = f"entity {slug!r} changed (If-Match version {wanted}, now {entity.version})"
        raise ApiError(409, message, {"If-Match": [message]})
    if not delete_entity(crm(), slug, confirm=bool(query.get("confirm"))):
        raise ApiError(404, f"There is no entity {slug!r}.")
    record("entity.delete", entity=slug, details={"confirm": bool(query.get("confirm"))})
    return {"deleted": True, "id": slug}


# --- pipelines ------------------------------------------------------------------------------


@operation(
    bp,
    "GET",
    "/entities/{slug}/pipelines",
    summary="List an entity's pipelines",
    tag="Pipelines",
    response=s.ref("PipelineList"),
)
def list_pipelines(slug: str, query: dict[str, Any]) -> Any:
    """The pipelines in order, each with its stages."""
    entity = entity_or_404(slug)
    return {"data": [pipeline_json(entity, p) for p in entity.pipelines]}


@operation(
    bp,
    "POST",
    "/entities/{slug}/pipelines",
    summary="Add a pipeline",
    tag="Pipelines",
    body=s.PIPELINE_CREATE,
    response=s.ref("Pipeline"),
    status=201,
    errors=DEF_ERRORS,
    if_match=True,
    etag=True,
    links={
        name: (target, {"pipeline_id": "$response.body#/id"})
        for name, target in (
            ("GetPipeline", "get_pipeline"),
            ("UpdatePipeline", "update_pipeline"),
            ("AddStage", "create_stage"),
            ("DeletePipeline", "remove_pipeline"),
        )
    },
)
def create_pipeline(slug: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    """``{slug, name, stages: [{slug, name, …}]}`` as EnsureCrmEntity takes a pipeline."""
    entity = entity_or_404(slug)
    changed = admin.add_pipeline(crm(), entity.slug, _version(entity), body)
    pipeline = next(p for p in changed.pipelines if p.slug == body["slug"])
    record("pipeline.add", entity=slug, details={"pipeline": pipeline.slug})
    headers = {
        **etag(changed.version),
        "Location": url_for("crm_api.get_pipeline", pipeline_id=pipeline.id),
    }
    return pipeline_json(changed, pipeline), 201, headers


@operation(
    bp,
    "GET",
    "/pipelines/{pipeline_id}",
    summary="Read a pipeline",
    tag="Pipelines",
    response=s.ref("Pipeline"),
    etag=True,
)
def get_pipeline(pipeline_id: str, query: dict[str, Any]) -> Any:
    """The pipeline with its stages; the ETag is its entity's version."""
    entity, pipeline = _pipeline_or_404(pipeline_id)
    return pipeline_json(entity, pipeline), 200, etag(entity.version)


@operation(
    bp,
    "PUT",
    "/pipelines/{pipeline_id}",
    summary="Rename a pipeline",
    tag="Pipelines",
    body=s.PIPELINE_UPDATE,
    response=s.ref("Pipeline"),
    errors=DEF_ERRORS,
    if_match=True,
    etag=True,
)
def update_pipeline(pipeline_id: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    """``{name}`` (null or empty: the name made from the slug)."""
    entity, pipeline = _pipeline_or_404(pipeline_id)
    name = body.get("name", pipeline.name)
    changed = admin.update_pipeline(crm(), entity.slug, _version(entity), pipeline.slug, name=name)
    record("pipeline.update", entity=entity.slug, details={"pipeline": pipeline.slug})
    now = next(p for p in changed.pipelines if p.id == pipeline_id)
    return pipeline_json(changed, now), 200, etag(changed.version)


@operation(
    bp,
    "DELETE",
    "/pipelines/{pipeline_id}",
    summary="Remove a pipeline no entry sits in",
    tag="Pipelines",
    response=s.ref("Deleted"),
    errors=(400, 401, 403, 404, 409, 422, 429),
    if_match=True,
)
def remove_pipeline(pipeline_id: str, query: dict[str, Any]) -> Any:
    """Refused (422, with the count) while entries sit in it, and for a CRM entity's last
    pipeline."""
    entity, pipeline = _pipeline_or_404(pipeline_id)
    admin.remove_pipeline(crm(), entity.slug, _version(entity), pipeline.slug)
    record("pipeline.remove", entity=entity.slug, details={"pipeline": pipeline.slug})
    return {"deleted": True, "id": pipeline_id}


# --- stages ---------------------------------------------------------------------------------


@operation(
    bp,
    "GET",
    "/pipelines/{pipeline_id}/stages",
    summary="List a pipeline's stages",
    tag="Stages",
    response=s.ref("StageList"),
)
def list_stages(pipeline_id: str, query: dict[str, Any]) -> Any:
    """The stages in order."""
    entity, pipeline = _pipeline_or_404(pipeline_id)
    return {"data": [stage_json(entity, pipeline, st) for st in pipeline.stages]}


@operation(
    bp,
    "POST",
    "/pipelines/{pipeline_id}/stages",
    summary="Add a stage at the end of a pipeline",
    tag="Stages",
    body=s.STAGE_CREATE,
    response=s.ref("Stage"),
    status=201,
    errors=DEF_ERRORS,
    if_match=True,
    etag=True,
    links={
        name: (target, {"stage_id": "$response.body#/id"})
        for name, target in (
            ("GetStage", "get_stage"),
            ("UpdateStage", "update_stage"),
            ("DeleteStage", "remove_stage"),
        )
    },
)
def create_stage(pipeline_id: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    """``{slug, name, color, semantic_status, probability}``."""
    entity, pipeline = _pipeline_or_404(pipeline_id)
    definition = {k: v for k, v in body.items() if v is not None}
    changed = admin.add_stage(crm(), entity.slug, _version(entity), pipeline.slug, definition)
    now = next(p for p in changed.pipelines if p.id == pipeline_id)
    stage = next(st for st in now.stages if st.slug == body["slug"])
    record("stage.add", entity=entity.slug, details={"pipeline": now.slug, "stage": stage.slug})
    headers = {**etag(changed.version), "Location": url_for("crm_api.get_stage", stage_id=stage.id)}
    return stage_json(changed, now, stage), 201, headers


@operation(
    bp,
    "PUT",
    "/stages/reorder",
    summary="Reorder a pipeline's stages",
    tag="Stages",
    body=s.STAGE_REORDER,
    response=s.ref("Pipeline"),
    errors=DEF_ERRORS,
    if_match=True,
    etag=True,
)
def reorder_stages(query: dict[str, Any], body: dict[str, Any]) -> Any:
    """``{pipeline_id, order: [stage id or slug, …]}`` naming every stage once."""
    entity, pipeline = _pipeline_or_404(body["pipeline_id"])
    by_id = {st.id: st.slug for st in pipeline.stages}
    order = [by_id.get(item, item) for item in body["order"]]
    changed = admin.reorder_stages(crm(), entity.slug, _version(entity), pipeline.slug, order)
    now = next(p for p in changed.pipelines if p.id == pipeline.id)
    record("stage.reorder", entity=entity.slug, details={"pipeline": now.slug, "order": order})
    return pipeline_json(changed, now), 200, etag(changed.version)


@operation(
    bp,
    "GET",
    "/stages/{stage_id}",
    summary="Read a stage",
    tag="Stages",
    response=s.ref("Stage"),
    etag=True,
)
def get_stage(stage_id: str, query: dict[str, Any]) -> Any:
    """The stage; the ETag is its entity's version."""
    entity, pipeline, stage = _stage_or_404(stage_id)
    return stage_json(entity, pipeline, stage), 200, etag(entity.version)


@operation(
    bp,
    "PUT",
    "/stages/{stage_id}",
    summary="Update a stage's name, colour, status or probability",
    tag="Stages",
    body=s.STAGE_UPDATE,
    response=s.ref("Stage"),
    errors=DEF_ERRORS,
    if_match=True,
    etag=True,
)
def update_stage(stage_id: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    """Keys left out keep their value."""
    entity, pipeline, stage = _stage_or_404(stage_id)
    changed = admin.update_stage(
        crm(), entity.slug, _version(entity), pipeline.slug, stage.slug, body
    )
    _, now_pipeline, now = _stage_or_404(stage_id)
    record("stage.update", entity=entity.slug, details={"stage": stage.slug})
    return stage_json(changed, now_pipeline, now), 200, etag(changed.version)


@operation(
    bp,
    "DELETE",
    "/stages/{stage_id}",
    summary="Remove a stage no entry sits in",
    tag="Stages",
    response=s.ref("Deleted"),
    errors=(400, 401, 403, 404, 409, 422, 429),
    if_match=True,
)
def remove_stage(stage_id: str, query: dict[str, Any]) -> Any:
    """Refused (422, with the count) while entries sit in it, and for a pipeline's last
    stage."""
    entity, pipeline, stage = _stage_or_404(stage_id)
    admin.remove_stage(crm(), entity.slug, _version(entity), pipeline.slug, stage.slug)
    record("stage.remove", entity=entity.slug, details={"stage": stage.slug})
    return {"deleted": True, "id": stage_id}


# --- fields ---------------------------------------------------------------------------------


@operation(
    bp,
    "GET",
    "/entities/{slug}/fields",
    summary="List an entity's fields",
    tag="Fields",
    response=s.ref("FieldList"),
)
def list_fields(slug: str, query: dict[str, Any]) -> Any:
    """The fields in order."""
    entity = entity_or_404(slug)
    return {"data": [field_json(entity, f) for f in entity.fields]}


@operation(
    bp,
    "POST",
    "/entities/{slug}/fields",
    summary="Add a field",
    tag="Fields",
    body=s.FIELD_CREATE,
    response=s.ref("Field"),
    status=201,
    errors=DEF_ERRORS,
    if_match=True,
    etag=True,
    links={
        name: (target, {"field_id": "$response.body#/id"})
        for name, target in (
            ("GetField", "get_field"),
            ("UpdateField", "update_field"),
            ("DeleteField", "remove_field"),
        )
    },
)
def create_field(slug: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    """``{key, label, type, options, ui_editable, reporting_config, target_entity,
    display_field, …}`` as EnsureCrmEntity takes a field."""
    entity = entity_or_404(slug)
    definition = {k: v for k, v in body.items() if v is not None}
    changed = admin.add_field(crm(), entity.slug, _version(entity), definition)
    field = next(f for f in changed.fields if f.key == body["key"])
    record("field.add", entity=slug, details={"field": field.key})
    headers = {
        **etag(changed.version),
        "Location": url_for("crm_api.get_field", field_id=f"{slug}:{field.key}"),
    }
    return field_json(changed, field), 201, headers


@operation(
    bp,
    "GET",
    "/fields/{field_id}",
    summary="Read a field (id: <entity>:<key>)",
    tag="Fields",
    response=s.ref("Field"),
    etag=True,
)
def get_field(field_id: str, query: dict[str, Any]) -> Any:
    """The field; the ETag is its entity's version."""
    entity, field = _field_or_404(field_id)
    return field_json(entity, field), 200, etag(entity.version)


@operation(
    bp,
    "PUT",
    "/fields/{field_id}",
    summary="Update a field",
    tag="Fields",
    body=s.FIELD_UPDATE,
    response=s.ref("Field"),
    errors=DEF_ERRORS,
    if_match=True,
    etag=True,
)
def update_field(field_id: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    """Keys left out keep their value; null removes an optional attribute. A type change
    while entries hold values that would not fit is refused (422)."""
    entity, field = _field_or_404(field_id)
    changed = admin.update_field(crm(), entity.slug, _version(entity), field.key, body)
    now = next(f for f in changed.fields if f.key == field.key)
    record(
        "field.update", entity=entity.slug, details={"field": field.key, "changed": sorted(body)}
    )
    return field_json(changed, now), 200, etag(changed.version)


@operation(
    bp,
    "DELETE",
    "/fields/{field_id}",
    summary="Remove a field (held by entries: ?confirm=true)",
    tag="Fields",
    query=CONFIRM,
    response=s.ref("Deleted"),
    errors=(400, 401, 403, 404, 409, 422, 429),
    if_match=True,
)
def remove_field(field_id: str, query: dict[str, Any]) -> Any:
    """A field that entries hold needs ``?confirm=true`` (409 otherwise, with the count); the
    values stay in the entries."""
    entity, field = _field_or_404(field_id)
    admin.remove_field(
        crm(), entity.slug, _version(entity), field.key, confirm=bool(query.get("confirm"))
    )
    record("field.remove", entity=entity.slug, details={"field": field.key})
    return {"deleted": True, "id": field_id}
