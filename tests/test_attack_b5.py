"""Attack review of this session's speed work (issue 14, B2/B3/B5): planned listings, the
cached "who wants a store's events" answer, the bound-service reuse.

Each test here failed before its fix: a planned listing answered a call whose options the
service refuses (``limit=None``, ``limit=True`` beside ``limit=1``); a write that began when
nobody listened sent its event before its commit, attributed to ``system``, when a receiver
connected while it waited for the write lock.

Real parts only: SQLite files, a second raw sqlite3 connection holding the write lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from crm_templates import Crm, CrmExtension, events, open_store
from crm_templates.extension import CrmTemplateError

WT = {
    "slug": "wt",
    "fields": [{"key": "weight", "type": "number"}, {"key": "history", "type": "json"}],
}
NOTES = {"slug": "notes", "entityMode": "data", "fields": [{"key": "n", "type": "number"}]}


@pytest.fixture
def crm(tmp_path: Path) -> Iterator[Crm]:
    """A SQLite service with two customers' weight entries."""
    service = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    service.ensure_entity(WT)
    service.ensure_entity(NOTES)
    for cid in ("cus_alice", "cus_bob"):
        view = service.bind(cid)
        for day in range(1, 4):
            view.add_field_value(slug="wt", fieldKey="history", value={"d": f"{cid}-{day}"})
    yield service
    service.close()


def _env(crm: Crm) -> SandboxedEnvironment:
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(crm)  # type: ignore[attr-defined]
    return env


def _outcome(env: SandboxedEnvironment, source: str, **context: Any) -> str:
    try:
        return env.from_string(source).render(customer_id="cus_alice", **context)
    except CrmTemplateError as exc:
        return "error: " + str(exc).split(": ", 1)[1]


# --- planned listings answer only what the service accepts ----------------------------------

BAD_LIMITS = [
    # alone: planned (a constant None), the service refuses it
    "{{ GetCrmEntries(slug=S, limit=None) | length }}",
    "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=None) | length }}",
    # beside a good call that equals it as a dict key: True == 1, 2.0 == 2
    "{{ GetCrmEntries(slug=S, limit=1) | length }}{{ GetCrmEntries(slug=S, limit=True) }}",
    "{{ GetCrmEntries(slug=S, limit=2.0) | length }}{{ GetCrmEntries(slug=S, limit=2) }}",
    "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=2) | length }}"
    "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=2.0) }}",
]


@pytest.mark.parametrize("source", BAD_LIMITS)
def test_a_cached_listing_never_answers_a_call_the_service_refuses(crm: Crm, source: str) -> None:
    env = _env(crm)
    planned = _outcome(env, source.replace("slug=S", "slug='wt'"))
    lazy = _outcome(env, source.replace("slug=S", "slug=s"), s="wt")
    assert planned.startswith("error: ") and "limit must be a whole number" in planned
    assert planned == lazy


def test_listings_over_the_limit_cap_share_one_read_and_answer_alike(crm: Crm) -> None:
    env = _env(crm)
    source = (
        "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=500) | length }}/"
        "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=200) | length }}/"
        "{{ GetCrmEntries(slug=S, limit=1) | map(attribute='reference_id') | join }}"
    )
    planned = _outcome(env, source.replace("slug=S", "slug='wt'"))
    assert planned == _outcome(env, source.replace("slug=S", "slug=s"), s="wt")
    assert planned == "3/3/cus_alice"


# --- events: a write that began unheard stays unheard ----------------------------------------


def test_a_receiver_connected_while_a_write_waits_gets_no_early_or_misattributed_event(
    crm: Crm, tmp_path: Path
) -> None:
    """A write that found nobody listening (`events.wanted` empty) runs without a unit of
    work; a receiver connected while it waits for SQLite's write lock must not be sent an
    event for it before its commit, attributed to ``system`` instead of its customer."""
    ann = crm.bind("cus_ann")
    ann.set_field(slug="notes", fieldKey="n", value=1)
    assert events.wanted(crm.store) == frozenset()
    began = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        conn = crm.store._conn()  # type: ignore[attr-defined]
        conn.set_trace_callback(lambda sql: began.set() if sql.startswith("BEGIN") else None)
        try:
            ann.set_field(slug="notes", fieldKey="n", value=2)  # the scan path: BEGIN IMMEDIATE
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            conn.set_trace_callback(None)

    seen: list[tuple[str, dict[str, Any], list[str]]] = []

    def receiver(sender: Any, event: events.EntryEvent) -> None:
        other = sqlite3.connect(tmp_path / "crm.db")
        try:
            stored = [r[0] for r in other.execute("SELECT values_json FROM entries WHERE "
                                                  "entity = 'notes'")]  # fmt: skip
        finally:
            other.close()
        seen.append((str(event.actor), dict(event.changes), stored))

    blocker = sqlite3.connect(tmp_path / "crm.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the write waits for this lock
    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert began.wait(30), "the write never reached BEGIN"
        events.entry_updated.connect(receiver, sender=crm.store, weak=False)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
        writer.join(30)
    try:
        assert not failures, failures
        # Whatever the write sends, it sends after its commit and as its customer.
        for actor, _changes, stored in seen:
            assert actor == "customer cus_ann", seen
            assert stored == ['{"n":2.0}'], f"sent before the commit: {seen}"
        ann.set_field(slug="notes", fieldKey="n", value=3)  # the next write is heard
        assert seen[-1][:2] == ("customer cus_ann", {"n": 3.0})
    finally:
        events.entry_updated.disconnect(receiver, sender=crm.store)
