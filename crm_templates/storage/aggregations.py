"""The aggregation contract of the Store (issue 12, item 6): what the admin's Reports tab asks
the store to compute, so no report ever reads every entry into Python.

A request names an entity and a list of `Aggregation` s, each over one value key; the store
answers one `AggregationResult` per request, in order, computed where the data lives (SQL
``GROUP BY`` over ``json_extract`` on SQLite, ``nested`` aggregations on the search backend).
Only the current values of the entity's existing entries count (other entities and deleted
entries never do). Four kinds:

``metric``
    count, sum, avg, min and max of the key's **numbers** (JSON numbers; booleans, strings,
    lists and nulls are not numbers).
``terms``
    how many entries hold each **string** (``value_type="string"``: a select value, or each
    item of a list such as a multiselect — an entry counts once per distinct item) or each
    **boolean** (``value_type="boolean"``). Buckets by count (descending), then key
    (ascending; UTF-8 byte order, ``False`` before ``True``), at most ``size`` of them;
    ``other`` counts the rest.
``histogram``
    how many entries hold a number in each bucket ``[k * interval, (k + 1) * interval)``; a
    bucket's key is its lower end ``k * interval``.
``date_histogram``
    how many entries hold an ISO 8601 date / date-time (UTC: the first ten characters are the
    calendar date) in each ``day``, ``week`` (weeks start on Monday, ISO 8601) or ``month``;
    a bucket's key is the ``YYYY-MM-DD`` of its first day.

An entry counts once per term or bucket however many of its list items fall there (``metric``
counts values: ``[1, 2, 2]`` is three numbers). Histograms return only non-empty buckets, in
key order; filling gaps is the caller's choice.
Every result carries ``entries`` (the entity's entries) and ``missing`` (entries without a
value of the aggregated kind: key absent, stored null, another type, an empty list).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import CrmValidationError

AggregationKind = Literal["metric", "terms", "histogram", "date_histogram"]
KINDS: tuple[str, ...] = ("metric", "terms", "histogram", "date_histogram")
DATE_INTERVALS: tuple[str, ...] = ("day", "week", "month")
TERM_TYPES: tuple[str, ...] = ("string", "boolean")
MAX_TERMS = 10_000
MAX_AGGREGATIONS = 100
_KEY = re.compile(r"^[a-zA-Z0-9_.-]{1,200}$")


@dataclass(frozen=True, slots=True)
class Aggregation:
    """One aggregation over the values of ``field`` (a value key).

    ``interval``: the bucket width for ``histogram`` (a finite number > 0), ``"day"``,
    ``"week"`` or ``"month"`` for ``date_histogram``; unused otherwise. ``value_type`` and
    ``size`` (1 to 10,000 buckets) apply to ``terms``. `check` raises `CrmValidationError`.
    """

    kind: AggregationKind
    field: str
    interval: float | str | None = None
    value_type: Literal["string", "boolean"] = "string"
    size: int = 1000

    def check(self) -> Aggregation:
        """This request, validated (`CrmValidationError` naming the problem)."""
        if self.kind not in KINDS:
            raise CrmValidationError(f"aggregation kind must be one of {KINDS}; got {self.kind!r}")
        if not isinstance(self.field, str) or not _KEY.match(self.field):
            raise CrmValidationError(f"aggregation field must be a field key; got {self.field!r}")
        if self.kind == "histogram":
            width = self.interval
            if (
                isinstance(width, bool)
                or not isinstance(width, int | float)
                or not math.isfinite(width)
                or width <= 0
            ):
                raise CrmValidationError(
                    f"a histogram needs an interval: a number greater than 0; got {width!r}"
                )
        if self.kind == "date_histogram" and self.interval not in DATE_INTERVALS:
            raise CrmValidationError(
                f"a date histogram's interval must be one of {DATE_INTERVALS}; "
                f"got {self.interval!r}"
            )
        if self.kind == "terms":
            if self.value_type not in TERM_TYPES:
                raise CrmValidationError(
                    f"terms value_type must be one of {TERM_TYPES}; got {self.value_type!r}"
                )
            if isinstance(self.size, bool) or not isinstance(self.size, int):
                raise CrmValidationError(f"terms size must be a whole number; got {self.size!r}")
            if not 1 <= self.size <= MAX_TERMS:
                raise CrmValidationError(f"terms size must be 1 to {MAX_TERMS}; got {self.size}")
        return self


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket: its key (a term: str or bool; a histogram's lower end: float; a date
    histogram's first day: ``YYYY-MM-DD``) and how many entries (values) fall in it."""

    key: str | bool | float
    count: int


@dataclass(frozen=True, slots=True)
class Metric:
    """Statistics of a key's numbers: ``count`` values, their ``sum``, ``avg``, ``min`` and
    ``max`` (None when ``count`` is 0)."""

    count: int = 0
    sum: float | None = None
    avg: float | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class AggregationResult:
    """The answer to one `Aggregation`: ``metric`` for ``metric`` requests, ``buckets`` for the
    others (``other``: the entries of terms beyond ``size``). ``entries`` is how many entries the
    entity has; ``missing`` how many hold no value of the aggregated kind."""

    request: Aggregation
    entries: int
    missing: int
    metric: Metric | None = None
    buckets: tuple[Bucket, ...] = field(default=())
    other: int = 0


def histogram_key(index: int, interval: float) -> float:
    """The lower end of histogram bucket ``index`` (both backends build keys this way)."""
    return float(index * interval)


class Aggregations(ABC):
    """The Store's aggregation contract (mixed into `crm_templates.storage.base.Store`)."""

    @abstractmethod
    def aggregate(self, entity: str, requests: Sequence[Aggregation]) -> list[AggregationResult]:
        """Run ``requests`` over the current values of ``entity`` 's entries (at most 100; one
        result per request, in order; see the module docstring for each kind's meaning).

        Raises `CrmValidationError` for a bad request (nothing is queried), `StoreError` /
        `StoreUnavailable` when the backend fails. An unknown entity has no entries: every
        result is empty.
        """


def checked(entity: str, requests: Sequence[Aggregation]) -> list[Aggregation]:
    """Validate a whole request list before anything is queried."""
    if not isinstance(entity, str) or not entity:
        raise CrmValidationError(f"aggregate needs an entity slug; got {entity!r}")
    if len(requests) > MAX_AGGREGATIONS:
        raise CrmValidationError(
            f"at most {MAX_AGGREGATIONS} aggregations per call; got {len(requests)}"
        )
    for request in requests:
        if not isinstance(request, Aggregation):
            raise CrmValidationError(f"expected an Aggregation; got {type(request).__name__}")
    return [request.check() for request in requests]
