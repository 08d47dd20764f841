"""Stage history records in the store (issue 12, item 3; see `crm_templates.stage_history`).

The contract is `StageHistoryStore` (mixed into `Store`): append records, read one entry's
records newest first. SQLite keeps them in the ``stage_history`` table (written inside the
caller's transaction, so a move and its record commit together); Elasticsearch/OpenSearch in
the ``<prefix>stage_history`` index (one bulk request per append, refreshed like every write).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import CrmValidationError, StoreError
from ..stage_history import StageChange

if TYPE_CHECKING:
    import sqlite3
    from contextlib import AbstractContextManager

_COLUMNS = (
    "id",
    "entry_id",
    "entity",
    "at",
    "from_pipeline_id",
    "from_stage_id",
    "to_pipeline_id",
    "to_stage_id",
    "actor",
)
SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS stage_history (
    id TEXT PRIMARY KEY,
    entry_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    at TEXT NOT NULL,
    from_pipeline_id TEXT,
    from_stage_id TEXT,
    to_pipeline_id TEXT,
    to_stage_id TEXT,
    actor TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_stage_history_entry ON stage_history (entry_id, at, id);
"""
_KEYWORD = {"type": "keyword"}
ES_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {name: _KEYWORD for name in _COLUMNS},
}


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise CrmValidationError(f"limit must be a whole number of at least 1; got {limit!r}")


class StageHistoryStore(ABC):
    """The stage-history part of the Store contract."""

    @abstractmethod
    def append_stage_changes(self, changes: Sequence[StageChange]) -> None:
        """Store new stage-change records (their ``id`` set by the caller)."""

    @abstractmethod
    def stage_history(self, entry_id: str, *, limit: int = 100) -> list[StageChange]:
        """The records of ``entry_id``, newest first (``at`` then ``id``), at most ``limit``."""


class SQLiteStageHistory(StageHistoryStore):
    """`StageHistoryStore` for `SQLiteStore`."""

    if TYPE_CHECKING:

        def _use(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def append_stage_changes(self, changes: Sequence[StageChange]) -> None:
        if not changes:
            return
        marks = ",".join("?" * len(_COLUMNS))
        with self._use() as conn:
            conn.executemany(
                f"INSERT INTO stage_history ({', '.join(_COLUMNS)}) VALUES ({marks})",
                [tuple(getattr(c, name) for name in _COLUMNS) for c in changes],
            )

    def stage_history(self, entry_id: str, *, limit: int = 100) -> list[StageChange]:
        _check_limit(limit)
        with self._use() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM stage_history WHERE entry_id = ? "
                "ORDER BY at DESC, id DESC LIMIT ?",
                (entry_id, limit),
            ).fetchall()
        return [StageChange.from_dict(dict(zip(_COLUMNS, row, strict=True))) for row in rows]


class ElasticsearchStageHistory(StageHistoryStore):
    """`StageHistoryStore` for `ElasticsearchStore` (index role ``stage_history``)."""

    if TYPE_CHECKING:
        indices: dict[str, str]
        client: Any
        url: str
        refresh: str

        def _translate(self, what: str) -> AbstractContextManager[None]: ...

    def append_stage_changes(self, changes: Sequence[StageChange]) -> None:
        if not changes:
            return
        index = self.indices["stage_history"]
        body: list[dict[str, Any]] = []
        for change in changes:
            body.append({"create": {"_index": index, "_id": change.id}})
            body.append(change.to_dict())
        with self._translate(f"recording {len(changes)} stage changes"):
            resp = self.client.bulk(operations=body, refresh=self.refresh)
        if resp.get("errors"):
            results = [next(iter(item.values())) for item in resp["items"]]
            failed = [r for r in results if int(r.get("status", 500)) >= 300]
            if failed:
                raise StoreError(f"recording stage changes on {self.url} failed: {failed[0]}")

    def stage_history(self, entry_id: str, *, limit: int = 100) -> list[StageChange]:
        _check_limit(limit)
        with self._translate(f"reading the stage history of {entry_id!r}"):
            resp = self.client.search(
                index=self.indices["stage_history"],
                query={"term": {"entry_id": entry_id}},
                sort=[{"at": "desc"}, {"id": "desc"}],
                size=limit,
                track_total_hits=False,
            )
        return [StageChange.from_dict(h["_source"]) for h in resp["hits"]["hits"]]
