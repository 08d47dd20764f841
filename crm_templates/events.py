"""Entry signals (issue 13, item 8): ``entry_created``, ``entry_updated``, ``entry_deleted``
and ``entry_stage_changed``, on `blinker` (Flask's own signal library).

Connect a receiver to react in Python (a page backend, an app, the webhooks of
`crm_templates.webhooks`)::

    from crm_templates import events

    @events.entry_stage_changed.connect
    def on_move(store, event: events.EntryEvent) -> None:
        print(event.entity, event.entry_id, event.from_stage_id, "->", event.to_stage_id)

Every signal is sent with the store as sender and one keyword argument, ``event``, an
`EntryEvent` (see its fields; ``event.data()`` is its JSON form, the ``data`` of a webhook).

When they are sent (the rules, decided for issue 13):

* **Once per committed change**, from the service layer, whatever the caller: templates'
  CRM functions (SetCrmField(s), CreateCrmEntry, MoveCrmToStage …), page backends, the admin's
  inline edits and board moves (`Crm.update_entry`, `stage_history.move_entry`), imports
  (`crm_templates.transfer`), and the REST API (it writes through the same service).
* **After the commit**: a write that failed or was rolled back sends nothing. On SQLite the
  signals of a write go out when its transaction has committed; on Elasticsearch/OpenSearch
  (no transactions) a write that was applied before a later step of the same call failed is
  still reported (it is in the index), and one that was not applied is not.
* **Never from a preview**: a read-only view (operator previews, the playground,
  ``crm-templates render``) writes nothing, so it sends nothing.
* **Async writes** (``async: true``, `crm_templates.writer`): sent from the writer's thread once
  the batch holding the write is durably committed (a batch that fails is replayed write by
  write; each replayed write sends its own signals, a write that still fails sends none).
* **In the writing thread, synchronously**, after the write's own store call returned: keep
  receivers quick (the webhooks receiver only queues a delivery in the store). A receiver that
  raises does not break the write or the other receivers: its exception is logged on the
  ``crm_templates.events`` logger.
* A stage move sends ``entry_stage_changed`` only (not ``entry_updated``); a move that leaves
  an entry where it was sends nothing. An edit that changes values and stage sends both.
* If your own code wraps service calls in ``store.atomic()``, the signals go out when each
  service call returns, before your enclosing transaction commits.

Who made the change (``EntryEvent.actor``): the `Actor` set with `acting_as` around the call
(the admin sets its operator, the REST API its key, imports ``import``), else the service's
current customer, else ``system``.

This is the core: no Flask, no Jinja2 (SPEC §2); blinker has no dependencies of its own.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from blinker import Namespace
from blinker.base import make_id

from .ids import utc_now

if TYPE_CHECKING:
    from blinker import NamedSignal

    from .model import Entry
    from .storage.base import Store

log = logging.getLogger("crm_templates.events")
T = TypeVar("T")

_signals = Namespace()
entry_created: NamedSignal = _signals.signal(
    "entry.created", doc="A new entry was stored (CreateCrmEntry, a first SetCrmField, imports…)."
)
entry_updated: NamedSignal = _signals.signal(
    "entry.updated",
    doc="An entry's values, title or reference changed (SetCrmField(s), relations, edits…).",
)
entry_deleted: NamedSignal = _signals.signal(
    "entry.deleted", doc="An entry was deleted (ClearCrmEntries, MoveCrmToEntity, the admin…)."
)
entry_stage_changed: NamedSignal = _signals.signal(
    "entry.stage_changed", doc="An entry moved to another pipeline stage."
)
#: The signals by event name (also the webhook event names).
SIGNALS: dict[str, NamedSignal] = {
    "entry.created": entry_created,
    "entry.updated": entry_updated,
    "entry.deleted": entry_deleted,
    "entry.stage_changed": entry_stage_changed,
}
EVENT_NAMES: tuple[str, ...] = tuple(SIGNALS)
ACTOR_TYPES = ("customer", "operator", "api_key", "import", "system")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: ``type`` is one of `ACTOR_TYPES`; ``id`` the customer's, operator
    account's (``op_…``, or ``"operator"`` for the bootstrap account) or API key's id, None
    for ``import`` and ``system``."""

    type: str
    id: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """``{"type": …, "id": …}``."""
        return {"type": self.type, "id": self.id}

    def __str__(self) -> str:
        return self.type if self.id is None else f"{self.type} {self.id}"

    @classmethod
    def parse(cls, text: str) -> Actor:
        """The actor a stage-history actor string names: ``"customer <id>"``, ``"system"``,
        ``"import"``, ``"api_key <id>"``, ``"operator <id>"``; anything else is an operator id
        (the admin records its operator's id bare)."""
        kind, _, ident = text.partition(" ")
        if kind in ACTOR_TYPES and (ident or kind in ("import", "system")):
            return cls(kind, ident or None)
        return cls("operator", text)


SYSTEM = Actor("system")
IMPORT = Actor("import")

_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("crm_actor", default=None)


@contextmanager
def acting_as(actor: Actor | str, actor_id: str | None = None) -> Iterator[Actor]:
    """Attribute the changes made inside the block to ``actor`` (an `Actor`, or its type and
    id: ``acting_as("operator", "op_…")``, ``acting_as("api_key", key_id)``). Context-local:
    other threads and requests are not affected; async writes queued inside keep it."""
    who = actor if isinstance(actor, Actor) else Actor(actor, actor_id)
    if who.type not in ACTOR_TYPES:
        raise ValueError(f"actor type must be one of {', '.join(ACTOR_TYPES)}; got {who.type!r}")
    token = _actor.set(who)
    try:
        yield who
    finally:
        _actor.reset(token)


def enter_actor(actor: Actor) -> contextvars.Token[Actor | None]:
    """Attribute the changes made from now on in this context to ``actor``, for request hooks
    that cannot wrap the request in `acting_as` (a Flask ``before_request``); undo it with
    `leave_actor` and the returned token (in ``teardown_request``)."""
    if actor.type not in ACTOR_TYPES:
        raise ValueError(f"actor type must be one of {', '.join(ACTOR_TYPES)}; got {actor.type!r}")
    return _actor.set(actor)


def leave_actor(token: contextvars.Token[Actor | None]) -> None:
    """Undo `enter_actor`. A token set in another context (a copied one) is ignored: there is
    nothing to undo in this one."""
    try:
        _actor.reset(token)
    except ValueError:
        pass


def current_actor() -> Actor | None:
    """The actor `acting_as` set for this context, or None."""
    return _actor.get()


# The customers' `Actor`s, made once each (every write names one; bounded: starts over when
# full). An Actor is immutable, so sharing one between writes changes nothing.
_customer_actors: dict[str, Actor] = {}
CUSTOMER_ACTORS_KEPT = 4096


def actor_for(customer_id: str | None) -> Actor:
    """The actor of a change made now: `acting_as`'s, else the customer, else `SYSTEM`."""
    set_actor = _actor.get()
    if set_actor is not None:
        return set_actor
    if not customer_id:
        return SYSTEM
    found = _customer_actors.get(customer_id)
    if found is None:
        if len(_customer_actors) >= CUSTOMER_ACTORS_KEPT:
            _customer_actors.clear()
        found = _customer_actors[customer_id] = Actor("customer", customer_id)
    return found


@dataclass(frozen=True)
class EntryEvent:
    """One committed change of one entry, as every entry signal carries it.

    * ``name``: ``"entry.created" | "entry.updated" | "entry.deleted" | "entry.stage_changed"``;
    * ``store``: the store written to (also the signal's sender);
    * ``entity``, ``entry_id``, ``reference_type``, ``reference_id``: the entry and who it
      belongs to (``customer_id`` is the reference id when the type is ``"customer"``);
    * ``changes``: ``{field key: new value}`` for the keys the write set (every value for
      ``entry.created``; ``{}`` for deletes and stage moves); a key written with the value it
      already had is included;
    * ``title``: the new title when the write changed it, else None;
    * ``from_pipeline_id``/``from_stage_id`` → ``to_pipeline_id``/``to_stage_id``: the
      placement before and after (stage moves; the placement of a created entry as ``to_*``);
    * ``previous_reference``: ``(type, id)`` before a ReassignCrmReference moved the entry;
    * ``actor``: who made it (`Actor`); ``at``: when (ISO 8601 UTC, microseconds);
    * ``entry``: the entry as stored after the change (before it, for a delete), or None where
      the write does not read it back (a forced SetCrmField merge, ClearCrmEntries).
    """

    name: str
    store: Store = field(repr=False, compare=False)
    entity: str
    entry_id: str
    reference_type: str
    reference_id: str
    actor: Actor
    at: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    title: str | None = None
    from_pipeline_id: str | None = None
    from_stage_id: str | None = None
    to_pipeline_id: str | None = None
    to_stage_id: str | None = None
    previous_reference: tuple[str, str] | None = None
    entry: Entry | None = field(default=None, repr=False, compare=False)

    @property
    def customer_id(self) -> str | None:
        """The customer the entry belongs to, or None for shared (site/catalog) entries."""
        return self.reference_id if self.reference_type == "customer" else None

    def data(self) -> dict[str, Any]:
        """The JSON-ready payload (a webhook's ``data``): the fields above but ``store`` and
        ``entry``, with ``actor`` as ``{type, id}``; ``stage`` only for stage changes."""
        out: dict[str, Any] = {
            "entity": self.entity,
            "entry_id": self.entry_id,
            "reference_type": self.reference_type,
            "reference_id": self.reference_id,
            "customer_id": self.customer_id,
            "changes": dict(self.changes),
            "actor": self.actor.to_dict(),
            "at": self.at,
        }
        if self.title is not None:
            out["title"] = self.title
        if self.name == "entry.stage_changed" or self.name == "entry.created":
            out["pipeline_id"] = self.to_pipeline_id
            out["stage_id"] = self.to_stage_id
        if self.name == "entry.stage_changed":
            out["from_pipeline_id"] = self.from_pipeline_id
            out["from_stage_id"] = self.from_stage_id
        if self.previous_reference is not None:
            out["previous_reference"] = {
                "type": self.previous_reference[0],
                "id": self.previous_reference[1],
            }
        return out


# --- the journal: notes made during a write, sent once it committed -------------------------


class _Journal(threading.local):
    def __init__(self) -> None:
        self.depth = 0
        self.unheard = 0  # open `unheard` blocks: their notes are dropped
        self.actors: list[Actor] = []
        self.notes: list[tuple[EntryEvent, bool]] = []  # (event, durable already)


_journal = _Journal()


def _deferred(store: Any) -> bool:
    """Whether a write made now on ``store`` waits for a commit: inside a SQLite transaction
    (`SQLiteStore.atomic`, its ``_local.depth``) or an Elasticsearch ``batch()`` (its buffered
    writes, ``_local.batch``). Outside both, a store call that returned is applied."""
    local = getattr(store, "_local", None)
    if local is None:
        return False
    return bool(getattr(local, "depth", 0)) or getattr(local, "batch", None) is not None


class unit:  # used like a function: ``with events.unit(actor):``
    """A unit of work: the notes made inside are sent when the outermost unit ends.

    If the block raises, the notes it made while its writes were waiting for a commit are
    dropped (the transaction or batch does not commit); notes of writes already applied stay.
    Nested units join the outer one (the service wraps each retry attempt in one).
    ``actor`` (default: the enclosing unit's, else `actor_for` with no customer) is who the
    notes made inside are attributed to. A class, not a generator: it is on every write.
    """

    __slots__ = ("actor", "mark")

    def __init__(self, actor: Actor | None = None) -> None:
        self.actor = actor
        self.mark = 0

    def __enter__(self) -> None:
        j = _journal
        j.actors.append(self.actor or (j.actors[-1] if j.actors else actor_for(None)))
        j.depth += 1
        self.mark = len(j.notes)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        j = _journal
        if exc_type is not None and len(j.notes) > self.mark:
            j.notes[self.mark :] = [n for n in j.notes[self.mark :] if n[1]]
        j.actors.pop()
        j.depth -= 1
        if j.depth == 0 and j.notes:
            ready, j.notes = j.notes, []
            for event, _ in ready:
                send(event)


def unheard(run: Callable[[], T]) -> T:
    """``run()`` — a write that began when nobody wanted its store's events (`wanted` was
    empty), so it has no `unit` and no actor — with the notes it makes dropped, even if a
    receiver connects while it runs (another thread; the cache recomputed). Without this such
    a note would be sent at once: before the write's commit (a write that then rolls back or
    retries would be reported anyway) and attributed to ``system`` instead of its customer.
    The write counts as made before the receiver connected; the next write is heard."""
    j = _journal
    j.unheard += 1
    try:
        return run()
    finally:
        j.unheard -= 1


def unit_actor() -> Actor:
    """The actor of the innermost open unit (`actor_for` with no customer outside one)."""
    j = _journal
    return j.actors[-1] if j.actors else actor_for(None)


def note(
    name: str,
    store: Store,
    entry: Entry | None = None,
    *,
    entity: str | None = None,
    entry_id: str | None = None,
    reference: tuple[str, str] | None = None,
    changes: Mapping[str, Any] | None = None,
    title: str | None = None,
    before: Entry | None = None,
    previous_reference: tuple[str, str] | None = None,
    actor: Actor | None = None,
    at: str | None = None,
) -> None:
    """Record that a write just made on ``store`` changed an entry: the event is sent when
    the enclosing `unit` ends (at once outside any unit). Call it right after the store call
    succeeded. ``entry`` is the entry after the change (before it for ``entry.deleted``); the
    keywords fill in what a write without the entry at hand knows. ``before`` gives the
    ``from_*`` placement of a stage change."""
    if name not in wanted(store) or _journal.unheard:
        return
    ref = reference
    if ref is None and entry is not None:
        ref = (entry.reference_type, entry.reference_id)
    assert ref is not None and (entry is not None or entry_id is not None)
    if changes is None:
        changes = entry.values if name == "entry.created" and entry is not None else {}
    placed = entry is not None and name in ("entry.created", "entry.stage_changed")
    event = EntryEvent(
        name=name,
        store=store,
        entity=entity or (entry.entity if entry else ""),
        entry_id=entry_id or (entry.id if entry else ""),
        reference_type=ref[0],
        reference_id=ref[1],
        actor=actor or unit_actor(),
        at=at or utc_now(),
        changes=dict(changes),
        title=title,
        from_pipeline_id=before.pipeline_id if before is not None else None,
        from_stage_id=before.stage_id if before is not None else None,
        to_pipeline_id=entry.pipeline_id if placed and entry else None,
        to_stage_id=entry.stage_id if placed and entry else None,
        previous_reference=previous_reference,
        entry=entry,
    )
    if _journal.depth == 0:
        send(event)
    else:
        _journal.notes.append((event, not _deferred(store)))


# Receivers that only want some stores' events, with the test (store, event name) -> bool
# they were connected with (`connect_gated`): when only such receivers listen and none wants
# this store's event, a write builds no event at all (the webhooks receiver on a store
# without webhooks costs one cached look-up per write).
_gates: dict[Any, Callable[[Any, str], bool]] = {}


def connect_gated(
    receiver: Callable[..., None], wants: Callable[[Any, str], bool], names: Iterable[str]
) -> None:
    """Connect ``receiver`` (strongly) to the signals ``names``, to be called only for events
    of stores where ``wants(store, name)`` is true. When what ``wants`` answers changes (the
    webhooks of a store were re-read), its owner calls `invalidate`; `wanted` asks it again at
    the latest `WANTED_SECONDS` later in any case."""
    _gates[make_id(receiver)] = wants
    for name in names:
        SIGNALS[name].connect(receiver, weak=False)
    invalidate()


def _wanted(signal: NamedSignal, store: Any, name: str) -> bool:
    """Whether a receiver of ``signal`` for ``store``'s events wants this one."""
    for receiver in signal.receivers_for(store):
        gate = _gates.get(make_id(receiver))
        if gate is None or gate(store, name):
            return True
    return False


def send(event: EntryEvent) -> None:
    """Send ``event`` on its signal now. Each receiver runs in turn; one that raises is logged
    and the others still run (the write already happened)."""
    signal = SIGNALS[event.name]
    for receiver in list(signal.receivers_for(event.store)):
        try:
            receiver(event.store, event=event)
        except Exception:
            log.exception(
                "a receiver of %s raised for entry %s (the write stands)",
                event.name,
                event.entry_id,
            )


def listening(name: str, store: Any = None) -> bool:
    """True when some receiver wants the signal ``name`` (for ``store``'s events, when given:
    a gated receiver counts only if it wants that store's; cached, see `wanted`)."""
    if store is None:
        return bool(SIGNALS[name].receivers)
    return name in wanted(store)


# --- who wants a store's events: one cached answer per store (issue 14, B2/B3) ---------------
#
# Every write asks whether anyone wants its store's events; when nobody does it builds no
# `Actor`, no `unit` and no event. Asking blinker and the gates costs microseconds (a forced
# SetCrmField's whole Python is about ten), so the answer is kept per store and recomputed when
# a receiver connects or disconnects (blinker's own ``receiver_connected``/``_disconnected``),
# when a gate's owner calls `invalidate` (the webhooks module, after re-reading a store's
# endpoints), and at the latest `WANTED_SECONDS` after it was computed — which also lets a
# gate notice time-based changes of its own (the webhooks cache asks for a background re-read
# when a write finds it old). A weakly referenced receiver that is garbage-collected is not
# announced by blinker: until the answer is recomputed events are built and sent to nobody,
# which costs time, never an event.

#: Longest time (seconds) a store's cached `wanted` answer is used before it is recomputed.
WANTED_SECONDS = 1.0
WANTED_KEPT = 1024  # stores whose answer is kept (then the cache starts over)

_generation = 0
_wanted_by_store: dict[int, tuple[int, float, frozenset[str], weakref.ref[Any]]] = {}


def invalidate(*_args: Any, **_kwargs: Any) -> None:
    """Forget every store's cached `wanted` answer (receivers or gates changed). Takes and
    ignores any arguments, so it can be connected to blinker's connect/disconnect signals."""
    global _generation
    _generation += 1


def wanted(store: Any) -> frozenset[str]:
    """The event names (of `EVENT_NAMES`) that some receiver wants for ``store``'s events: an
    ungated receiver of a signal wants every store's; a gated one (`connect_gated`) those its
    test accepts. Cached per store (see above); the empty set means a write on ``store`` need
    not build events at all."""
    cached = _wanted_by_store.get(id(store))
    if (
        cached is not None
        and cached[0] == _generation
        and cached[1] > time.monotonic()
        and cached[3]() is store
    ):
        return cached[2]
    generation = _generation
    names = frozenset(
        name
        for name, signal in SIGNALS.items()
        if signal.receivers and (not _gates or _wanted(signal, store, name))
    )
    if len(_wanted_by_store) >= WANTED_KEPT:
        _wanted_by_store.clear()
    try:
        ref = weakref.ref(store)
    except TypeError:  # a store that cannot be weakly referenced is asked every time
        return names
    _wanted_by_store[id(store)] = (generation, time.monotonic() + WANTED_SECONDS, names, ref)
    return names


for _signal in SIGNALS.values():
    _signal.receiver_connected.connect(invalidate, weak=False)
    _signal.receiver_disconnected.connect(invalidate, weak=False)


__all__ = [
    "ACTOR_TYPES",
    "EVENT_NAMES",
    "IMPORT",
    "SIGNALS",
    "SYSTEM",
    "Actor",
    "EntryEvent",
    "acting_as",
    "actor_for",
    "connect_gated",
    "current_actor",
    "entry_created",
    "entry_deleted",
    "entry_stage_changed",
    "entry_updated",
    "invalidate",
    "listening",
    "note",
    "send",
    "unheard",
    "unit",
    "wanted",
]
