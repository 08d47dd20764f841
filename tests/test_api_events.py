"""The REST API's writes send the entry signals (issue 13, item 8) naming the API key as their
author, not the customer the entry belongs to; the actor does not outlive the request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crm_templates import events
from tests.admin_world import BACKENDS
from tests.api_world import ApiWorld, make_api_world


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> ApiWorld:
    """The API world, once per backend."""
    return make_api_world(tmp_path, request.param, request)


def test_api_writes_are_signalled_as_the_key(world: ApiWorld) -> None:
    seen: list[tuple[str, Any]] = []

    def record(sender: Any, event: events.EntryEvent) -> None:
        seen.append((event.name, event))

    store = world.crm.store
    receivers = dict(events.SIGNALS)
    for signal in receivers.values():
        signal.connect(record, sender=store, weak=False)
    try:
        made = world.post(
            "/entities/deals/entries", {"reference_id": world.ann.id, "values": {"amount": 5}}
        )
        assert made.status_code == 201, made.get_json()
        entry_id = made.get_json()["id"]
        moved = world.put(f"/entries/{entry_id}/stage", {"stage_id": "won"})
        assert moved.status_code == 200, moved.get_json()
        # After the requests, a write in this thread is no longer the key's.
        world.crm.set_field(slug="deals", fieldKey="note", value="x", referenceId=world.bob.id)
    finally:
        for signal in receivers.values():
            signal.disconnect(record)
    actors = [event.actor for _, event in seen]
    key = events.Actor("api_key", world.write_id)
    assert actors[:-1] and all(actor == key for actor in actors[:-1]), actors
    assert {event.entry_id for _, event in seen[:-1]} == {entry_id}
    # (a service call outside any render or request is the system's)
    assert actors[-1] == events.SYSTEM
