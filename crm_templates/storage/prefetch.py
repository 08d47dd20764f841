"""One store round trip for every value a page will read (issue 14, item 1).

`Prefetch` is the part of the `Store` contract the Jinja extension's compiled reads use
(`crm_templates.compiled_reads`): at the start of a render it asks, in ONE call, for the newest
value of each declared key of several (entity, reference) pairs — the same answer
`Store.latest_values` gives for each pair — and, optionally, every entity's stored version, so
the page server's per-request entity-cache check (`Crm.refresh_entities`) rides on the same
round trip.

- SQLite (`SQLitePrefetch`): one statement — the entries of all the pairs (an ``OR`` of the
  ``ix_entries_ref`` index's equality terms), ``UNION ALL`` the ``entities`` versions, ordered
  so each pair's rows arrive newest first; the first value of each key wins, as in
  ``latest_values``.
- Elasticsearch/OpenSearch (`ElasticsearchPrefetch`): one ``_msearch`` — per pair and key the
  newest entry holding the key (``latest_values``' searches), plus one search of the entities
  index for the versions. Inside `batch()` buffered writes are laid over the hits, as
  ``latest_values`` does.

A read: a read-only store view (`crm_templates.access`) passes it through.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .elasticsearch import ElasticsearchStore
    from .sqlite import SQLiteStore

#: One pair to prefetch: (entity slug, reference type, reference id, keys wanted).
PrefetchRead = tuple[str, str, str, Sequence[str]]


class Prefetch(ABC):
    """The contract's batched read of newest values (implemented by every backend)."""

    @abstractmethod
    def prefetch_values(
        self, reads: Sequence[PrefetchRead], *, entity_versions: bool = False
    ) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
        """``([latest_values(*read) for read in reads], versions)`` in one store round trip.

        Each dict maps a key to its value in the newest entry of that entity and reference
        holding it (absent keys are omitted), exactly as `Store.latest_values`. ``versions`` is
        `EntityQueries.entity_versions` (every entity's stored version by slug) when
        ``entity_versions`` is true, else None. An empty ``reads`` with ``entity_versions``
        still costs one round trip; with neither, none.
        """


class SQLitePrefetch(Prefetch):
    """`Prefetch` on SQLite: one ``SELECT … UNION ALL SELECT …`` statement."""

    def prefetch_values(
        self, reads: Sequence[PrefetchRead], *, entity_versions: bool = False
    ) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
        store = cast("SQLiteStore", self)
        pairs: dict[tuple[str, str, str], int] = {}
        for index, (entity, rtype, rid, _keys) in enumerate(reads):
            pairs.setdefault((entity, rtype, rid), index)
        found: list[dict[str, Any]] = [{} for _ in reads]
        if not pairs and not entity_versions:
            return found, None
        parts: list[str] = []
        params: list[Any] = []
        if pairs:
            terms = " OR ".join(
                ["(entity = ? AND reference_type = ? AND reference_id = ?)"] * len(pairs)
            )
            parts.append(
                "SELECT entity, reference_type, reference_id, created_at, id, values_json "
                f"FROM entries WHERE {terms}"
            )
            for pair in pairs:
                params.extend(pair)
        if entity_versions:
            # reference_type NULL marks a version row; they sort first (NULLs first).
            parts.append("SELECT slug, NULL, NULL, '', '', version FROM entities")
        sql = " UNION ALL ".join(parts) + " ORDER BY 1, 2, 3, 4 DESC, 5 DESC"
        versions: dict[str, int] | None = {} if entity_versions else None
        wanted = {pair: set(reads[index][3]) for pair, index in pairs.items()}
        results = {pair: found[index] for pair, index in pairs.items()}
        with store._use() as conn:
            rows = conn.execute(sql, params).fetchall()
        for entity, rtype, rid, _created, _id, payload in rows:
            if rtype is None:
                assert versions is not None
                versions[entity] = int(payload)
                continue
            pair = (entity, rtype, rid)
            remaining = wanted[pair]
            if not remaining:
                continue  # every key of this pair has its newest value already
            values = json.loads(payload)
            held = remaining.intersection(values)
            if held:
                out = results[pair]
                for key in held:
                    out[key] = values[key]
                remaining -= held
        # A pair named twice shares one answer (each its own keys).
        for index, (entity, rtype, rid, keys) in enumerate(reads):
            first = pairs[(entity, rtype, rid)]
            if first != index:
                found[index] = {k: v for k, v in found[first].items() if k in set(keys)}
        return found, versions


class ElasticsearchPrefetch(Prefetch):
    """`Prefetch` on Elasticsearch/OpenSearch: one ``_msearch``."""

    def prefetch_values(
        self, reads: Sequence[PrefetchRead], *, entity_versions: bool = False
    ) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
        store = cast("ElasticsearchStore", self)
        from .elasticsearch import _NEWEST, _entry_filters, _matches, _query, _reason

        overlay = store._overlay() or {}
        searches: list[dict[str, Any]] = []
        asked: list[tuple[int, str]] = []  # (index into reads, key) per entry search
        for index, (entity, rtype, rid, keys) in enumerate(reads):
            for key in dict.fromkeys(keys):
                asked.append((index, key))
                searches.append({"index": store._entries})
                searches.append(
                    {
                        "query": _query(_entry_filters(entity, rtype, rid, key)),
                        "sort": _NEWEST,
                        "size": 1 + len(overlay),
                        "seq_no_primary_term": True,
                        "track_total_hits": False,
                    }
                )
        if entity_versions:
            searches.append({"index": store.indices["entities"]})
            searches.append(
                {"query": {"match_all": {}}, "size": 10_000, "_source": ["slug", "version"]}
            )
        found: list[dict[str, Any]] = [{} for _ in reads]
        if not searches:
            return found, None
        with store._translate("prefetching values"):
            responses = store.client.msearch(searches=searches)["responses"]
        for result in responses:
            if "error" in result:
                raise store._error(
                    int(result.get("status", 500)),
                    _reason(result, str(result["error"])),
                    "prefetching values",
                )
        for (index, key), result in zip(asked, responses, strict=False):
            entity, rtype, rid, _keys = reads[index]
            entries = [store._entry_hit(h) for h in result["hits"]["hits"]]
            if overlay:

                def holds(e: Any, key: str = key, r: PrefetchRead = reads[index]) -> bool:
                    return _matches(e, r[0], r[1], r[2], key)

                entries = store._merge(entries, overlay, holds)
            if entries:
                found[index][key] = entries[0].values[key]
        versions: dict[str, int] | None = None
        if entity_versions:
            versions = {
                hit["_source"]["slug"]: int(hit["_source"]["version"])
                for hit in responses[-1]["hits"]["hits"]
            }
        return found, versions


__all__ = ["ElasticsearchPrefetch", "Prefetch", "PrefetchRead", "SQLitePrefetch"]
