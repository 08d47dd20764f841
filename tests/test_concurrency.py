"""Concurrency: many threads writing one reference lose nothing, on every backend (SPEC §10)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from crm_templates import Crm

THREADS = 8
PER_THREAD = 250
SLUG = "tracker"


@pytest.fixture
def tracker(crm: Crm) -> Crm:
    """An entity with one key per thread plus a history key, bound to customer cus_1."""
    crm.ensure_entity(
        slug=SLUG,
        fields=[{"key": f"k{i}", "type": "number"} for i in range(THREADS)]
        + [{"key": "weight", "type": "number"}],
    )
    return crm.bind("cus_1")


def run_threads(work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def runner(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # surfaced below: a thread's failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a writer thread hung"
    assert errors == [], errors[:3]


def test_add_field_value_from_many_threads_keeps_every_entry(tracker: Crm) -> None:
    def work(i: int) -> None:
        for n in range(PER_THREAD):
            tracker.add_field_value(slug=SLUG, fieldKey="weight", value=i * 1000 + n)

    run_threads(work)
    assert tracker.store.count_entries(SLUG, "customer", "cus_1") == THREADS * PER_THREAD
    values = [e.values["weight"] for e in tracker.store.iter_entries(SLUG)]
    assert sorted(values) == sorted(
        float(i * 1000 + n) for i in range(THREADS) for n in range(PER_THREAD)
    )


def test_set_fields_on_different_keys_loses_no_update(tracker: Crm) -> None:
    def work(i: int) -> None:
        for n in range(PER_THREAD):
            tracker.set_fields(slug=SLUG, fields={f"k{i}": n})

    run_threads(work)
    final = tracker.get_fields(slug=SLUG, fieldKeys=[f"k{i}" for i in range(THREADS)])
    assert final == {f"k{i}": float(PER_THREAD - 1) for i in range(THREADS)}


def test_set_field_force_on_different_keys_loses_no_update(tracker: Crm) -> None:
    def work(i: int) -> None:
        for n in range(PER_THREAD // 5):
            tracker.set_field(slug=SLUG, fieldKey=f"k{i}", value=n, force=True)

    run_threads(work)
    final = tracker.get_fields(slug=SLUG, fieldKeys=[f"k{i}" for i in range(THREADS)])
    assert final == {f"k{i}": float(PER_THREAD // 5 - 1) for i in range(THREADS)}


def test_async_writes_from_many_threads_all_land(tracker: Crm) -> None:
    def work(i: int) -> None:
        for n in range(PER_THREAD):
            tracker.add_field_value(slug=SLUG, fieldKey="weight", value=n, **{"async": True})

    run_threads(work)
    assert tracker.flush(timeout=300)
    assert tracker.failed_writes == []
    assert tracker.store.count_entries(SLUG) == THREADS * PER_THREAD


def test_async_set_fields_keep_submission_order(tracker: Crm) -> None:
    for n in range(300):
        tracker.set_fields(slug=SLUG, fields={"k0": n, "k1": -n}, **{"async": True})
    assert tracker.flush(timeout=120)
    assert tracker.get_fields(slug=SLUG, fieldKeys=["k0", "k1"]) == {"k0": 299.0, "k1": -299.0}
    assert tracker.store.count_entries(SLUG) == 1


def test_concurrent_ensure_entity_creates_once(crm: Crm) -> None:
    results: list[Any] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        r = crm.ensure_entity(slug="race", fields=[{"key": f"f{i}"}])
        with lock:
            results.append(r)

    run_threads(work)
    assert sum(1 for r in results if r["created"]) == 1
    assert {f.key for f in crm.get_entity("race").fields} == {f"f{i}" for i in range(THREADS)}
