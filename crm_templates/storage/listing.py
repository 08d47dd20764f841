"""Entry listing for the admin (issue 12, item 3): one entity's entries filtered, searched and
sorted, read a page at a time with keyset pagination, and the entries that reference one entry.

The contract is `EntryListing` (mixed into `Store`); `SQLiteListing` and `ElasticsearchListing`
implement it for their stores.

Keyset pagination (Datasette's ``_next``): a page is asked for *after* the key of the last entry
of the previous page — ``(created_at or updated_at, id)`` — never with an offset, so page 2,000
costs what page 1 costs (SQLite seeks the ``(entity, column, id)`` index; Elasticsearch uses
``search_after``). Entries added while someone pages never make an entry repeat or vanish from
the walk: those sorting before the cursor are simply not on the later pages.

Search (`EntryQuery.search`) finds a case-insensitive substring in the title or in any value's
text (strings, list items, numbers as written: ``100.0`` for a number 100). SQLite folds case
for ASCII letters only (its ``lower()``); Elasticsearch compares strings longer than 1,024
characters (not indexed) by title only.

Listing reads the stored state: writes buffered by an Elasticsearch ``batch()`` in the same
thread are not merged in (the admin never lists inside a batch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CrmValidationError
from ..model import Entry

if TYPE_CHECKING:
    import sqlite3
    from contextlib import AbstractContextManager

#: ``EntryQuery.sort`` → the entry attribute (and column) it orders by.
SORTS = {"created": "created_at", "updated": "updated_at"}
MAX_SEARCH = 200  # characters
MAX_PAGE = 500
#: The key a page continues after: (the sort column's value, the entry id).
Key = tuple[str, str]

# For `updated` sorts and stage filters (the `created` sort uses ix_entries_entity).
SQLITE_SCHEMA = """
CREATE INDEX IF NOT EXISTS ix_entries_entity_updated ON entries (entity, updated_at, id);
CREATE INDEX IF NOT EXISTS ix_entries_entity_stage ON entries (entity, stage_id, created_at, id);
"""


@dataclass(frozen=True)
class EntryQuery:
    """Which entries of one entity a listing shows, and in which order.

    ``pipeline_id``/``stage_id``/``reference_type``/``reference_id`` filter by equality;
    ``search`` is a substring (see the module docstring); ``sort`` is ``"created"`` or
    ``"updated"``, newest first unless ``descending`` is False; ties break on the entry id in
    the same direction. Raises `CrmValidationError` for a bad sort or a search longer than
    `MAX_SEARCH` characters.
    """

    entity: str
    pipeline_id: str | None = None
    stage_id: str | None = None
    reference_type: str | None = None
    reference_id: str | None = None
    search: str | None = None
    sort: str = "created"
    descending: bool = True

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise CrmValidationError(f"sort must be one of {sorted(SORTS)!r}; got {self.sort!r}")
        if self.search is not None and len(self.search) > MAX_SEARCH:
            raise CrmValidationError(
                f"a search is at most {MAX_SEARCH} characters; got {len(self.search)}"
            )

    @property
    def column(self) -> str:
        """The entry attribute (and store column) the listing orders by."""
        return SORTS[self.sort]

    def key_of(self, entry: Entry) -> Key:
        """The key to continue after ``entry`` (its sort value and id)."""
        return (getattr(entry, self.column), entry.id)

    def filters(self) -> list[tuple[str, str]]:
        """The equality filters given, as ``(column, value)``."""
        pairs = (
            ("pipeline_id", self.pipeline_id),
            ("stage_id", self.stage_id),
            ("reference_type", self.reference_type),
            ("reference_id", self.reference_id),
        )
        return [(column, value) for column, value in pairs if value is not None]


def _check_page(after: Key | None, limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise CrmValidationError(
            f"limit must be a whole number from 1 to {MAX_PAGE}; got {limit!r}"
        )
    if after is not None and not (
        isinstance(after, tuple) and len(after) == 2 and all(isinstance(p, str) for p in after)
    ):
        raise CrmValidationError(f"after must be a (sort value, entry id) pair; got {after!r}")


class EntryListing(ABC):
    """The listing queries of the Store contract (see the module docstring)."""

    @abstractmethod
    def list_entries_page(
        self, query: EntryQuery, *, after: Key | None = None, limit: int = 50
    ) -> list[Entry]:
        """Up to ``limit`` (1 to `MAX_PAGE`) entries matching ``query``, in its order, starting
        after the entry with key ``after`` (None: from the start). ``EntryQuery.key_of`` of the
        last entry continues the walk."""

    @abstractmethod
    def referencing_entries(
        self, entry_id: str, fields: Sequence[tuple[str, str]], *, limit: int = 100
    ) -> list[Entry]:
        """Entries whose value under one of ``fields`` — ``(entity slug, field key)`` pairs,
        the reference and multi_reference fields that may point at the entry — is
        ``entry_id`` or a list holding it; newest first, at most ``limit``."""


class SQLiteListing(EntryListing):
    """`EntryListing` for `SQLiteStore` (an index seek per page; search scans the entity)."""

    if TYPE_CHECKING:

        def _use(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def list_entries_page(
        self, query: EntryQuery, *, after: Key | None = None, limit: int = 50
    ) -> list[Entry]:
        from .sqlite import _ENTRY_COLUMNS, _row_to_entry

        _check_page(after, limit)
        column = query.column
        clauses = ["entity = ?"]
        params: list[Any] = [query.entity]
        for name, value in query.filters():
            clauses.append(f"{name} = ?")
            params.append(value)
        if query.search:
            needle = query.search.lower()
            clauses.append(
                "(instr(lower(title), ?) > 0 OR EXISTS (SELECT 1 FROM json_each(values_json) "
                "AS v WHERE instr(lower(CAST(v.value AS TEXT)), ?) > 0))"
            )
            params += [needle, needle]
        direction = "DESC" if query.descending else "ASC"
        if after is not None:
            clauses.append(f"({column}, id) {'<' if query.descending else '>'} (?, ?)")
            params += list(after)
        sql = (
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE {' AND '.join(clauses)} "
            f"ORDER BY {column} {direction}, id {direction} LIMIT ?"
        )
        params.append(limit)
        with self._use() as conn:
            return [_row_to_entry(r) for r in conn.execute(sql, params)]

    def referencing_entries(
        self, entry_id: str, fields: Sequence[tuple[str, str]], *, limit: int = 100
    ) -> list[Entry]:
        from .sqlite import _ENTRY_COLUMNS, _key_path, _row_to_entry

        if not fields:
            return []
        ors: list[str] = []
        params: list[Any] = []
        for entity, key in fields:
            # json_each over a scalar yields the scalar itself, so one test covers both types.
            ors.append(
                "(entity = ? AND EXISTS (SELECT 1 FROM json_each(values_json, ?) AS v "
                "WHERE v.value = ?))"
            )
            params += [entity, _key_path(key), entry_id]
        sql = (
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE {' OR '.join(ors)} "
            "ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        params.append(limit)
        with self._use() as conn:
            return [_row_to_entry(r) for r in conn.execute(sql, params)]


def _wildcard(text: str) -> str:
    """``*text*`` for a wildcard query, with the query's own metacharacters escaped."""
    escaped = text.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
    return f"*{escaped}*"


class ElasticsearchListing(EntryListing):
    """`EntryListing` for `ElasticsearchStore`: a bool query, ``search_after`` on the key."""

    if TYPE_CHECKING:
        _entries: str
        client: Any

        def _translate(self, what: str) -> AbstractContextManager[None]: ...
        def _entry_hit(self, hit: Any) -> Entry: ...

    def _search(self, query: dict[str, Any], sort: list[dict[str, str]], **kw: Any) -> list[Entry]:
        with self._translate("listing entries"):
            resp = self.client.search(
                index=self._entries,
                query=query,
                sort=sort,
                seq_no_primary_term=True,
                track_total_hits=False,
                **kw,
            )
        return [self._entry_hit(h) for h in resp["hits"]["hits"]]

    def list_entries_page(
        self, query: EntryQuery, *, after: Key | None = None, limit: int = 50
    ) -> list[Entry]:
        _check_page(after, limit)
        filters: list[dict[str, Any]] = [{"term": {"entity": query.entity}}]
        filters += [{"term": {name: value}} for name, value in query.filters()]
        must: list[dict[str, Any]] = []
        if query.search:
            pattern = {"value": _wildcard(query.search), "case_insensitive": True}
            should: list[dict[str, Any]] = [
                {"wildcard": {"title": pattern}},
                {"nested": {"path": "kv", "query": {"wildcard": {"kv.s": pattern}}}},
            ]
            # Numbers are indexed as doubles: match one whose written form holds the text,
            # as SQLite does, at least when the text is the whole number.
            try:
                number = float(query.search)
            except ValueError:
                number = None
            if number is not None and number == number and abs(number) != float("inf"):
                should.append({"nested": {"path": "kv", "query": {"term": {"kv.n": number}}}})
            must.append({"bool": {"should": should, "minimum_should_match": 1}})
        order = "desc" if query.descending else "asc"
        sort = [{query.column: order}, {"id": order}]
        kw: dict[str, Any] = {"size": limit}
        if after is not None:
            kw["search_after"] = list(after)
        return self._search({"bool": {"filter": filters, "must": must}}, sort, **kw)

    def referencing_entries(
        self, entry_id: str, fields: Sequence[tuple[str, str]], *, limit: int = 100
    ) -> list[Entry]:
        if not fields:
            return []
        should = [
            {
                "bool": {
                    "filter": [
                        {"term": {"entity": entity}},
                        {
                            "nested": {
                                "path": "kv",
                                "query": {
                                    "bool": {
                                        "filter": [
                                            {"term": {"kv.k": key}},
                                            {"term": {"kv.s": entry_id}},
                                        ]
                                    }
                                },
                            }
                        },
                    ]
                }
            }
            for entity, key in fields
        ]
        query = {"bool": {"should": should, "minimum_should_match": 1}}
        return self._search(query, [{"created_at": "desc"}, {"id": "desc"}], size=limit)
