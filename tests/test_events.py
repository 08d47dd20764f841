"""Entry signals (issue 13, item 8; `crm_templates.events`): each committed change sends its
signal once, from every write path, on every backend; nothing for previews or rolled-back
writes; async writes signal from the writer's thread after the commit; a raising receiver
does not break the write; two customers' events carry only their own data."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from crm_templates import Crm, events
from crm_templates.extension import CrmExtension
from crm_templates.stage_history import move_entry
from crm_templates.transfer import import_entries

DEALS = {
    "slug": "deals",
    "fields": [
        {"key": "amount", "type": "number"},
        {"key": "note", "type": "text"},
        {"key": "contact", "type": "reference", "target_entity": "people"},
    ],
    "pipelines": [{"slug": "sales", "stages": [{"slug": "new"}, {"slug": "won"}]}],
}
PEOPLE = {"slug": "people", "entityMode": "data", "fields": [{"key": "name", "type": "text"}]}


class Recorder:
    """Every entry signal sent for one store: (name, event, thread name)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.seen: list[tuple[str, events.EntryEvent, str]] = []
        self._lock = threading.Lock()

    def __call__(self, sender: Any, event: events.EntryEvent) -> None:
        with self._lock:
            self.seen.append((event.name, event, threading.current_thread().name))

    def take(self) -> list[tuple[str, events.EntryEvent]]:
        with self._lock:
            out = [(name, event) for name, event, _ in self.seen]
            self.seen.clear()
        return out

    def names(self) -> list[str]:
        return [name for name, _ in self.take()]


@pytest.fixture
def deals(crm: Crm) -> Crm:
    crm.ensure_entity(PEOPLE)
    crm.ensure_entity(DEALS)
    return crm


@pytest.fixture
def rec(deals: Crm) -> Iterator[Recorder]:
    recorder = Recorder(deals.store)
    for signal in events.SIGNALS.values():
        signal.connect(recorder, sender=deals.store, weak=False)
    yield recorder
    for signal in events.SIGNALS.values():
        signal.disconnect(recorder)


def stage(crm: Crm, slug: str) -> str:
    return next(s.id for s in crm.get_entity("deals").pipelines[0].stages if s.slug == slug)


def test_the_crm_functions_each_send_their_signal_once(deals: Crm, rec: Recorder) -> None:
    ann = deals.bind("cus_ann")
    created = ann.create_entry(slug="deals", values={"amount": 5})
    ((name, event),) = rec.take()
    assert name == "entry.created" and event.entry_id == created["id"]
    assert event.changes == {"amount": 5} and event.customer_id == "cus_ann"
    assert event.actor == events.Actor("customer", "cus_ann")
    assert event.to_stage_id == stage(deals, "new") and event.store is deals.store
    assert event.data()["stage_id"] == stage(deals, "new")

    ann.set_field(slug="deals", fieldKey="note", value="hi")
    ((name, event),) = rec.take()
    assert name == "entry.updated" and event.changes == {"note": "hi"}
    assert event.entry is not None and event.entry.values == {"amount": 5, "note": "hi"}

    ann.set_fields(slug="deals", fields={"amount": 7}, force=True)  # one-statement merge
    ((name, event),) = rec.take()
    assert (name, event.entry_id, dict(event.changes)) == (
        "entry.updated",
        created["id"],
        {"amount": 7},
    )

    ann.move_to_stage(slug="deals", stageSlug="won")
    ((name, event),) = rec.take()
    assert name == "entry.stage_changed" and event.changes == {}
    assert (event.from_stage_id, event.to_stage_id) == (stage(deals, "new"), stage(deals, "won"))
    assert event.data()["from_stage_id"] == stage(deals, "new")
    ann.move_to_stage(slug="deals", stageSlug="won")  # already there: nothing changed
    assert rec.take() == []

    person = deals.create_entry(
        slug="people", values={"name": "P"}, referenceType="site", referenceId="main"
    )
    assert rec.names() == ["entry.created"]
    ann.set_relation(slug="deals", relationKey="contact", targetEntryId=person["id"])
    ((name, event),) = rec.take()
    assert name == "entry.updated" and event.changes == {"contact": person["id"]}

    ann.add_field_value(slug="deals", fieldKey="amount", value=9)
    assert rec.names() == ["entry.created"]
    ann.clear_entries(slug="deals")
    deleted = rec.take()
    assert [n for n, _ in deleted] == ["entry.deleted", "entry.deleted"]
    assert {e.reference_id for _, e in deleted} == {"cus_ann"}


def test_move_to_entity_and_reassign_report_what_they_did(deals: Crm, rec: Recorder) -> None:
    deals.ensure_entity({"slug": "won", "fields": [{"key": "total", "type": "number"}]})
    deals.create_entry(slug="deals", values={"amount": 3}, referenceId="cus_a")
    rec.take()
    moved = deals.move_to_entity(
        fromSlug="deals",
        toSlug="won",
        fieldMap={"amount": "total"},
        removeFromOld=True,
        referenceId="cus_a",
    )
    assert [n for n, _ in rec.take()] == ["entry.created", "entry.deleted"]
    assert moved["ok"]
    deals.reassign_reference(
        slug="won",
        fromReferenceType="customer",
        fromReferenceId="cus_a",
        toReferenceId="cus_b",
    )
    ((name, event),) = rec.take()
    assert name == "entry.updated" and event.reference_id == "cus_b"
    assert event.previous_reference == ("customer", "cus_a")
    assert event.data()["previous_reference"] == {"type": "customer", "id": "cus_a"}


def test_admin_edits_moves_and_deletes_carry_the_operator(deals: Crm, rec: Recorder) -> None:
    entry_id = deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")["id"]
    rec.take()
    with events.acting_as("operator", "op_1"):
        deals.update_entry(entry_id, {"note": "x"}, title="T")
        move_entry(deals, entry_id, stage="won", actor="op_1")
        deals.delete_entry(entry_id)
    got = rec.take()
    assert [n for n, _ in got] == ["entry.updated", "entry.stage_changed", "entry.deleted"]
    assert all(e.actor == events.Actor("operator", "op_1") for _, e in got)
    assert got[0][1].changes == {"note": "x"} and got[0][1].title == "T"
    assert got[2][1].entry is not None and got[2][1].entry.id == entry_id
    assert deals.delete_entry(entry_id) is False and rec.take() == []
    # Without acting_as, move_entry's own actor names the operator.
    other = deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")["id"]
    rec.take()
    move_entry(deals, other, stage="won", actor="op_2")
    ((_, event),) = rec.take()
    assert event.actor == events.Actor("operator", "op_2")


def test_a_template_write_signals_and_a_preview_sends_nothing(deals: Crm, rec: Recorder) -> None:
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(deals, on_error="raise")  # type: ignore[attr-defined]
    template = env.from_string(
        "{{ SetCrmFields(slug='deals', fields={'amount': 4}) }}"
        "{{ MoveCrmToStage(slug='deals', stageSlug='won') }}ok"
    )
    assert template.render(customer_id="cus_t") == "ok"
    assert rec.names() == ["entry.created", "entry.stage_changed"]
    preview = deals.bind("cus_t", read_only=True)
    assert not preview.set_field(slug="deals", fieldKey="note", value="no")
    assert not preview.move_to_stage(slug="deals", stageSlug="new")
    assert not preview.create_entry(slug="deals", values={"amount": 1})
    assert rec.take() == []


def test_async_writes_signal_from_the_writer_thread_after_the_commit(
    deals: Crm, rec: Recorder
) -> None:
    view = deals.bind("cus_async")
    for n in range(5):
        assert view.create_entry(slug="deals", values={"amount": n}, **{"async": True})
    view.set_field(slug="deals", fieldKey="note", value="n", **{"async": True})
    assert deals.flush(30)
    with rec._lock:
        seen = list(rec.seen)
    assert [name for name, _, _ in seen] == ["entry.created"] * 5 + ["entry.updated"]
    assert {thread for _, _, thread in seen} == {"crm-writer"}
    for _, event, _ in seen:  # each one is in the store when its signal is sent
        assert deals.get_entry(event.entry_id) is not None
        assert event.actor == events.Actor("customer", "cus_async")


def test_a_rolled_back_write_sends_nothing_on_sqlite(deals: Crm, rec: Recorder) -> None:
    store = deals.store
    transactional = type(store).__name__ == "SQLiteStore"
    with pytest.raises(RuntimeError), events.unit(), store.atomic():
        made = deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_rb")
        raise RuntimeError("the enclosing transaction fails")
    stored = deals.get_entry(made["id"])
    got = rec.take()
    if transactional:  # rolled back: no entry and no signal
        assert stored is None and got == []
    else:  # a search cluster has no transactions: the entry is there, and so is its signal
        assert stored is not None and [n for n, _ in got] == ["entry.created"]


def test_a_failed_write_sends_nothing(deals: Crm, rec: Recorder) -> None:
    from crm_templates import CrmValidationError

    with pytest.raises(CrmValidationError):
        deals.create_entry(slug="deals", values={"amount": "lots"}, referenceId="cus_x")
    entry_id = deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_x")["id"]
    assert rec.names() == ["entry.created"]
    with pytest.raises(CrmValidationError):
        deals.update_entry(entry_id, {"amount": "lots"})
    with pytest.raises(CrmValidationError):
        deals.set_field(slug="deals", fieldKey="amount", value="lots", referenceId="cus_x")
    assert rec.take() == []


def test_a_raising_receiver_is_logged_and_the_write_stands(
    deals: Crm, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, event: events.EntryEvent) -> None:
        raise ValueError("receiver bug")

    events.entry_created.connect(broken, sender=deals.store, weak=False)
    try:
        with caplog.at_level(logging.ERROR, "crm_templates.events"):
            made = deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_r")
    finally:
        events.entry_created.disconnect(broken)
    assert made["ok"] and deals.get_entry(made["id"]) is not None
    assert "receiver bug" in caplog.text and "the write stands" in caplog.text
    assert rec.names() == ["entry.created"]  # the other receivers still ran


def test_imports_signal_each_row_as_the_import_actor(deals: Crm, rec: Recorder) -> None:
    text = "reference_type,reference_id,amount\ncustomer,cus_1,5\ncustomer,cus_2,6\n"
    report = import_entries(deals, "deals", io.StringIO(text), "csv")
    assert report.created == 2
    got = rec.take()
    assert [n for n, _ in got] == ["entry.created", "entry.created"]
    assert {e.actor.type for _, e in got} == {"import"}
    rows = {e.reference_id: dict(e.changes) for _, e in got}
    assert rows == {"cus_1": {"amount": 5}, "cus_2": {"amount": 6}}
    dry = import_entries(deals, "deals", io.StringIO(text), "csv", dry_run=True)
    assert dry.created == 2 and rec.take() == []


def test_two_customers_events_carry_only_their_own_data(deals: Crm, rec: Recorder) -> None:
    deals.bind("cus_ann").set_fields(slug="deals", fields={"note": "ann-secret"})
    deals.bind("cus_bob").set_fields(slug="deals", fields={"note": "bob-secret"})
    got = rec.take()
    assert len(got) == 2
    for _, event in got:
        mine = event.reference_id
        text = repr(event.data())
        other = "bob" if mine == "cus_ann" else "ann"
        assert f"{mine[4:]}-secret" in text and f"{other}-secret" not in text
        assert f"cus_{other}" not in text
        assert event.entry is not None and event.entry.reference_id == mine


def test_actor_parsing_and_acting_as_rules() -> None:
    assert events.Actor.parse("customer cus_1") == events.Actor("customer", "cus_1")
    assert events.Actor.parse("system") == events.SYSTEM
    assert events.Actor.parse("op_9") == events.Actor("operator", "op_9")
    assert events.Actor.parse("operator") == events.Actor("operator", "operator")
    with pytest.raises(ValueError, match="actor type"), events.acting_as("robot", "x"):
        pass
    with events.acting_as("api_key", "key_1") as who:
        assert events.current_actor() == who
        assert events.actor_for("cus_1") == who
    assert events.current_actor() is None
    assert events.actor_for("cus_1") == events.Actor("customer", "cus_1")
    assert events.actor_for(None) == events.SYSTEM
