"""Deleting an entry only at the version the caller saw (issue 13, item 4: ``DELETE
/api/crm/entries/{id}`` with ``If-Match``).

`Store.delete_entry_at_version` deletes the entry only if its stored version is still the one
given, in one atomic step — so an update landing between a client's read and its delete is not
deleted with it (a check of the version followed by a plain delete lets exactly that through;
found in the issue-13 attack review).

- SQLite: ``DELETE … WHERE id = ? AND version = ?`` in one transaction.
- Elasticsearch/OpenSearch: a realtime GET, then ``DELETE`` with that document's
  ``if_seq_no``/``if_primary_term`` (refused by the cluster if anything wrote the entry since).
  Inside `ElasticsearchStore.batch` the buffered entry's version is checked and the deletion
  buffered, as `delete_entry` does there.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..errors import ConflictError


class ConditionalDeleteStore(ABC):
    """The conditional-delete part of the `Store` interface (every backend implements it)."""

    @abstractmethod
    def delete_entry_at_version(self, entry_id: str, version: int) -> bool:
        """Delete the entry if its stored version is ``version``: True when deleted, False
        when there is no such entry; `ConflictError` (nothing deleted) when its version is
        another one."""


class SQLiteConditionalDelete(ConditionalDeleteStore):
    """`ConditionalDeleteStore` on a `SQLiteStore`'s ``entries`` table."""

    if TYPE_CHECKING:  # provided by SQLiteStore

        def atomic(self) -> AbstractContextManager[None]: ...

        def _use(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def delete_entry_at_version(self, entry_id: str, version: int) -> bool:
        with self.atomic(), self._use() as conn:
            gone = conn.execute(
                "DELETE FROM entries WHERE id = ? AND version = ?", (entry_id, version)
            ).rowcount
            if gone:
                return True
            row = conn.execute("SELECT version FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            return False
        raise ConflictError(
            f"entry {entry_id!r} is at version {row[0]}, not {version}: nothing was deleted"
        )


class ElasticsearchConditionalDelete(ConditionalDeleteStore):
    """`ConditionalDeleteStore` on an `ElasticsearchStore`'s entries index."""

    if TYPE_CHECKING:  # provided by ElasticsearchStore
        client: Any
        refresh: str
        _entries: str

        def _translate(self, what: str) -> AbstractContextManager[None]: ...

        def _get(
            self, index: str, doc_id: str, what: str, **params: Any
        ) -> dict[str, Any] | None: ...

        def _overlay(self) -> dict[str, Any] | None: ...

        def get_entry(self, entry_id: str) -> Any: ...

        def delete_entry(self, entry_id: str) -> bool: ...

    def delete_entry_at_version(self, entry_id: str, version: int) -> bool:
        what = f"deleting entry {entry_id!r} at version {version}"
        stale = f"entry {entry_id!r} is no longer at version {version}: nothing was deleted"
        if self._overlay() is not None:  # a batch: its buffered writes decide
            current = self.get_entry(entry_id)
            if current is None:
                return False
            if current.version != version:
                raise ConflictError(stale)
            return self.delete_entry(entry_id)
        found = self._get(self._entries, entry_id, what, source_includes=["version"])
        if found is None:
            return False
        if found["_source"].get("version") != version:
            raise ConflictError(stale)
        try:
            with self._translate(what):
                resp = self.client.options(ignore_status=404).delete(
                    index=self._entries,
                    id=entry_id,
                    if_seq_no=int(found["_seq_no"]),
                    if_primary_term=int(found["_primary_term"]),
                    refresh=self.refresh,
                )
        except ConflictError:
            raise ConflictError(stale) from None
        return bool(resp.body.get("result") == "deleted")
