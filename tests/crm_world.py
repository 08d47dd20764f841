"""A small CRM world shared by the dispatch and option tests (issue 10, item 2).

Four entities chosen so that every option of every function has something to change:
``deals`` (CRM mode, two pipelines that share the stage slug ``won``, reference and
multi_reference fields), ``leads`` (CRM mode, one pipeline, the same relation fields),
``companies`` (data mode, shared ``site``/``catalog`` entries to link to) and ``archive``
(data mode, a target for MoveCrmToEntity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crm_templates import Crm
from crm_templates.model import Entry

CATALOG = {"referenceType": "site", "referenceId": "catalog"}
RELATIONS = [
    {"key": "company", "type": "reference", "target_entity": "companies"},
    {"key": "partners", "type": "multi_reference", "target_entity": "companies"},
]
ENTITIES: list[dict[str, Any]] = [
    {"slug": "companies", "entityMode": "data", "fields": [{"key": "name"}]},
    {
        "slug": "deals",
        "fields": [
            {"key": "note"},
            {"key": "amount", "type": "number"},
            {"key": "extra"},
            *RELATIONS,
        ],
        "pipelines": [
            {"slug": "sales", "stages": [{"slug": "proposal"}, {"slug": "won"}]},
            {"slug": "renewals", "stages": [{"slug": "renewal"}, {"slug": "won"}]},
        ],
    },
    {
        "slug": "leads",
        "fields": [{"key": "note"}, {"key": "amount", "type": "number"}, *RELATIONS],
        "pipelines": [{"slug": "funnel", "stages": [{"slug": "new"}, {"slug": "qualified"}]}],
    },
    {
        "slug": "archive",
        "entityMode": "data",
        "fields": [{"key": "note"}, {"key": "amount", "type": "number"}, {"key": "extra"}],
    },
]


@dataclass(frozen=True)
class World:
    """Ids of the world's pipelines, stages and shared company entries."""

    pipelines: dict[str, str]  # "deals/renewals" -> pipeline id
    stages: dict[str, str]  # "deals/renewals/won" -> stage id
    companies: tuple[str, str]  # two shared company entries (site/catalog)


def build_world(crm: Crm) -> World:
    """Ensure the entities and two shared companies; return the ids tests refer to."""
    for definition in ENTITIES:
        crm.ensure_entity(definition)
    pipelines: dict[str, str] = {}
    stages: dict[str, str] = {}
    for entity in crm.list_entities():
        for p in entity.pipelines:
            pipelines[f"{entity.slug}/{p.slug}"] = p.id
            for s in p.stages:
                stages[f"{entity.slug}/{p.slug}/{s.slug}"] = s.id
    c1 = crm.create_entry(slug="companies", title="Acme", values={"name": "Acme"}, **CATALOG)
    c2 = crm.create_entry(slug="companies", title="Bolt", values={"name": "Bolt"}, **CATALOG)
    return World(pipelines, stages, (c1["id"], c2["id"]))


def row(entry: Entry) -> dict[str, Any]:
    """What a test compares of an entry: everything but its id, timestamps and version."""
    return {
        "entity": entry.entity,
        "reference": (entry.reference_type, entry.reference_id),
        "title": entry.title,
        "values": dict(entry.values),
        "pipeline_id": entry.pipeline_id,
        "stage_id": entry.stage_id,
    }


def snapshot(crm: Crm) -> dict[str, Any]:
    """Every entity (fields, pipelines) and entry of the store, for before/after diffs."""
    return {
        "entities": {
            e.slug: (e.field_keys, tuple(p.slug for p in e.pipelines), e.mode)
            for e in crm.store.list_entities()
        },
        "entries": {e.id: row(e) for e in crm.store.iter_entries()},
    }


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What changed between two snapshots: entities added, entries created (as rows, without
    ids, sorted), entries deleted (ids) and entries changed (id -> {attribute: new value})."""
    old, new = before["entries"], after["entries"]
    changed: dict[str, dict[str, Any]] = {}
    for ident in old.keys() & new.keys():
        delta = {k: v for k, v in new[ident].items() if old[ident][k] != v}
        if delta:
            changed[ident] = delta
    return {
        "entities": sorted(after["entities"].keys() - before["entities"].keys()),
        "created": sorted((new[i] for i in new.keys() - old.keys()), key=repr),
        "deleted": sorted(old.keys() - new.keys()),
        "changed": changed,
    }


NOTHING: dict[str, Any] = {"entities": [], "created": [], "deleted": [], "changed": {}}


def plain(value: Any) -> Any:
    """A result with entries as ``('entry', id)`` and read-only mappings/lists made plain, so
    results of the service, of templates (frozen) and of page backends (JSON) compare equal."""
    if isinstance(value, Entry):
        return ("entry", value.id)
    if isinstance(value, Mapping):
        if set(value) == {"__entry__"}:
            return ("entry", value["__entry__"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    return value
