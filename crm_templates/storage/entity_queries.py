"""Store queries for editing entity definitions (issue 12, item 2): how many entries hold a
field, how many sit in each stage, and every entity's version.

`EntityQueries` is the part of the `Store` contract they form (`Store` inherits it); the
backends get their implementations from the mixins here (`SQLiteEntityQueries`,
`ElasticsearchEntityQueries`), so the big backend modules only name a base class.

- ``count_entries_with_field`` — the admin's "removing this field: N entries hold it" (the
  same "holds" as ``find_entries(has_key=...)``: the key is present, a stored null counts);
- ``count_entries_by_field`` — the same for every key at once (the entity page's column);
- ``count_entries_by_stage`` — stage removal (refused while entries sit in the stage) and the
  entity page's per-stage counts;
- ``entity_versions`` — the service's cross-process check of its entity cache
  (`crm_templates.service.Crm.refresh_entities`): one small query instead of reading every
  definition.

All four are reads: a read-only store view (`crm_templates.access`) passes them through.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .elasticsearch import ElasticsearchStore
    from .sqlite import SQLiteStore


class EntityQueries(ABC):
    """The contract's entity-editing queries (implemented by every backend)."""

    @abstractmethod
    def count_entries_with_field(self, entity: str, key: str) -> int:
        """How many entries of ``entity`` hold a value under ``key`` (a stored null counts, as
        for ``find_entries(has_key=key)``). Undeclared keys are counted too (values kept from
        a removed field)."""

    @abstractmethod
    def count_entries_by_field(self, entity: str) -> dict[str, int]:
        """For every key held by entries of ``entity`` (declared or not), how many entries hold
        it — `count_entries_with_field` for all keys in one pass; keys nobody holds are
        absent."""

    @abstractmethod
    def count_entries_by_stage(self, entity: str) -> dict[str | None, int]:
        """Entries of ``entity`` per ``stage_id`` (None: entries on no stage); stages without
        entries are absent."""

    @abstractmethod
    def entity_versions(self) -> dict[str, int]:
        """Every entity's stored ``version``, by slug (one query)."""


class SQLiteEntityQueries(EntityQueries):
    """`EntityQueries` on SQLite: ``json_type`` for held keys, ``GROUP BY`` for stages."""

    def count_entries_with_field(self, entity: str, key: str) -> int:
        store = cast("SQLiteStore", self)
        from .sqlite import _key_path

        with store._use() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM entries WHERE entity = ? "
                "AND json_type(values_json, ?) IS NOT NULL",
                (entity, _key_path(key)),
            ).fetchone()
        return int(row[0])

    def count_entries_by_field(self, entity: str) -> dict[str, int]:
        store = cast("SQLiteStore", self)
        with store._use() as conn:
            rows = conn.execute(
                "SELECT held.key, COUNT(*) FROM entries, json_each(entries.values_json) AS held "
                "WHERE entries.entity = ? GROUP BY held.key",
                (entity,),
            ).fetchall()
        return {key: int(count) for key, count in rows}

    def count_entries_by_stage(self, entity: str) -> dict[str | None, int]:
        store = cast("SQLiteStore", self)
        with store._use() as conn:
            rows = conn.execute(
                "SELECT stage_id, COUNT(*) FROM entries WHERE entity = ? GROUP BY stage_id",
                (entity,),
            ).fetchall()
        return {stage: int(count) for stage, count in rows}

    def entity_versions(self) -> dict[str, int]:
        store = cast("SQLiteStore", self)
        with store._use() as conn:
            rows = conn.execute("SELECT slug, version FROM entities").fetchall()
        return {slug: int(version) for slug, version in rows}


class ElasticsearchEntityQueries(EntityQueries):
    """`EntityQueries` on Elasticsearch/OpenSearch: ``_count`` on the ``keys`` keyword, a
    ``terms`` aggregation on ``stage_id``. Inside `batch()` the buffered writes are applied on
    top, as `count_entries` does."""

    def count_entries_with_field(self, entity: str, key: str) -> int:
        store = cast("ElasticsearchStore", self)
        from .elasticsearch import _entry_filters, _matches, _query

        filters = _entry_filters(entity, None, None, key)
        with store._translate("counting entries holding a field"):
            count = int(store.client.count(index=store._entries, query=_query(filters))["count"])
        overlay = store._overlay()
        if not overlay:
            return count
        with store._translate("counting entries holding a field"):
            shadowed = int(
                store.client.count(
                    index=store._entries,
                    query=_query([*filters, {"ids": {"values": list(overlay)}}]),
                )["count"]
            )
        added = sum(
            1
            for p in overlay.values()
            if p.entry is not None and _matches(p.entry, entity, None, None, key)
        )
        return count - shadowed + added

    def count_entries_by_field(self, entity: str) -> dict[str, int]:
        store = cast("ElasticsearchStore", self)
        from .elasticsearch import _entry_filters, _query

        if store._overlay():  # inside a batch: count what this thread would read
            return dict(
                Counter(k for e in store.find_entries(entity, limit=None) for k in e.values)
            )
        with store._translate("counting entries by field"):
            resp = store.client.search(
                index=store._entries,
                query=_query(_entry_filters(entity, None, None)),
                size=0,
                aggs={"keys": {"terms": {"field": "keys", "size": 10_000}}},
            )
        return {
            bucket["key"]: int(bucket["doc_count"])
            for bucket in resp.body["aggregations"]["keys"]["buckets"]
        }

    def count_entries_by_stage(self, entity: str) -> dict[str | None, int]:
        store = cast("ElasticsearchStore", self)
        from .elasticsearch import _entry_filters, _query

        if store._overlay():  # inside a batch: count what this thread would read
            return dict(Counter(e.stage_id for e in store.find_entries(entity, limit=None)))
        query = _query(_entry_filters(entity, None, None))
        with store._translate("counting entries by stage"):
            resp = store.client.search(
                index=store._entries,
                query=query,
                size=0,
                track_total_hits=True,
                aggs={"stages": {"terms": {"field": "stage_id", "size": 10_000}}},
            )
        body: dict[str, Any] = dict(resp.body)
        total = int(body["hits"]["total"]["value"])
        counts: dict[str | None, int] = {
            bucket["key"]: int(bucket["doc_count"])
            for bucket in body["aggregations"]["stages"]["buckets"]
        }
        unstaged = total - sum(counts.values())
        if unstaged:
            counts[None] = unstaged
        return counts

    def entity_versions(self) -> dict[str, int]:
        store = cast("ElasticsearchStore", self)
        with store._translate("reading entity versions"):
            resp = store.client.search(
                index=store.indices["entities"],
                query={"match_all": {}},
                size=10_000,
                source_includes=["slug", "version"],
            )
        return {
            hit["_source"]["slug"]: int(hit["_source"]["version"])
            for hit in resp.body["hits"]["hits"]
        }
