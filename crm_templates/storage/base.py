"""The `Store` interface every backend implements (SPEC §9).

Backends only store and query; CRM semantics (which entry a write lands on, coercion, option
handling) live once in `crm_templates.service`. The interface needs no cross-document
transactions: read-modify-write is done by the service as *read, then compare-and-set on the
entry's version* (`update_entry(..., expected_version)`), retried on `ConflictError`. SQLite
additionally serialises such sections with `atomic()` (``BEGIN IMMEDIATE``), so conflicts never
happen there; a document store makes `atomic()` a no-op and relies on the version check.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

from ..errors import CrmValidationError
from ..model import Customer, Entity, Entry
from .aggregations import Aggregations
from .api_keys import ApiKeyStore
from .audit import AuditStore
from .boards import BoardQueries
from .conditional_delete import ConditionalDeleteStore
from .entity_queries import EntityQueries
from .history import StageHistoryStore
from .listing import EntryListing
from .operators import OperatorStore
from .prefetch import Prefetch
from .session_state import SessionStateStore
from .webhooks import WebhookStore


def not_text(exc: UnicodeEncodeError) -> CrmValidationError:
    """The error for a string a backend cannot encode (UTF-8 has no lone surrogates): bad
    input, not a store failure — a slug, id or key holding one names nothing (issue 9: only
    CrmError escapes). Used by every backend's error translation."""
    return CrmValidationError(
        "text with a lone surrogate (an unpaired UTF-16 half, e.g. '\\ud800') cannot be "
        f"stored or looked up; position {exc.start} of a {len(exc.object)}-character string"
    )


class Store(
    EntryListing,
    StageHistoryStore,
    EntityQueries,
    BoardQueries,
    OperatorStore,
    AuditStore,
    Aggregations,
    ApiKeyStore,
    Prefetch,
    WebhookStore,
    ConditionalDeleteStore,
    SessionStateStore,
    ABC,
):
    """Storage for entities, customers and entries.

    The admin's queries live in modules by concern, mixed in here: `listing.EntryListing`
    (keyset pages, search, reverse references), `history.StageHistoryStore`,
    `entity_queries.EntityQueries` (counts per field and stage, entity versions),
    `boards.BoardQueries` (stage totals and cards of a pipeline board), and the operator
    accounts and audit trail (`operators.OperatorStore`, `audit.AuditStore`), and the Reports
    tab's `aggregations.Aggregations` (issue 12)."""

    #: The URL the store was opened from (credentials removed), for messages and the CLI.
    url: str = ""
    #: True when `merge_into_newest` is one atomic statement that never raises `ConflictError`,
    #: so a caller need not run it under `conflicts.retry_conflicts` (SQLite; issue 14, B2).
    merges_without_conflicts: bool = False

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""

    def atomic(self) -> AbstractContextManager[Any]:
        """A read-modify-write section: serialised where the backend can, else a no-op."""
        return nullcontext()

    def batch(self) -> AbstractContextManager[Any]:
        """A group of writes from the async writer: one transaction or one bulk request.

        Reads inside the block see the block's earlier writes. A backend may defer writes to
        the end of the block; if the block raises, none of its writes are applied.
        """
        return self.atomic()

    # --- entities -------------------------------------------------------------------------

    @abstractmethod
    def get_entity(self, slug: str) -> Entity | None:
        """The entity with this slug, or None."""

    @abstractmethod
    def list_entities(self) -> list[Entity]:
        """All entities, ordered by slug."""

    @abstractmethod
    def create_entity(self, entity: Entity) -> None:
        """Store a new entity; `DuplicateError` if the slug exists."""

    @abstractmethod
    def update_entity(self, entity: Entity, expected_version: int) -> Entity:
        """Replace an entity if its stored version is ``expected_version`` (else `ConflictError`).

        Returns the stored entity, whose version is ``expected_version + 1``.
        """

    @abstractmethod
    def delete_entity(self, slug: str) -> bool:
        """Delete an entity definition (its entries are left to the caller)."""

    # --- customers ------------------------------------------------------------------------

    @abstractmethod
    def create_customer(self, customer: Customer) -> None:
        """Store a new customer; `DuplicateError` if the id or the email is taken."""

    @abstractmethod
    def update_customer(self, customer: Customer) -> None:
        """Replace a customer's record; `DuplicateError` if the new email is taken."""

    @abstractmethod
    def get_customer(self, customer_id: str) -> Customer | None:
        """The customer with this id, or None."""

    @abstractmethod
    def get_customer_by_email(self, email: str) -> Customer | None:
        """The customer with this (normalised, lower-case) email, or None."""

    @abstractmethod
    def list_customers(self, limit: int = 50, offset: int = 0) -> list[Customer]:
        """Customers, newest first."""

    @abstractmethod
    def count_customers(self) -> int:
        """How many customers there are."""

    # --- entries --------------------------------------------------------------------------

    @abstractmethod
    def insert_entries(self, entries: Sequence[Entry]) -> None:
        """Store new entries (one statement or one bulk request for many)."""

    @abstractmethod
    def get_entries_by_ids(self, ids: Sequence[str]) -> dict[str, Entry]:
        """The entries with these ids that exist, by id."""

    def get_entry(self, entry_id: str) -> Entry | None:
        """One entry by id, or None."""
        return self.get_entries_by_ids([entry_id]).get(entry_id)

    @abstractmethod
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
        """Entries matching every given filter, newest (greatest created_at, id) first.

        ``has_key`` keeps entries whose values contain the key (a stored null counts).
        ``limit=None`` returns every match.
        """

    @abstractmethod
    def latest_values(
        self, entity: str, reference_type: str, reference_id: str, keys: Sequence[str]
    ) -> dict[str, Any]:
        """For each key, its value in the newest entry holding it (absent keys are omitted).

        One query (or one round trip) for all keys.
        """

    @abstractmethod
    def update_entry(self, entry: Entry, expected_version: int) -> Entry:
        """Replace an entry if its stored version is ``expected_version``.

        Raises `ConflictError` when the version moved on, `EntryNotFoundError` when it is gone.
        Returns the stored entry (version ``expected_version + 1``).
        """

    def merge_into_newest(
        self,
        entity: str,
        reference_type: str,
        reference_id: str,
        values: dict[str, Any],
        updated_at: str,
    ) -> str | None:
        """Merge ``values`` into the newest entry of the reference; its id, or None if none.

        The default reads the newest entry and compare-and-sets it (raising `ConflictError` when
        another writer got there first, for the caller to retry); a backend may do it in one
        statement.
        """
        with self.atomic():
            newest = self.find_entries(entity, reference_type, reference_id, limit=1)
            if not newest:
                return None
            entry = newest[0]
            self.update_entry(
                replace(entry, values={**entry.values, **values}, updated_at=updated_at),
                entry.version,
            )
            return entry.id

    @abstractmethod
    def delete_entries(
        self, entity: str, reference_type: str | None = None, reference_id: str | None = None
    ) -> int:
        """Delete the matching entries; returns how many were deleted."""

    @abstractmethod
    def delete_entry(self, entry_id: str) -> bool:
        """Delete one entry; False if it did not exist."""

    @abstractmethod
    def count_entries(
        self,
        entity: str | None = None,
        reference_type: str | None = None,
        reference_id: str | None = None,
    ) -> int:
        """How many entries match."""

    @abstractmethod
    def iter_entries(self, entity: str | None = None, batch_size: int = 500) -> Iterator[Entry]:
        """Every entry (of one entity or all), oldest first, fetched in batches."""

    # --- security records (issue 8; SPEC §8) ------------------------------------------------
    # Used tokens, rate-limit hits and session generations live in the store, so they hold
    # across restarts, processes and machines. Keys are opaque strings of 1 to 512 characters
    # chosen by the server (e.g. ``"sign-in:<nonce>"``, ``"limit:email:<addr>"``); times are
    # Unix seconds (float). Every operation is atomic across the threads and processes sharing
    # the store. Bad arguments raise `CrmValidationError` before anything is written; backend
    # failures raise `StoreError` / `StoreUnavailable`. See `crm_templates.storage.security`
    # for the record layout. `crm-templates migrate` does not copy these records.

    @abstractmethod
    def claim_token(self, key: str, expires_at: float) -> bool:
        """Record ``key`` as used until ``expires_at`` (Unix seconds).

        True if this call claimed it, False if an unexpired claim already exists (a replay;
        nothing changes). A claim whose ``expires_at`` has passed may be claimed again.
        """

    @abstractmethod
    def is_token_claimed(self, key: str) -> bool:
        """True while an unexpired claim on ``key`` exists (used for revoked session ids)."""

    @abstractmethod
    def hit_rate_limit(self, key: str, limit: int, window: float) -> bool:
        """Record one hit on ``key`` unless ``limit`` hits already fall within the last
        ``window`` seconds.

        True if the hit was recorded (allowed), False if over the limit (nothing recorded).
        Recording also forgets the key's hits older than ``window``, so use one window per key.
        ``limit`` is an int >= 0, ``window`` seconds > 0.
        """

    @abstractmethod
    def count_rate_hits(self, key: str, window: float) -> int:
        """How many hits on ``key`` fall within the last ``window`` seconds (records nothing)."""

    @abstractmethod
    def clear_rate_hits(self, key: str) -> None:
        """Forget every hit on ``key`` (e.g. after a successful sign-in)."""

    @abstractmethod
    def session_generation(self, key: str) -> int:
        """The current generation of ``key``: 0 if it was never bumped."""

    @abstractmethod
    def bump_session_generation(self, key: str) -> int:
        """Increase the generation of ``key`` by one and return the new value (atomic: N bumps
        from any number of threads and processes raise it by exactly N)."""

    @abstractmethod
    def purge_security_records(self, now: float | None = None) -> int:
        """Delete claims expired at ``now`` (default: the current time) and rate-limit keys
        whose every hit has left the window it was recorded under; returns how many records
        (claims and rate-limit keys) were deleted. Housekeeping: call it now and then (e.g.
        at start-up and hourly); the other operations are correct without it. Generations
        are never purged.
        """
