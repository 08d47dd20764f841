"""The pipeline board's store queries (issue 12, item 4), on both backends.

A board shows, per stage of one pipeline of one entity, how many entries sit there, the sum of
one number field over them, and the most recently updated entries as cards. Both are answered
by the store — SQL ``GROUP BY`` / ``LIMIT`` per stage on SQLite, a ``terms`` aggregation with
``sum`` and ``top_hits`` sub-aggregations on Elasticsearch/OpenSearch — so a board never loads a
pipeline's rows into Python.

`BoardQueries` is the contract (`crm_templates.storage.base.Store` inherits it);
`SQLiteBoards` and `ElasticsearchBoards` are the backends' implementations, mixed into
`SQLiteStore` and `ElasticsearchStore`. General aggregations for reports live elsewhere; these
two queries are deliberately narrow and named for the board.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CrmValidationError, StoreError
from ..model import Entry, entry_from_dict

if TYPE_CHECKING:
    import sqlite3

#: The most cards `stage_cards` returns per stage (Elasticsearch's default
#: ``index.max_inner_result_window`` bounds ``top_hits`` at 100).
MAX_CARDS = 100
#: The most distinct stages `stage_totals` reports for one pipeline.
MAX_STAGES = 1_000


@dataclass(frozen=True, slots=True)
class StageTotal:
    """One stage's column head: ``count`` entries, and ``total``, the sum of the chosen number
    field over them (0.0 when none holds a number, or when no field was asked for)."""

    count: int
    total: float = 0.0


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CARDS:
        raise CrmValidationError(f"cards per stage must be 1 to {MAX_CARDS}; got {limit!r}")
    return limit


class BoardQueries(ABC):
    """The board's two store queries (part of the `Store` contract)."""

    @abstractmethod
    def stage_totals(
        self, entity: str, pipeline_id: str, sum_field: str | None = None
    ) -> dict[str | None, StageTotal]:
        """Per ``stage_id`` of the entries of ``entity`` in ``pipeline_id``: how many there are
        and the sum of the number values of ``sum_field`` (a field key; None: no sum). Values
        that are not numbers (text, booleans, lists, null) are not summed. Stages without
        entries are absent; a stage id the pipeline no longer declares is reported as stored.
        Counted and summed by the store, never in Python over the rows."""

    @abstractmethod
    def stage_cards(
        self, entity: str, pipeline_id: str, stage_ids: Sequence[str], limit: int
    ) -> dict[str, list[Entry]]:
        """For each of ``stage_ids``, up to ``limit`` (1 to `MAX_CARDS`) entries of ``entity``
        in ``pipeline_id`` at that stage, most recently updated first (``updated_at`` then
        ``id``, descending); every asked-for stage is a key (an empty list when it has none).
        Raises `CrmValidationError` for a limit out of range."""


class SQLiteBoards(BoardQueries):
    """`BoardQueries` in SQL (mixed into `SQLiteStore`). The first board query of a store adds
    the index ``ix_entries_board (entity, pipeline_id, stage_id, updated_at, id)``, so each
    column's cards are one index range scan and the totals one index-ordered ``GROUP BY``."""

    if TYPE_CHECKING:

        def _use(self) -> AbstractContextManager[sqlite3.Connection]: ...

    _board_index_lock = threading.Lock()
    _board_indexed = False

    def _board_index(self) -> None:
        if self._board_indexed:
            return
        with self._board_index_lock:
            if self._board_indexed:
                return
            try:
                with self._use() as conn:
                    conn.execute(
                        "CREATE INDEX IF NOT EXISTS ix_entries_board "
                        "ON entries (entity, pipeline_id, stage_id, updated_at, id)"
                    )
            except StoreError:
                pass  # a read-only or busy database: the queries still work, only slower
            self._board_indexed = True

    def stage_totals(
        self, entity: str, pipeline_id: str, sum_field: str | None = None
    ) -> dict[str | None, StageTotal]:
        self._board_index()
        if sum_field is None:
            total_sql, params = "0.0", []
        else:
            path = f'$."{sum_field}"'  # field keys match ^[a-zA-Z0-9_.-]+$ (see sqlite._key_path)
            total_sql = (
                "TOTAL(CASE WHEN json_type(values_json, ?) IN ('integer', 'real') "
                "THEN json_extract(values_json, ?) END)"
            )
            params = [path, path]
        sql = (
            f"SELECT stage_id, COUNT(*), {total_sql} FROM entries "
            "WHERE entity = ? AND pipeline_id = ? GROUP BY stage_id"
        )
        with self._use() as conn:
            rows = conn.execute(sql, [*params, entity, pipeline_id]).fetchall()
        return {row[0]: StageTotal(count=int(row[1]), total=float(row[2])) for row in rows}

    def stage_cards(
        self, entity: str, pipeline_id: str, stage_ids: Sequence[str], limit: int
    ) -> dict[str, list[Entry]]:
        from .sqlite import _ENTRY_COLUMNS, _row_to_entry

        _check_limit(limit)
        self._board_index()
        sql = (
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE entity = ? AND pipeline_id = ? "
            "AND stage_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?"
        )
        out: dict[str, list[Entry]] = {}
        with self._use() as conn:
            for stage_id in dict.fromkeys(stage_ids):
                rows = conn.execute(sql, (entity, pipeline_id, stage_id, limit)).fetchall()
                out[stage_id] = [_row_to_entry(row) for row in rows]
        return out


class ElasticsearchBoards(BoardQueries):
    """`BoardQueries` as one search each (mixed into `ElasticsearchStore`): a ``terms``
    aggregation on ``stage_id`` with a ``nested`` → ``filter`` (``kv.k``) → ``sum``
    (``kv.n``) sub-aggregation for the totals, and ``top_hits`` for the cards. Like every
    search, they see refreshed writes, not a batch still buffered by the async writer."""

    if TYPE_CHECKING:
        from elasticsearch import Elasticsearch

        client: Elasticsearch
        _entries: str

        def _translate(self, what: str) -> AbstractContextManager[None]: ...

    def _pipeline_query(self, entity: str, pipeline_id: str) -> dict[str, Any]:
        return {
            "bool": {
                "filter": [{"term": {"entity": entity}}, {"term": {"pipeline_id": pipeline_id}}]
            }
        }

    def stage_totals(
        self, entity: str, pipeline_id: str, sum_field: str | None = None
    ) -> dict[str | None, StageTotal]:
        terms: dict[str, Any] = {"terms": {"field": "stage_id", "size": MAX_STAGES}}
        if sum_field is not None:
            terms["aggs"] = {
                "kv": {
                    "nested": {"path": "kv"},
                    "aggs": {
                        "field": {
                            "filter": {"term": {"kv.k": sum_field}},
                            "aggs": {"total": {"sum": {"field": "kv.n"}}},
                        }
                    },
                }
            }
        with self._translate("summing a pipeline's stages"):
            resp = self.client.search(
                index=self._entries,
                size=0,
                query=self._pipeline_query(entity, pipeline_id),
                aggs={"stages": terms},
            )
        out: dict[str | None, StageTotal] = {}
        for bucket in resp["aggregations"]["stages"]["buckets"]:
            total = 0.0
            if sum_field is not None:
                total = float(bucket["kv"]["field"]["total"]["value"] or 0.0)
            out[bucket["key"]] = StageTotal(count=int(bucket["doc_count"]), total=total)
        return out

    def stage_cards(
        self, entity: str, pipeline_id: str, stage_ids: Sequence[str], limit: int
    ) -> dict[str, list[Entry]]:
        _check_limit(limit)
        wanted = list(dict.fromkeys(stage_ids))
        out: dict[str, list[Entry]] = {stage_id: [] for stage_id in wanted}
        if not wanted:
            return out
        query = self._pipeline_query(entity, pipeline_id)
        query["bool"]["filter"].append({"terms": {"stage_id": wanted}})
        with self._translate("reading a pipeline's cards"):
            resp = self.client.search(
                index=self._entries,
                size=0,
                query=query,
                aggs={
                    "stages": {
                        "terms": {"field": "stage_id", "size": len(wanted)},
                        "aggs": {
                            "cards": {
                                "top_hits": {
                                    "size": limit,
                                    "sort": [{"updated_at": "desc"}, {"id": "desc"}],
                                }
                            }
                        },
                    }
                },
            )
        for bucket in resp["aggregations"]["stages"]["buckets"]:
            if bucket["key"] in out:
                hits = bucket["cards"]["hits"]["hits"]
                out[bucket["key"]] = [entry_from_dict(hit["_source"]) for hit in hits]
        return out
