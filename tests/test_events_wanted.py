"""The cached "who wants this store's events" answer (`events.wanted`, issue 14 B2/B3): writes
skip building events when nobody wants them, and never miss one somebody wants — a receiver
connected after the answer was cached, a webhook added in this process, or one added by another
process (noticed through the webhooks' endpoint cache and the answer's time limit)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_templates import Crm, events, open_store, webhooks

NOTES = {"slug": "notes", "entityMode": "data", "fields": [{"key": "n", "type": "number"}]}


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Crm, Crm]]:
    crms = []
    for name in ("a", "b"):
        crm = Crm(open_store(f"sqlite:///{tmp_path / name}.db"))
        crm.ensure_entity(NOTES)
        crms.append(crm)
    yield crms[0], crms[1]
    for crm in crms:
        crm.close()


def _collect(store: Any) -> tuple[list[events.EntryEvent], Any]:
    seen: list[events.EntryEvent] = []

    def receiver(sender: Any, event: events.EntryEvent) -> None:
        seen.append(event)

    return seen, receiver


def test_a_receiver_connected_after_the_answer_was_cached_gets_the_next_write(
    two: tuple[Crm, Crm],
) -> None:
    a, _ = two
    ann = a.bind("cus_ann")
    ann.set_field(slug="notes", fieldKey="n", value=1)
    assert events.wanted(a.store) == frozenset()  # cached: nobody listens yet
    seen, receiver = _collect(a.store)
    events.entry_updated.connect(receiver, sender=a.store, weak=False)
    try:
        assert events.wanted(a.store) == {"entry.updated"}
        ann.set_field(slug="notes", fieldKey="n", value=2, force=True)
        ann.set_field(slug="notes", fieldKey="n", value=3)
        assert [(e.name, dict(e.changes), str(e.actor)) for e in seen] == [
            ("entry.updated", {"n": 2.0}, "customer cus_ann"),
            ("entry.updated", {"n": 3.0}, "customer cus_ann"),
        ]
    finally:
        events.entry_updated.disconnect(receiver, sender=a.store)
    assert events.wanted(a.store) == frozenset()
    ann.set_field(slug="notes", fieldKey="n", value=4)
    assert len(seen) == 2


def test_the_answer_is_per_store_and_follows_webhooks_added_here(two: tuple[Crm, Crm]) -> None:
    a, b = two
    a.bind("cus_ann").set_field(slug="notes", fieldKey="n", value=1)
    b.bind("cus_bob").set_field(slug="notes", fieldKey="n", value=1)
    assert events.wanted(a.store) == events.wanted(b.store) == frozenset()
    endpoint = webhooks.add_endpoint(
        a.store, "http://127.0.0.1:9/hook", ["entry.updated"], allow_private=True
    )
    assert events.wanted(a.store) == {"entry.updated"}
    assert events.wanted(b.store) == frozenset()
    a.bind("cus_ann").set_field(slug="notes", fieldKey="n", value=2, force=True)
    b.bind("cus_bob").set_field(slug="notes", fieldKey="n", value=2, force=True)
    queued = webhooks.deliveries(a.store)
    assert [(d.event, d.endpoint_id) for d in queued] == [("entry.updated", endpoint.id)]
    assert webhooks.deliveries(b.store) == []
    webhooks.set_active(a.store, endpoint.id, False)
    assert events.wanted(a.store) == frozenset()


def test_a_webhook_added_by_another_process_is_noticed_within_the_cache_times(
    two: tuple[Crm, Crm], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two
    monkeypatch.setattr(webhooks, "ENDPOINT_CACHE_SECONDS", 0.2)
    monkeypatch.setattr(events, "WANTED_SECONDS", 0.2)
    ann = a.bind("cus_ann")
    ann.set_field(slug="notes", fieldKey="n", value=1, force=True)
    assert events.wanted(a.store) == frozenset()
    script = (
        "import sys\n"
        "from crm_templates import open_store, webhooks\n"
        "store = open_store(sys.argv[1])\n"
        "webhooks.add_endpoint(store, 'http://127.0.0.1:9/hook', ['entry.updated'],"
        " allow_private=True)\n"
        "store.close()\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{tmp_path / 'a'}.db"], check=True, timeout=60
    )
    deadline = time.monotonic() + 10
    writes = 0
    while not webhooks.deliveries(a.store) and time.monotonic() < deadline:
        ann.set_field(slug="notes", fieldKey="n", value=writes, force=True)
        writes += 1
        time.sleep(0.02)
    queued = webhooks.deliveries(a.store)
    assert queued, "the other process's webhook was never noticed"
    assert {d.event for d in queued} == {"entry.updated"}


def test_customer_actors_are_shared_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "CUSTOMER_ACTORS_KEPT", 3)
    monkeypatch.setattr(events, "_customer_actors", {})
    first = events.actor_for("cus_1")
    assert first == events.Actor("customer", "cus_1")
    assert events.actor_for("cus_1") is first
    for n in range(2, 10):
        assert events.actor_for(f"cus_{n}") == events.Actor("customer", f"cus_{n}")
        assert len(events._customer_actors) <= 3
    assert events.actor_for(None) is events.SYSTEM
    with events.acting_as("operator", "op_1"):
        assert events.actor_for("cus_1") == events.Actor("operator", "op_1")
