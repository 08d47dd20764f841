"""Stage history (issue 12, item 3): every change of an entry's pipeline stage, who made it and
when, kept in the store and read newest first.

Every path that moves an entry appends one `StageChange` per entry whose ``(pipeline, stage)``
actually changed, in the same read-modify-write section as the move itself:

- MoveCrmToStage / MoveCrmToPipeline / MoveCrmLead (templates, page backends, Python code,
  `crm_templates.service.Crm`): the actor is ``"customer <id>"`` when the service (or the view
  `Crm.bind` made) has a current customer, else ``"system"``;
- `move_entry` (the admin's ``POST /admin/entries/<id>/stage``, boards): the actor the caller
  names (the admin passes the operator's id).

A move that leaves an entry where it was records nothing. An entry's creation on the first stage
is not a change (its ``created_at`` says when). On SQLite the record is written in the same
transaction as the move; on Elasticsearch/OpenSearch (no transactions) right after the entry's
compare-and-set succeeded. ``crm-templates migrate`` does not copy the history.

This module is core: it imports no Jinja, Flask or renderers (SPEC §2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import events
from .errors import CrmValidationError, EntryNotFoundError, PreviewError, StaleEntryError
from .ids import new_id, utc_now
from .model import Entity, Entry

if TYPE_CHECKING:
    from .service import Crm

#: The actor of a change made by trusted code with no customer (scripts, the CLI, imports).
SYSTEM = "system"
#: How many changes `history` returns at most by default.
HISTORY_LIMIT = 100


@dataclass(frozen=True, slots=True)
class StageChange:
    """One stage change of one entry: ``from_*`` → ``to_*`` (ids; None: no pipeline/stage),
    at ``at`` (ISO 8601 UTC with microseconds, like ``updated_at``), made by ``actor``
    (``"customer <id>"``, ``"system"`` or an operator id)."""

    entry_id: str
    entity: str
    at: str
    from_pipeline_id: str | None
    from_stage_id: str | None
    to_pipeline_id: str | None
    to_stage_id: str | None
    actor: str
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The storage/JSON form."""
        return {
            "id": self.id,
            "entry_id": self.entry_id,
            "entity": self.entity,
            "at": self.at,
            "from_pipeline_id": self.from_pipeline_id,
            "from_stage_id": self.from_stage_id,
            "to_pipeline_id": self.to_pipeline_id,
            "to_stage_id": self.to_stage_id,
            "actor": self.actor,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageChange:
        """Rebuild a stored change."""
        return cls(
            id=d["id"],
            entry_id=d["entry_id"],
            entity=d["entity"],
            at=d["at"],
            from_pipeline_id=d.get("from_pipeline_id"),
            from_stage_id=d.get("from_stage_id"),
            to_pipeline_id=d.get("to_pipeline_id"),
            to_stage_id=d.get("to_stage_id"),
            actor=d["actor"],
        )


def customer_actor(customer_id: str | None) -> str:
    """``"customer <id>"``, or `SYSTEM` without a customer."""
    return f"customer {customer_id}" if customer_id else SYSTEM


def changes(
    before: Iterable[Entry], pipeline_id: str | None, stage_id: str | None, at: str, actor: str
) -> list[StageChange]:
    """The records for moving ``before`` (the entries as they were) to ``(pipeline_id,
    stage_id)``: one per entry that was elsewhere."""
    return [
        StageChange(
            id=new_id("stg_"),
            entry_id=e.id,
            entity=e.entity,
            at=at,
            from_pipeline_id=e.pipeline_id,
            from_stage_id=e.stage_id,
            to_pipeline_id=pipeline_id,
            to_stage_id=stage_id,
            actor=actor,
        )
        for e in before
        if (e.pipeline_id, e.stage_id) != (pipeline_id, stage_id)
    ]


def history(crm: Crm, entry_id: str, limit: int = HISTORY_LIMIT) -> list[StageChange]:
    """The stage changes of ``entry_id``, newest first (at most ``limit``)."""
    if not isinstance(entry_id, str) or not entry_id:
        raise CrmValidationError(f"entry_id must be a non-empty string; got {entry_id!r}")
    return crm.store.stage_history(entry_id, limit=limit)


def move_entry(
    crm: Crm,
    entry_id: str,
    *,
    stage: str,
    pipeline: str | None = None,
    actor: str,
    expected_version: int | None = None,
) -> Entry:
    """Move one entry, by id, to ``stage`` (id or slug; in ``pipeline`` — id or slug — when
    given, else the entity's pipeline holding that stage), recording the change for ``actor``.

    Resolution follows MoveCrmLead's rules (`Crm.placement_for`). ``expected_version`` (the
    version the caller showed) makes the move refuse with `StaleEntryError` when the entry has
    changed since; None moves whatever the version. Returns the stored entry; an entry already
    at that stage is returned as it is (nothing written, no history).

    Raises `EntryNotFoundError` (unknown id), `CrmValidationError` (unknown or ambiguous
    stage/pipeline, a data-mode entity, a missing stage), `StaleEntryError`, `PreviewError`
    through a read-only view.
    """
    if not isinstance(stage, str) or not stage:
        raise CrmValidationError(f"stage must be a stage id or slug; got {stage!r}")
    store = crm.store
    entry = store.get_entry(entry_id) if isinstance(entry_id, str) else None
    if entry is None:
        raise EntryNotFoundError(f"no entry {entry_id!r}")
    if crm.get_entity(entry.entity).mode != "crm":
        raise CrmValidationError(
            f"entity {entry.entity!r} is in data mode: its entries have no pipeline or stage"
        )
    placement = crm.placement_for(entry.entity, pipeline, stage)
    assert placement is not None  # a stage was given
    pipeline_id, stage_id = placement

    def attempt() -> Entry:
        with store.atomic():
            current = store.get_entry(entry_id)
            if current is None:
                raise EntryNotFoundError(f"no entry {entry_id!r}")
            if expected_version is not None and current.version != expected_version:
                raise StaleEntryError(
                    f"entry {entry_id!r} was changed by someone else (version "
                    f"{expected_version} → {current.version}); reload it and try again"
                )
            if current.pipeline_id == pipeline_id and current.stage_id == stage_id:
                return current  # already there: nothing written, no history
            at = utc_now()
            stored = store.update_entry(
                replace(current, pipeline_id=pipeline_id, stage_id=stage_id, updated_at=at),
                current.version,
            )
            made = changes([current], pipeline_id, stage_id, at, actor)
            if made:
                store.append_stage_changes(made)
                events.note("entry.stage_changed", store, stored, before=current, at=at)
            return stored

    if crm.read_only:
        from .access import preview_message

        raise PreviewError(preview_message("move_entry()"))
    with events.unit(events.current_actor() or events.Actor.parse(actor)):
        return crm._retry(attempt)


def stage_names(entity: Entity) -> dict[str | None, str]:
    """``{stage id: "Pipeline / Stage"}`` for every stage of ``entity`` (labels for history)."""
    several = len(entity.pipelines) > 1
    return {
        s.id: f"{p.name} / {s.name}" if several else s.name
        for p in entity.pipelines
        for s in p.stages
    }
