"""`Aggregations` on Elasticsearch / OpenSearch: one ``_search`` with ``size: 0`` for all the
requests of a call.

Entries index their values as ``kv``, a ``nested`` list of ``{k, s, n, b}`` (key, strings,
numbers, booleans; a list value contributes every item; see `elasticsearch`). Each request is
a ``nested`` aggregation on ``kv`` filtered to ``kv.k == field`` and to the part it reads; one
nested document per entry and key makes a bucket's ``doc_count`` a number of entries, and
``reverse_nested`` gives the entries holding a value. Dates are read from ``kv.s.date``, a
``date`` sub-field of ``kv.s`` (``strict_date_optional_time``, ``ignore_malformed``, UTC), added
to the mapping of an existing entries index when the store first aggregates by date (its
documents are then re-indexed in place by a background ``_update_by_query``; until it ends,
older entries are missing from date charts).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
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
    from elasticsearch import Elasticsearch

#: The ``kv.s`` mapping the entries index is created with (and updated to) — see the module
#: docstring for the ``date`` sub-field.
STRING_PART: dict[str, Any] = {
    "type": "keyword",
    "ignore_above": 1024,
    "fields": {
        "date": {
            "type": "date",
            "format": "strict_date_optional_time",
            "ignore_malformed": True,
        }
    },
}
_PART = {"metric": "kv.n", "histogram": "kv.n", "date_histogram": "kv.s.date"}
_CALENDAR = {"day": "day", "week": "week", "month": "month"}


def _nested(request: Aggregation) -> dict[str, Any]:
    if request.kind == "terms":
        part = "kv.b" if request.value_type == "boolean" else "kv.s"
    else:
        part = _PART[request.kind]
    inner: dict[str, Any] = {"holding": {"reverse_nested": {}}}
    if request.kind == "metric":
        inner["stats"] = {"stats": {"field": part}}
    elif request.kind == "terms":
        inner["terms"] = {
            "terms": {
                "field": part,
                "size": request.size,
                "order": [{"_count": "desc"}, {"_key": "asc"}],
            }
        }
    elif request.kind == "histogram":
        inner["buckets"] = {
            "histogram": {"field": part, "interval": request.interval, "min_doc_count": 1}
        }
    else:
        inner["buckets"] = {
            "date_histogram": {
                "field": part,
                "calendar_interval": _CALENDAR[str(request.interval)],
                "min_doc_count": 1,
                "time_zone": "UTC",
            }
        }
    return {
        "nested": {"path": "kv"},
        "aggs": {
            "field": {
                "filter": {
                    "bool": {
                        "filter": [{"term": {"kv.k": request.field}}, {"exists": {"field": part}}]
                    }
                },
                "aggs": inner,
            }
        },
    }


def _day(millis: Any) -> str:
    return datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc).date().isoformat()


def _result(request: Aggregation, entries: int, body: dict[str, Any]) -> AggregationResult:
    field = body["field"]
    holding = int(field["holding"]["doc_count"])
    missing = entries - holding
    if request.kind == "metric":
        stats = field["stats"]
        count = int(stats.get("count") or 0)
        metric = Metric(
            count=count,
            sum=float(stats["sum"]) if count else None,
            avg=None if stats.get("avg") is None else float(stats["avg"]),
            min=None if stats.get("min") is None else float(stats["min"]),
            max=None if stats.get("max") is None else float(stats["max"]),
        )
        return AggregationResult(request, entries, missing, metric=metric)
    if request.kind == "terms":
        terms = field["terms"]
        buckets = tuple(
            Bucket(
                bool(b["key"]) if request.value_type == "boolean" else str(b["key"]),
                int(b["doc_count"]),
            )
            for b in terms["buckets"]
        )
        return AggregationResult(
            request, entries, missing, buckets=buckets, other=int(terms["sum_other_doc_count"])
        )
    raw = field["buckets"]["buckets"]
    if request.kind == "histogram":
        interval = float(request.interval)  # type: ignore[arg-type]  # checked
        buckets = tuple(
            Bucket(histogram_key(round(float(b["key"]) / interval), interval), int(b["doc_count"]))
            for b in raw
            if b["doc_count"]
        )
    else:
        buckets = tuple(Bucket(_day(b["key"]), int(b["doc_count"])) for b in raw if b["doc_count"])
    return AggregationResult(request, entries, missing, buckets=buckets)


class SearchAggregations(Aggregations):
    """The search store's `aggregate` (mixed into `ElasticsearchStore`)."""

    if TYPE_CHECKING:
        client: Elasticsearch
        _entries: str

        def _translate(self, what: str) -> AbstractContextManager[None]: ...

    _date_mapping_lock = threading.Lock()
    _date_mapping_done: bool = False

    def _ensure_date_part(self) -> None:
        """Give an entries index created before ``kv.s.date`` existed that sub-field, then
        re-index its documents in place (``_update_by_query``, as a background task on the
        cluster) so they gain it; until that task ends, older entries are missing from date
        charts. Done once per store object; indices created by this version have it."""
        if self._date_mapping_done:
            return
        with self._date_mapping_lock, self._translate("adding the date sub-field"):
            if self._date_mapping_done:
                return
            found: dict[str, Any] = dict(self.client.indices.get_mapping(index=self._entries).body)
            index: dict[str, Any] = next(iter(found.values()), {})
            mapping: dict[str, Any] = index.get("mappings") or {}
            kv = mapping.get("properties", {}).get("kv", {}).get("properties", {})
            if "date" not in kv.get("s", {}).get("fields", {}):
                self.client.indices.put_mapping(
                    index=self._entries,
                    properties={"kv": {"type": "nested", "properties": {"s": STRING_PART}}},
                )
                self.client.update_by_query(
                    index=self._entries, conflicts="proceed", wait_for_completion=False
                )
            self._date_mapping_done = True

    def aggregate(self, entity: str, requests: Sequence[Aggregation]) -> list[AggregationResult]:
        wanted = checked(entity, requests)
        if not wanted:
            return []
        if any(r.kind == "date_histogram" for r in wanted):
            self._ensure_date_part()
        aggs = {f"a{i}": _nested(r) for i, r in enumerate(wanted)}
        with self._translate("aggregating entries"):
            resp = self.client.search(
                index=self._entries,
                size=0,
                query={"bool": {"filter": [{"term": {"entity": entity}}]}},
                track_total_hits=True,
                aggs=aggs,
            )
        entries = int(resp["hits"]["total"]["value"])
        found = resp.get("aggregations") or {}
        return [_result(r, entries, found[f"a{i}"]) for i, r in enumerate(wanted)]
