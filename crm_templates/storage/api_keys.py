"""API keys in the store (issue 13, item 3): the contract and both backends.

A key is one record: the public `ApiKey` (``id`` ``key_…``, ``name``, ``scope``, the times as
Unix seconds, ``rate_limit`` per minute, the non-secret ``prefix``) plus ``secret_hash``, the
hash of the whole key (`crm_templates.api_keys` makes and checks it; the store never sees a
key). Next to each key the store keeps its *usage window*: the start of the current one-minute
rate-limit window and how many requests were counted in it (`hit_api_key_window`).

* SQLite: the ``api_keys`` table and the ``api_key_windows`` table (one row per key), created
  on open like every table. Counting a hit is one ``INSERT … ON CONFLICT DO UPDATE …
  RETURNING`` statement, atomic across threads and processes sharing the file.
* Elasticsearch / OpenSearch: the ``<prefix>api_keys`` index holds both kinds of document
  (``kind`` ``"key"`` with ``_id`` the key id, ``kind`` ``"window"`` with ``_id``
  ``window:<key id>``). Reads are realtime GETs; a hit is a compare-and-set
  (``if_seq_no``/``if_primary_term``, or ``op_type=create`` for the first), retried.

Nothing here caches: every authentication reads the key, so revoking it takes effect in every
process at once.

`ApiKeyStore` is part of the `Store` interface; `SQLiteApiKeys` and `ElasticsearchApiKeys` are
mixed into the two backends.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..conflicts import deadline_of, rounds
from ..errors import ConflictError, DuplicateError, StoreUnavailable
from .es_parts import ElasticsearchParts

if TYPE_CHECKING:
    import sqlite3
    from contextlib import AbstractContextManager


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One API key as shown and logged: everything but the secret and its hash.

    ``created_at``, ``last_used_at`` and ``revoked_at`` are Unix seconds (floats; the last two
    None when not yet); ``last_used_at`` is kept to within a minute (it is written with the
    first request of each rate-limit window). ``rate_limit`` is requests per minute.
    ``prefix`` is the first characters of the key (``crm_live_`` and part of the id, nothing
    of the secret part), so operators can tell keys apart.
    """

    id: str
    name: str
    scope: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    rate_limit: int
    prefix: str

    @property
    def revoked(self) -> bool:
        """Whether the key has been revoked (it authenticates nothing any more)."""
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no secret in it: there is none to include)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored key: the public part and the hash of the key (``sha256:<hex>``)."""

    key: ApiKey
    secret_hash: str


def _key_from(data: dict[str, Any]) -> ApiKey:
    def when(value: Any) -> float | None:
        return None if value is None else float(value)

    return ApiKey(
        id=str(data["id"]),
        name=str(data["name"]),
        scope=str(data["scope"]),
        created_at=float(data["created_at"]),
        last_used_at=when(data.get("last_used_at")),
        revoked_at=when(data.get("revoked_at")),
        rate_limit=int(data["rate_limit"]),
        prefix=str(data["prefix"]),
    )


class ApiKeyStore(ABC):
    """The API-key part of the `Store` interface (every backend implements it)."""

    @abstractmethod
    def create_api_key(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key; `DuplicateError` when its id is taken."""

    @abstractmethod
    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The stored key with this id (with its hash), or None. One read, never cached."""

    @abstractmethod
    def list_api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""

    @abstractmethod
    def revoke_api_key(self, key_id: str, revoked_at: float) -> ApiKey | None:
        """Mark the key revoked at ``revoked_at`` (Unix seconds) unless it already is (then
        its first revocation time stays); the key as it now is, or None when there is none."""

    @abstractmethod
    def touch_api_key(self, key_id: str, used_at: float) -> None:
        """Set the key's ``last_used_at`` to ``used_at`` unless it is later already (a key
        that does not exist is ignored)."""

    @abstractmethod
    def hit_api_key_window(self, key_id: str, window_start: int, limit: int) -> int:
        """Count one request of the key in the window starting at ``window_start`` (whole
        Unix seconds) unless ``limit`` requests are counted in it already; the count in that
        window with this request (``limit + 1`` when it was refused and nothing was written,
        so a key hammering past its limit costs reads, not writes).

        A window later than the stored one starts again at 1; an earlier one (a process whose
        clock lags) counts in the stored, newer window. Atomic: N hits from any number of
        threads and processes raise the count by exactly N (up to ``limit``).
        """


# --- SQLite ---------------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    prefix TEXT NOT NULL,
    rate_limit INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS api_key_windows (
    key_id TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    hits INTEGER NOT NULL
);
"""
_COLUMNS = "id, name, scope, created_at, last_used_at, revoked_at, rate_limit, prefix"


def _row_key(row: tuple[Any, ...]) -> ApiKey:
    return _key_from(dict(zip(_COLUMNS.split(", "), row, strict=True)))


class SQLiteApiKeys(ApiKeyStore):
    """`ApiKeyStore` on the ``api_keys`` and ``api_key_windows`` tables of a `SQLiteStore`."""

    if TYPE_CHECKING:  # provided by SQLiteStore

        def _use(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def create_api_key(self, key: ApiKey, secret_hash: str) -> None:
        with self._use() as conn:
            conn.execute(
                f"INSERT INTO api_keys ({_COLUMNS}, secret_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key.id, key.name, key.scope, key.created_at, key.last_used_at, key.revoked_at,
                 key.rate_limit, key.prefix, secret_hash),
            )  # fmt: skip

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        with self._use() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS}, secret_hash FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
        return None if row is None else ApiKeyRecord(_row_key(row[:-1]), str(row[-1]))

    def list_api_keys(self) -> list[ApiKey]:
        with self._use() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id"
            ).fetchall()
        return [_row_key(row) for row in rows]

    def revoke_api_key(self, key_id: str, revoked_at: float) -> ApiKey | None:
        with self._use() as conn:
            row = conn.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? "
                f"RETURNING {_COLUMNS}",
                (revoked_at, key_id),
            ).fetchone()
        return None if row is None else _row_key(row)

    def touch_api_key(self, key_id: str, used_at: float) -> None:
        with self._use() as conn:
            conn.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? "
                "AND (last_used_at IS NULL OR last_used_at < ?)",
                (used_at, key_id, used_at),
            )

    def hit_api_key_window(self, key_id: str, window_start: int, limit: int) -> int:
        # One statement: SQLite runs it in its own write transaction, so concurrent hits from
        # other connections (threads, processes) serialise on the database's write lock. The
        # SET and WHERE expressions see the row as it was before this statement; when the
        # WHERE is false nothing is written and no row is returned.
        with self._use() as conn:
            row = conn.execute(
                "INSERT INTO api_key_windows (key_id, window_start, hits) VALUES (?, ?, 1) "
                "ON CONFLICT (key_id) DO UPDATE SET "
                "hits = CASE WHEN excluded.window_start > window_start THEN 1 "
                "ELSE hits + 1 END, "
                "window_start = MAX(window_start, excluded.window_start) "
                "WHERE excluded.window_start > window_start OR hits < ? "
                "RETURNING hits",
                (key_id, int(window_start), int(limit)),
            ).fetchone()
        return int(limit) + 1 if row is None else int(row[0])


# --- Elasticsearch / OpenSearch -------------------------------------------------------------

_KEYWORD = {"type": "keyword"}
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "kind": _KEYWORD,
        "id": _KEYWORD,
        "name": {"type": "keyword", "index": False},
        "scope": _KEYWORD,
        "secret_hash": {"type": "keyword", "index": False},
        "prefix": {"type": "keyword", "index": False},
        "rate_limit": {"type": "long"},
        "created_at": {"type": "double"},
        "last_used_at": {"type": "double"},
        "revoked_at": {"type": "double"},
        "window_start": {"type": "long"},
        "hits": {"type": "long"},
    },
}
_MAX_KEYS = 10_000  # one search page lists them all (a site has a handful)
# A process's threads counting hits of the same key take turns (fewer lost rounds); other keys
# and other processes are not held up by them (processes race by compare-and-set).
_WINDOW_LOCKS = [threading.Lock() for _ in range(64)]


class ElasticsearchApiKeys(ApiKeyStore, ElasticsearchParts):
    """`ApiKeyStore` on the ``<prefix>api_keys`` index of an `ElasticsearchStore`."""

    def create_api_key(self, key: ApiKey, secret_hash: str) -> None:
        document = {"kind": "key", **key.to_dict(), "secret_hash": secret_hash}
        with self._translate(f"creating API key {key.id!r}", conflict=DuplicateError):
            self.client.create(
                index=self.indices["api_keys"], id=key.id, document=document, refresh=self.refresh
            )

    def _key_doc(self, key_id: str, what: str) -> dict[str, Any] | None:
        if not key_id or key_id.startswith("window:"):
            return None
        found = self._get(self.indices["api_keys"], key_id, what)
        if found is None or found["_source"].get("kind") != "key":
            return None
        return found

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        found = self._key_doc(key_id, "reading an API key")
        if found is None:
            return None
        source = found["_source"]
        return ApiKeyRecord(_key_from(source), str(source["secret_hash"]))

    def list_api_keys(self) -> list[ApiKey]:
        hits = self._hits(
            self.indices["api_keys"],
            {"term": {"kind": "key"}},
            [{"created_at": "asc"}, {"id": "asc"}],
            size=_MAX_KEYS,
            what="listing API keys",
            source_excludes=["secret_hash"],
        )
        return [_key_from(hit["_source"]) for hit in hits]

    def _update_key(
        self, key_id: str, what: str, change: Any
    ) -> ApiKey | None:  # change: source -> new source, or None for "leave as is"
        index = self.indices["api_keys"]
        deadline = deadline_of(self)
        for _ in rounds(deadline):  # the search backend's compare-and-set rule (issue 14)
            current = self._key_doc(key_id, what)
            if current is None:
                return None
            source = change(dict(current["_source"]))
            if source is None:
                return _key_from(current["_source"])
            try:
                with self._translate(what):
                    self.client.index(
                        index=index,
                        id=key_id,
                        document=source,
                        if_seq_no=current["_seq_no"],
                        if_primary_term=current["_primary_term"],
                        refresh=self.refresh,
                    )
            except ConflictError:
                continue
            return _key_from(source)
        raise StoreUnavailable(
            f"{what} on {self.url}: other writers kept winning the compare-and-set for the "
            f"store's conflict_deadline ({deadline:g} s); try again"
        )

    def revoke_api_key(self, key_id: str, revoked_at: float) -> ApiKey | None:
        def revoke(source: dict[str, Any]) -> dict[str, Any] | None:
            if source.get("revoked_at") is not None:
                return None
            return {**source, "revoked_at": float(revoked_at)}

        return self._update_key(key_id, f"revoking API key {key_id!r}", revoke)

    def touch_api_key(self, key_id: str, used_at: float) -> None:
        def touch(source: dict[str, Any]) -> dict[str, Any] | None:
            last = source.get("last_used_at")
            if last is not None and last >= used_at:
                return None
            return {**source, "last_used_at": float(used_at)}

        self._update_key(key_id, f"noting the use of API key {key_id!r}", touch)

    def hit_api_key_window(self, key_id: str, window_start: int, limit: int) -> int:
        index, doc_id = self.indices["api_keys"], f"window:{key_id}"
        what = f"counting a request of API key {key_id!r}"
        start, deadline = int(window_start), deadline_of(self)
        with _WINDOW_LOCKS[hash(key_id) % len(_WINDOW_LOCKS)]:
            document: dict[str, Any]
            # Another process winning a round means: back off (full jitter) and read again,
            # until the store's conflict_deadline (`crm_templates.conflicts`, issue 14): under
            # a burst on one key some writer wins every round, but not always us.
            for _ in rounds(deadline):
                current = self._get(index, doc_id, what)
                if current is None:
                    document = {"kind": "window", "id": key_id, "window_start": start, "hits": 1}
                else:
                    old = current["_source"]
                    if start > int(old["window_start"]):
                        document = {**old, "window_start": start, "hits": 1}
                    elif int(old["hits"]) >= limit:
                        return int(limit) + 1  # full: refused without a write
                    else:
                        document = {**old, "hits": int(old["hits"]) + 1}
                try:
                    with self._translate(what):
                        if current is None:
                            self.client.create(
                                index=index, id=doc_id, document=document, refresh=self.refresh
                            )
                        else:
                            self.client.index(
                                index=index,
                                id=doc_id,
                                document=document,
                                if_seq_no=current["_seq_no"],
                                if_primary_term=current["_primary_term"],
                                refresh=self.refresh,
                            )
                except (ConflictError, DuplicateError):
                    continue
                return int(document["hits"])
        raise StoreUnavailable(
            f"{what} on {self.url}: other writers kept winning the compare-and-set for the "
            f"store's conflict_deadline ({deadline:g} s); try again"
        )


__all__ = [
    "MAPPING",
    "SQLITE_SCHEMA",
    "ApiKey",
    "ApiKeyRecord",
    "ApiKeyStore",
    "ElasticsearchApiKeys",
    "SQLiteApiKeys",
]
