"""Operator accounts in the store (issue 12, item 1): the contract and both backends.

An account is one record: ``id`` (``op_…``, time-ordered), ``email`` (the sign-in name, lower
case, unique), ``password_hash`` (a Werkzeug hash string — the KDF lives in
`crm_templates.operators`; the store never sees a password) and ``created_at`` /
``updated_at`` (ISO 8601 UTC strings).

* SQLite: the ``operators`` table (`SQLITE_SCHEMA`, created on open like every table),
  the email ``UNIQUE``.
* Elasticsearch / OpenSearch: the ``<prefix>operators`` index (`MAPPING`), one document per
  account whose ``_id`` is the email, so ``op_type=create`` keeps emails unique without a
  second claim document; look-ups by id are a ``term`` query (writes refresh, so they see
  every write at once).

`OperatorStore` is part of the `Store` interface; `SQLiteOperators` and
`ElasticsearchOperators` are mixed into the two backends. Neither imports a client: they use
their store's connection and error translation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DuplicateError
from .es_parts import ElasticsearchParts

if TYPE_CHECKING:
    import sqlite3
    from contextlib import AbstractContextManager


@dataclass(frozen=True, slots=True)
class OperatorAccount:
    """One operator account as stored (see the module docstring)."""

    id: str
    email: str
    password_hash: str
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the stored document; includes the hash)."""
        return asdict(self)


def account_from_dict(data: dict[str, Any]) -> OperatorAccount:
    """The account a stored document or row mapping describes."""
    return OperatorAccount(
        id=str(data["id"]),
        email=str(data["email"]),
        password_hash=str(data["password_hash"]),
        created_at=str(data["created_at"]),
        updated_at=str(data["updated_at"]),
    )


class OperatorStore(ABC):
    """The operator-account part of the `Store` interface (every backend implements it)."""

    @abstractmethod
    def create_operator(self, account: OperatorAccount) -> None:
        """Store a new account; `DuplicateError` when its email (or id) is taken."""

    @abstractmethod
    def get_operator(self, operator_id: str) -> OperatorAccount | None:
        """The account with this id, or None."""

    @abstractmethod
    def get_operator_by_email(self, email: str) -> OperatorAccount | None:
        """The account with this (already normalised) email, or None."""

    @abstractmethod
    def list_operators(self) -> list[OperatorAccount]:
        """Every account, by email."""

    @abstractmethod
    def update_operator(self, account: OperatorAccount) -> bool:
        """Replace the stored account with the same id and email (a new password hash);
        False when there is none."""

    @abstractmethod
    def delete_operator(self, operator_id: str) -> bool:
        """Delete the account; False when there was none."""

    @abstractmethod
    def has_operators(self) -> bool:
        """True when at least one account exists (one cheap query: ``operator_enabled``)."""


# --- SQLite ---------------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS operators (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""
_COLUMNS = "id, email, password_hash, created_at, updated_at"


def _row(row: tuple[Any, ...] | None) -> OperatorAccount | None:
    if row is None:
        return None
    return OperatorAccount(*(str(v) for v in row))


class SQLiteOperators(OperatorStore):
    """`OperatorStore` on the ``operators`` table of a `SQLiteStore`."""

    if TYPE_CHECKING:  # provided by SQLiteStore

        def _use(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def create_operator(self, account: OperatorAccount) -> None:
        with self._use() as conn:
            conn.execute(
                f"INSERT INTO operators ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (account.id, account.email, account.password_hash, account.created_at,
                 account.updated_at),
            )  # fmt: skip

    def get_operator(self, operator_id: str) -> OperatorAccount | None:
        with self._use() as conn:
            return _row(
                conn.execute(
                    f"SELECT {_COLUMNS} FROM operators WHERE id = ?", (operator_id,)
                ).fetchone()
            )

    def get_operator_by_email(self, email: str) -> OperatorAccount | None:
        with self._use() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM operators WHERE email = ?", (email,))
            return _row(row.fetchone())

    def list_operators(self) -> list[OperatorAccount]:
        with self._use() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM operators ORDER BY email").fetchall()
        return [OperatorAccount(*(str(v) for v in row)) for row in rows]

    def update_operator(self, account: OperatorAccount) -> bool:
        with self._use() as conn:
            cursor = conn.execute(
                "UPDATE operators SET password_hash = ?, updated_at = ? WHERE id = ? AND email = ?",
                (account.password_hash, account.updated_at, account.id, account.email),
            )
            return cursor.rowcount > 0

    def delete_operator(self, operator_id: str) -> bool:
        with self._use() as conn:
            return conn.execute("DELETE FROM operators WHERE id = ?", (operator_id,)).rowcount > 0

    def has_operators(self) -> bool:
        with self._use() as conn:
            return conn.execute("SELECT 1 FROM operators LIMIT 1").fetchone() is not None


# --- Elasticsearch / OpenSearch -------------------------------------------------------------

_KEYWORD = {"type": "keyword"}
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "id": _KEYWORD,
        "email": _KEYWORD,
        "password_hash": {"type": "keyword", "index": False},
        "created_at": _KEYWORD,
        "updated_at": _KEYWORD,
    },
}
_MAX_OPERATORS = 10_000  # one search page lists them all (a site has a handful)


class ElasticsearchOperators(OperatorStore, ElasticsearchParts):
    """`OperatorStore` on the ``<prefix>operators`` index of an `ElasticsearchStore`."""

    def create_operator(self, account: OperatorAccount) -> None:
        if self.get_operator(account.id) is not None:
            raise DuplicateError(f"an operator with id {account.id!r} exists")
        with self._translate(f"creating operator {account.email!r}", conflict=DuplicateError):
            self.client.create(
                index=self.indices["operators"],
                id=account.email,
                document=account.to_dict(),
                refresh=self.refresh,
            )

    def _find_operators(self, query: dict[str, Any], size: int) -> list[OperatorAccount]:
        hits = self._hits(
            self.indices["operators"],
            query,
            [{"email": "asc"}],
            size=size,
            what="reading operator accounts",
        )
        return [account_from_dict(hit["_source"]) for hit in hits]

    def get_operator(self, operator_id: str) -> OperatorAccount | None:
        found = self._find_operators({"term": {"id": operator_id}}, 1)
        return found[0] if found else None

    def get_operator_by_email(self, email: str) -> OperatorAccount | None:
        found = self._get(self.indices["operators"], email, f"reading operator {email!r}")
        return None if found is None else account_from_dict(found["_source"])

    def list_operators(self) -> list[OperatorAccount]:
        return self._find_operators({"match_all": {}}, _MAX_OPERATORS)

    def update_operator(self, account: OperatorAccount) -> bool:
        index = self.indices["operators"]
        what = f"updating operator {account.email!r}"
        current = self._get(index, account.email, what)
        if current is None or current["_source"].get("id") != account.id:
            return False
        document = {**account.to_dict(), "created_at": current["_source"]["created_at"]}
        with self._translate(what):
            self.client.index(
                index=index,
                id=account.email,
                document=document,
                if_seq_no=current["_seq_no"],
                if_primary_term=current["_primary_term"],
                refresh=self.refresh,
            )
        return True

    def delete_operator(self, operator_id: str) -> bool:
        account = self.get_operator(operator_id)
        if account is None:
            return False
        with self._translate(f"removing operator {account.email!r}"):
            response = self.client.options(ignore_status=404).delete(
                index=self.indices["operators"], id=account.email, refresh=self.refresh
            )
        return bool(response.body.get("result") == "deleted")

    def has_operators(self) -> bool:
        with self._translate("counting operator accounts"):
            response = self.client.count(index=self.indices["operators"])
        return int(response["count"]) > 0


__all__ = [
    "MAPPING",
    "SQLITE_SCHEMA",
    "ElasticsearchOperators",
    "OperatorAccount",
    "OperatorStore",
    "SQLiteOperators",
    "account_from_dict",
]
