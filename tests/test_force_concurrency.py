"""``force`` under concurrency, with a setup where it matters (issue 10, item 2).

The reference has three entries: the oldest holds every key the threads write, the two newer
ones hold none of them. With ``force`` every write must land in the newest entry; without it,
in the oldest (the one holding the key). Eight threads write different keys at once; the final
state must show every thread's last value in the right entry and nothing anywhere else — a
lost update, a write to the wrong entry or a new entry all fail. (An earlier concurrency test
of ``force`` had a single entry, where forced and unforced writes cannot be told apart.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from crm_templates import Crm

THREADS = 8
PER_THREAD = 25
SLUG = "tracker"
KEYS = [f"k{i}" for i in range(THREADS)]


def run_threads(work: Callable[[int], None]) -> None:
    """Run ``work(i)`` on THREADS threads started together; any thread's failure fails."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def runner(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a writer thread hung"
    assert errors == [], errors[:3]


@pytest.fixture
def three_entries(crm: Crm) -> tuple[Crm, list[str]]:
    """The view for cus_1 and its entries' ids, oldest first: the oldest holds every key."""
    crm.ensure_entity(
        slug=SLUG,
        fields=[{"key": k, "type": "number"} for k in KEYS] + [{"key": "weight", "type": "number"}],
    )
    view = crm.bind("cus_1")
    oldest = view.create_entry(slug=SLUG, values={k: -1 for k in KEYS})["id"]
    middle = view.add_field_value(slug=SLUG, fieldKey="weight", value=80)["id"]
    newest = view.add_field_value(slug=SLUG, fieldKey="weight", value=81)["id"]
    # Another customer's entries must stay as they are.
    crm.bind("cus_2").create_entry(slug=SLUG, values={k: -2 for k in KEYS})
    return view, [oldest, middle, newest]


WRITES: dict[str, Callable[[Crm, str, int, bool], Any]] = {
    "SetCrmField": lambda v, key, n, force: v.set_field(
        slug=SLUG, fieldKey=key, value=n, force=force
    ),
    "SetCrmFields": lambda v, key, n, force: v.set_fields(
        slug=SLUG, fields=[{"fieldKey": key, "value": n}], force=force
    ),
}


@pytest.mark.parametrize("force", [True, False], ids=["force", "no-force"])
@pytest.mark.parametrize("function", sorted(WRITES))
def test_force_decides_the_entry_under_eight_threads(
    three_entries: tuple[Crm, list[str]], function: str, force: bool
) -> None:
    view, (oldest, middle, newest) = three_entries
    write = WRITES[function]
    target = newest if force else oldest
    results: list[Any] = []

    def work(i: int) -> None:
        for n in range(PER_THREAD):
            results.append(write(view, KEYS[i], n, force))

    run_threads(work)
    assert {r["id"] for r in results} == {target}
    assert not any(r["created"] for r in results)
    store = view.store
    final = {k: float(PER_THREAD - 1) for k in KEYS}
    got = {i: store.get_entry(i) for i in (oldest, middle, newest)}
    assert all(e is not None for e in got.values())
    if force:
        assert got[newest].values == {"weight": 81.0, **final}  # type: ignore[union-attr]
        assert got[oldest].values == {k: -1.0 for k in KEYS}  # type: ignore[union-attr]
    else:
        assert got[oldest].values == final  # type: ignore[union-attr]
        assert got[newest].values == {"weight": 81.0}  # type: ignore[union-attr]
    assert got[middle].values == {"weight": 80.0}  # type: ignore[union-attr]
    assert store.count_entries(SLUG, "customer", "cus_1") == 3
    assert [e.values for e in store.find_entries(SLUG, "customer", "cus_2", limit=None)] == [
        {k: -2.0 for k in KEYS}
    ]
    # Reads agree: the newest entry holding each key answers.
    assert view.get_fields(slug=SLUG, fieldKeys=KEYS) == final
