"""Security records on Elasticsearch / OpenSearch: the ``<prefix>security`` index (issue 8).

One document per ``(kind, key)`` (see `crm_templates.storage.security`), its id a SHA-256 of
both, so any key fits the 512-byte id limit; the key itself is kept in the ``key`` field for
operators. Every change is a compare-and-set: ``op_type=create`` for a new document, else
``if_seq_no`` / ``if_primary_term`` on the version just read with a realtime GET — no
server-side scripts (SPEC §9). A refused write means another writer got there first: the
operation reads again and decides again after a jittered exponential backoff, until the store's
``conflict_deadline`` passes (`crm_templates.conflicts.rounds`; issue 14 item 3: a fixed count of
rounds ran out under contention).
Within one process, sections on one key are serialised by a lock, so only other processes
can make a compare-and-set fail. Writes refresh like the rest of the store, so `purge` (a
``delete_by_query``) sees them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING, Any

from ..conflicts import rounds
from ..errors import ConflictError, StoreUnavailable
from .security import (
    CLAIM,
    EXPIRING_KINDS,
    GENERATION,
    HITS,
    check_key,
    check_limit,
    check_time,
    check_window,
    next_hits,
    now_or,
    recent,
)

if TYPE_CHECKING:
    from .elasticsearch import ElasticsearchStore

MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "kind": {"type": "keyword"},
        "key": {"type": "keyword"},
        "expires_at": {"type": "double"},
        "generation": {"type": "long"},
        "hits": {"type": "double", "index": False},
    },
}
_LOCK_STRIPES = 64


def _doc_id(kind: str, key: str) -> str:
    return f"{kind}-{hashlib.sha256(key.encode()).hexdigest()}"


class SecurityIndex:
    """The security-record operations of an `ElasticsearchStore` (which delegates to it)."""

    def __init__(self, store: ElasticsearchStore) -> None:
        self.store = store
        self.index = store.indices["security"]
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    # --- documents ------------------------------------------------------------------------

    def _lock(self, doc_id: str) -> threading.Lock:
        return self._locks[int(doc_id[-8:], 16) % _LOCK_STRIPES]

    def _read(self, doc_id: str, what: str) -> dict[str, Any] | None:
        """The document as a realtime GET sees it (``_source``, ``_seq_no``, …), or None."""
        return self.store._get(self.index, doc_id, what)

    def _write(
        self, doc_id: str, doc: dict[str, Any], current: dict[str, Any] | None, what: str
    ) -> bool:
        """Create ``doc`` (``current`` None) or replace ``current`` if unchanged since read.

        False when another writer got there first (the caller reads again).
        """
        store = self.store
        try:
            with store._translate(what):
                if current is None:
                    store.client.create(
                        index=self.index, id=doc_id, document=doc, refresh=store.refresh
                    )
                else:
                    store.client.index(
                        index=self.index,
                        id=doc_id,
                        document=doc,
                        if_seq_no=current["_seq_no"],
                        if_primary_term=current["_primary_term"],
                        refresh=store.refresh,
                    )
        except ConflictError:
            return False
        return True

    def _contended(self, what: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"{what} on {self.store.url}: other writers kept winning the compare-and-set for "
            f"the store's conflict_deadline ({self.store.conflict_deadline:g} s); try again"
        )

    # --- claims ---------------------------------------------------------------------------

    def claim_token(self, key: str, expires_at: float) -> bool:
        key, until = check_key(key), check_time(expires_at, "expires_at")
        doc_id, what = _doc_id(CLAIM, key), "claiming a token"
        doc = {"kind": CLAIM, "key": key, "expires_at": until}
        with self._lock(doc_id):
            current = None  # try to create first: a fresh key needs one request
            for _ in rounds(self.store.conflict_deadline):
                if self._write(doc_id, doc, current, what):
                    return True
                current = self._read(doc_id, what)
                if current is not None and current["_source"]["expires_at"] > time.time():
                    return False
                # Gone (purged) or expired: create again, or replace the expired claim.
        raise self._contended(what)

    def is_token_claimed(self, key: str) -> bool:
        current = self._read(_doc_id(CLAIM, check_key(key)), "checking a token")
        return current is not None and current["_source"]["expires_at"] > time.time()

    # --- rate limits ----------------------------------------------------------------------

    def hit_rate_limit(self, key: str, limit: int, window: float) -> bool:
        key, limit, window = check_key(key), check_limit(limit), check_window(window)
        doc_id, what = _doc_id(HITS, key), "recording a rate-limit hit"
        with self._lock(doc_id):
            for _ in rounds(self.store.conflict_deadline):
                current = self._read(doc_id, what)
                source = {} if current is None else current["_source"]
                updated = next_hits(
                    source.get("hits", []), source.get("expires_at"), time.time(), limit, window
                )
                if updated is None:
                    return False
                doc = {"kind": HITS, "key": key, "hits": updated[0], "expires_at": updated[1]}
                if self._write(doc_id, doc, current, what):
                    return True
        raise self._contended(what)

    def count_rate_hits(self, key: str, window: float) -> int:
        key, window = check_key(key), check_window(window)
        current = self._read(_doc_id(HITS, key), "counting rate-limit hits")
        if current is None:
            return 0
        return len(recent(current["_source"].get("hits", []), time.time(), window))

    def clear_rate_hits(self, key: str) -> None:
        store = self.store
        with store._translate("clearing rate-limit hits"):
            store.client.options(ignore_status=404).delete(
                index=self.index, id=_doc_id(HITS, check_key(key)), refresh=store.refresh
            )

    # --- session generations --------------------------------------------------------------

    def session_generation(self, key: str) -> int:
        current = self._read(_doc_id(GENERATION, check_key(key)), "reading a session generation")
        return 0 if current is None else int(current["_source"]["generation"])

    def bump_session_generation(self, key: str) -> int:
        key = check_key(key)
        doc_id, what = _doc_id(GENERATION, key), "bumping a session generation"
        with self._lock(doc_id):
            for _ in rounds(self.store.conflict_deadline):
                current = self._read(doc_id, what)
                generation = 1 + (0 if current is None else int(current["_source"]["generation"]))
                doc = {"kind": GENERATION, "key": key, "generation": generation}
                if self._write(doc_id, doc, current, what):
                    return generation
        raise self._contended(what)

    # --- housekeeping ---------------------------------------------------------------------

    def purge(self, now: float | None = None) -> int:
        """One ``delete_by_query``; a record rewritten meanwhile is skipped (it is live)."""
        store, at = self.store, now_or(now)
        query = {
            "bool": {
                "filter": [
                    {"terms": {"kind": list(EXPIRING_KINDS)}},
                    {"range": {"expires_at": {"lte": at}}},
                ]
            }
        }
        with store._translate("purging security records"):
            resp = store.client.delete_by_query(
                index=self.index, query=query, refresh=True, conflicts="proceed"
            )
        return int(resp.get("deleted", 0))


__all__ = ["MAPPING", "SecurityIndex"]
