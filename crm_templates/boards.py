"""Pipeline boards (issue 12, item 4; SPEC §8): a pipeline's stages as columns of entry cards,
with counts and totals, and moving one entry to another stage.

Core code: no Jinja, no Flask (SPEC §2). The admin's board view (``server/admin/boards.py``)
renders a `Board`; cards move through ``POST /admin/entries/<id>/stage``
(`crm_templates.stage_history.move_entry`). Counting and summing are
done by the store (`crm_templates.storage.boards`), so a board costs two store queries however
many entries the pipeline holds.

Decisions where the issue was silent:

- The summed field is a ``number`` field of the entity; without a choice, the first one in
  declaration order; an entity without number fields has counts only.
- The probability-weighted total of a stage is ``total × probability / 100`` (SPEC §3:
  ``probability`` is 0–100). A stage without a probability counts as 100 % when its
  semantic status is ``won`` and 0 % when ``lost``; an ``open`` or ``active`` stage without one
  has no weighted total and adds nothing to the board's.
- A column shows the `DEFAULT_CARDS` most recently updated entries; the rest are counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import CrmValidationError
from .model import Entity, Entry, Field, Pipeline, Stage
from .service import Crm
from .storage.boards import MAX_CARDS

#: Cards shown per column by default.
DEFAULT_CARDS = 50
#: The probability a stage without one gets, by semantic status (percent).
IMPLIED_PROBABILITY = {"won": 100.0, "lost": 0.0}


def number_fields(entity: Entity) -> tuple[Field, ...]:
    """The entity's ``number`` fields, in declaration order: what a board can sum."""
    return tuple(f for f in entity.fields if f.type == "number")


def find_pipeline(entity: Entity, slug: str) -> Pipeline | None:
    """The entity's pipeline with this slug, or None."""
    return next((p for p in entity.pipelines if p.slug == slug), None)


def stage_probability(stage: Stage) -> float | None:
    """The stage's probability in percent: its own, else implied by a ``won`` (100) or
    ``lost`` (0) semantic status, else None (unknown)."""
    if stage.probability is not None:
        return float(stage.probability)
    return IMPLIED_PROBABILITY.get(stage.semantic_status)


@dataclass(frozen=True, slots=True)
class Column:
    """One stage of a board: its ``count`` of entries, ``total`` of the summed field, the
    ``weighted`` total (None when the stage's probability is unknown) and the first
    ``cards``, most recently updated first."""

    stage: Stage
    count: int
    total: float
    probability: float | None
    weighted: float | None
    cards: tuple[Entry, ...]

    @property
    def more(self) -> int:
        """How many entries of the stage are not among the cards."""
        return max(self.count - len(self.cards), 0)

    @property
    def closed(self) -> str | None:
        """``"won"`` or ``"lost"`` for a closing stage, else None."""
        status = self.stage.semantic_status
        return status if status in ("won", "lost") else None


@dataclass(frozen=True, slots=True)
class Board:
    """A pipeline as columns. ``sum_field`` is the summed number field (None: the entity has
    none); ``elsewhere`` counts entries of the pipeline at a stage it no longer declares."""

    entity: Entity
    pipeline: Pipeline
    sum_field: Field | None
    number_fields: tuple[Field, ...]
    columns: tuple[Column, ...]
    elsewhere: int = 0

    @property
    def count(self) -> int:
        """Entries in the pipeline's declared stages."""
        return sum(c.count for c in self.columns)

    @property
    def total(self) -> float:
        """The summed field over every column."""
        return sum(c.total for c in self.columns)

    @property
    def weighted(self) -> float:
        """The weighted totals of the columns that have one."""
        return sum(c.weighted for c in self.columns if c.weighted is not None)


def load_board(
    crm: Crm,
    slug: str,
    pipeline_slug: str,
    *,
    sum_field: str | None = None,
    cards: int = DEFAULT_CARDS,
) -> Board:
    """The board of ``slug``'s pipeline ``pipeline_slug``, summing the number field
    ``sum_field`` (None: the first number field), with up to ``cards`` (1–100) cards per column.

    Raises `UnknownEntityError` for the slug, `CrmValidationError` for an unknown pipeline, a
    ``sum_field`` that is not a number field of the entity (the message names those that
    are), or ``cards`` out of range. Two store queries: `Store.stage_totals` and
    `Store.stage_cards`."""
    entity = crm.get_entity(slug)
    pipeline = find_pipeline(entity, pipeline_slug)
    if pipeline is None:
        known = ", ".join(p.slug for p in entity.pipelines) or "none"
        raise CrmValidationError(
            f"entity {slug!r} has no pipeline {pipeline_slug!r}; pipelines: {known}"
        )
    if isinstance(cards, bool) or not isinstance(cards, int) or not 1 <= cards <= MAX_CARDS:
        raise CrmValidationError(f"cards per column must be 1 to {MAX_CARDS}; got {cards!r}")
    numbers = number_fields(entity)
    chosen = _sum_field(entity, numbers, sum_field)
    store = crm.store
    totals = store.stage_totals(entity.slug, pipeline.id, None if chosen is None else chosen.key)
    stage_ids = [s.id for s in pipeline.stages]
    shown = store.stage_cards(entity.slug, pipeline.id, stage_ids, cards) if stage_ids else {}
    columns = []
    for stage in pipeline.stages:
        found = totals.get(stage.id)
        count, total = (found.count, found.total) if found is not None else (0, 0.0)
        probability = stage_probability(stage)
        columns.append(
            Column(
                stage=stage,
                count=count,
                total=total,
                probability=probability,
                weighted=None if probability is None else total * probability / 100,
                cards=tuple(shown.get(stage.id, ())),
            )
        )
    declared = set(stage_ids)
    elsewhere = sum(t.count for stage_id, t in totals.items() if stage_id not in declared)
    return Board(entity, pipeline, chosen, numbers, tuple(columns), elsewhere)


def _sum_field(entity: Entity, numbers: Sequence[Field], key: str | None) -> Field | None:
    if key is None or key == "":
        return numbers[0] if numbers else None
    for f in numbers:
        if f.key == key:
            return f
    known = ", ".join(f.key for f in numbers) or "none"
    raise CrmValidationError(
        f"{key!r} is not a number field of {entity.slug!r}; number fields: {known}"
    )
