"""Loading a site's schema file (``crm.yaml``) and seed file (``seed.yaml``) — issue 11, item 4.

Both go through the same three steps, and any problem stops the load before anything is
written, as a `SchemaFileError` naming the file, line, column, path in the document and what is
expected:

1. parse YAML or JSON keeping positions (`crm_templates.documents`);
2. validate against the shipped JSON Schema (``crm-templates schema crm|seed`` prints it);
3. the checks a JSON Schema cannot express: duplicate field keys, stage and pipeline slugs and
   entity slugs, CSS colours, both spellings of one key, data-mode entities with pipelines, the
   entity parser itself (`crm_templates.schema`); for seeds, unique keys, customers and
   earlier entries named by key, entities, stages and values checked against the store's
   entity definitions.

This module is core: the CLI, ``lint`` and the page server import it (never the other way
round), and it imports neither click, Jinja2 nor Flask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .colours import check_colour
from .documents import DocPath, Document, Problem, check_document, raise_problems, read_document
from .errors import CrmError, CrmUsageError, CrmValidationError, SchemaFileError
from .model import REFERENCE_TYPES
from .presets import apply_preset
from .schema import (
    _camel,
    check_unicode,
    parse_field,
    parse_fields,
    parse_pipelines,
    parse_stage,
)
from .service import Crm
from .values import check_plain_string, check_reference, coerce


@dataclass(frozen=True)
class SchemaFile:
    """A checked schema file: its document and its entity definitions with their paths."""

    document: Document
    #: ``(path in the document, definition)`` per entity, in file order; each definition has
    #: its ``slug`` (a mapping form's key is copied in).
    entities: tuple[tuple[DocPath, dict[str, Any]], ...]


def read_schema_file(path: str | Path) -> SchemaFile:
    """Parse and check a schema file (``crm.yaml``/``.yml``/``.json``) without a store.

    Accepted shapes: ``{entities: [definition, …]}`` (recommended), ``{entities: {slug:
    definition}}``, a bare list of definitions, a bare ``{slug: definition}`` mapping.
    Raises `SchemaFileError` for every problem found.
    """
    document = read_document(path)
    check_document(document, "crm")
    entities = _entity_definitions(document.data)
    problems: list[Problem] = []
    seen: dict[str, DocPath] = {}
    for where, definition in entities:
        problems.extend(_check_entity(document, where, definition))
        slug = definition["slug"]
        if slug in seen:
            problems.append(
                document.problem(
                    (*where, "slug"),
                    f"entity {slug!r} is declared twice (first at "
                    f"{_shown_at(document, seen[slug])})",
                )
            )
        seen.setdefault(slug, where)
    raise_problems(problems)
    return SchemaFile(document, tuple(entities))


def load_schema_file(path: str | Path) -> list[dict[str, Any]]:
    """The entity definitions of a schema file, checked (see `read_schema_file`)."""
    return [definition for _, definition in read_schema_file(path).entities]


def ensure_schema(crm: Crm, path: str | Path) -> list[dict[str, Any]]:
    """Ensure every entity of a schema file (EnsureCrmEntity: only what is missing is added);
    returns one result dict per entity (``slug``, ``created``, ``fields_added``, …).

    The whole file is checked first, so a bad file changes nothing. Raises `SchemaFileError`
    (file, line, column, path) for a bad file or a definition the store refuses; other
    `CrmError` (a store failure) keep their type, their message naming the file and entity.
    """
    schema = read_schema_file(path)
    results = []
    for where, definition in schema.entities:
        slug = definition["slug"]
        try:
            results.append(dict(crm.ensure_entity(definition)))
        except (CrmValidationError, CrmUsageError) as exc:
            raise schema.document.error(where, f"entity {slug!r}: {exc}") from exc
        except CrmError as exc:
            raise type(exc)(f"{path}: entity {slug!r}: {exc}") from exc
    return results


def _raw(document: Document, where: DocPath) -> Any:
    data = document.data
    for part in where:
        data = data[part]
    return data if isinstance(data, Mapping) else {}


def _shown_at(document: Document, where: DocPath) -> str:
    line, column = document.position(where)
    return f"line {line}, column {column}"


def _entity_definitions(data: Any) -> list[tuple[DocPath, dict[str, Any]]]:
    base: DocPath = ()
    if isinstance(data, Mapping) and "entities" in data:
        base, data = ("entities",), data["entities"]
    if isinstance(data, Mapping):
        return [
            ((*base, slug), {"slug": slug, **(body or {})})
            for slug, body in data.items()
            if slug != "$schema"
        ]
    return [((*base, n), dict(body)) for n, body in enumerate(data)]


def _spelled(mapping: Mapping[str, Any], name: str) -> tuple[str, Any]:
    """``(key as written, value)`` of a snake_case key or its camelCase spelling."""
    camel = _camel(name)
    if camel in mapping:
        return camel, mapping[camel]
    return name, mapping.get(name)


def _both_spellings(document: Document, where: DocPath, mapping: Any) -> list[Problem]:
    if not isinstance(mapping, Mapping):
        return []
    return [
        document.problem(
            (*where, _camel(key)),
            f"{key!r} and {_camel(key)!r} are the same key; give one of them",
            key=True,
        )
        for key in mapping
        if isinstance(key, str) and "_" in key and _camel(key) in mapping
    ]


def check_colour_at(
    document: Document, where: DocPath, value: Any, problems: list[Problem]
) -> bool:
    """Check one colour value (None passes); a problem is added at ``where``."""
    try:
        check_colour(value, "color")
    except CrmValidationError as exc:
        problems.append(document.problem(where, str(exc)))
        return False
    return True


def _check_entity(document: Document, where: DocPath, d: dict[str, Any]) -> list[Problem]:
    """What the JSON Schema cannot say about one entity definition."""
    problems = _both_spellings(document, where, d)
    raw = _raw(document, where)
    if "slug" in raw and not isinstance(where[-1], int) and raw["slug"] != where[-1]:
        problems.append(
            document.problem(
                (*where, "slug"),
                f"the slug must equal its key {where[-1]!r} (or leave `slug` out)",
            )
        )
    try:
        check_unicode(d, f"entity {d['slug']!r}")
    except CrmValidationError as exc:
        problems.append(document.problem(where, str(exc)))
        return problems
    check_colour_at(document, (*where, "color"), d.get("color"), problems)
    fields = d.get("fields") or []
    keys: dict[Any, int] = {}
    for n, f in enumerate(fields):
        at = (*where, "fields", n)
        problems.extend(_both_spellings(document, at, f))
        rc_key, rc = _spelled(f, "reporting_config")
        problems.extend(_both_spellings(document, (*at, rc_key), rc))
        try:
            parse_field(f, f"fields[{n}]")
        except CrmValidationError as exc:
            problems.append(document.problem(at, str(exc)))
        if f.get("key") in keys:
            problems.append(
                document.problem(
                    (*at, "key"),
                    f"field key {f['key']!r} is declared twice (first as fields[{keys[f['key']]}])",
                )
            )
        keys.setdefault(f.get("key"), n)
    mode_key, mode = _spelled(d, "entity_mode")
    pipelines = d.get("pipelines") or []
    if mode == "data" and pipelines:
        problems.append(
            document.problem(
                (*where, "pipelines"),
                f"entity {d['slug']!r} is in data mode, which has no pipelines; remove "
                f"`pipelines` or set `{mode_key}: crm`",
                key=True,
            )
        )
    slugs: dict[Any, int] = {}
    for n, p in enumerate(pipelines):
        at = (*where, "pipelines", n)
        problems.extend(_both_spellings(document, at, p))
        stage_slugs: dict[Any, int] = {}
        for s, stage in enumerate(p.get("stages") or []):
            stage_at = (*at, "stages", s)
            problems.extend(_both_spellings(document, stage_at, stage))
            color_key, color = _spelled(stage, "color")
            if check_colour_at(document, (*stage_at, color_key), color, problems):
                try:
                    parse_stage(stage, s, "stage")
                except CrmValidationError as exc:
                    problems.append(document.problem(stage_at, str(exc)))
            if stage.get("slug") in stage_slugs:
                problems.append(
                    document.problem(
                        (*stage_at, "slug"),
                        f"stage {stage['slug']!r} is declared twice in pipeline "
                        f"{p.get('slug')!r} (first as stages[{stage_slugs[stage['slug']]}])",
                    )
                )
            stage_slugs.setdefault(stage.get("slug"), s)
        if p.get("slug") in slugs:
            problems.append(
                document.problem(
                    (*at, "slug"),
                    f"pipeline {p['slug']!r} is declared twice (first as "
                    f"pipelines[{slugs[p['slug']]}])",
                )
            )
        slugs.setdefault(p.get("slug"), n)
    if not problems:
        # The parser itself, on the definition merged with its preset (the merge may bring
        # its own conflicts).
        try:
            merged = apply_preset(
                {
                    "preset": d.get("preset"),
                    "entityMode": mode,
                    "fields": d.get("fields"),
                    "pipelines": d.get("pipelines"),
                }
            )
            parse_fields(merged.get("fields"))
            parse_pipelines(merged.get("pipelines"))
        except CrmValidationError as exc:
            problems.append(document.problem(where, f"entity {d['slug']!r}: {exc}"))
    return problems


# --- seed files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedFile:
    """A checked seed file: its document, customers and entries (each with its path)."""

    document: Document
    customers: tuple[tuple[DocPath, dict[str, Any]], ...]
    entries: tuple[tuple[DocPath, dict[str, Any]], ...]


def read_seed_file(path: str | Path) -> SeedFile:
    """Parse and check a seed file (``seed.yaml``/``.yml``/``.json``) without a store: its
    shape, unique customer and entry keys, and every ``customer:`` naming a seed customer.

    Raises `SchemaFileError` for every problem found.
    """
    document = read_document(path)
    check_document(document, "seed")
    data = document.data
    customers = [(("customers", n), dict(c)) for n, c in enumerate(data.get("customers") or [])]
    entries = [(("entries", n), dict(e)) for n, e in enumerate(data.get("entries") or [])]
    problems: list[Problem] = []
    known: dict[str, DocPath] = {}
    for where, customer in customers:
        key = customer["key"]
        if key in known:
            problems.append(
                document.problem(
                    (*where, "key"),
                    f"customer key {key!r} is used twice (first at "
                    f"{_shown_at(document, known[key])})",
                )
            )
        known.setdefault(key, where)
    entry_keys: dict[str, DocPath] = {}
    for where, entry in entries:
        if "customer" in entry and entry["customer"] not in known:
            names = ", ".join(map(repr, known)) or "none"
            problems.append(
                document.problem(
                    (*where, "customer"),
                    f"no seed customer has the key {entry['customer']!r}; customers: {names}",
                )
            )
        key = entry.get("key")
        if key is not None:
            if key in entry_keys:
                problems.append(
                    document.problem(
                        (*where, "key"),
                        f"entry key {key!r} is used twice (first at "
                        f"{_shown_at(document, entry_keys[key])})",
                    )
                )
            entry_keys.setdefault(key, where)
    raise_problems(problems)
    return SeedFile(document, tuple(customers), tuple(entries))


def store_is_empty(crm: Crm) -> bool:
    """True when the store has no customers and no entries (entities may exist)."""
    store = crm.store
    return store.count_customers() == 0 and next(iter(store.iter_entries()), None) is None


def load_seed(crm: Crm, path: str | Path) -> dict[str, int]:
    """Create the customers and entries of a seed file; returns ``{customers, entries}``.

    The file is checked as a whole first — against the shipped schema, then every email,
    name, entity, stage, reference and value against the store's entity definitions — so a
    bad file writes nothing. Raises `SchemaFileError` naming the file, line, column and path
    (``entries[3].values.price``); other `CrmError` (a store failure) as they come.
    """
    seed = read_seed_file(path)
    document = seed.document
    _check_seed_against_store(crm, seed)
    customers: dict[str, str] = {}
    for where, doc in seed.customers:
        email = doc.get("email")
        try:
            existing = crm.find_customer(email) if email else None
            customer = existing or crm.create_customer(
                email, first_name=doc.get("first_name"), last_name=doc.get("last_name")
            )
        except (CrmValidationError, CrmUsageError) as exc:
            raise document.error(where, str(exc)) from exc
        customers[doc["key"]] = customer.id
    keys: dict[str, str] = {}
    for where, doc in seed.entries:
        try:
            result = crm.create_entry(_entry_options(crm, doc, customers, keys))
        except (CrmValidationError, CrmUsageError) as exc:
            raise document.error(where, str(exc)) from exc
        if doc.get("key"):
            keys[doc["key"]] = result["id"]
    return {"customers": len(customers), "entries": len(seed.entries)}


def _check_seed_against_store(crm: Crm, seed: SeedFile) -> None:
    """Every check that needs the store's entity definitions, before anything is written."""
    document = seed.document
    problems: list[Problem] = []

    def check(where: DocPath, call: Any, *args: Any, key: bool = False) -> bool:
        try:
            call(*args)
        except (CrmValidationError, CrmUsageError) as exc:
            problems.append(document.problem(where, str(exc), key=key))
            return False
        return True

    for where, doc in seed.customers:
        if doc.get("email"):
            check((*where, "email"), crm.normalise_email, doc["email"])
        for name in ("first_name", "last_name"):
            check((*where, name), check_plain_string, name, doc.get(name))
    earlier: set[str] = set()
    for where, doc in seed.entries:
        ok = check((*where, "entity"), crm.get_entity, doc["entity"])
        if doc.get("title"):
            check((*where, "title"), check_plain_string, "title", doc["title"])
        reference = doc.get("reference")
        if reference is not None:
            check((*where, "reference"), check_reference, reference["type"], reference["id"])
        if ok:
            entity = crm.get_entity(doc["entity"])
            fields = {f.key: f for f in entity.fields}
            for key, value in (doc.get("values") or {}).items():
                at = (*where, "values", key)
                field = fields.get(key)
                if field is None:
                    problems.append(
                        document.problem(
                            at,
                            f"entity {entity.slug!r} declares no field {key!r}; declared "
                            f"keys: {', '.join(fields) or 'none'}",
                            key=True,
                        )
                    )
                elif field.type in REFERENCE_TYPES:
                    problems.extend(_check_seed_reference(document, at, value, earlier))
                else:
                    check(at, coerce, field, value)
            placement = {
                name: doc[key]
                for key, name in (("pipeline", "pipelineSlug"), ("stage", "stageSlug"))
                if doc.get(key)
            }
            if placement and entity.mode == "data":
                problems.append(
                    document.problem(
                        (*where, "stage" if "stageSlug" in placement else "pipeline"),
                        f"entity {entity.slug!r} is in data mode: no pipelines or stages",
                    )
                )
            elif placement:
                at = (*where, "stage" if "stageSlug" in placement else "pipeline")
                check(at, crm._placement, entity, placement)
        if doc.get("key"):
            earlier.add(doc["key"])
    raise_problems(problems)


def _check_seed_reference(
    document: Document, where: DocPath, value: Any, earlier: set[str]
) -> list[Problem]:
    if value is None:
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return [
            document.problem(
                where,
                "expected the key of an earlier entry (or a list of keys); got "
                f"{type(value).__name__}",
            )
        ]
    missing = [n for n in names if n not in earlier]
    if not missing:
        return []
    return [
        document.problem(
            where,
            f"{', '.join(map(repr, missing))}: no earlier entry has this 'key' (reference "
            "fields name the key of an entry above them)",
        )
    ]


def _entry_options(
    crm: Crm, doc: Mapping[str, Any], customers: Mapping[str, str], keys: Mapping[str, str]
) -> dict[str, Any]:
    entity = crm.get_entity(doc["entity"])
    fields = {f.key: f for f in entity.fields}
    values = dict(doc.get("values") or {})
    for key, value in values.items():
        field = fields.get(key)
        if field is not None and field.type in REFERENCE_TYPES and value is not None:
            ids = [keys[v] for v in ([value] if isinstance(value, str) else value)]
            values[key] = ids[0] if isinstance(value, str) else ids
    options: dict[str, Any] = {"slug": entity.slug, "values": values}
    if doc.get("title"):
        options["title"] = doc["title"]
    if doc.get("stage"):
        options["stageSlug"] = doc["stage"]
    if doc.get("pipeline"):
        options["pipelineSlug"] = doc["pipeline"]
    if "customer" in doc:
        options.update(referenceType="customer", referenceId=customers[doc["customer"]])
    else:
        reference = doc["reference"]
        options.update(referenceType=reference["type"], referenceId=reference["id"])
    return options


__all__ = [
    "SchemaFile",
    "SchemaFileError",
    "SeedFile",
    "ensure_schema",
    "load_schema_file",
    "load_seed",
    "read_schema_file",
    "read_seed_file",
    "store_is_empty",
]
