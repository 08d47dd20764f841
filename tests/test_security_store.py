"""Security records in the store (issue 8 items 4 and 5; SPEC §8): used tokens, rate limits and
session generations hold across threads, processes and reopened stores, on every backend."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_templates import CrmValidationError, open_store
from crm_templates.model import Customer

ROOT = Path(__file__).resolve().parent.parent
THREADS = 8


def run_threads(work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` on THREADS threads started together; their results, in thread order."""
    start = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS
    errors: list[BaseException] = []

    def runner(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as exc:  # surfaced below: a thread's failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert errors == [], errors[:3]
    return results


# --- claims -------------------------------------------------------------------------------


def test_a_claim_refuses_replays_until_it_expires(store: Any) -> None:
    assert store.is_token_claimed("sign-in:n1") is False
    assert store.claim_token("sign-in:n1", time.time() + 0.3) is True
    assert store.is_token_claimed("sign-in:n1") is True
    assert store.claim_token("sign-in:n1", time.time() + 60) is False  # a replay
    assert store.is_token_claimed("sign-in:n2") is False  # other keys are untouched
    time.sleep(0.35)
    # The refused replay did not extend the claim: it expired on its first expiry.
    assert store.is_token_claimed("sign-in:n1") is False
    assert store.claim_token("sign-in:n1", time.time() + 60) is True  # reclaimed after expiry
    assert store.is_token_claimed("sign-in:n1") is True
    assert store.claim_token("sign-in:n1", time.time() + 60) is False


def test_a_claim_already_expired_when_made_does_not_block(store: Any) -> None:
    assert store.claim_token("revoked:s1", time.time() - 1) is True
    assert store.is_token_claimed("revoked:s1") is False
    assert store.claim_token("revoked:s1", time.time() + 60) is True


def test_kinds_and_keys_are_independent(store: Any) -> None:
    key = "same-key"
    assert store.claim_token(key, time.time() + 60) is True
    assert store.count_rate_hits(key, 60) == 0
    assert store.session_generation(key) == 0
    assert store.hit_rate_limit(key, 1, 60) is True
    assert store.bump_session_generation(key) == 1
    assert store.is_token_claimed(key) is True
    assert store.claim_token(key + "x", time.time() + 60) is True
    assert store.count_rate_hits(key + "x", 60) == 0
    assert store.session_generation(key + "x") == 0


@pytest.mark.parametrize(
    "key",
    ["k" * 512, "é" * 512, "sign-in:Zm9v+/=?&#%", "limit:email:a@example.com", "ключ 🔑", " "],
)
def test_any_key_up_to_512_characters_works(store: Any, key: str) -> None:
    assert store.claim_token(key, time.time() + 60) is True
    assert store.claim_token(key, time.time() + 60) is False
    assert store.hit_rate_limit(key, 1, 60) is True
    assert store.hit_rate_limit(key, 1, 60) is False
    assert store.bump_session_generation(key) == 1
    assert store.session_generation(key) == 1
    assert store.is_token_claimed(key[:-1] + "!") is False  # a near miss is another key


# --- rate limits --------------------------------------------------------------------------


def test_rate_limit_allows_up_to_the_limit_then_refuses_without_recording(store: Any) -> None:
    key = "limit:email:a@example.com"
    assert [store.hit_rate_limit(key, 3, 60) for _ in range(5)] == [True] * 3 + [False] * 2
    assert store.count_rate_hits(key, 60) == 3  # refused hits are not recorded
    assert store.count_rate_hits("limit:email:b@example.com", 60) == 0
    assert store.hit_rate_limit("limit:email:b@example.com", 3, 60) is True


def test_rate_limit_window_slides(store: Any) -> None:
    key, window = "limit:ip:127.0.0.1", 0.5
    start = time.time()
    assert store.hit_rate_limit(key, 2, window) is True  # hit 1 at ~0.0
    time.sleep(0.3)
    assert store.hit_rate_limit(key, 2, window) is True  # hit 2 at ~0.3
    assert store.hit_rate_limit(key, 2, window) is False
    assert store.count_rate_hits(key, window) == 2
    assert store.count_rate_hits(key, 0.15) == 1  # only hit 2 is that recent
    time.sleep(max(0.0, start + 0.6 - time.time()))
    # Hit 1 has left the window, hit 2 has not: one more is allowed, not two.
    assert store.count_rate_hits(key, window) == 1
    assert store.hit_rate_limit(key, 2, window) is True
    assert store.hit_rate_limit(key, 2, window) is False
    time.sleep(0.55)
    assert store.count_rate_hits(key, window) == 0
    assert store.hit_rate_limit(key, 2, window) is True


def test_clear_rate_hits_forgets_only_that_key(store: Any) -> None:
    for key in ("limit:op:a", "limit:op:b"):
        assert [store.hit_rate_limit(key, 2, 60) for _ in range(3)] == [True, True, False]
    store.clear_rate_hits("limit:op:a")
    assert store.count_rate_hits("limit:op:a", 60) == 0
    assert store.count_rate_hits("limit:op:b", 60) == 2
    assert store.hit_rate_limit("limit:op:a", 2, 60) is True
    store.clear_rate_hits("limit:never-hit")  # clearing an unknown key is fine
    assert store.count_rate_hits("limit:never-hit", 60) == 0


def test_a_limit_of_zero_refuses_everything(store: Any) -> None:
    assert store.hit_rate_limit("limit:closed", 0, 60) is False
    assert store.count_rate_hits("limit:closed", 60) == 0


# --- session generations ------------------------------------------------------------------


def test_generations_start_at_zero_and_bump_by_one_per_key(store: Any) -> None:
    assert store.session_generation("customer:c1") == 0
    assert [store.bump_session_generation("customer:c1") for _ in range(3)] == [1, 2, 3]
    assert store.session_generation("customer:c1") == 3
    assert store.session_generation("customer:c2") == 0
    assert store.session_generation("operator:admin") == 0
    assert store.bump_session_generation("operator:admin") == 1
    assert store.session_generation("customer:c1") == 3


# --- housekeeping -------------------------------------------------------------------------


def test_purge_deletes_expired_claims_and_stale_hits_only(store: Any) -> None:
    now = time.time()
    assert store.purge_security_records() == 0  # nothing to purge in an empty store
    store.claim_token("old", now + 10)
    store.claim_token("new", now + 1000)
    store.hit_rate_limit("limit:short", 5, 10)
    store.hit_rate_limit("limit:long", 5, 1000)
    store.bump_session_generation("customer:c1")
    assert store.purge_security_records() == 0  # nothing has expired yet
    assert store.purge_security_records(now=now + 100) == 2  # "old" and "limit:short"
    assert store.is_token_claimed("old") is False
    assert store.claim_token("old", now + 1000) is True  # its record is gone: claimable anew
    assert store.is_token_claimed("new") is True
    assert store.count_rate_hits("limit:short", 1000) == 0
    assert store.count_rate_hits("limit:long", 1000) == 1
    assert store.session_generation("customer:c1") == 1  # generations are never purged
    assert store.purge_security_records(now=now + 100) == 0


# --- bad input ----------------------------------------------------------------------------

NOW = 1.0e9


# (method, bad arguments, error words, the same call with the bad argument mended, its result)
BAD_ARGUMENTS = [
    ("claim_token", ("", NOW), "1 to 512 characters", ("k", NOW), True),
    ("claim_token", ("k" * 513, NOW), "got 513 characters", ("k" * 512, NOW), True),
    ("claim_token", (None, NOW), "got None", ("k", NOW), True),
    ("claim_token", ("k", float("nan")), "finite number", ("k", NOW), True),
    ("claim_token", ("k", "tomorrow"), "finite number", ("k", NOW), True),
    ("claim_token", ("k", True), "finite number", ("k", NOW), True),
    ("is_token_claimed", (b"k",), "1 to 512 characters", ("k",), False),
    ("hit_rate_limit", ("k", -1, 60), "whole number >= 0", ("k", 0, 60), False),
    ("hit_rate_limit", ("k", 2.5, 60), "whole number >= 0", ("k", 2, 60), True),
    ("hit_rate_limit", ("k", True, 60), "whole number >= 0", ("k", 1, 60), True),
    ("hit_rate_limit", ("k", 5, 0), "seconds > 0", ("k", 5, 0.5), True),
    ("hit_rate_limit", ("k", 5, float("inf")), "seconds > 0", ("k", 5, 1e9), True),
    ("hit_rate_limit", ("", 5, 60), "1 to 512 characters", ("k", 5, 60), True),
    ("count_rate_hits", ("k", -1), "seconds > 0", ("k", 60), 0),
    ("clear_rate_hits", ("",), "1 to 512 characters", ("k",), None),
    ("session_generation", ("",), "1 to 512 characters", ("k",), 0),
    ("bump_session_generation", ("k" * 513,), "1 to 512 characters", ("k" * 512,), 1),
    ("purge_security_records", (float("nan"),), "finite number", (NOW,), 0),
]


@pytest.mark.parametrize(("call", "args", "message", "good", "result"), BAD_ARGUMENTS)
def test_bad_arguments_are_refused_and_change_nothing(
    store: Any, call: str, args: tuple[Any, ...], message: str, good: tuple[Any, ...], result: Any
) -> None:
    with pytest.raises(CrmValidationError, match=message):
        getattr(store, call)(*args)
    assert store.is_token_claimed("k") is False
    assert store.count_rate_hits("k", 60) == 0
    assert store.session_generation("k") == 0
    # The valid baseline: mending the one bad argument makes the call work.
    assert getattr(store, call)(*good) == result


# --- threads ------------------------------------------------------------------------------


def test_concurrent_claims_of_one_key_have_exactly_one_winner(store: Any) -> None:
    keys = [f"sign-in:n{n}" for n in range(10)]
    until = time.time() + 60
    won = run_threads(lambda i: [store.claim_token(k, until) for k in keys])
    for n in range(len(keys)):
        assert sum(w[n] for w in won) == 1, keys[n]


def test_concurrent_reclaims_of_an_expired_key_have_exactly_one_winner(store: Any) -> None:
    keys = [f"revoked:s{n}" for n in range(10)]
    for key in keys:
        store.claim_token(key, time.time() - 1)
    until = time.time() + 60
    won = run_threads(lambda i: [store.claim_token(k, until) for k in keys])
    for n in range(len(keys)):
        assert sum(w[n] for w in won) == 1, keys[n]


def test_concurrent_hits_never_exceed_the_limit(store: Any) -> None:
    allowed = run_threads(lambda i: [store.hit_rate_limit("limit:hot", 5, 60) for _ in range(3)])
    assert sum(sum(a) for a in allowed) == 5
    assert store.count_rate_hits("limit:hot", 60) == 5


def test_concurrent_bumps_lose_none_and_return_distinct_values(store: Any) -> None:
    seen = run_threads(lambda i: [store.bump_session_generation("customer:c1") for _ in range(25)])
    assert store.session_generation("customer:c1") == THREADS * 25
    assert sorted(v for values in seen for v in values) == list(range(1, THREADS * 25 + 1))
    for values in seen:
        assert values == sorted(values)  # each thread sees its own bumps increase


# --- processes ----------------------------------------------------------------------------

# Runs a list of store calls in a fresh interpreter on the store URL given, printing the
# results as JSON. ["at", t] waits until Unix time t (to start two processes together);
# ["repeat", n, [name, *args]] makes one call n times.
CHILD = """
import json, sys, time
from crm_templates import open_store
store = open_store(sys.argv[1])
out = []
for name, *args in json.loads(sys.argv[2]):
    if name == "at":
        time.sleep(max(0.0, args[0] - time.time()))
        out.append(None)
    elif name == "repeat":
        count, (call, *call_args) = args
        out.append([getattr(store, call)(*call_args) for _ in range(count)])
    else:
        out.append(getattr(store, name)(*args))
store.close()
print(json.dumps(out))
"""


def start_child(url: str, ops: list[list[Any]]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, json.dumps(ops)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str]) -> list[Any]:
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    return list(json.loads(out))


def in_child(url: str, ops: list[list[Any]]) -> list[Any]:
    return finish(start_child(url, ops))


@pytest.fixture(params=["sqlite-file", "opensearch"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh store another process can open by its ``url``: a SQLite file or a search index."""
    if request.param == "sqlite-file":
        store = open_store(f"sqlite:///{tmp_path / 'crm.db'}")
    else:
        store = request.getfixturevalue("search_store_factory")()
    try:
        yield store
    finally:
        store.close()


def test_records_are_shared_with_another_process(shared_store: Any) -> None:
    store, url, until = shared_store, shared_store.url, time.time() + 60
    assert store.claim_token("sign-in:mine", until) is True
    store.bump_session_generation("customer:c1")
    assert [store.hit_rate_limit("limit:a", 5, 60) for _ in range(3)] == [True] * 3
    got = in_child(
        url,
        [
            ["claim_token", "sign-in:mine", until],  # used here: a replay there
            ["is_token_claimed", "sign-in:mine"],
            ["claim_token", "sign-in:theirs", until],
            ["session_generation", "customer:c1"],
            ["bump_session_generation", "customer:c1"],
            ["repeat", 3, ["hit_rate_limit", "limit:a", 5, 60]],
            ["count_rate_hits", "limit:a", 60],
        ],
    )
    assert got == [False, True, True, 1, 2, [True, True, False], 5]
    assert store.claim_token("sign-in:theirs", until) is False  # used there: a replay here
    assert store.session_generation("customer:c1") == 2
    assert store.count_rate_hits("limit:a", 60) == 5
    store.clear_rate_hits("limit:a")
    assert in_child(url, [["count_rate_hits", "limit:a", 60]]) == [0]


def test_two_processes_racing_agree(shared_store: Any) -> None:
    """Two processes hammer the same keys at once: one winner per claim, no bump lost, and the
    limit holds for both together."""
    keys = [f"sign-in:n{n}" for n in range(20)]
    at, until = time.time() + 1.5, time.time() + 60
    ops: list[list[Any]] = [
        ["at", at],
        *[["claim_token", key, until] for key in keys],
        ["repeat", 50, ["bump_session_generation", "customer:c1"]],
        ["repeat", 40, ["hit_rate_limit", "limit:a", 30, 60]],
    ]
    children = [start_child(shared_store.url, ops) for _ in range(2)]
    first, second = (finish(child) for child in children)
    claims = list(zip(first[1:21], second[1:21], strict=True))
    assert all(a + b == 1 for a, b in claims), claims
    assert shared_store.session_generation("customer:c1") == 100
    assert sorted(first[21] + second[21]) == list(range(1, 101))
    assert sum(first[22]) + sum(second[22]) == 30
    assert shared_store.count_rate_hits("limit:a", 60) == 30


# --- stores from earlier versions ---------------------------------------------------------


def test_a_sqlite_file_from_before_the_security_table_gains_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = open_store(f"sqlite:///{path}")
    store.create_customer(Customer(id="c1", email="a@example.com", created_at="1"))
    store.close()
    with sqlite3.connect(path) as conn:  # as an earlier version left it: no security table
        conn.execute("DROP TABLE security_records")
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "security_records" not in tables
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.get_customer("c1") is not None
        assert store.claim_token("sign-in:n1", time.time() + 60) is True
        assert store.claim_token("sign-in:n1", time.time() + 60) is False
        assert store.bump_session_generation("customer:c1") == 1
        assert store.hit_rate_limit("limit:a", 1, 60) is True
    finally:
        store.close()


def test_a_cluster_from_before_the_security_index_gains_it_on_open(
    search_store_factory: Callable[..., Any],
) -> None:
    old = search_store_factory()
    old.create_customer(Customer(id="c1", email="a@example.com", created_at="1"))
    old.client.indices.delete(index=old.indices["security"])
    assert not old.client.indices.exists(index=old.indices["security"])
    store = search_store_factory(prefix=old.prefix)
    assert store.get_customer("c1") is not None
    assert store.claim_token("sign-in:n1", time.time() + 60) is True
    assert store.claim_token("sign-in:n1", time.time() + 60) is False
    assert store.bump_session_generation("customer:c1") == 1
    assert store.hit_rate_limit("limit:a", 1, 60) is True
