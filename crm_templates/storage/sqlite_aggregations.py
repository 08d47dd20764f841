"""`Aggregations` on SQLite: one ``GROUP BY`` statement per request over ``json_each``.

``json_each(values_json, '$."key"')`` yields one row for a scalar value and one per item for a
list (``typeof(key) = 'text'`` rows are an object's members and are skipped, as the search
backend does not index objects), so scalars and list items are read in one pass without Python
seeing a row. The join is a LEFT JOIN, so entries without a matching value form the NULL group:
``missing`` comes from the same scan. An entry counts once per distinct term or bucket however
often a list repeats an item: ``COUNT(DISTINCT rowid)`` is paid only for list items
(``key IS NOT NULL``), scalars are counted directly.

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
    # LEFT JOIN: an entry without a matching value yields one row whose j columns are NULL,
    # so one scan gives both the groups and the entries without a value (the NULL group).
    return (
        "FROM entries e LEFT JOIN json_each(e.values_json, ?) j "
        f"ON {_SCALAR_OR_ITEM} AND {condition} WHERE e.entity = ?"
    )


def _path(key: str) -> str:
    # Field keys match ^[a-zA-Z0-9_.-]+$ (checked), so quoting makes dots literal.
    return f'$."{key}"'


def metric_sql() -> str:
    """count, sum, avg, min, max of the numbers, and how many entries hold none."""
    return (
        "SELECT COUNT(j.value), SUM(j.value), AVG(j.value), MIN(j.value), MAX(j.value), "
        f"SUM(j.type IS NULL) {_from(_NUMBER)}"
    )


def terms_sql(value_type: str) -> str:
    """Entries per term (the NULL term: entries without one), most first (NULL first)."""
    term = "j.type" if value_type == "boolean" else "j.value"
    condition = _BOOLEAN if value_type == "boolean" else _TEXT
    return (
        f"SELECT {term} AS term, {_ENTRIES} AS n {_from(condition)} "
        "GROUP BY term ORDER BY term IS NOT NULL, n DESC, term"
    )


def histogram_sql() -> str:
    """Entries per bucket index ``floor(value / interval)`` (NULL: entries without a number;
    no math extension needed)."""
    ratio = "(j.value / ?)"
    index = f"(CAST({ratio} AS INTEGER) - ({ratio} < CAST({ratio} AS INTEGER)))"
    return f"SELECT {index} AS bucket, {_ENTRIES} {_from(_NUMBER)} GROUP BY bucket ORDER BY bucket"


def date_histogram_sql(interval: str) -> str:
    """Entries per bucket start (``YYYY-MM-DD``) for ``day``, ``week`` or ``month`` (NULL:
    entries without a date)."""
    return (
        f"SELECT CASE WHEN j.type IS NOT NULL THEN {_BUCKET_START[interval]} END AS bucket, "
        f"{_ENTRIES} {_from(_DATE)} GROUP BY bucket ORDER BY bucket"
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _split(rows: list[Any]) -> tuple[int, list[Any]]:
    """(entries without a value: the NULL group's count, the other groups)."""
    missing = sum(int(n) for key, n in rows if key is None)
    return missing, [(key, n) for key, n in rows if key is not None]


def run_aggregation(
    conn: sqlite3.Connection, entity: str, entries: int, request: Aggregation
) -> AggregationResult:
    """One request on an open connection (``entries``: the entity's entry count)."""
    path = _path(request.field)
    if request.kind == "metric":
        count, total, avg, low, high, missing = conn.execute(
            metric_sql(), (path, entity)
        ).fetchone()
        metric = Metric(
            count=int(count),
            sum=_float(total) if count else None,
            avg=_float(avg),
            min=_float(low),
            max=_float(high),
        )
        return AggregationResult(request, entries, int(missing or 0), metric=metric)
    if request.kind == "terms":
        missing, groups = _split(
            conn.execute(terms_sql(request.value_type), (path, entity)).fetchall()
        )
        # Every group is read (a few per option); `size` only cuts what is returned.
        kept = groups[: request.size]
        buckets = tuple(
            Bucket(term == "true" if request.value_type == "boolean" else term, int(n))
            for term, n in kept
        )
        other = sum(int(n) for _, n in groups[request.size :])
        return AggregationResult(request, entries, missing, buckets=buckets, other=other)
    if request.kind == "histogram":
        interval = float(request.interval)  # type: ignore[arg-type]  # checked
        missing, groups = _split(
            conn.execute(histogram_sql(), (interval, interval, interval, path, entity)).fetchall()
        )
        buckets = tuple(Bucket(histogram_key(int(i), interval), int(n)) for i, n in groups)
        return AggregationResult(request, entries, missing, buckets=buckets)
    missing, groups = _split(
        conn.execute(date_histogram_sql(str(request.interval)), (path, entity)).fetchall()
    )
    buckets = tuple(Bucket(str(day), int(n)) for day, n in groups)
    return AggregationResult(request, entries, missing, buckets=buckets)


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
