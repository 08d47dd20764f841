"""One store round trip for every value a page will read (issue 14, item 1).

`Prefetch` is the part of the `Store` contract the Jinja extension's compiled reads use
(`crm_templates.compiled_reads`): at the start of a render it asks, in ONE call, for the newest
value of each declared key of several (entity, reference) pairs — the same answer
`Store.latest_values` gives for each pair — and, optionally, every entity's stored version, so
the page server's per-request entity-cache check (`Crm.refresh_entities`) rides on the same
round trip.

- SQLite (`SQLitePrefetch`): one statement — one ``ix_entries_ref`` index search per pair,
  ``UNION ALL`` the ``entities`` versions; each pair's rows newest first (``created_at``, then
  ``id``, as ``latest_values`` orders them), the first value of each key wins.
- Elasticsearch/OpenSearch (`ElasticsearchPrefetch`): one ``_msearch`` — per pair and key the
  newest entry holding the key (``latest_values``' searches), plus one search of the entities
  index for the versions. Inside `batch()` buffered writes are laid over the hits, as
  ``latest_values`` does.

A read: a read-only store view (`crm_templates.access`) passes it through.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ..model import Customer, Entry, customer_from_dict

if TYPE_CHECKING:
    from .elasticsearch import ElasticsearchStore
    from .sqlite import SQLiteStore

#: One pair to prefetch: (entity slug, reference type, reference id, keys wanted).
PrefetchRead = tuple[str, str, str, Sequence[str]]
#: One listing to prefetch: (entity slug, reference type, reference id, key or None, limit) —
#: ``find_entries(entity, reference_type, reference_id, has_key=key, limit=limit)``.
PrefetchListing = tuple[str, str, str, "str | None", int]

#: Listings one call fetches at most (the rest are answered None: the caller reads them
#: itself). Keeps a statement within SQLite's 500 compound terms with `PAIRS_PER_STATEMENT`.
MAX_LISTINGS = 50


class Prefetched(NamedTuple):
    """What `Prefetch.prefetch_values` answers."""

    values: list[dict[str, Any]]
    versions: dict[str, int] | None
    customer: Customer | None
    #: ``listings[i]``: the entries of the i-th listing asked for, or None where it was not
    #: fetched (beyond `MAX_LISTINGS`, or inside a search backend's ``batch()``).
    listings: tuple[list[Entry] | None, ...] = ()


class Prefetch(ABC):
    """The contract's batched read of newest values (implemented by every backend)."""

    @abstractmethod
    def prefetch_values(
        self,
        reads: Sequence[PrefetchRead],
        *,
        entity_versions: bool = False,
        customer: str | None = None,
        listings: Sequence[PrefetchListing] = (),
    ) -> Prefetched:
        """`Prefetched` ``(values, versions, customer, listings)`` in one store round trip.

        ``values[i]`` is ``latest_values(*reads[i])``: each key's value in the newest entry of
        that entity and reference holding it (absent keys are omitted). ``versions`` is
        `EntityQueries.entity_versions` (every entity's stored version by slug) when
        ``entity_versions`` is true, else None. ``customer`` is ``get_customer(customer)``
        when a customer id is given (the page server's session customer), else None.
        ``listings[i]`` is ``find_entries(entity, rtype, rid, has_key=key, limit=limit)`` of
        the i-th listing (GetCrmEntries / GetCrmFieldValues planned in a template), or None
        where it was not fetched. With nothing asked, no round trip.
        """


# Rows are (tag, created_at, id, payload): tag i >= 0 an entry of the i-th distinct pair, -1 an
# entity's version (slug in the id column), -2 the customer's record. Few columns: every column
# of every row becomes a Python object.
_PAIR_SQL = (
    "SELECT {tag}, created_at, id, values_json{pad} FROM entries "
    "WHERE entity = ? AND reference_type = ? AND reference_id = ?"
)
_VERSIONS_SQL = "SELECT -1, '', slug, version{pad} FROM entities"
_CUSTOMER_SQL = (
    "SELECT -2, '', id, json_array(email, first_name, last_name, created_at){pad} "
    "FROM customers WHERE id = ?"
)
# With listings the rows are wide: (tag, created_at, id, values_json, title, pipeline_id,
# stage_id, updated_at, version); tag -3 - j the j-th listing's entries, the other parts padded.
_PAD = ", NULL, NULL, NULL, NULL, NULL"
_LISTING_SQL = (
    "SELECT * FROM (SELECT {tag}, created_at, id, values_json, title, pipeline_id, stage_id, "
    "updated_at, version FROM entries "
    "WHERE entity = ? AND reference_type = ? AND reference_id = ?{has_key}"
    " ORDER BY created_at DESC, id DESC LIMIT ?)"
)
_HAS_KEY = " AND json_type(values_json, ?) IS NOT NULL"
_CREATED_ID = itemgetter(1, 2)  # created_at, id: newest first when sorted in reverse
_DECODER = json.JSONDecoder()
# The C scanner behind json.loads, without its two whitespace regex passes.
_scan = _DECODER.scan_once  # type: ignore[attr-defined]


def _decode(text: str) -> Any:
    """``json.loads(text)`` for the store's own compact JSON documents: the C scanner straight
    away (stored values never start with whitespace); anything else takes `json.loads`' path,
    errors included."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return _DECODER.decode(text)
    if end != len(text):
        return _DECODER.decode(text)
    return value


#: Pairs per statement: SQLite refuses a compound SELECT of more than 500 terms
#: (SQLITE_MAX_COMPOUND_SELECT) and, before 3.32, more than 999 parameters (3 per pair). A
#: page naming more pairs than this (hundreds of constant references) takes one statement per
#: this many pairs, still in one call.
PAIRS_PER_STATEMENT = 300


@functools.lru_cache(maxsize=256)
def _statement(
    first: int,
    stop: int,
    versions: bool,
    customer: bool,
    listings: tuple[bool, ...] = (),
    wide: bool = False,
) -> str:
    """The prefetch statement's text for pairs ``first``..``stop - 1`` (the same text each
    time: sqlite3 keeps it prepared); ``listings``: whether each listing filters on a key;
    ``wide``: the rows of a call with listings (every statement of it)."""
    pad = _PAD if wide else ""
    parts = [_PAIR_SQL.format(tag=tag, pad=pad) for tag in range(first, stop)]
    parts += [
        _LISTING_SQL.format(tag=-3 - j, has_key=_HAS_KEY if keyed else "")
        for j, keyed in enumerate(listings)
    ]
    if versions:
        parts.append(_VERSIONS_SQL.format(pad=pad))
    if customer:
        parts.append(_CUSTOMER_SQL.format(pad=pad))
    return " UNION ALL ".join(parts)


class SQLitePrefetch(Prefetch):
    """`Prefetch` on SQLite: one statement, a ``UNION ALL`` of one ``ix_entries_ref`` index
    search per pair (and the ``entities`` versions, the customer's row). The rows are put
    newest first in Python — one sort of a few dozen tuples costs less than SQLite's temporary
    B-tree for an ``ORDER BY`` over the compound (measured: 12 µs against 36 µs for two pairs
    and the versions)."""

    def prefetch_values(
        self,
        reads: Sequence[PrefetchRead],
        *,
        entity_versions: bool = False,
        customer: str | None = None,
        listings: Sequence[PrefetchListing] = (),
    ) -> Prefetched:
        store = cast("SQLiteStore", self)
        taken = listings[:MAX_LISTINGS] if listings else ()
        pairs: dict[tuple[str, str, str], int] = {}
        # The keys wanted of each pair: every read naming the pair (a pair named twice with
        # other keys is one index search, answering both reads).
        union: dict[int, set[str]] = {}
        for index, (entity, rtype, rid, keys) in enumerate(reads):
            first = pairs.setdefault((entity, rtype, rid), index)
            if first == index:
                union[index] = set(keys)
            else:
                union[first].update(keys)
        found: list[dict[str, Any]] = [{} for _ in reads]
        listed: list[list[Entry] | None] = [None] * len(listings) if listings else []
        if not pairs and not entity_versions and customer is None and not taken:
            return Prefetched(found, None, None, tuple(listed))
        named = list(pairs)
        rows: list[Any] = []
        keyed: tuple[bool, ...] = ()
        if taken:
            from .sqlite import _key_path  # here: sqlite.py imports this module

            keyed = tuple(x[3] is not None for x in taken)
        with store._use() as conn:
            first = 0
            while True:
                stop = min(first + PAIRS_PER_STATEMENT, len(named))
                # The listings, the versions and the customer ride on the last statement.
                last = stop == len(named)
                params: list[Any] = [part for pair in named[first:stop] for part in pair]
                if last:
                    for entity, rtype, rid, key, limit in taken:
                        params += (entity, rtype, rid)
                        if key is not None:
                            params.append(_key_path(key))
                        params.append(limit)
                    if customer is not None:
                        params.append(customer)
                sql = _statement(
                    first,
                    stop,
                    last and entity_versions,
                    last and customer is not None,
                    keyed if last else (),
                    bool(keyed),
                )
                rows += conn.execute(sql, params).fetchall()
                if last:
                    break
                first = stop
        versions: dict[str, int] | None = {} if entity_versions else None
        record: Customer | None = None
        if len(rows) > 1:
            # Newest first (version and customer rows, with empty created_at, last): each
            # pair's rows then come in `latest_values`' order, whatever pairs interleave.
            rows.sort(key=_CREATED_ID, reverse=True)
        wanted = [set(union[index]) for index in pairs.values()]
        results = [found[index] for index in pairs.values()]
        for j in range(len(taken)):
            listed[j] = []
        for row in rows:
            tag = row[0]
            if tag < 0:
                if tag == -1:
                    versions[row[2]] = int(row[3])  # type: ignore[index]
                elif tag == -2:
                    email, first, last, created = _decode(row[3])
                    record = Customer(row[2], email, first, last, created)
                else:
                    entity, rtype, rid, _key, _limit = taken[-3 - tag]
                    _t, created, ident, payload, title, pipeline, stage, updated, version = row
                    entry = Entry(ident, entity, rtype, rid, _decode(payload), title, pipeline,
                                  stage, created, updated, version)  # fmt: skip
                    listed[-3 - tag].append(entry)
                continue
            remaining = wanted[tag]
            if not remaining:
                continue  # every key of this pair has its newest value already
            values = _decode(row[3])
            held = remaining.intersection(values)
            if held:
                out = results[tag]
                for key in held:
                    out[key] = values[key]
                remaining -= held
        # A pair named twice shares one answer: each read gets its own keys.
        if len(pairs) < len(reads):
            shared = list(found)
            for index, (entity, rtype, rid, keys) in enumerate(reads):
                answer = shared[pairs[(entity, rtype, rid)]]
                asked = set(keys)
                found[index] = {k: v for k, v in answer.items() if k in asked}
        return Prefetched(found, versions, record, tuple(listed))


class ElasticsearchPrefetch(Prefetch):
    """`Prefetch` on Elasticsearch/OpenSearch: one ``_msearch``."""

    def prefetch_values(
        self,
        reads: Sequence[PrefetchRead],
        *,
        entity_versions: bool = False,
        customer: str | None = None,
        listings: Sequence[PrefetchListing] = (),
    ) -> Prefetched:
        store = cast("ElasticsearchStore", self)
        from .elasticsearch import _NEWEST, _WINDOW, _entry_filters, _matches, _query, _reason

        overlay = store._overlay() or {}
        # Inside batch() a listing would need the buffered writes merged in: not fetched here
        # (None), the caller's own find_entries does that.
        taken = [] if overlay else [
            (j, x) for j, x in enumerate(listings[:MAX_LISTINGS]) if 0 < x[4] <= _WINDOW
        ]  # fmt: skip
        listed: list[list[Entry] | None] = [None] * len(listings)
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
        for _j, (entity, rtype, rid, has_key, limit) in taken:
            searches.append({"index": store._entries})
            searches.append(
                {
                    "query": _query(_entry_filters(entity, rtype, rid, has_key)),
                    "sort": _NEWEST,
                    "size": limit,
                    "seq_no_primary_term": True,
                    "track_total_hits": False,
                }
            )
        if entity_versions:
            searches.append({"index": store.indices["entities"]})
            searches.append(
                {"query": {"match_all": {}}, "size": 10_000, "_source": ["slug", "version"]}
            )
        if customer is not None:
            # Writes refresh (see elasticsearch.py, "Consistency"): a search sees what a GET
            # would.
            searches.append({"index": store.indices["customers"]})
            searches.append({"query": {"ids": {"values": [customer]}}, "size": 1})
        found: list[dict[str, Any]] = [{} for _ in reads]
        if not searches:
            return Prefetched(found, None, None, tuple(listed))
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
        extra = iter(responses[len(asked) :])
        for j, _listing in taken:
            listed[j] = [store._entry_hit(h) for h in next(extra)["hits"]["hits"]]
        versions: dict[str, int] | None = None
        if entity_versions:
            versions = {
                hit["_source"]["slug"]: int(hit["_source"]["version"])
                for hit in next(extra)["hits"]["hits"]
            }
        record: Customer | None = None
        if customer is not None:
            hits = next(extra)["hits"]["hits"]
            record = customer_from_dict(hits[0]["_source"]) if hits else None
        return Prefetched(found, versions, record, tuple(listed))


__all__ = [
    "MAX_LISTINGS",
    "PAIRS_PER_STATEMENT",
    "ElasticsearchPrefetch",
    "Prefetch",
    "PrefetchListing",
    "PrefetchRead",
    "Prefetched",
    "SQLitePrefetch",
]
