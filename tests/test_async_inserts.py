"""Queued inserts without closures (issue 14, B3): an async AddCrmFieldValue or CreateCrmEntry is
queued as a `PendingWrite` with ``apply=None`` and its entry in ``inserts``; the writer inserts
it with its neighbours, or alone when a batch fails and is replayed, sending ``entry.created`` as
the submitting customer's — the same events, results and failure records as before. The writer
is woken only by the write that makes its queue non-empty or full, and still never stalls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_templates import Crm, events, open_store
from crm_templates.ids import new_id, utc_now
from crm_templates.model import Entry
from crm_templates.writer import AsyncWriter, PendingWrite

SLUG = "tracker"
STAGED = "deals"


@pytest.fixture
def crm(tmp_path: Path) -> Iterator[Crm]:
    crm = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    crm.ensure_entity(slug=SLUG, entityMode="data", fields=[{"key": "n", "type": "number"}])
    crm.ensure_entity(
        slug=STAGED,
        entityMode="crm",
        fields=[{"key": "amount", "type": "number"}],
        pipelines=[{"slug": "sales", "stages": [{"slug": "new"}, {"slug": "won"}]}],
    )
    yield crm
    crm.close()


@pytest.fixture
def created(crm: Crm) -> Iterator[list[events.EntryEvent]]:
    seen: list[events.EntryEvent] = []

    def receiver(sender: Any, event: events.EntryEvent) -> None:
        seen.append(event)

    events.entry_created.connect(receiver, sender=crm.store, weak=False)
    yield seen
    events.entry_created.disconnect(receiver, sender=crm.store)


def _entry(n: float, ref: str = "cus_1", ident: str | None = None) -> Entry:
    now = utc_now()
    return Entry(ident or new_id(), SLUG, "customer", ref, {"n": n}, "", None, None, now, now)


def _until(check: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return check()


def _event(e: events.EntryEvent) -> tuple[Any, ...]:
    return (e.name, e.entity, e.reference_type, e.reference_id, dict(e.changes), str(e.actor),
            e.to_pipeline_id is not None, e.to_stage_id is not None)  # fmt: skip


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("add_field_value", {"slug": SLUG, "fieldKey": "n", "value": 3}),
        ("add_field_value", {"slug": STAGED, "fieldKey": "amount", "value": 3}),
        ("create_entry", {"slug": STAGED, "title": "T", "values": {"amount": 2}}),
        ("create_entry", {"slug": STAGED, "values": {"amount": 2}, "stage": "won"}),
    ],
)
@pytest.mark.parametrize("keywords", [False, True], ids=["mapping", "keywords"])
def test_a_queued_insert_answers_and_stores_what_the_same_write_does_now(
    crm: Crm,
    created: list[events.EntryEvent],
    method: str,
    options: dict[str, Any],
    keywords: bool,
) -> None:
    view = crm.bind("cus_1")
    crm.get_entity(SLUG), crm.get_entity(STAGED)

    def call(asynchronous: bool) -> Any:
        o = {**options, "async": asynchronous}
        return getattr(view, method)(**o) if keywords else getattr(view, method)(o)

    now = call(False)
    later = call(True)
    assert list(later) == ["ok", "pending", "id"] and later["ok"] and later["pending"]
    assert now["created"] is True and type(later) is type(now)
    crm.flush()
    stored = crm.store.get_entries_by_ids([now["id"], later["id"]])
    a, b = stored[now["id"]], stored[later["id"]]
    assert (a.entity, a.reference_id, a.values, a.title, a.pipeline_id, a.stage_id, a.version) == (
        b.entity, b.reference_id, b.values, b.title, b.pipeline_id, b.stage_id, b.version
    )  # fmt: skip
    assert [_event(e) for e in created] == [_event(created[0])] * 2
    assert [e.entry_id for e in created] == [now["id"], later["id"]]
    assert str(created[1].actor) == "customer cus_1"
    assert crm.failed_writes == []


def test_a_queued_insert_carries_no_closure(crm: Crm) -> None:
    """What the writer gets: the entry, who asked, and a copy of the options for the failure
    log — nothing to call."""
    queued: list[PendingWrite] = []
    writer = crm._shared.writer
    real = writer.submit

    def keep(write: PendingWrite) -> None:
        queued.append(write)
        real(write)

    writer.submit = keep  # type: ignore[method-assign]
    options = {"slug": SLUG, "fieldKey": "n", "value": 3, "async": True}
    made = crm.bind("cus_1").add_field_value(options)
    options["value"] = 4  # the caller reusing its dict changes nothing queued
    crm.flush()
    [write] = queued
    assert write.apply is None
    assert [e.id for e in write.inserts] == [made["id"]]
    assert str(write.actor) == "customer cus_1"
    assert write.function == "AddCrmFieldValue"
    assert write.payload == {"slug": SLUG, "fieldKey": "n", "value": 3, "async": True}


@pytest.mark.parametrize("acting", ["customer", "system"])
def test_a_failed_batch_is_replayed_write_by_write_with_each_writers_events(
    crm: Crm, created: list[events.EntryEvent], acting: str
) -> None:
    """A duplicate id fails the whole batch; replayed alone, every other queued insert lands
    and sends its event as the customer who submitted it; the duplicate is recorded once with
    its payload, and sends nothing."""
    taken = _entry(0.0)
    crm.store.insert_entries([taken])
    writer = AsyncWriter(crm.store, linger=60.0)
    try:
        writes = []
        for i, ident in enumerate([None, None, taken.id, None]):
            entry = _entry(float(i + 1), ref=f"cus_{i}", ident=ident)
            actor = events.actor_for(f"cus_{i}" if acting == "customer" else None)
            writes.append(PendingWrite("AddCrmFieldValue", {"value": i + 1}, None, (entry,), actor))
        for write in writes:
            writer.submit(write)
        assert writer.flush(timeout=20)
        landed = crm.store.get_entries_by_ids([w.inserts[0].id for w in writes])
        assert sorted(e.values["n"] for e in landed.values()) == [0.0, 1.0, 2.0, 4.0]
        assert landed[taken.id] == taken
        [failed] = list(writer.failures)
        assert (failed.function, failed.payload) == ("AddCrmFieldValue", {"value": 3})
        assert "DuplicateError" in failed.error
        assert [(e.entry_id, str(e.actor)) for e in created] == [
            (w.inserts[0].id, str(w.actor)) for w in (writes[0], writes[1], writes[3])
        ]
        if acting == "customer":
            assert [str(e.actor) for e in created] == ["customer cus_0", "customer cus_1",
                                                       "customer cus_3"]  # fmt: skip
    finally:
        writer.close()


def test_runs_of_inserts_around_other_writes_keep_the_order(
    crm: Crm, created: list[events.EntryEvent]
) -> None:
    """Insert-only writes are grouped, a write that is not one splits the run, and everything
    is applied in submission order."""
    writer = AsyncWriter(crm.store, linger=60.0)
    order: list[str] = []
    try:
        first, second, third = _entry(1.0), _entry(2.0), _entry(3.0)

        def other() -> None:
            order.append(f"other saw {crm.store.count_entries(SLUG)}")

        for write in (
            PendingWrite("AddCrmFieldValue", {}, None, (first,), events.SYSTEM),
            PendingWrite("AddCrmFieldValue", {}, None, (second,), events.SYSTEM),
            PendingWrite("ClearCrmEntries", {}, other),
            PendingWrite("AddCrmFieldValue", {}, None, (third,), events.SYSTEM),
        ):
            writer.submit(write)
        assert writer.flush(timeout=20)
        assert order == ["other saw 2"]
        assert crm.store.count_entries(SLUG) == 3
        assert [e.entry_id for e in created] == [first.id, second.id, third.id]
    finally:
        writer.close()


def test_an_idle_writer_wakes_for_the_first_write(crm: Crm) -> None:
    """No linger: the writer sleeps until a write arrives, and the write that makes the queue
    non-empty wakes it (nobody flushes here)."""
    writer = AsyncWriter(crm.store, linger=0.0)
    try:
        for i in range(3):
            writer.submit(PendingWrite("AddCrmFieldValue", {}, None, (_entry(float(i)),), None))
            assert _until(lambda: writer.pending == 0), "the writer slept through a write"
            time.sleep(0.02)  # the writer is back waiting on an empty queue
        assert crm.store.count_entries(SLUG) == 3
    finally:
        writer.close()


def test_a_lingering_writer_wakes_when_its_batch_is_full(crm: Crm) -> None:
    """A writer lingering 60 s for a fuller batch takes it as soon as it is full, and keeps
    taking full batches while the queue holds them, without anyone flushing."""
    writer = AsyncWriter(crm.store, batch_size=3, linger=60.0)
    try:

        def submit(count: int) -> None:
            for _ in range(count):
                entry = _entry(0.0)
                writer.submit(PendingWrite("AddCrmFieldValue", {}, None, (entry,), None))

        submit(1)
        time.sleep(0.05)  # the writer took nothing and lingers
        assert writer.pending == 1
        submit(2)  # now the batch is full: it goes without another write or a flush
        assert _until(lambda: writer.pending == 0), f"{writer.pending} still queued"
        assert crm.store.count_entries(SLUG) == 3
        submit(7)  # two full batches go at once, the last write waits for a fuller batch
        assert _until(lambda: writer.pending == 1), f"{writer.pending} still queued"
        assert crm.store.count_entries(SLUG) == 9
        time.sleep(0.05)
        assert writer.pending == 1
        assert writer.flush(timeout=20)
        assert crm.store.count_entries(SLUG) == 10
    finally:
        writer.close()


def test_the_fast_entry_constructor_makes_the_same_entry() -> None:
    """`fast_writes._entry` sets `Entry`'s slots directly: the result is equal, hashes equal,
    prints equal and stays frozen."""
    import dataclasses

    from crm_templates import fast_writes

    args = ("e1", SLUG, "customer", "cus_1", {"n": 1.0}, "pip", "stg", "2026-01-01T00:00:00Z")
    made = fast_writes._entry(*args)
    expected = Entry("e1", SLUG, "customer", "cus_1", {"n": 1.0}, "", "pip", "stg",
                     "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", 1)  # fmt: skip
    assert type(made) is Entry
    assert made == expected and repr(made) == repr(expected)
    assert dataclasses.astuple(made) == dataclasses.astuple(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.title = "x"  # type: ignore[misc]


@pytest.mark.parametrize("method", ["add_field_value", "create_entry"])
def test_a_queued_insert_through_a_creating_provider_creates_one_customer(
    crm: Crm, created: list[events.EntryEvent], method: str
) -> None:
    """A page's view creates its anonymous customer on the first write; queuing the write asks
    who writes without creating again (the actor is the customer just created)."""
    asked: list[bool] = []
    made: list[str] = []

    def provider(create: bool) -> str | None:
        asked.append(create)
        if create and not made:
            made.append(crm.create_customer().id)
        return made[0] if made else None

    crm.get_entity(SLUG)
    view = crm.bind(provider)
    options: dict[str, Any] = {"slug": SLUG, "async": True}
    options.update({"fieldKey": "n", "value": 1} if method == "add_field_value" else {})
    getattr(view, method)(options)
    crm.flush()
    assert asked == [True, False]
    assert len(made) == 1 and crm.store.count_customers() == 1
    assert [(e.reference_id, str(e.actor)) for e in created] == [(made[0], f"customer {made[0]}")]


def test_a_queued_write_that_is_not_an_insert_sends_its_events_as_the_customer(
    crm: Crm,
) -> None:
    """Async writes other than inserts still run as the submitting customer's unit on the
    writer's thread (`Crm._write`), so their events name that customer, not the writer."""
    seen: list[events.EntryEvent] = []

    def receiver(sender: Any, event: events.EntryEvent) -> None:
        seen.append(event)

    view = crm.bind("cus_q")
    view.set_field(slug=SLUG, fieldKey="n", value=1)
    events.entry_updated.connect(receiver, sender=crm.store, weak=False)
    try:
        assert view.set_field(slug=SLUG, fieldKey="n", value=2, force=True, async_=True)["pending"]
        view.set_fields({"slug": SLUG, "fields": {"n": 3}, "async": True})
        crm.flush()
    finally:
        events.entry_updated.disconnect(receiver, sender=crm.store)
    assert [(dict(e.changes), str(e.actor)) for e in seen] == [
        ({"n": 2.0}, "customer cus_q"),
        ({"n": 3.0}, "customer cus_q"),
    ]


def test_views_are_not_trusted_and_asking_their_customer_creates_none(crm: Crm) -> None:
    asked: list[bool] = []

    def provider(create: bool) -> str | None:
        asked.append(create)
        return "cus_p" if create else None

    view = crm.bind(provider)
    assert crm.trusted is True
    assert view.trusted is False and crm.bind("cus_1").trusted is False
    assert view.customer_id is None
    assert asked == [False]
