"""`Aggregations` on SQLite: one ``GROUP BY`` statement per request over ``json_each``.

``json_each(values_json, '$."key"')`` yields one row for a scalar value and one per item for a
list (``typeof(key) = 'text'`` rows are an object's members and are skipped, as the search
backend does not index objects), so scalars and list items are read in one pass without Python
seeing a row. An entry counts once per distinct term, and once in ``missing`` /
``with value``, however often a list repeats an item: ``COUNT(DISTINCT rowid)`` is paid only for
list items (``key IS NOT NULL``), scalars are counted directly.

Dates: the first ten characters of a text value must be a real calendar date (``date(d,
'+0 days') = d`` rejects ``2026-02-30``) followed by nothing or ``T``; weeks start on Monday
(``date(d, 'weekday 0', '-6 days')``), months on the 1st (``'start of month'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .aggregations import (
    Aggregation,
    AggregationResult,
    Aggregations,
    Bucket,
    Metric,
    checked,
    histogram_key,
)

if TYPE_CHECKING:
    import sqlite3
    from contextlib import AbstractContextManager

_NUMBER = "j.type IN ('integer', 'real')"
_TEXT = "j.type = 'text'"
_BOOLEAN = "j.type IN ('true', 'false')"
_SCALAR_OR_ITEM = "typeof(j.key) <> 'text'"
_DAY = "substr(j.value, 1, 10)"
_DATE = (
    f"j.type = 'text' AND date({_DAY}, '+0 days') = {_DAY} "
    "AND (length(j.value) = 10 OR substr(j.value, 11, 1) = 'T')"
)
_BUCKET_START = {
    "day": f"{_DAY}",
    "week": f"date({_DAY}, 'weekday 0', '-6 days')",
    "month": f"date({_DAY}, 'start of month')",
}
# How many entries a group holds: scalars directly, list items once per entry.
_ENTRIES = "SUM(j.key IS NULL) + COUNT(DISTINCT CASE WHEN j.key IS NOT NULL THEN e.rowid END)"


def _from(condition: str) -> str:
    return (
        "FROM entries e, json_each(e.values_json, ?) j "
        f"WHERE e.entity = ? AND {_SCALAR_OR_ITEM} AND {condition}"
    )


def _path(key: str) -> str:
    # Field keys match ^[a-zA-Z0-9_.-]+$ (checked), so quoting makes dots literal.
    return f'$."{key}"'


def metric_sql() -> str:
    """count, sum, avg, min, max of the numbers, and how many entries hold one."""
    return (
        f"SELECT COUNT(j.value), SUM(j.value), AVG(j.value), MIN(j.value), MAX(j.value), "
        f"{_ENTRIES} {_from(_NUMBER)}"
    )


def with_value_sql(condition: str) -> str:
    """How many entries hold at least one value matching ``condition``."""
    return f"SELECT {_ENTRIES} {_from(condition)}"


def terms_sql(value_type: str) -> str:
    """Entries per term, most first; the third column totals every group (for ``other``)."""
    if value_type == "boolean":
        return (
            f"SELECT j.type AS term, {_ENTRIES} AS n, SUM({_ENTRIES}) OVER () "
            f"{_from(_BOOLEAN)} GROUP BY term ORDER BY n DESC, term LIMIT ?"
        )
    return (
        f"SELECT j.value AS term, {_ENTRIES} AS n, SUM({_ENTRIES}) OVER () "
        f"{_from(_TEXT)} GROUP BY term ORDER BY n DESC, term LIMIT ?"
    )


def histogram_sql() -> str:
    """Values per bucket index ``floor(value / interval)`` (no math extension needed)."""
    ratio = "(j.value / ?)"
    index = f"(CAST({ratio} AS INTEGER) - ({ratio} < CAST({ratio} AS INTEGER)))"
    return f"SELECT {index} AS bucket, COUNT(*) {_from(_NUMBER)} GROUP BY bucket ORDER BY bucket"


def date_histogram_sql(interval: str) -> str:
    """Values per bucket start (``YYYY-MM-DD``) for ``day``, ``week`` or ``month``."""
    return (
        f"SELECT {_BUCKET_START[interval]} AS bucket, COUNT(*) {_from(_DATE)} "
        "GROUP BY bucket ORDER BY bucket"
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def run_aggregation(
    conn: sqlite3.Connection, entity: str, entries: int, request: Aggregation
) -> AggregationResult:
    """One request on an open connection (``entries``: the entity's entry count)."""
    path = _path(request.field)
    if request.kind == "metric":
        count, total, avg, low, high, holding = conn.execute(
            metric_sql(), (path, entity)
        ).fetchone()
        metric = Metric(
            count=int(count),
            sum=_float(total) if count else None,
            avg=_float(avg),
            min=_float(low),
            max=_float(high),
        )
        return AggregationResult(request, entries, entries - int(holding or 0), metric=metric)
    if request.kind == "terms":
        rows = conn.execute(terms_sql(request.value_type), (path, entity, request.size)).fetchall()
        condition = _BOOLEAN if request.value_type == "boolean" else _TEXT
        (holding,) = conn.execute(with_value_sql(condition), (path, entity)).fetchone()
        buckets = tuple(
            Bucket(term == "true" if request.value_type == "boolean" else term, int(n))
            for term, n, _ in rows
        )
        other = int(rows[0][2]) - sum(b.count for b in buckets) if rows else 0
        return AggregationResult(
            request, entries, entries - int(holding or 0), buckets=buckets, other=other
        )
    if request.kind == "histogram":
        interval = float(request.interval)  # type: ignore[arg-type]  # checked
        found = conn.execute(histogram_sql(), (interval, interval, interval, path, entity))
        buckets = tuple(Bucket(histogram_key(int(i), interval), int(n)) for i, n in found)
        (holding,) = conn.execute(with_value_sql(_NUMBER), (path, entity)).fetchone()
        return AggregationResult(request, entries, entries - int(holding or 0), buckets=buckets)
    days = conn.execute(date_histogram_sql(str(request.interval)), (path, entity))
    buckets = tuple(Bucket(str(day), int(n)) for day, n in days)
    (holding,) = conn.execute(with_value_sql(_DATE), (path, entity)).fetchone()
    return AggregationResult(request, entries, entries - int(holding or 0), buckets=buckets)


class SQLiteAggregations(Aggregations):
    """The SQLite store's `aggregate` (mixed into `SQLiteStore`)."""

    if TYPE_CHECKING:

        def _use(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def aggregate(self, entity: str, requests: Sequence[Aggregation]) -> list[AggregationResult]:
        wanted = checked(entity, requests)
        with self._use() as conn:
            (entries,) = conn.execute(
                "SELECT COUNT(*) FROM entries WHERE entity = ?", (entity,)
            ).fetchone()
            return [run_aggregation(conn, entity, int(entries), r) for r in wanted]
