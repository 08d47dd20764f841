"""The audit trail in the store (issue 12, item 1): the contract and both backends.

Append-only records of what operators did: ``id`` (time-ordered, ``aud_…``), ``at`` (ISO 8601
UTC with microseconds), ``operator_id``, ``action`` (``"value.edit"``, ``"operator.sign_in"``…),
``entry_id`` and ``entity`` (None when the action is not about one entry), ``details`` (a JSON
object). Nothing updates or deletes a record.

Lists are newest first, ordered by ``(at, id)``, and paged by keyset: ``before=(at, id)`` of
the last record shown gives the next page, so page 1,000 costs what page 1 costs.

* SQLite: the ``audit_records`` table (`SQLITE_SCHEMA`) with an index per way of reading it
  (all, per entry, per operator), each ending in ``(at, id)``.
* Elasticsearch / OpenSearch: the ``<prefix>audit`` index (`MAPPING`), ``search_after`` on
  ``[at, id]``; ``details`` is kept, not indexed.

The rules (what a valid record is) live in `crm_templates.audit`; this module only stores.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .es_parts import ElasticsearchParts

if TYPE_CHECKING:
    import sqlite3
    from contextlib import AbstractContextManager


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One recorded action (see the module docstring)."""

    id: str
    at: str
    operator_id: str
    action: str
    entry_id: str | None = None
    entity: str | None = None
    details: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def cursor(self) -> tuple[str, str]:
        """``(at, id)``: pass as ``before`` to list the records older than this one."""
        return (self.at, self.id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the stored document)."""
        return asdict(self)


def record_from_dict(data: dict[str, Any]) -> AuditRecord:
    """The record a stored document describes."""
    details = data.get("details")
    return AuditRecord(
        id=str(data["id"]),
        at=str(data["at"]),
        operator_id=str(data["operator_id"]),
        action=str(data["action"]),
        entry_id=data.get("entry_id"),
        entity=data.get("entity"),
        details=dict(details) if isinstance(details, dict) else {},
    )


class AuditStore(ABC):
    """The audit part of the `Store` interface (every backend implements it)."""

    @abstractmethod
    def add_audit_record(self, record: AuditRecord) -> None:
        """Append one record (ids are new: `DuplicateError` for a reused one)."""

    @abstractmethod
    def list_audit_records(
        self,
        *,
        entry_id: str | None = None,
        operator_id: str | None = None,
        before: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> list[AuditRecord]:
        """Up to ``limit`` records matching every given filter, newest first, older than
        ``before`` (an ``(at, id)`` cursor) when given."""


# --- SQLite ---------------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    action TEXT NOT NULL,
    entry_id TEXT,
    entity TEXT,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_audit_at ON audit_records (at, id);
CREATE INDEX IF NOT EXISTS ix_audit_entry ON audit_records (entry_id, at, id);
CREATE INDEX IF NOT EXISTS ix_audit_operator ON audit_records (operator_id, at, id);
"""
_COLUMNS = "id, at, operator_id, action, entry_id, entity, details"
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class SQLiteAudit(AuditStore):
    """`AuditStore` on the ``audit_records`` table of a `SQLiteStore`."""

    if TYPE_CHECKING:  # provided by SQLiteStore

        def _use(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def add_audit_record(self, record: AuditRecord) -> None:
        with self._use() as conn:
            conn.execute(
                f"INSERT INTO audit_records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.at, record.operator_id, record.action, record.entry_id,
                 record.entity, _encode(record.details)),
            )  # fmt: skip

    def list_audit_records(
        self,
        *,
        entry_id: str | None = None,
        operator_id: str | None = None,
        before: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> list[AuditRecord]:
        where: list[str] = []
        params: list[Any] = []
        if entry_id is not None:
            where.append("entry_id = ?")
            params.append(entry_id)
        if operator_id is not None:
            where.append("operator_id = ?")
            params.append(operator_id)
        if before is not None:
            where.append("(at, id) < (?, ?)")
            params.extend(before)
        sql = f"SELECT {_COLUMNS} FROM audit_records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        with self._use() as conn:
            rows = conn.execute(sql, [*params, limit]).fetchall()
        return [
            AuditRecord(
                id=row[0],
                at=row[1],
                operator_id=row[2],
                action=row[3],
                entry_id=row[4],
                entity=row[5],
                details=json.loads(row[6]),
            )
            for row in rows
        ]


# --- Elasticsearch / OpenSearch -------------------------------------------------------------

_KEYWORD = {"type": "keyword"}
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "id": _KEYWORD,
        "at": _KEYWORD,  # ISO 8601 UTC with microseconds sorts as a keyword
        "operator_id": _KEYWORD,
        "action": _KEYWORD,
        "entry_id": _KEYWORD,
        "entity": _KEYWORD,
        "details": {"type": "object", "enabled": False},
    },
}


class ElasticsearchAudit(AuditStore, ElasticsearchParts):
    """`AuditStore` on the ``<prefix>audit`` index of an `ElasticsearchStore`."""

    def add_audit_record(self, record: AuditRecord) -> None:
        from ..errors import DuplicateError

        with self._translate(f"recording audit action {record.action!r}", conflict=DuplicateError):
            self.client.create(
                index=self.indices["audit"],
                id=record.id,
                document=record.to_dict(),
                refresh=self.refresh,
            )

    def list_audit_records(
        self,
        *,
        entry_id: str | None = None,
        operator_id: str | None = None,
        before: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> list[AuditRecord]:
        if limit <= 0:
            return []
        filters: list[dict[str, Any]] = []
        if entry_id is not None:
            filters.append({"term": {"entry_id": entry_id}})
        if operator_id is not None:
            filters.append({"term": {"operator_id": operator_id}})
        body: dict[str, Any] = {
            "index": self.indices["audit"],
            "query": {"bool": {"filter": filters}} if filters else {"match_all": {}},
            "sort": [{"at": "desc"}, {"id": "desc"}],
            "size": limit,
            "track_total_hits": False,
        }
        if before is not None:
            body["search_after"] = list(before)
        with self._translate("reading the audit trail"):
            response = self.client.search(**body)
        return [record_from_dict(hit["_source"]) for hit in response["hits"]["hits"]]


__all__ = [
    "MAPPING",
    "SQLITE_SCHEMA",
    "AuditRecord",
    "AuditStore",
    "ElasticsearchAudit",
    "SQLiteAudit",
    "record_from_dict",
]
