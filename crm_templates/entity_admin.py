"""Editing entity definitions: the operations behind the admin's Entities pages (issue 12,
item 2; SPEC §3).

Every operation takes the trusted service (`crm_templates.service.Crm`), the entity's slug and
the ``expected_version`` the operator's form was made from, validates with the code
EnsureCrmEntity uses (`crm_templates.schema`: `parse_field`, `parse_stage`, `parse_pipeline`,
`build_entity`, `check_colour`), and writes with ``Store.update_entity(entity,
expected_version)`` — a compare-and-set, so of two operators editing at once the second gets
`StaleEntityError` and nothing of theirs is written. Each returns the stored entity (its
``version`` one higher) and drops the service's cached definition; other processes see the
change at their next page request (`Crm.refresh_entities`).

Rules where the issue left the choice to us (documented in the admin how-to):

- **Entries are never rewritten.** No edit here touches an entry: entries keep their values,
  pipeline and stage.
- **Changing a field's type** (or a reference field's target) while entries hold values is
  refused unless every stored value of the old type is, unchanged, a valid value of the new
  one (`SAFE_TYPE_CHANGES`: text-like strings to ``text``/``textarea``, ``rich_text`` ↔
  ``wysiwyg``, ``image`` ↔ ``file``). Without values any change is allowed.
- **Removing a field** that entries hold asks for confirmation (`ConfirmationRequired` with the
  count) and then removes only the definition: the values stay in the entries (exports and
  migrations keep them; re-adding a field with the same key shows them again). Removing a
  field is therefore reversible; adding it back is refused if a kept value does not fit the
  new definition.
- **Mode**: ``data`` → ``crm`` gives the entity the default pipeline; its existing entries stay
  on no stage until moved. ``crm`` → ``data`` drops the pipelines and is refused while the
  entity has entries (they would lose their stage).
- **Stages**: removing a stage entries sit in is refused (with the count: move them first), as
  is removing a pipeline's last stage, a pipeline entries sit in, or a CRM entity's last
  pipeline. Reordering changes positions only; the first stage of the first pipeline is where
  new entries land. Stage and field keys/slugs are identities used by templates and are not
  renamed; names and labels are.

Errors: `InvalidEdit` (a `CrmValidationError`; ``.input`` names the form input it is about),
`StaleEntityError` (a `ConflictError`), `ConfirmationRequired`, `UnknownEntityError`,
`UnknownFieldError`, and the store's errors. No jinja2, no flask (SPEC §2).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from .errors import (
    ConflictError,
    CrmError,
    CrmValidationError,
    DuplicateError,
    UnknownEntityError,
    UnknownFieldError,
)
from .model import (
    ENTITY_MODES,
    REFERENCE_TYPES,
    Entity,
    Field,
    Pipeline,
    Stage,
    field_to_dict,
)
from .schema import (
    FIELD_ATTRIBUTES,
    STAGE_ATTRIBUTES,
    build_entity,
    check_slug,
    check_unicode,
    default_pipeline,
    parse_field,
    parse_pipeline,
    parse_stage,
)
from .service import Crm
from .values import coerce
from .whole_numbers import parse_whole_number

#: Type changes allowed while entries hold values: every stored value of the first type is,
#: as stored, a valid value of the second (values are never rewritten).
_STRING_TYPES = (
    "text",
    "textarea",
    "email",
    "phone",
    "url",
    "date",
    "datetime",
    "select",
    "color",
    "image",
    "file",
    "rich_text",
    "wysiwyg",
)
SAFE_TYPE_CHANGES: frozenset[tuple[str, str]] = frozenset(
    {(old, new) for old in _STRING_TYPES for new in ("text", "textarea") if old != new}
    | {("rich_text", "wysiwyg"), ("wysiwyg", "rich_text"), ("image", "file"), ("file", "image")}
)


class InvalidEdit(CrmValidationError):
    """An edit was refused as invalid; nothing was changed. ``input`` names the form input
    (``"name"``, ``"color"``, ``"type"``, ``"options"``, ``"probability"`` …) the message is
    about, or None for the whole form."""

    def __init__(self, message: str, input: str | None = None) -> None:
        super().__init__(message)
        self.input = input


class StaleEntityError(ConflictError):
    """The entity changed since the form was made (``expected_version`` is not the stored
    version); nothing was changed. ``current`` is the stored version."""

    def __init__(self, slug: str, expected: int, current: int | None) -> None:
        super().__init__(
            f"entity {slug!r} was changed by someone else since this form was opened "
            f"(form version {expected}, now {current}); nothing was saved — reload the page "
            "to see the current definition and make the change again"
        )
        self.slug = slug
        self.expected = expected
        self.current = current


class ConfirmationRequired(CrmError):
    """`remove_field` without ``confirm`` on a field entries hold; nothing was changed.
    ``count`` is how many entries hold it."""

    def __init__(self, slug: str, key: str, count: int) -> None:
        super().__init__(
            f"{count} {'entry holds' if count == 1 else 'entries hold'} a value for field "
            f"{key!r} of {slug!r}; confirm to remove the field (the values stay in the entries)"
        )
        self.slug = slug
        self.key = key
        self.count = count


@dataclass(frozen=True)
class FieldRemoval:
    """What `remove_field` did: the stored entity and how many entries keep values of it."""

    entity: Entity
    values_kept: int


# --- helpers --------------------------------------------------------------------------------

# Where a `parse_field` message is about, in the order to look for it (first match wins).
_FIELD_INPUTS = (
    ("reporting_config", "reporting_config"),
    ("validation_rules", "validation_rules"),
    ("visible_to_team_ids", "visible_to_team_ids"),
    ("target_entity", "target_entity"),
    ("display_field", "display_field"),
    ("ui_editable", "ui_editable"),
    ("options", "options"),
    (".label", "label"),
    (".key", "key"),
    ("type", "type"),
)


def _field_input(message: str) -> str | None:
    for needle, name in _FIELD_INPUTS:
        if needle in message:
            return name
    return None


@contextmanager
def _about(input: str | None) -> Iterator[None]:
    """Re-raise a validation error of the block as `InvalidEdit` about ``input``."""
    try:
        yield
    except InvalidEdit:
        raise
    except CrmValidationError as exc:
        raise InvalidEdit(str(exc), input) from None


def _version(expected_version: Any) -> int:
    shown = expected_version[:40] if isinstance(expected_version, str) else expected_version
    if isinstance(expected_version, bool):
        expected_version = None
    if isinstance(expected_version, str):
        expected_version = parse_whole_number(expected_version)
    if not isinstance(expected_version, int) or expected_version < 1:
        raise InvalidEdit(
            f"the form's entity version must be a whole number >= 1; got {shown!r} "
            "(reload the page)",
            "version",
        )
    return expected_version


def _load(crm: Crm, slug: str, expected_version: Any) -> Entity:
    """The stored entity, if its version is ``expected_version`` (`StaleEntityError` else)."""
    expected = _version(expected_version)
    entity = crm.store.get_entity(slug) if isinstance(slug, str) else None
    if entity is None:
        raise UnknownEntityError(f"no CRM entity {slug!r}")
    if entity.version != expected:
        raise StaleEntityError(slug, expected, entity.version)
    return entity


def _commit(crm: Crm, current: Entity, changed: Entity) -> Entity:
    """Compare-and-set ``changed`` over ``current``; drop the cached definition."""
    try:
        stored = crm.store.update_entity(changed, current.version)
    except ConflictError:
        now = crm.store.get_entity(current.slug)
        raise StaleEntityError(
            current.slug, current.version, None if now is None else now.version
        ) from None
    finally:
        crm.forget_entity(current.slug)
    return stored


def _text_or_none(value: Any) -> Any:
    """Form text: surrounding blanks dropped, empty → None (not set)."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _field(entity: Entity, key: str) -> Field:
    for f in entity.fields:
        if f.key == key:
            return f
    raise UnknownFieldError(
        f"entity {entity.slug!r} declares no field {key!r}; declared: "
        f"{', '.join(entity.field_keys) or 'none'}"
    )


def _pipeline(entity: Entity, pipeline_slug: str) -> Pipeline:
    for p in entity.pipelines:
        if p.slug == pipeline_slug:
            return p
    raise InvalidEdit(
        f"entity {entity.slug!r} has no pipeline {pipeline_slug!r}; pipelines: "
        f"{', '.join(p.slug for p in entity.pipelines) or 'none'}",
        "pipeline",
    )


def _stage(pipeline: Pipeline, stage_slug: str) -> Stage:
    for s in pipeline.stages:
        if s.slug == stage_slug:
            return s
    raise InvalidEdit(
        f"pipeline {pipeline.slug!r} has no stage {stage_slug!r}; stages: "
        f"{', '.join(s.slug for s in pipeline.stages)}",
        "stage",
    )


def _with_pipeline(entity: Entity, pipeline: Pipeline) -> Entity:
    return replace(
        entity,
        pipelines=tuple(pipeline if p.id == pipeline.id else p for p in entity.pipelines),
    )


def _renumbered(stages: Sequence[Stage]) -> tuple[Stage, ...]:
    return tuple(replace(s, position=i) for i, s in enumerate(stages))


def _entity_attributes(slug: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Validate name, singular_name, plural_name, icon, color one by one (so a message names
    its input) with `build_entity`, EnsureCrmEntity's own check; returns the stored forms."""
    spelled = {
        "name": "name",
        "singular_name": "singular_name",
        "plural_name": "plural_name",
        "icon": "icon",
        "color": "color",
    }
    given = {k: _text_or_none(attributes.get(k)) for k in spelled}
    for name, value in given.items():
        with _about(name):
            check_unicode(value, name)
            build_entity(slug, **{name: value}, fields=[], pipelines=[])
    probe = build_entity(slug, **given, fields=[], pipelines=[])
    return {
        "name": probe.name,
        "singular_name": probe.singular_name,
        "plural_name": probe.plural_name,
        "icon": probe.icon,
        "color": probe.color,
    }


def _check_mode(mode: Any) -> str:
    if mode not in ENTITY_MODES:
        raise InvalidEdit(f"mode must be 'crm' or 'data'; got {mode!r}", "mode")
    return str(mode)


def _check_target(crm: Crm, f: Field) -> None:
    if f.target_entity is not None and crm.store.get_entity(f.target_entity) is None:
        known = ", ".join(e.slug for e in crm.store.list_entities())
        raise InvalidEdit(
            f"field {f.key!r} points to entity {f.target_entity!r}, which does not exist; "
            f"entities: {known or 'none'}",
            "target_entity",
        )


# --- entities -------------------------------------------------------------------------------


def create_entity(
    crm: Crm,
    slug: Any,
    *,
    name: Any = None,
    singular_name: Any = None,
    plural_name: Any = None,
    icon: Any = None,
    color: Any = None,
    mode: Any = "crm",
) -> Entity:
    """Create an entity with no fields (a CRM-mode one gets the default pipeline, as with
    EnsureCrmEntity). Empty texts mean "not set" (name defaults to the slug, singular and
    plural names to the name).

    Raises `InvalidEdit` (input ``slug`` for a bad or taken slug, else the attribute's name).
    """
    with _about("slug"):
        slug = check_slug(slug)
    attributes = _entity_attributes(
        slug,
        {
            "name": name,
            "singular_name": singular_name,
            "plural_name": plural_name,
            "icon": icon,
            "color": color,
        },
    )
    entity = build_entity(slug, mode=_check_mode(mode), fields=[], pipelines=[], **attributes)
    try:
        crm.store.create_entity(entity)
    except DuplicateError:
        raise InvalidEdit(f"an entity with slug {slug!r} already exists", "slug") from None
    finally:
        crm.forget_entity(slug)
    return entity


def update_entity(
    crm: Crm,
    slug: str,
    expected_version: Any,
    *,
    name: Any = None,
    singular_name: Any = None,
    plural_name: Any = None,
    icon: Any = None,
    color: Any = None,
    mode: Any = None,
) -> Entity:
    """Replace an entity's name, singular/plural names, icon, colour and (``mode`` not None)
    mode. Empty texts mean "not set", as in `create_entity`.

    Mode ``data`` → ``crm`` adds the default pipeline (existing entries stay on no stage);
    ``crm`` → ``data`` drops the pipelines and is refused while the entity has entries.

    Raises `StaleEntityError`, `UnknownEntityError`, `InvalidEdit`.
    """
    current = _load(crm, slug, expected_version)
    attributes = _entity_attributes(
        slug,
        {
            "name": name,
            "singular_name": singular_name,
            "plural_name": plural_name,
            "icon": icon,
            "color": color,
        },
    )
    new_mode = current.mode if mode is None else _check_mode(mode)
    pipelines = current.pipelines
    if new_mode != current.mode:
        if new_mode == "data":
            held = crm.store.count_entries(slug)
            if held:
                raise InvalidEdit(
                    f"entity {slug!r} has {held} {'entry' if held == 1 else 'entries'}; a data "
                    "entity has no pipelines, so they would lose their stage. The mode can "
                    "change to data only while the entity has no entries.",
                    "mode",
                )
            pipelines = ()
        else:
            pipelines = (default_pipeline(),)
    return _commit(crm, current, replace(current, mode=new_mode, pipelines=pipelines, **attributes))


# --- fields ---------------------------------------------------------------------------------


def count_entries_with_field(crm: Crm, slug: str, key: str) -> int:
    """How many entries of ``slug`` hold a value for ``key`` (`Store.count_entries_with_field`:
    the key is present, a stored null counts)."""
    return crm.store.count_entries_with_field(slug, key)


def _parsed_field(definition: Mapping[str, Any]) -> Field:
    if not isinstance(definition, Mapping):
        raise InvalidEdit(f"a field definition must be a mapping; got {definition!r}")
    try:
        check_unicode(definition, "field")
        return parse_field(definition)
    except CrmValidationError as exc:
        raise InvalidEdit(str(exc), _field_input(str(exc))) from None


def add_field(crm: Crm, slug: str, expected_version: Any, definition: Mapping[str, Any]) -> Entity:
    """Append a field, given as EnsureCrmEntity takes one (``{key, label, type, options,
    ui_editable, reporting_config, target_entity, display_field, validation_rules}``, camelCase
    accepted). A reference field's target entity must exist. Values kept from an earlier field
    with the same key (see `remove_field`) show again — only if each is a valid value of the
    new field as stored (else `InvalidEdit` on ``type`` with the count).

    Raises `StaleEntityError`, `UnknownEntityError`, `InvalidEdit` (taken key: input ``key``).
    """
    current = _load(crm, slug, expected_version)
    f = _parsed_field(definition)
    if f.key in current.field_keys:
        raise InvalidEdit(f"entity {slug!r} already has a field {f.key!r}", "key")
    _check_target(crm, f)
    _check_kept_values(crm, slug, f)
    return _commit(crm, current, replace(current, fields=(*current.fields, f)))


def _check_kept_values(crm: Crm, slug: str, f: Field) -> None:
    """Values kept under ``f.key`` (from a removed field) must be valid, as stored, for ``f``:
    the type rule of `update_field` for a field coming back. Reads only the entries holding
    the key."""
    if not crm.store.count_entries_with_field(slug, f.key):
        return
    misfits = 0
    for entry in crm.store.find_entries(slug, has_key=f.key, limit=None):
        value = entry.values.get(f.key)
        if value is None:
            continue
        try:
            fits = coerce(f, value) == value
        except CrmValidationError:
            fits = False
        misfits += not fits
    if misfits:
        raise InvalidEdit(
            f"{misfits} {'entry holds' if misfits == 1 else 'entries hold'} a value kept under "
            f"{f.key!r} (from a removed field) that is not a valid {f.type} value; add the field "
            "back with the type it had, or use another key",
            "type",
        )


def update_field(
    crm: Crm, slug: str, expected_version: Any, key: str, changes: Mapping[str, Any]
) -> Entity:
    """Change attributes of field ``key`` (names in `FIELD_ATTRIBUTES`; a value of None
    removes an optional attribute such as ``options`` or ``reporting_config``). The result is
    validated as a whole by `parse_field`.

    A change of ``type`` or ``target_entity`` while entries hold values is refused unless it is
    in `SAFE_TYPE_CHANGES` (values are never converted); the message gives the count.

    Raises `StaleEntityError`, `UnknownEntityError`, `UnknownFieldError`, `InvalidEdit`.
    """
    current = _load(crm, slug, expected_version)
    old = _field(current, key)
    unknown = sorted(set(changes) - set(FIELD_ATTRIBUTES))
    if unknown:
        raise InvalidEdit(
            f"cannot change {', '.join(unknown)} of a field; changeable: "
            f"{', '.join(FIELD_ATTRIBUTES)} (the key is the field's identity)"
        )
    merged = field_to_dict(old)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    new = _parsed_field(merged)
    if new.type != old.type or new.target_entity != old.target_entity:
        held = crm.store.count_entries_with_field(slug, key)
        if held:
            if new.target_entity != old.target_entity and old.type in REFERENCE_TYPES:
                raise InvalidEdit(
                    f"{held} {'entry holds' if held == 1 else 'entries hold'} references of "
                    f"field {key!r} to {old.target_entity!r} entries; its target cannot change "
                    "while they do (add a new field instead)",
                    "target_entity",
                )
            if (old.type, new.type) not in SAFE_TYPE_CHANGES:
                safe = sorted(n for o, n in SAFE_TYPE_CHANGES if o == old.type)
                raise InvalidEdit(
                    f"{held} {'entry holds' if held == 1 else 'entries hold'} values of field "
                    f"{key!r} ({old.type}); changing its type to {new.type} would need "
                    "converting them, which the admin does not do. "
                    + (
                        f"While values exist it can change to: {', '.join(safe)}."
                        if safe
                        else f"A {old.type} field keeps its type while values exist."
                    )
                    + " Add a new field instead.",
                    "type",
                )
        _check_target(crm, new)
    fields = tuple(new if f.key == key else f for f in current.fields)
    return _commit(crm, current, replace(current, fields=fields))


def remove_field(
    crm: Crm, slug: str, expected_version: Any, key: str, *, confirm: bool = False
) -> FieldRemoval:
    """Remove field ``key`` from the definition. When entries hold values for it and
    ``confirm`` is false, raises `ConfirmationRequired` (with ``count``) and changes nothing.
    The values stay in the entries (reversible: re-adding the key shows them again).

    Raises `StaleEntityError`, `UnknownEntityError`, `UnknownFieldError`,
    `ConfirmationRequired`.
    """
    current = _load(crm, slug, expected_version)
    _field(current, key)
    held = crm.store.count_entries_with_field(slug, key)
    if held and confirm is not True:
        raise ConfirmationRequired(slug, key, held)
    fields = tuple(f for f in current.fields if f.key != key)
    return FieldRemoval(_commit(crm, current, replace(current, fields=fields)), held)


# --- pipelines and stages -------------------------------------------------------------------


def _crm_mode(entity: Entity) -> None:
    if entity.mode != "crm":
        raise InvalidEdit(
            f"entity {entity.slug!r} is in data mode, which has no pipelines (change its mode "
            "to crm first)"
        )


def add_pipeline(
    crm: Crm, slug: str, expected_version: Any, definition: Mapping[str, Any]
) -> Entity:
    """Append a pipeline given as EnsureCrmEntity takes one (``{slug, name, stages: [...]}``,
    at least one stage). New entries keep landing on the first pipeline.

    Raises `StaleEntityError`, `UnknownEntityError`, `InvalidEdit` (data mode; a taken slug:
    input ``slug``).
    """
    current = _load(crm, slug, expected_version)
    _crm_mode(current)
    try:
        check_unicode(definition, "pipeline")
        pipeline = parse_pipeline(definition, "pipeline")
    except CrmValidationError as exc:
        message = str(exc)
        raise InvalidEdit(
            message, "slug" if ".slug" in message and "stages" not in message else "stages"
        ) from None
    if any(p.slug == pipeline.slug for p in current.pipelines):
        raise InvalidEdit(f"entity {slug!r} already has a pipeline {pipeline.slug!r}", "slug")
    return _commit(crm, current, replace(current, pipelines=(*current.pipelines, pipeline)))


def update_pipeline(
    crm: Crm, slug: str, expected_version: Any, pipeline_slug: str, *, name: Any
) -> Entity:
    """Rename a pipeline (empty: the name made from its slug, as EnsureCrmEntity does).

    Raises `StaleEntityError`, `UnknownEntityError`, `InvalidEdit`.
    """
    current = _load(crm, slug, expected_version)
    pipeline = _pipeline(current, pipeline_slug)
    with _about("name"):
        check_unicode(name, "name")
        probe = parse_pipeline(
            {"slug": pipeline.slug, "name": _text_or_none(name), "stages": [{"slug": "x"}]},
            "pipeline",
        )
    return _commit(crm, current, _with_pipeline(current, replace(pipeline, name=probe.name)))


def remove_pipeline(crm: Crm, slug: str, expected_version: Any, pipeline_slug: str) -> Entity:
    """Remove a pipeline no entry sits in; a CRM entity keeps at least one.

    Raises `StaleEntityError`, `UnknownEntityError`, `InvalidEdit` (with the count).
    """
    current = _load(crm, slug, expected_version)
    pipeline = _pipeline(current, pipeline_slug)
    if len(current.pipelines) == 1:
        raise InvalidEdit(f"pipeline {pipeline_slug!r} is the only pipeline of {slug!r}")
    counts = crm.store.count_entries_by_stage(slug)
    held = sum(counts.get(s.id, 0) for s in pipeline.stages)
    if held:
        raise InvalidEdit(
            f"{held} {'entry sits' if held == 1 else 'entries sit'} in pipeline "
            f"{pipeline_slug!r}; move {'it' if held == 1 else 'them'} to another pipeline first"
        )
    pipelines = tuple(p for p in current.pipelines if p.id != pipeline.id)
    return _commit(crm, current, replace(current, pipelines=pipelines))


def _parsed_stage(definition: Mapping[str, Any], position: int) -> Stage:
    if not isinstance(definition, Mapping):
        raise InvalidEdit(f"a stage definition must be a mapping; got {definition!r}")
    try:
        check_unicode(definition, "stage")
        return parse_stage(definition, position, "stage")
    except CrmValidationError as exc:
        message = str(exc)
        where = next(
            (
                n
                for n in ("semantic_status", "probability", "color", "name", "slug")
                if n in message
            ),
            None,
        )
        raise InvalidEdit(message, where) from None


def add_stage(
    crm: Crm, slug: str, expected_version: Any, pipeline_slug: str, definition: Mapping[str, Any]
) -> Entity:
    """Append a stage (``{slug, name, color, semantic_status, probability}``) to a pipeline.

    Raises `StaleEntityError`, `UnknownEntityError`, `InvalidEdit` (a taken slug: input
    ``slug``).
    """
    current = _load(crm, slug, expected_version)
    pipeline = _pipeline(current, pipeline_slug)
    stage = _parsed_stage(definition, len(pipeline.stages))
    if any(s.slug == stage.slug for s in pipeline.stages):
        raise InvalidEdit(f"pipeline {pipeline_slug!r} already has a stage {stage.slug!r}", "slug")
    changed = replace(pipeline, stages=(*pipeline.stages, stage))
    return _commit(crm, current, _with_pipeline(current, changed))


def update_stage(
    crm: Crm,
    slug: str,
    expected_version: Any,
    pipeline_slug: str,
    stage_slug: str,
    changes: Mapping[str, Any],
) -> Entity:
    """Change a stage's ``name``, ``color``, ``semantic_status`` or ``probability`` (0–100;
    None clears the colour or probability). The stage keeps its id, slug and position, so the
    entries in it stay there.

    Raises `StaleEntityError`, `UnknownEntityError`, `InvalidEdit`.
    """
    current = _load(crm, slug, expected_version)
    pipeline = _pipeline(current, pipeline_slug)
    old = _stage(pipeline, stage_slug)
    unknown = sorted(set(changes) - set(STAGE_ATTRIBUTES))
    if unknown:
        raise InvalidEdit(
            f"cannot change {', '.join(unknown)} of a stage; changeable: "
            f"{', '.join(STAGE_ATTRIBUTES)}"
        )
    merged: dict[str, Any] = {
        "slug": old.slug,
        "name": old.name,
        "color": old.color,
        "semantic_status": old.semantic_status,
        "probability": old.probability,
    }
    merged.update(changes)
    merged["name"] = _text_or_none(merged["name"])
    merged["color"] = _text_or_none(merged["color"])
    if merged["semantic_status"] is None:
        merged["semantic_status"] = "open"
    parsed = _parsed_stage(merged, old.position)
    stage = replace(parsed, id=old.id, position=old.position)
    changed = replace(
        pipeline, stages=tuple(stage if s.id == old.id else s for s in pipeline.stages)
    )
    return _commit(crm, current, _with_pipeline(current, changed))


def reorder_stages(
    crm: Crm, slug: str, expected_version: Any, pipeline_slug: str, order: Sequence[str]
) -> Entity:
    """Put a pipeline's stages in ``order`` (every stage slug exactly once); positions are
    renumbered 0, 1, 2 … Stage ids are kept, so entries stay in their stages.

    Raises `StaleEntityError`, `UnknownEntityError`, `InvalidEdit`.
    """
    current = _load(crm, slug, expected_version)
    pipeline = _pipeline(current, pipeline_slug)
    by_slug = {s.slug: s for s in pipeline.stages}
    if isinstance(order, str) or sorted(order) != sorted(by_slug) or len(set(order)) != len(order):
        raise InvalidEdit(
            f"the new order must name every stage of {pipeline_slug!r} once "
            f"({', '.join(by_slug)}); got {list(order)!r}",
            "order",
        )
    changed = replace(pipeline, stages=_renumbered([by_slug[s] for s in order]))
    return _commit(crm, current, _with_pipeline(current, changed))


def move_stage(
    crm: Crm,
    slug: str,
    expected_version: Any,
    pipeline_slug: str,
    stage_slug: str,
    direction: str,
) -> Entity:
    """Move a stage one place ``"up"`` (earlier) or ``"down"`` (later) — the admin's buttons;
    `reorder_stages` underneath. At the start/end it is refused.

    Raises `StaleEntityError`, `UnknownEntityError`, `InvalidEdit`.
    """
    if direction not in ("up", "down"):
        raise InvalidEdit(f"direction must be 'up' or 'down'; got {direction!r}", "direction")
    current = _load(crm, slug, expected_version)
    pipeline = _pipeline(current, pipeline_slug)
    slugs = [s.slug for s in pipeline.stages]
    _stage(pipeline, stage_slug)
    i = slugs.index(stage_slug)
    j = i - 1 if direction == "up" else i + 1
    if not 0 <= j < len(slugs):
        edge = "first" if direction == "up" else "last"
        raise InvalidEdit(f"stage {stage_slug!r} is already the {edge}", "direction")
    slugs[i], slugs[j] = slugs[j], slugs[i]
    return reorder_stages(crm, slug, current.version, pipeline_slug, slugs)


def remove_stage(
    crm: Crm, slug: str, expected_version: Any, pipeline_slug: str, stage_slug: str
) -> Entity:
    """Remove a stage no entry sits in (refused with the count otherwise: move the entries
    first), and never a pipeline's last stage. Later stages move up one position.

    Raises `StaleEntityError`, `UnknownEntityError`, `InvalidEdit`.
    """
    current = _load(crm, slug, expected_version)
    pipeline = _pipeline(current, pipeline_slug)
    stage = _stage(pipeline, stage_slug)
    if len(pipeline.stages) == 1:
        raise InvalidEdit(
            f"stage {stage_slug!r} is the last stage of pipeline {pipeline_slug!r}; a pipeline "
            "needs at least one"
        )
    held = crm.store.count_entries_by_stage(slug).get(stage.id, 0)
    if held:
        raise InvalidEdit(
            f"{held} {'entry sits' if held == 1 else 'entries sit'} in stage {stage_slug!r}; "
            f"move {'it' if held == 1 else 'them'} to another stage first (nothing was removed)"
        )
    changed = replace(
        pipeline, stages=_renumbered([s for s in pipeline.stages if s.id != stage.id])
    )
    return _commit(crm, current, _with_pipeline(current, changed))


def stage_counts(crm: Crm, slug: str) -> dict[str | None, int]:
    """Entries of ``slug`` per stage id (None: on no stage); `Store.count_entries_by_stage`."""
    return crm.store.count_entries_by_stage(slug)


__all__ = [
    "FIELD_ATTRIBUTES",
    "SAFE_TYPE_CHANGES",
    "STAGE_ATTRIBUTES",
    "ConfirmationRequired",
    "FieldRemoval",
    "InvalidEdit",
    "StaleEntityError",
    "add_field",
    "add_pipeline",
    "add_stage",
    "count_entries_with_field",
    "create_entity",
    "move_stage",
    "remove_field",
    "remove_pipeline",
    "remove_stage",
    "reorder_stages",
    "stage_counts",
    "update_entity",
    "update_field",
    "update_pipeline",
    "update_stage",
]
