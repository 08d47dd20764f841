"""`Store.session_state` (issue 14, B5): a session's revocation claim and its owner's generation
in one read, on every backend, always equal to the two separate reads it replaces — and never
cached: another store on the same data (another process) sees a revocation or a bump at once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from crm_templates import CrmValidationError
from tests.conftest import make_store


def _separately(store: Any, claim: str, owner: str) -> tuple[bool, int]:
    return store.is_token_claimed(claim), store.session_generation(owner)


def test_session_state_equals_the_two_reads(store: Any) -> None:
    claim, owner = "session-revoked:sid-a", "customer:cus_a"
    assert store.session_state(claim, owner) == (False, 0) == _separately(store, claim, owner)
    store.bump_session_generation(owner)
    store.bump_session_generation(owner)
    assert store.session_state(claim, owner) == (False, 2) == _separately(store, claim, owner)
    store.claim_token(claim, time.time() + 60)
    assert store.session_state(claim, owner) == (True, 2) == _separately(store, claim, owner)
    # Two customers: neither's records answer for the other.
    other_claim, other = "session-revoked:sid-b", "customer:cus_b"
    assert store.session_state(other_claim, other) == (False, 0)
    assert store.session_state(claim, other) == (True, 0)
    assert store.session_state(other_claim, owner) == (False, 2)


def test_an_expired_claim_is_not_a_revocation(store: Any) -> None:
    claim = "session-revoked:sid-short"
    store.claim_token(claim, time.time() + 0.3)
    assert store.session_state(claim, "customer:cus_x") == (True, 0)
    time.sleep(0.35)
    assert store.session_state(claim, "customer:cus_x") == (False, 0)
    assert store.is_token_claimed(claim) is False


@pytest.mark.parametrize("bad", ["", "k" * 513, None, 5])
def test_session_state_refuses_bad_keys_like_the_reads_it_replaces(store: Any, bad: Any) -> None:
    for args in [(bad, "customer:c"), ("session-revoked:s", bad)]:
        with pytest.raises(CrmValidationError):
            store.session_state(*args)


@pytest.mark.parametrize("backend", ["sqlite", "search"])
def test_another_store_sees_a_revocation_and_a_bump_at_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two stores on the same data, as two processes have: no answer is cached."""
    if backend == "search":
        factory = request.getfixturevalue("search_store_factory")
        first = factory()
        second = factory(prefix=first.prefix)
    else:
        first = make_store("sqlite-file", request, tmp_path)
        second = make_store("sqlite-file", request, tmp_path)
    try:
        claim, owner = "session-revoked:sid-1", "customer:cus_1"
        assert second.session_state(claim, owner) == (False, 0)
        first.bump_session_generation(owner)
        assert second.session_state(claim, owner) == (False, 1)
        first.claim_token(claim, time.time() + 60)
        assert second.session_state(claim, owner) == (True, 1)
    finally:
        if backend != "search":  # the factory closes its stores
            first.close()
            second.close()
