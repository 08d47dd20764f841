"""A signed-in session's two security records in one store round trip (issue 14, B5).

Every page request of a signed-in customer (and of an operator) asks the store whether its
session id was revoked (a ``claim`` record) and what its owner's session generation is (a
``generation`` record; see `crm_templates.storage.security`). `SessionStateStore.session_state`
answers both at once:

* SQLite: one ``SELECT`` of two scalar subqueries on ``security_records``.
* Elasticsearch / OpenSearch: one realtime ``_mget`` of the two documents of the
  ``<prefix>security`` index.

Nothing is cached: a revocation or a bumped generation written by any process is seen by the
next request of every process (issue 8, item 4).

`SessionStateStore` is part of the `Store` interface; `SQLiteSessionState` and
`ElasticsearchSessionState` are mixed into the two backends.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from .security import CLAIM, GENERATION, check_key

if TYPE_CHECKING:
    import sqlite3
    from contextlib import AbstractContextManager

    from ..errors import StoreError
    from .elasticsearch_security import SecurityIndex


class SessionStateStore(ABC):
    """The session check's read (the page server's `sessions.is_current`)."""

    @abstractmethod
    def session_state(self, claim_key: str, generation_key: str) -> tuple[bool, int]:
        """``(is_token_claimed(claim_key), session_generation(generation_key))``, read together:
        whether an unexpired claim on ``claim_key`` exists, and ``generation_key``'s current
        generation (0 if never bumped). Keys as for those methods (`CrmValidationError` for a
        key that is not a string of 1 to 512 characters)."""


class SQLiteSessionState(SessionStateStore):
    """`SessionStateStore` on the ``security_records`` table of a `SQLiteStore`."""

    if TYPE_CHECKING:  # provided by SQLiteStore

        def _use(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def session_state(self, claim_key: str, generation_key: str) -> tuple[bool, int]:
        claim_key, generation_key = check_key(claim_key), check_key(generation_key)
        with self._use() as conn:
            claimed, generation = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM security_records WHERE kind = ? AND key = ? "
                "AND expires_at > ?), (SELECT generation FROM security_records "
                "WHERE kind = ? AND key = ?)",
                (CLAIM, claim_key, time.time(), GENERATION, generation_key),
            ).fetchone()
        return bool(claimed), 0 if generation is None else int(generation)


class ElasticsearchSessionState(SessionStateStore):
    """`SessionStateStore` on the ``<prefix>security`` index of an `ElasticsearchStore`."""

    if TYPE_CHECKING:  # provided by ElasticsearchStore
        client: Any
        _security: SecurityIndex

        def _translate(
            self, what: str, conflict: type[StoreError] = ...
        ) -> AbstractContextManager[None]: ...

    def session_state(self, claim_key: str, generation_key: str) -> tuple[bool, int]:
        from .elasticsearch_security import _doc_id

        claim_key, generation_key = check_key(claim_key), check_key(generation_key)
        ids = [_doc_id(CLAIM, claim_key), _doc_id(GENERATION, generation_key)]
        with self._translate("reading a session's state"):
            docs = self.client.mget(index=self._security.index, ids=ids)["docs"]
        claim, generation = docs
        claimed = bool(claim.get("found")) and claim["_source"]["expires_at"] > time.time()
        current = int(generation["_source"]["generation"]) if generation.get("found") else 0
        return claimed, current
