"""Webhook endpoints and the delivery queue in the store (issue 13, item 8): the contract and
both backends. The rules (URLs, signing, retries) live in `crm_templates.webhooks`.

* An endpoint (`WebhookEndpoint`): ``id`` (``whe_…``), ``url``, the ``events`` it subscribes
  to, its signing ``secret`` (kept in clear: it is needed to sign), ``active``.
* A delivery (`WebhookDelivery`): one event for one endpoint, with the exact ``body`` that is
  POSTed (the same bytes on every attempt), its ``status`` (``pending`` → ``sending`` →
  ``delivered`` | ``failed``; ``sending`` with an expired lease counts as due again), the
  attempt count, when the next attempt is due (``next_attempt_at``, Unix seconds) and what the
  last one got (``last_status`` HTTP code, ``last_error``, ``last_duration_ms``).

Claiming is the queue's one subtle part: `claim_webhook_deliveries` marks due deliveries
``sending`` for one owner until ``lease_until``; only that owner can then record the outcome
(`finish_webhook_delivery` compares the owner). Two processes never hold one delivery at the
same time: on SQLite the claim is one ``BEGIN IMMEDIATE`` transaction; on
Elasticsearch/OpenSearch each claim is a compare-and-set on the document's
``(seq_no, primary_term)``, so of two racing claimers one gets a 409 and skips it.

* SQLite: the ``webhook_endpoints`` and ``webhook_deliveries`` tables (`SQLITE_SCHEMA`).
* Elasticsearch / OpenSearch: the ``<prefix>webhook_endpoints`` and
  ``<prefix>webhook_deliveries`` indices (`ENDPOINTS_MAPPING`, `DELIVERIES_MAPPING`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from ..errors import DuplicateError
from .es_parts import ElasticsearchParts

if TYPE_CHECKING:
    import sqlite3
    from contextlib import AbstractContextManager


STATUSES = ("pending", "sending", "delivered", "failed")


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """One registered receiver (see the module docstring)."""

    id: str
    url: str
    events: tuple[str, ...]
    secret: str
    active: bool
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        """The stored document (includes the secret)."""
        out = asdict(self)
        out["events"] = list(self.events)
        return out


def endpoint_from_dict(data: dict[str, Any]) -> WebhookEndpoint:
    """The endpoint a stored document or row describes."""
    events = data["events"]
    if isinstance(events, str):
        events = json.loads(events)
    return WebhookEndpoint(
        id=str(data["id"]),
        url=str(data["url"]),
        events=tuple(str(e) for e in events),
        secret=str(data["secret"]),
        active=bool(data["active"]),
        created_at=str(data["created_at"]),
        updated_at=str(data["updated_at"]),
    )


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event queued for one endpoint, and what became of it (see the module docstring).

    Times: ``created_at`` (the event, ISO 8601 UTC), ``queued_at`` (Unix seconds; a manual
    retry resets it, and the maximum age counts from it), ``next_attempt_at`` and
    ``lease_until`` (Unix seconds), ``last_attempt_at`` and ``finished_at`` (ISO 8601 UTC).
    """

    id: str
    endpoint_id: str
    event: str
    entry_id: str
    created_at: str
    body: str
    status: str = "pending"
    attempts: int = 0
    queued_at: float = 0.0
    next_attempt_at: float = 0.0
    lease_until: float | None = None
    lease_owner: str | None = None
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: str | None = None
    last_duration_ms: float | None = None
    finished_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored document."""
        return asdict(self)


_DELIVERY_FIELDS = tuple(f.name for f in fields(WebhookDelivery))
_ENDPOINT_FIELDS = tuple(f.name for f in fields(WebhookEndpoint))


def delivery_from_dict(data: dict[str, Any]) -> WebhookDelivery:
    """The delivery a stored document or row describes."""
    values: dict[str, Any] = {name: data.get(name) for name in _DELIVERY_FIELDS}
    return WebhookDelivery(**values)


class WebhookStore(ABC):
    """The webhook part of the `Store` interface (every backend implements it)."""

    @abstractmethod
    def create_webhook_endpoint(self, endpoint: WebhookEndpoint) -> None:
        """Store a new endpoint; `DuplicateError` for a used id."""

    @abstractmethod
    def get_webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        """The endpoint with this id, or None."""

    @abstractmethod
    def list_webhook_endpoints(self) -> list[WebhookEndpoint]:
        """Every endpoint, oldest first."""

    @abstractmethod
    def update_webhook_endpoint(self, endpoint: WebhookEndpoint) -> bool:
        """Replace the stored endpoint with the same id; False when there is none."""

    @abstractmethod
    def delete_webhook_endpoint(self, endpoint_id: str) -> bool:
        """Delete the endpoint and its deliveries; False when there was none."""

    @abstractmethod
    def enqueue_webhook_deliveries(self, deliveries: list[WebhookDelivery]) -> None:
        """Store new deliveries (status ``pending``)."""

    @abstractmethod
    def claim_webhook_deliveries(
        self, now: float, owner: str, lease_seconds: float, limit: int
    ) -> list[WebhookDelivery]:
        """Mark up to ``limit`` due deliveries (``pending`` with ``next_attempt_at <= now``, or
        ``sending`` with an expired lease) as ``sending`` for ``owner`` until ``now +
        lease_seconds``, and return them as claimed, earliest due first. A delivery is returned
        to at most one claimer while its lease runs."""

    @abstractmethod
    def finish_webhook_delivery(self, delivery: WebhookDelivery, owner: str) -> bool:
        """Store ``delivery`` (an attempt's outcome) if ``owner`` still holds its lease; False
        (nothing written) when the lease was lost to another claimer."""

    @abstractmethod
    def get_webhook_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        """The delivery with this id, or None."""

    @abstractmethod
    def list_webhook_deliveries(
        self,
        *,
        endpoint_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[WebhookDelivery]:
        """Up to ``limit`` deliveries matching the filters, newest first."""

    @abstractmethod
    def prune_webhook_deliveries(self, finished_before: str) -> int:
        """Delete ``delivered`` and ``failed`` deliveries that finished before
        ``finished_before`` (ISO 8601 UTC, as stored); how many were deleted."""

    @abstractmethod
    def retry_webhook_delivery(self, delivery_id: str, now: float) -> bool:
        """Make a delivery that is not being sent due again now (status ``pending``, attempts
        0, ``queued_at`` now); False when there is none or it is being sent."""


# --- SQLite ---------------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    active INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    event TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    queued_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    lease_until REAL,
    lease_owner TEXT,
    last_status INTEGER,
    last_error TEXT,
    last_attempt_at TEXT,
    last_duration_ms REAL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS ix_webhook_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS ix_webhook_endpoint ON webhook_deliveries (endpoint_id, id);
"""
_D_COLUMNS = ", ".join(_DELIVERY_FIELDS)
_D_MARKS = ", ".join("?" * len(_DELIVERY_FIELDS))
_E_COLUMNS = ", ".join(_ENDPOINT_FIELDS)


def _delivery_row(d: WebhookDelivery) -> tuple[Any, ...]:
    return tuple(getattr(d, name) for name in _DELIVERY_FIELDS)


def _delivery(row: tuple[Any, ...]) -> WebhookDelivery:
    return WebhookDelivery(*row)


def _endpoint(row: tuple[Any, ...] | None) -> WebhookEndpoint | None:
    if row is None:
        return None
    return endpoint_from_dict(dict(zip(_ENDPOINT_FIELDS, row, strict=True)))


class SQLiteWebhooks(WebhookStore):
    """`WebhookStore` on the ``webhook_*`` tables of a `SQLiteStore`."""

    if TYPE_CHECKING:  # provided by SQLiteStore

        def _use(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def atomic(self) -> AbstractContextManager[Any]: ...

    def create_webhook_endpoint(self, endpoint: WebhookEndpoint) -> None:
        with self._use() as conn:
            conn.execute(
                f"INSERT INTO webhook_endpoints ({_E_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (endpoint.id, endpoint.url, json.dumps(list(endpoint.events)), endpoint.secret,
                 int(endpoint.active), endpoint.created_at, endpoint.updated_at),
            )  # fmt: skip

    def get_webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        with self._use() as conn:
            row = conn.execute(
                f"SELECT {_E_COLUMNS} FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
            ).fetchone()
        return _endpoint(row)

    def list_webhook_endpoints(self) -> list[WebhookEndpoint]:
        with self._use() as conn:
            rows = conn.execute(
                f"SELECT {_E_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
            ).fetchall()
        return [e for e in map(_endpoint, rows) if e is not None]

    def update_webhook_endpoint(self, endpoint: WebhookEndpoint) -> bool:
        with self._use() as conn:
            cursor = conn.execute(
                "UPDATE webhook_endpoints SET url = ?, events = ?, secret = ?, active = ?, "
                "updated_at = ? WHERE id = ?",
                (endpoint.url, json.dumps(list(endpoint.events)), endpoint.secret,
                 int(endpoint.active), endpoint.updated_at, endpoint.id),
            )  # fmt: skip
            return cursor.rowcount > 0

    def delete_webhook_endpoint(self, endpoint_id: str) -> bool:
        with self.atomic(), self._use() as conn:
            conn.execute("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", (endpoint_id,))
            cursor = conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,))
            return cursor.rowcount > 0

    def enqueue_webhook_deliveries(self, deliveries: list[WebhookDelivery]) -> None:
        if not deliveries:
            return
        with self._use() as conn:
            conn.executemany(
                f"INSERT INTO webhook_deliveries ({_D_COLUMNS}) VALUES ({_D_MARKS})",
                [_delivery_row(d) for d in deliveries],
            )

    def claim_webhook_deliveries(
        self, now: float, owner: str, lease_seconds: float, limit: int
    ) -> list[WebhookDelivery]:
        until = now + lease_seconds
        due = (
            "SELECT 1 FROM webhook_deliveries WHERE (status = 'pending' AND next_attempt_at <= ?)"
            " OR (status = 'sending' AND lease_until <= ?) LIMIT 1"
        )
        with self._use() as conn:  # a plain read first: an idle poll takes no write lock
            if conn.execute(due, (now, now)).fetchone() is None:
                return []
        with self.atomic(), self._use() as conn:
            rows = conn.execute(
                f"SELECT {_D_COLUMNS} FROM webhook_deliveries WHERE (status = 'pending' AND "
                "next_attempt_at <= ?) OR (status = 'sending' AND lease_until <= ?) "
                "ORDER BY next_attempt_at, id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            claimed = [
                replace(_delivery(row), status="sending", lease_owner=owner, lease_until=until)
                for row in rows
            ]
            conn.executemany(
                "UPDATE webhook_deliveries SET status = 'sending', lease_owner = ?, "
                "lease_until = ? WHERE id = ?",
                [(owner, until, d.id) for d in claimed],
            )
        return claimed

    def finish_webhook_delivery(self, delivery: WebhookDelivery, owner: str) -> bool:
        names = [n for n in _DELIVERY_FIELDS if n != "id"]
        with self._use() as conn:
            cursor = conn.execute(
                f"UPDATE webhook_deliveries SET {', '.join(f'{n} = ?' for n in names)} "
                "WHERE id = ? AND status = 'sending' AND lease_owner = ?",
                (*(getattr(delivery, n) for n in names), delivery.id, owner),
            )
            return cursor.rowcount > 0

    def get_webhook_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        with self._use() as conn:
            row = conn.execute(
                f"SELECT {_D_COLUMNS} FROM webhook_deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
        return None if row is None else _delivery(row)

    def list_webhook_deliveries(
        self,
        *,
        endpoint_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[WebhookDelivery]:
        where, params = [], []
        if endpoint_id is not None:
            where.append("endpoint_id = ?")
            params.append(endpoint_id)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = f"SELECT {_D_COLUMNS} FROM webhook_deliveries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._use() as conn:
            rows = conn.execute(sql, [*params, limit]).fetchall()
        return [_delivery(row) for row in rows]

    def prune_webhook_deliveries(self, finished_before: str) -> int:
        with self._use() as conn:
            cursor = conn.execute(
                "DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'failed') "
                "AND finished_at < ?",
                (finished_before,),
            )
            return cursor.rowcount

    def retry_webhook_delivery(self, delivery_id: str, now: float) -> bool:
        with self._use() as conn:
            cursor = conn.execute(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, queued_at = ?, "
                "next_attempt_at = ?, lease_owner = NULL, lease_until = NULL, finished_at = NULL "
                "WHERE id = ? AND status != 'sending'",
                (now, now, delivery_id),
            )
            return cursor.rowcount > 0


# --- Elasticsearch / OpenSearch -------------------------------------------------------------

_KEYWORD = {"type": "keyword"}
ENDPOINTS_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "id": _KEYWORD,
        "url": {"type": "keyword", "index": False},
        "events": _KEYWORD,
        "secret": {"type": "keyword", "index": False},
        "active": {"type": "boolean"},
        "created_at": _KEYWORD,
        "updated_at": _KEYWORD,
    },
}
DELIVERIES_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "id": _KEYWORD,
        "endpoint_id": _KEYWORD,
        "event": _KEYWORD,
        "entry_id": _KEYWORD,
        "created_at": _KEYWORD,
        "body": {"type": "text", "index": False},
        "status": _KEYWORD,
        "attempts": {"type": "integer"},
        "queued_at": {"type": "double"},
        "next_attempt_at": {"type": "double"},
        "lease_until": {"type": "double"},
        "lease_owner": _KEYWORD,
        "last_status": {"type": "integer"},
        "last_error": {"type": "text", "index": False},
        "last_attempt_at": _KEYWORD,
        "last_duration_ms": {"type": "double"},
        "finished_at": _KEYWORD,
    },
}
_MAX_ENDPOINTS = 10_000


class ElasticsearchWebhooks(WebhookStore, ElasticsearchParts):
    """`WebhookStore` on the ``<prefix>webhook_*`` indices of an `ElasticsearchStore`."""

    def create_webhook_endpoint(self, endpoint: WebhookEndpoint) -> None:
        with self._translate(f"creating webhook {endpoint.id!r}", conflict=DuplicateError):
            self.client.create(
                index=self.indices["webhook_endpoints"],
                id=endpoint.id,
                document=endpoint.to_dict(),
                refresh=self.refresh,
            )

    def get_webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        found = self._get(
            self.indices["webhook_endpoints"], endpoint_id, f"reading webhook {endpoint_id!r}"
        )
        return None if found is None else endpoint_from_dict(found["_source"])

    def list_webhook_endpoints(self) -> list[WebhookEndpoint]:
        with self._translate("listing webhooks"):
            response = self.client.search(
                index=self.indices["webhook_endpoints"],
                query={"match_all": {}},
                sort=[{"created_at": "asc"}, {"id": "asc"}],
                size=_MAX_ENDPOINTS,
                track_total_hits=False,
            )
        return [endpoint_from_dict(h["_source"]) for h in response["hits"]["hits"]]

    def update_webhook_endpoint(self, endpoint: WebhookEndpoint) -> bool:
        if self.get_webhook_endpoint(endpoint.id) is None:
            return False
        with self._translate(f"updating webhook {endpoint.id!r}"):
            self.client.index(
                index=self.indices["webhook_endpoints"],
                id=endpoint.id,
                document=endpoint.to_dict(),
                refresh=self.refresh,
            )
        return True

    def delete_webhook_endpoint(self, endpoint_id: str) -> bool:
        with self._translate(f"removing webhook {endpoint_id!r}"):
            self.client.delete_by_query(
                index=self.indices["webhook_deliveries"],
                query={"term": {"endpoint_id": endpoint_id}},
                refresh=True,
                conflicts="proceed",
            )
            response = self.client.options(ignore_status=404).delete(
                index=self.indices["webhook_endpoints"], id=endpoint_id, refresh=self.refresh
            )
        return bool(response.body.get("result") == "deleted")

    def enqueue_webhook_deliveries(self, deliveries: list[WebhookDelivery]) -> None:
        if not deliveries:
            return
        index = self.indices["webhook_deliveries"]
        body: list[dict[str, Any]] = []
        for d in deliveries:
            body.append({"create": {"_index": index, "_id": d.id}})
            body.append(d.to_dict())
        with self._translate(f"queueing {len(deliveries)} webhook deliveries"):
            response = self.client.bulk(operations=body, refresh=self.refresh)
        if response.get("errors"):
            from ..errors import StoreError

            raise StoreError(f"queueing webhook deliveries failed: {response['items'][0]}")

    def claim_webhook_deliveries(
        self, now: float, owner: str, lease_seconds: float, limit: int
    ) -> list[WebhookDelivery]:
        from ..errors import ConflictError

        index = self.indices["webhook_deliveries"]
        due = {
            "bool": {
                "should": [
                    {
                        "bool": {
                            "filter": [
                                {"term": {"status": "pending"}},
                                {"range": {"next_attempt_at": {"lte": now}}},
                            ]
                        }
                    },
                    {
                        "bool": {
                            "filter": [
                                {"term": {"status": "sending"}},
                                {"range": {"lease_until": {"lte": now}}},
                            ]
                        }
                    },
                ],
                "minimum_should_match": 1,
            }
        }
        with self._translate("finding due webhook deliveries"):
            response = self.client.search(
                index=index,
                query=due,
                sort=[{"next_attempt_at": "asc"}, {"id": "asc"}],
                size=limit,
                seq_no_primary_term=True,
                track_total_hits=False,
            )
        claimed: list[WebhookDelivery] = []
        for hit in response["hits"]["hits"]:
            delivery = replace(
                delivery_from_dict(hit["_source"]),
                status="sending",
                lease_owner=owner,
                lease_until=now + lease_seconds,
            )
            try:
                with self._translate(f"claiming webhook delivery {delivery.id!r}"):
                    self.client.index(
                        index=index,
                        id=delivery.id,
                        document=delivery.to_dict(),
                        if_seq_no=hit["_seq_no"],
                        if_primary_term=hit["_primary_term"],
                        refresh=self.refresh,
                    )
            except ConflictError:
                continue  # another process claimed (or changed) it first
            claimed.append(delivery)
        return claimed

    def finish_webhook_delivery(self, delivery: WebhookDelivery, owner: str) -> bool:
        from ..errors import ConflictError

        index = self.indices["webhook_deliveries"]
        what = f"recording webhook delivery {delivery.id!r}"
        current = self._get(index, delivery.id, what)
        if current is None:
            return False
        source = current["_source"]
        if source.get("status") != "sending" or source.get("lease_owner") != owner:
            return False
        try:
            with self._translate(what):
                self.client.index(
                    index=index,
                    id=delivery.id,
                    document=delivery.to_dict(),
                    if_seq_no=current["_seq_no"],
                    if_primary_term=current["_primary_term"],
                    refresh=self.refresh,
                )
        except ConflictError:
            return False
        return True

    def get_webhook_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        found = self._get(
            self.indices["webhook_deliveries"],
            delivery_id,
            f"reading webhook delivery {delivery_id!r}",
        )
        return None if found is None else delivery_from_dict(found["_source"])

    def list_webhook_deliveries(
        self,
        *,
        endpoint_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[WebhookDelivery]:
        filters: list[dict[str, Any]] = []
        if endpoint_id is not None:
            filters.append({"term": {"endpoint_id": endpoint_id}})
        if status is not None:
            filters.append({"term": {"status": status}})
        with self._translate("listing webhook deliveries"):
            response = self.client.search(
                index=self.indices["webhook_deliveries"],
                query={"bool": {"filter": filters}} if filters else {"match_all": {}},
                sort=[{"id": "desc"}],
                size=limit,
                track_total_hits=False,
            )
        return [delivery_from_dict(h["_source"]) for h in response["hits"]["hits"]]

    def prune_webhook_deliveries(self, finished_before: str) -> int:
        query = {
            "bool": {
                "filter": [
                    {"terms": {"status": ["delivered", "failed"]}},
                    {"range": {"finished_at": {"lt": finished_before}}},
                ]
            }
        }
        with self._translate("pruning the webhook delivery log"):
            response = self.client.delete_by_query(
                index=self.indices["webhook_deliveries"],
                query=query,
                refresh=True,
                conflicts="proceed",
            )
        return int(response.get("deleted", 0))

    def retry_webhook_delivery(self, delivery_id: str, now: float) -> bool:
        from ..errors import ConflictError

        index = self.indices["webhook_deliveries"]
        what = f"retrying webhook delivery {delivery_id!r}"
        current = self._get(index, delivery_id, what)
        if current is None or current["_source"].get("status") == "sending":
            return False
        delivery = replace(
            delivery_from_dict(current["_source"]),
            status="pending",
            attempts=0,
            queued_at=now,
            next_attempt_at=now,
            lease_owner=None,
            lease_until=None,
            finished_at=None,
        )
        try:
            with self._translate(what):
                self.client.index(
                    index=index,
                    id=delivery_id,
                    document=delivery.to_dict(),
                    if_seq_no=current["_seq_no"],
                    if_primary_term=current["_primary_term"],
                    refresh=self.refresh,
                )
        except ConflictError:
            return False
        return True


__all__ = [
    "DELIVERIES_MAPPING",
    "ENDPOINTS_MAPPING",
    "SQLITE_SCHEMA",
    "STATUSES",
    "ElasticsearchWebhooks",
    "SQLiteWebhooks",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookStore",
    "delivery_from_dict",
    "endpoint_from_dict",
]
