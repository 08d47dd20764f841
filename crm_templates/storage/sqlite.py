"""The embedded SQLite backend (default).

WAL journal, one connection per thread, ``BEGIN IMMEDIATE`` for read-modify-write sections,
``synchronous=NORMAL`` (a committed transaction survives a killed process; only a power loss can
lose the last few). ``:memory:`` databases are shared by all threads through one connection
guarded by a lock, since each new in-memory connection would be a different database.

The schema is created with ``CREATE ... IF NOT EXISTS`` on every open, so a database file from an
earlier version gains the tables added since (``security_records``, issue 8) when it is opened.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import (
    BadRequestError,
    ConflictError,
    DuplicateError,
    EntryNotFoundError,
    StoreError,
    StoreUnavailable,
)
from ..model import (
    Customer,
    Entity,
    Entry,
    entity_from_dict,
    entity_to_dict,
)
from .api_keys import SQLITE_SCHEMA as _API_KEYS_SCHEMA
from .api_keys import SQLiteApiKeys
from .audit import SQLITE_SCHEMA as _AUDIT_SCHEMA
from .audit import SQLiteAudit
from .base import Store, not_text
from .boards import SQLiteBoards
from .conditional_delete import SQLiteConditionalDelete
from .entity_queries import SQLiteEntityQueries
from .history import SQLITE_SCHEMA as _HISTORY_SCHEMA
from .history import SQLiteStageHistory
from .listing import SQLITE_SCHEMA as _LISTING_SCHEMA
from .listing import SQLiteListing
from .operators import SQLITE_SCHEMA as _OPERATORS_SCHEMA
from .operators import SQLiteOperators
from .prefetch import SQLitePrefetch
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
from .session_state import SQLiteSessionState
from .sqlite_aggregations import SQLiteAggregations
from .sqlite_fork import track as _track_forks
from .webhooks import SQLITE_SCHEMA as _WEBHOOKS_SCHEMA
from .webhooks import SQLiteWebhooks

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    slug TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    email TEXT UNIQUE,
    first_name TEXT,
    last_name TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_customers_created ON customers (created_at, id);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL,
    reference_type TEXT NOT NULL,
    reference_id TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    pipeline_id TEXT,
    stage_id TEXT,
    values_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_entries_ref
    ON entries (entity, reference_type, reference_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_entries_customer
    ON entries (reference_type, reference_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_entries_entity ON entries (entity, created_at, id);
CREATE TABLE IF NOT EXISTS security_records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at REAL,
    generation INTEGER,
    hits TEXT,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS ix_security_records_expiry ON security_records (expires_at);
"""
_SCHEMA += _LISTING_SCHEMA + _HISTORY_SCHEMA

_ENTRY_COLUMNS = (
    "id, entity, reference_type, reference_id, title, pipeline_id, stage_id, values_json, "
    "created_at, updated_at, version"
)
_NEWEST_FIRST = " ORDER BY created_at DESC, id DESC"
_FILTER_KEYS = 2  # latest_values filters in SQL for this many keys or fewer


# json.dumps() with custom separators builds a new encoder per call; one shared encoder is
# several times cheaper on the write path.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_encode_str = json.encoder.encode_basestring  # what _encode does with a str (no ASCII escaping)
_NEWEST = (
    f"(SELECT id FROM entries WHERE entity = ? AND reference_type = ? AND reference_id = ?"
    f"{_NEWEST_FIRST} LIMIT 1)"
)
# merge_into_newest remembers the newest entry id of this many references (then starts over).
NEWEST_IDS_KEPT = 4096


def _json_value(value: Any) -> str:
    """``_encode(value)``, with the scalars a field write usually carries done directly (the
    encoder's generic path costs about a microsecond, a third of a forced write's Python)."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is float and value - value == 0.0:  # finite: NaN/inf keep the encoder's spelling
        return float.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    return _encode(value)


def _encode_values(values: dict[str, Any]) -> str:
    """``_encode(values)``, with an entry of one scalar value (an AddCrmFieldValue row, issue
    14 B3) done directly: the encoder's generic path for a dict costs about a microsecond."""
    if len(values) == 1:
        for key, value in values.items():
            kind = type(value)
            if type(key) is str and (
                kind is str or kind is bool or (kind is float and value - value == 0.0)
            ):
                return "{" + _encode_str(key) + ":" + _json_value(value) + "}"
    return _encode(values)


# Rows per multi-row INSERT: 256 rows × 11 columns stay under the 32,766 parameters SQLite
# allows since 3.32; before that, 64 rows stay under its 999. Fewer, larger statements matter
# for the async writer (issue 14, B3): every statement hands the interpreter lock back while it
# steps, and the writer then waits for a busy caller to hand it back.
ROWS_PER_INSERT = 256 if sqlite3.sqlite_version_info >= (3, 32) else 64


def _insert_chunks(count: int) -> list[int]:
    """Row counts of the INSERT statements for ``count`` rows: full `ROWS_PER_INSERT`
    statements, then the rest in powers of two (at most eight more statements, and only nine
    distinct statement texts to prepare and cache)."""
    sizes = [ROWS_PER_INSERT] * (count // ROWS_PER_INSERT)
    rest = count % ROWS_PER_INSERT
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int) -> str:
    return f"INSERT INTO entries ({_ENTRY_COLUMNS}) VALUES " + ",".join(
        ["(?,?,?,?,?,?,?,?,?,?,?)"] * rows
    )


@functools.lru_cache(maxsize=64)
def _merge_sql(keys: int) -> str:
    setters = ", ".join(["?, json(?)"] * keys)
    return (
        f"UPDATE entries SET values_json = json_set(values_json, {setters}), updated_at = ?, "
        f"version = version + 1 WHERE id = {_NEWEST} RETURNING id"
    )


@functools.lru_cache(maxsize=64)
def _merge_known_sql(keys: int) -> str:
    # The same merge when the newest entry's id is probably known: the subquery still decides
    # (another process may have added a newer entry), but without RETURNING the statement
    # needs no result table and no fetch — about 3 µs of a ~25 µs write.
    setters = ", ".join(["?, json(?)"] * keys)
    return (
        f"UPDATE entries SET values_json = json_set(values_json, {setters}), updated_at = ?, "
        f"version = version + 1 WHERE id = ? AND id = {_NEWEST}"
    )


def _key_path(key: str) -> str:
    # Field keys match ^[a-zA-Z0-9_.-]+$, so quoting the key makes dots literal.
    return f'$."{key}"'


def _row_to_entry(row: tuple[Any, ...]) -> Entry:
    return Entry(
        id=row[0],
        entity=row[1],
        reference_type=row[2],
        reference_id=row[3],
        title=row[4],
        pipeline_id=row[5],
        stage_id=row[6],
        values=json.loads(row[7]),
        created_at=row[8],
        updated_at=row[9],
        version=row[10],
    )


def _row_to_customer(row: tuple[Any, ...]) -> Customer:
    return Customer(id=row[0], email=row[1], first_name=row[2], last_name=row[3], created_at=row[4])


class _Use:
    """Context manager for one operation; a class because this is on every hot path."""

    __slots__ = ("store",)

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self.store
        if store._memory:
            store._lock.acquire()
        try:
            return store._conn()
        except BaseException:
            if store._memory:
                store._lock.release()
            raise

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.store._memory:
            self.store._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise self.store._translated(exc) from exc
        if isinstance(exc, UnicodeEncodeError):
            raise not_text(exc) from exc


class _Atomic:
    """``BEGIN IMMEDIATE`` … ``COMMIT``/``ROLLBACK``; nested uses join the outer transaction."""

    __slots__ = ("depth", "store")

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.depth = 0

    def __enter__(self) -> None:
        store = self.store
        local = store._local
        self.depth = getattr(local, "depth", 0)
        if self.depth:
            local.depth = self.depth + 1
            return
        if store._memory:
            store._lock.acquire()
        try:
            store._conn().execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            if store._memory:
                store._lock.release()
            if isinstance(exc, sqlite3.Error):
                raise store._translated(exc) from exc
            raise
        local.depth = 1

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        store = self.store
        store._local.depth = self.depth
        if self.depth:
            return
        conn = store._conn()
        try:
            conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        except sqlite3.Error as error:
            if exc_type is None:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise store._translated(error) from error
        finally:
            if store._memory:
                store._lock.release()


class SQLiteStore(
    SQLiteListing,
    SQLiteStageHistory,
    SQLiteEntityQueries,
    SQLiteBoards,
    SQLiteOperators,
    SQLiteAudit,
    SQLiteAggregations,
    SQLiteApiKeys,
    SQLitePrefetch,
    SQLiteWebhooks,
    SQLiteConditionalDelete,
    SQLiteSessionState,
    Store,
):
    """Store backed by one SQLite database file (or a shared in-memory database)."""

    merges_without_conflicts = True  # merge_into_newest is one UPDATE statement

    def __init__(self, path: str, *, timeout: float = 30.0) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._timeout = timeout
        self._memory = path == ":memory:" or path == ""
        self._local = threading.local()
        self._lock = threading.RLock()
        # Every connection opened, with the thread it belongs to (close() closes them all).
        self._conns: list[tuple[sqlite3.Connection, threading.Thread]] = []
        self._closed = False
        # (entity, reference_type, reference_id) -> the id merge_into_newest last merged into.
        self._newest_ids: dict[tuple[str, str, str], str] = {}
        with self._translate():
            first = self._connect()
            first.executescript(
                _SCHEMA + _OPERATORS_SCHEMA + _AUDIT_SCHEMA + _API_KEYS_SCHEMA + _WEBHOOKS_SCHEMA
            )
        self._shared = first if self._memory else None
        if not self._memory:
            self._local.conn = first
        _track_forks(self)  # a forked child opens its own connections

    # --- connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"store {self.url} is closed")
        conn = sqlite3.connect(
            ":memory:" if self._memory else self.path,
            timeout=self._timeout,
            isolation_level=None,  # explicit BEGIN/COMMIT only
            check_same_thread=False,
        )
        if not self._memory:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        with self._lock:
            # A server that starts a thread per request (Flask's development server, `flask
            # run`) would otherwise keep one open connection (and its file descriptors) per
            # request it ever served: close those of threads that have ended.
            ended = [c for c, thread in self._conns if not thread.is_alive()]
            self._conns = [(c, t) for c, t in self._conns if t.is_alive()]
            self._conns.append((conn, threading.current_thread()))
        for old in ended:
            try:
                old.close()
            except sqlite3.Error:
                pass
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._shared is not None:
            return self._shared
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _translated(self, exc: sqlite3.Error) -> StoreError:
        """The core's error for a sqlite3 error (the one place this translation happens)."""
        if isinstance(exc, sqlite3.IntegrityError):
            return DuplicateError(f"{self.url}: {exc}")
        if isinstance(exc, sqlite3.OperationalError):
            return StoreUnavailable(f"SQLite database {self.path!r} failed: {exc}")
        if isinstance(exc, sqlite3.ProgrammingError):
            return BadRequestError(f"{self.url}: {exc}")
        return StoreError(f"SQLite database {self.path!r} failed: {exc}")

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._translated(exc) from exc
        except UnicodeEncodeError as exc:
            raise not_text(exc) from exc

    def _use(self) -> _Use:
        """This thread's connection, with errors translated (and the lock held for :memory:)."""
        return _Use(self)

    def atomic(self) -> _Atomic:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (nested calls join the outer transaction)."""
        return _Atomic(self)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = [c for c, _ in self._conns], []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    # --- entities -------------------------------------------------------------------------

    def get_entity(self, slug: str) -> Entity | None:
        with self._use() as conn:
            row = conn.execute("SELECT data FROM entities WHERE slug = ?", (slug,)).fetchone()
        return entity_from_dict(json.loads(row[0])) if row else None

    def list_entities(self) -> list[Entity]:
        with self._use() as conn:
            rows = conn.execute("SELECT data FROM entities ORDER BY slug").fetchall()
        return [entity_from_dict(json.loads(r[0])) for r in rows]

    def create_entity(self, entity: Entity) -> None:
        try:
            with self.atomic(), self._use() as conn:
                conn.execute(
                    "INSERT INTO entities (slug, data, version) VALUES (?, ?, ?)",
                    (entity.slug, json.dumps(entity_to_dict(entity)), entity.version),
                )
        except DuplicateError:
            raise DuplicateError(f"entity {entity.slug!r} already exists") from None

    def update_entity(self, entity: Entity, expected_version: int) -> Entity:
        from ..model import replace

        stored = replace(entity, version=expected_version + 1)
        with self.atomic(), self._use() as conn:
            cur = conn.execute(
                "UPDATE entities SET data = ?, version = ? WHERE slug = ? AND version = ?",
                (json.dumps(entity_to_dict(stored)), stored.version, entity.slug, expected_version),
            )
        if cur.rowcount != 1:
            raise ConflictError(f"entity {entity.slug!r} was changed concurrently")
        return stored

    def delete_entity(self, slug: str) -> bool:
        with self.atomic(), self._use() as conn:
            return conn.execute("DELETE FROM entities WHERE slug = ?", (slug,)).rowcount > 0

    # --- customers ------------------------------------------------------------------------

    def create_customer(self, customer: Customer) -> None:
        with self.atomic(), self._use() as conn:
            conn.execute(
                "INSERT INTO customers (id, email, first_name, last_name, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    customer.id,
                    customer.email,
                    customer.first_name,
                    customer.last_name,
                    customer.created_at,
                ),
            )

    def update_customer(self, customer: Customer) -> None:
        with self.atomic(), self._use() as conn:
            conn.execute(
                "UPDATE customers SET email = ?, first_name = ?, last_name = ? WHERE id = ?",
                (customer.email, customer.first_name, customer.last_name, customer.id),
            )

    def get_customer(self, customer_id: str) -> Customer | None:
        with self._use() as conn:
            row = conn.execute(
                "SELECT id, email, first_name, last_name, created_at FROM customers WHERE id = ?",
                (customer_id,),
            ).fetchone()
        return _row_to_customer(row) if row else None

    def get_customer_by_email(self, email: str) -> Customer | None:
        with self._use() as conn:
            row = conn.execute(
                "SELECT id, email, first_name, last_name, created_at FROM customers "
                "WHERE email = ?",
                (email,),
            ).fetchone()
        return _row_to_customer(row) if row else None

    def list_customers(self, limit: int = 50, offset: int = 0) -> list[Customer]:
        with self._use() as conn:
            rows = conn.execute(
                "SELECT id, email, first_name, last_name, created_at FROM customers "
                "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        return [_row_to_customer(r) for r in rows]

    def count_customers(self) -> int:
        with self._use() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0])

    # --- entries --------------------------------------------------------------------------

    def insert_entries(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        with self.atomic(), self._use() as conn:
            # Rows go in multi-row INSERTs (issue 14, B3): executemany steps one row at a time
            # and hands the interpreter lock back on every row, so an async writer barely moved
            # while its caller was busy; one statement per run costs about a third less and
            # releases the lock once.
            start = 0
            for size in _insert_chunks(len(entries)):
                params: list[Any] = []
                add = params.extend  # one flat list, no tuple per row
                # In _ENTRY_COLUMNS order, built inline: no function call per row.
                for e in entries[start : start + size]:
                    add((e.id, e.entity, e.reference_type, e.reference_id, e.title,
                         e.pipeline_id, e.stage_id, _encode_values(e.values), e.created_at,
                         e.updated_at, e.version))  # fmt: skip
                conn.execute(_insert_sql(size), params)
                start += size

    def get_entries_by_ids(self, ids: Sequence[str]) -> dict[str, Entry]:
        unique = list(dict.fromkeys(ids))
        out: dict[str, Entry] = {}
        with self._use() as conn:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE id IN ({marks})", chunk
                ):
                    out[row[0]] = _row_to_entry(row)
        return out

    @staticmethod
    def _where(
        entity: str | None,
        reference_type: str | None,
        reference_id: str | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("entity", entity),
            ("reference_type", reference_type),
            ("reference_id", reference_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def find_entries(
        self,
        entity: str | None = None,
        reference_type: str | None = None,
        reference_id: str | None = None,
        *,
        has_key: str | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> list[Entry]:
        where, params = self._where(entity, reference_type, reference_id)
        if has_key is not None:
            where += (" AND " if where else " WHERE ") + "json_type(values_json, ?) IS NOT NULL"
            params.append(_key_path(has_key))
        sql = f"SELECT {_ENTRY_COLUMNS} FROM entries{where}{_NEWEST_FIRST}"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else limit, offset]
        with self._use() as conn:
            return [_row_to_entry(r) for r in conn.execute(sql, params)]

    def latest_values(
        self, entity: str, reference_type: str, reference_id: str, keys: Sequence[str]
    ) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        sql = (
            "SELECT values_json FROM entries WHERE entity = ? AND reference_type = ? "
            "AND reference_id = ?"
        )
        params = [entity, reference_type, reference_id]
        if len(wanted) <= _FILTER_KEYS:
            # A json_type filter lets SQLite skip rows without the key in C; SQLite 3.40
            # re-parses the JSON for every key it checks, so it only pays off for a few keys.
            sql += " AND (" + " OR ".join(["json_type(values_json, ?) IS NOT NULL"] * len(wanted))
            sql += ")"
            params += [_key_path(k) for k in wanted]
        sql += _NEWEST_FIRST
        found: dict[str, Any] = {}
        with self._use() as conn:
            cursor = conn.execute(sql, params)
            try:
                # Rows arrive newest first: stop as soon as every key has its newest value.
                remaining = set(wanted)
                for (values_json,) in cursor:
                    values = json.loads(values_json)
                    held = remaining.intersection(values)
                    if held:
                        for key in held:
                            found[key] = values[key]
                        remaining -= held
                        if not remaining:
                            break
            finally:
                cursor.close()
        return found

    def update_entry(self, entry: Entry, expected_version: int) -> Entry:
        stored = Entry(
            id=entry.id,
            entity=entry.entity,
            reference_type=entry.reference_type,
            reference_id=entry.reference_id,
            values=entry.values,
            title=entry.title,
            pipeline_id=entry.pipeline_id,
            stage_id=entry.stage_id,
            created_at=entry.created_at,
            updated_at=entry.updated_at,
            version=expected_version + 1,
        )
        values_json = _encode(stored.values)
        common = (stored.title, stored.pipeline_id, stored.stage_id, values_json, stored.updated_at,
                  stored.version)  # fmt: skip
        with self.atomic(), self._use() as conn:
            # Writing an indexed column costs index maintenance even when its value is the same,
            # so the usual update leaves the reference alone and only a reassign rewrites it.
            cur = conn.execute(
                "UPDATE entries SET title = ?, pipeline_id = ?, stage_id = ?, values_json = ?, "
                "updated_at = ?, version = ? WHERE id = ? AND version = ? "
                "AND reference_type = ? AND reference_id = ?",
                (*common, stored.id, expected_version, stored.reference_type, stored.reference_id),
            )
            if cur.rowcount != 1:
                cur = conn.execute(
                    "UPDATE entries SET title = ?, pipeline_id = ?, stage_id = ?, "
                    "values_json = ?, updated_at = ?, version = ?, reference_type = ?, "
                    "reference_id = ? WHERE id = ? AND version = ?",
                    (*common, stored.reference_type, stored.reference_id, stored.id,
                     expected_version),
                )  # fmt: skip
            if cur.rowcount != 1:
                exists = conn.execute("SELECT 1 FROM entries WHERE id = ?", (entry.id,)).fetchone()
                if exists:
                    raise ConflictError(f"entry {entry.id!r} was changed concurrently")
                raise EntryNotFoundError(f"entry {entry.id!r} no longer exists")
        return stored

    def merge_into_newest(
        self,
        entity: str,
        reference_type: str,
        reference_id: str,
        values: dict[str, Any],
        updated_at: str,
    ) -> str | None:
        # SetCrmField with force is the seed's fast path for sequential writes, so it is one
        # statement: find the newest entry, merge with json_set, bump the version. fetchall()
        # steps the statement to its end, so the autocommit transaction commits at once.
        # The id it found last time for this reference is tried first (issue 14, B2): the
        # statement only updates it if it is still the newest, else the full merge runs.
        if len(values) == 1:  # the usual SetCrmField: no loop, no list growing
            for key, value in values.items():
                params = [_key_path(key), _json_value(value), updated_at]
        else:
            params = []
            for key, value in values.items():
                params += [_key_path(key), _json_value(value)]
            params.append(updated_at)
        scope = (entity, reference_type, reference_id)
        newest = self._newest_ids
        known = newest.get(scope)
        if known is not None:
            sql = _merge_known_sql(len(values))
            args = [*params, known, *scope]
            if self._shared is None:
                # A file database: this thread's connection, no lock to take, the errors
                # translated as `_use` does (its context manager is a tenth of this write's
                # Python).
                try:
                    hit = self._conn().execute(sql, args).rowcount == 1
                except sqlite3.Error as exc:
                    raise self._translated(exc) from exc
                except UnicodeEncodeError as exc:
                    raise not_text(exc) from exc
            else:
                with self._use() as conn:
                    hit = conn.execute(sql, args).rowcount == 1
            if hit:
                return known
        with self._use() as conn:
            rows = conn.execute(_merge_sql(len(values)), [*params, *scope]).fetchall()
        if not rows:
            newest.pop(scope, None)
            return None
        ident = str(rows[0][0])
        if len(newest) >= NEWEST_IDS_KEPT:
            newest.clear()  # bounded memory (issue 14, M1); a miss only costs the full merge
        newest[scope] = ident
        return ident

    def delete_entries(
        self, entity: str, reference_type: str | None = None, reference_id: str | None = None
    ) -> int:
        where, params = self._where(entity, reference_type, reference_id)
        with self.atomic(), self._use() as conn:
            return int(conn.execute(f"DELETE FROM entries{where}", params).rowcount)

    def delete_entry(self, entry_id: str) -> bool:
        with self.atomic(), self._use() as conn:
            return conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,)).rowcount > 0

    def count_entries(
        self,
        entity: str | None = None,
        reference_type: str | None = None,
        reference_id: str | None = None,
    ) -> int:
        where, params = self._where(entity, reference_type, reference_id)
        with self._use() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM entries{where}", params).fetchone()[0])

    def iter_entries(self, entity: str | None = None, batch_size: int = 500) -> Iterator[Entry]:
        # Keyset pagination on (created_at, id): no long-lived cursor, safe with writers.
        after: tuple[str, str] = ("", "")
        base_where, base_params = self._where(entity, None, None)
        joiner = " AND " if base_where else " WHERE "
        while True:
            sql = (
                f"SELECT {_ENTRY_COLUMNS} FROM entries{base_where}{joiner}(created_at, id) > (?, ?)"
                " ORDER BY created_at, id LIMIT ?"
            )
            with self._use() as conn:
                rows = conn.execute(sql, [*base_params, *after, batch_size]).fetchall()
            if not rows:
                return
            for row in rows:
                yield _row_to_entry(row)
            after = (rows[-1][8], rows[-1][0])

    # --- security records (issue 8; see storage/security.py) ------------------------------
    # Claims and generations are one upsert each (atomic on its own); a rate-limit hit reads
    # and rewrites the key's record inside BEGIN IMMEDIATE, which serialises it against every
    # other connection to the file.

    def claim_token(self, key: str, expires_at: float) -> bool:
        key, until = check_key(key), check_time(expires_at, "expires_at")
        with self._use() as conn:
            rows = conn.execute(
                "INSERT INTO security_records (kind, key, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE security_records.expires_at <= ? RETURNING 1",
                (CLAIM, key, until, time.time()),
            ).fetchall()
        return bool(rows)

    def is_token_claimed(self, key: str) -> bool:
        key = check_key(key)
        with self._use() as conn:
            row = conn.execute(
                "SELECT 1 FROM security_records WHERE kind = ? AND key = ? AND expires_at > ?",
                (CLAIM, key, time.time()),
            ).fetchone()
        return row is not None

    def _rate_hits(self, conn: sqlite3.Connection, key: str) -> tuple[list[float], float | None]:
        row = conn.execute(
            "SELECT hits, expires_at FROM security_records WHERE kind = ? AND key = ?",
            (HITS, key),
        ).fetchone()
        return (json.loads(row[0]), row[1]) if row else ([], None)

    def hit_rate_limit(self, key: str, limit: int, window: float) -> bool:
        key, limit, window = check_key(key), check_limit(limit), check_window(window)
        with self.atomic(), self._use() as conn:
            hits, expires_at = self._rate_hits(conn, key)
            updated = next_hits(hits, expires_at, time.time(), limit, window)
            if updated is None:
                return False
            conn.execute(
                "INSERT INTO security_records (kind, key, hits, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET hits = excluded.hits, "
                "expires_at = excluded.expires_at",
                (HITS, key, _encode(updated[0]), updated[1]),
            )
        return True

    def count_rate_hits(self, key: str, window: float) -> int:
        key, window = check_key(key), check_window(window)
        with self._use() as conn:
            hits, _ = self._rate_hits(conn, key)
        return len(recent(hits, time.time(), window))

    def clear_rate_hits(self, key: str) -> None:
        key = check_key(key)
        with self._use() as conn:
            conn.execute("DELETE FROM security_records WHERE kind = ? AND key = ?", (HITS, key))

    def session_generation(self, key: str) -> int:
        key = check_key(key)
        with self._use() as conn:
            row = conn.execute(
                "SELECT generation FROM security_records WHERE kind = ? AND key = ?",
                (GENERATION, key),
            ).fetchone()
        return int(row[0]) if row else 0

    def bump_session_generation(self, key: str) -> int:
        key = check_key(key)
        with self._use() as conn:
            rows = conn.execute(
                "INSERT INTO security_records (kind, key, generation) VALUES (?, ?, 1) "
                "ON CONFLICT (kind, key) DO UPDATE SET generation = generation + 1 "
                "RETURNING generation",
                (GENERATION, key),
            ).fetchall()
        return int(rows[0][0])

    def purge_security_records(self, now: float | None = None) -> int:
        at = now_or(now)
        with self._use() as conn:
            return int(
                conn.execute(
                    "DELETE FROM security_records WHERE kind IN (?, ?) AND expires_at <= ?",
                    (*EXPIRING_KINDS, at),
                ).rowcount
            )
