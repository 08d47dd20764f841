"""API keys (issue 13, item 3): the core and its store on both backends, header parsing.

Keys are made with `secrets.token_urlsafe`, stored only as a SHA-256 hash, looked up by the id
they carry; scopes ``read`` < ``write``; a per-key rate limit counted in the store; revocation
seen by another process at once; nothing of the secret in the store file or the logs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.datastructures import Headers

from crm_templates import api_keys
from crm_templates.api_keys import (
    DEFAULT_RATE_LIMIT,
    KEY_PREFIX,
    ApiKeyInvalid,
    ApiKeyMissing,
    ApiKeyNotFoundError,
    ApiKeyScopeError,
    ApiRateLimited,
    authenticate,
    create_key,
    list_keys,
    revoke_key,
)
from crm_templates.errors import CrmError, CrmUsageError, CrmValidationError
from crm_templates.server.api_auth import (
    MAX_HEADER,
    authenticate_request,
    challenge_headers,
    key_from_headers,
)
from crm_templates.storage import open_store

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000.0  # a whole minute (divisible by 60), so windows are easy to reason about


@pytest.fixture(params=["sqlite", "opensearch"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL on each backend (search indices dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keys.db'}"
        return
    search_url = request.getfixturevalue("search_url")
    admin = request.getfixturevalue("search_admin")
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    yield f"{search_url}?prefix={prefix}"
    admin.client.options(ignore_status=404).indices.delete(index=f"{prefix}*")


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new Python process on this worktree's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the core, on every backend ---------------------------------------------------------------


def test_create_list_authenticate_revoke(store: Any) -> None:
    key, secret = create_key(store, name="  Checkout  ", scope="write")
    assert secret.startswith(KEY_PREFIX) and len(secret) == len(KEY_PREFIX) + 16 + 1 + 43
    assert key.id.startswith("key_") and key.id[4:] in secret
    assert key.name == "Checkout" and key.scope == "write"
    assert key.rate_limit == DEFAULT_RATE_LIMIT
    assert key.prefix == secret[: len(KEY_PREFIX) + 8]
    assert key.id.replace("key_", KEY_PREFIX).startswith(key.prefix)  # nothing of the secret
    assert key.last_used_at is None and key.revoked_at is None and key.created_at > 0
    other, other_secret = create_key(store, name="Forms", scope="read", rate_limit=5)
    assert other_secret != secret and other.rate_limit == 5
    assert [k.id for k in list_keys(store)] == [key.id, other.id]
    assert list_keys(store)[0] == key

    assert authenticate(store, secret, scope="write") == key
    assert authenticate(store, secret, scope="read").id == key.id  # write implies read
    assert authenticate(store, other_secret, scope="read").id == other.id
    with pytest.raises(ApiKeyScopeError) as info:
        authenticate(store, other_secret, scope="write")
    assert info.value.status == 403 and "'read'" in str(info.value)

    used = {k.id: k for k in list_keys(store)}
    assert used[key.id].last_used_at is not None

    revoked = revoke_key(store, key.id)
    assert revoked.revoked and revoked.revoked_at is not None
    with pytest.raises(ApiKeyInvalid):
        authenticate(store, secret, scope="read")
    again = revoke_key(store, key.id)  # idempotent: the first revocation time stays
    assert again.revoked_at == revoked.revoked_at
    assert [k.id for k in list_keys(store, include_revoked=False)] == [other.id]
    assert authenticate(store, other_secret, scope="read").id == other.id  # the other one works


def test_bad_keys_are_refused_alike_without_a_500(store: Any) -> None:
    key, secret = create_key(store, name="k", scope="read")
    body = key.id[4:]
    wrong_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    unknown = f"{KEY_PREFIX}{'0' * 16}_{secret.rsplit('_', 1)[-1]}"
    messages = set()
    for bad in [
        wrong_secret,
        unknown,
        secret + "x",
        secret[:-1],
        secret.upper(),
        f"{KEY_PREFIX}{body}",
        "Bearer " + secret,
        "x" * 100_000,
        "\x00",
        "\ud800",
        "crm_live_" + "ü" * 60,
    ]:
        with pytest.raises(ApiKeyInvalid) as info:
            authenticate(store, bad, scope="read")
        assert info.value.status == 401
        assert secret not in str(info.value) and bad not in str(info.value)
        messages.add(str(info.value))
    assert len(messages) == 1  # unknown, malformed and wrong all read the same: no oracle
    revoke_key(store, key.id)
    with pytest.raises(ApiKeyInvalid) as revoked:
        authenticate(store, secret, scope="read")
    assert str(revoked.value) in messages
    for missing in (None, ""):
        with pytest.raises(ApiKeyMissing) as info:
            authenticate(store, missing, scope="read")
        assert info.value.status == 401 and "Authorization: Bearer" in str(info.value)


def test_bad_arguments_are_refused_and_nothing_is_stored(store: Any) -> None:
    for kwargs in [
        {"name": "", "scope": "read"},
        {"name": "   ", "scope": "read"},
        {"name": "x" * 101, "scope": "read"},
        {"name": "a\nb", "scope": "read"},
        {"name": 3, "scope": "read"},
        {"name": "n", "scope": "admin"},
        {"name": "n", "scope": "READ"},
        {"name": "n", "scope": None},
        {"name": "n", "scope": "read", "rate_limit": 0},
        {"name": "n", "scope": "read", "rate_limit": -1},
        {"name": "n", "scope": "read", "rate_limit": True},
        {"name": "n", "scope": "read", "rate_limit": 1.5},
        {"name": "n", "scope": "read", "rate_limit": 10**7},
    ]:
        with pytest.raises(CrmValidationError):
            create_key(store, **kwargs)
    assert list_keys(store) == []
    for unknown in ["key_0000000000000000", "", "nope", "key_" + "x" * 500, "\ud800", "window:x"]:
        with pytest.raises(ApiKeyNotFoundError) as info:
            revoke_key(store, unknown)
        assert isinstance(info.value, CrmError)
        with pytest.raises(ApiKeyNotFoundError):
            api_keys.get_key(store, unknown)
    with pytest.raises(CrmUsageError):
        authenticate(store, "anything", scope="admin")


def test_rate_limit_per_key_with_retry_after(store: Any) -> None:
    key, secret = create_key(store, name="slow", scope="read", rate_limit=3)
    _, other = create_key(store, name="other", scope="read", rate_limit=3)
    for i in range(3):
        authenticate(store, secret, scope="read", now=T0 + 10 + i)
    with pytest.raises(ApiRateLimited) as info:
        authenticate(store, secret, scope="read", now=T0 + 15.5)
    assert info.value.status == 429 and info.value.retry_after == 45
    assert challenge_headers(info.value) == {"Retry-After": "45"}
    authenticate(store, other, scope="read", now=T0 + 16)  # another key has its own count
    # Scope refusals count too, and a refused request does not reset anything.
    with pytest.raises(ApiRateLimited) as late:
        authenticate(store, secret, scope="write", now=T0 + 59.2)
    assert late.value.retry_after == 1
    # The next minute starts afresh.
    assert authenticate(store, secret, scope="read", now=T0 + 60).id == key.id
    # last_used_at is written once per window: with the first request of the minute.
    [stored] = [k for k in list_keys(store) if k.id == key.id]
    assert stored.last_used_at == T0 + 60


def test_the_window_counter_is_atomic_and_never_goes_back(store: Any) -> None:
    assert store.hit_api_key_window("key_a", 120, 4) == 1
    assert store.hit_api_key_window("key_a", 120, 4) == 2
    assert store.hit_api_key_window("key_a", 60, 4) == 3  # a lagging clock counts in the newer one
    assert store.hit_api_key_window("key_b", 120, 4) == 1
    assert store.hit_api_key_window("key_a", 120, 4) == 4
    # Full: refused as limit + 1, and nothing is written (a higher limit sees 4, not 6).
    assert store.hit_api_key_window("key_a", 120, 4) == 5
    assert store.hit_api_key_window("key_a", 120, 4) == 5
    assert store.hit_api_key_window("key_a", 120, 10) == 5
    assert store.hit_api_key_window("key_a", 180, 4) == 1  # the next window starts afresh
    assert store.hit_api_key_window("key_a", 180, 4) == 2


def test_threads_counting_one_key_lose_no_hit(store: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def hit(_: int) -> int:
        return int(store.hit_api_key_window("key_t", 600, 1000))

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(hit, range(80)))
    assert sorted(counts) == list(range(1, 81))  # each hit saw its own count: none was lost
    assert store.hit_api_key_window("key_t", 600, 1000) == 81


def test_the_secret_is_stored_only_as_a_hash_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "crm.db"
    store = open_store(f"sqlite:///{path}")
    try:
        key, secret = create_key(store, name="secret-check", scope="write")
        authenticate(store, secret, scope="write")
        record = store.get_api_key(key.id)
        assert record is not None and record.secret_hash == api_keys.hash_key(secret)
        assert secret not in repr(record)
    finally:
        store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("crm.db"))
    random_part = secret.rsplit("_", 1)[-1]
    assert key.id.encode() in data  # the file was read and holds the key's record
    assert secret.encode() not in data and random_part.encode() not in data
    assert random_part[:20].encode() not in data
    assert secret not in caplog.text and random_part not in caplog.text


def test_revocation_is_seen_by_another_process_at_once(store_url: str) -> None:
    store = open_store(store_url)
    try:
        key, secret = create_key(store, name="shared", scope="read")
        check = (
            "import sys\n"
            "from crm_templates.api_keys import authenticate, ApiAuthError\n"
            "from crm_templates.storage import open_store\n"
            "s = open_store(sys.argv[1])\n"
            "try:\n"
            "    print(authenticate(s, sys.argv[2], scope='read').id)\n"
            "except ApiAuthError as e:\n"
            "    print(e.status, e)\n"
        )
        first = run_python(check, store_url, secret)
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == key.id
        revoke_key(store, key.id)
        second = run_python(check, store_url, secret)
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith("401 the API key is not valid")
    finally:
        store.close()


# --- headers ----------------------------------------------------------------------------------

KEY = f"{KEY_PREFIX}0123456789abcdef_{'A' * 43}"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer {KEY}"},
        {"Authorization": f"BEARER {KEY}"},
        {"Authorization": f"  Bearer \t {KEY}  "},
        {"EF-Access-Key": KEY},
        {"ef-access-key": f"  {KEY} "},
        {"Authorization": f"Bearer {KEY}", "EF-Access-Key": KEY},
    ],
)
def test_the_key_is_read_from_either_header(headers: dict[str, str]) -> None:
    assert key_from_headers(Headers(headers)) == KEY
    assert key_from_headers(headers) == KEY  # a plain mapping works too


@pytest.mark.parametrize("headers", [{}, {"EF-Access-Key": "  "}, {"Cookie": f"key={KEY}"}])
def test_no_key_is_none(headers: dict[str, str]) -> None:
    assert key_from_headers(Headers(headers)) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {KEY} extra"},
        {"Authorization": KEY},
        {"Authorization": f"Bearer{KEY}"},
        {"Authorization": "\x00\x01garbage"},
        {"Authorization": f"Bearer {KEY}", "EF-Access-Key": KEY + "x"},
        {"Authorization": "Bearer " + "a" * (MAX_HEADER + 10)},
        {"EF-Access-Key": "a" * 100_000},
    ],
)
def test_malformed_or_conflicting_headers_are_401(headers: dict[str, str]) -> None:
    with pytest.raises(ApiKeyInvalid) as info:
        key_from_headers(Headers(headers))
    assert info.value.status == 401
    assert KEY not in str(info.value)


def test_several_header_lines_must_agree() -> None:
    same = Headers([("Authorization", f"Bearer {KEY}"), ("Authorization", f"Bearer {KEY}")])
    assert key_from_headers(same) == KEY
    differ = Headers([("EF-Access-Key", KEY), ("EF-Access-Key", KEY + "x")])
    with pytest.raises(ApiKeyInvalid):
        key_from_headers(differ)


def test_authenticate_request_reads_headers_never_cookies(store: Any) -> None:
    key, secret = create_key(store, name="web", scope="write")
    app = Flask(__name__)
    with app.test_request_context(headers={"Authorization": f"Bearer {secret}"}):
        from flask import request

        assert authenticate_request(store, request, scope="write").id == key.id
    with app.test_request_context(headers={"EF-Access-Key": secret}):
        from flask import request

        assert authenticate_request(store, request, scope="read").id == key.id
    with app.test_request_context(headers={"Cookie": f"session={secret}; api_key={secret}"}):
        from flask import request

        with pytest.raises(ApiKeyMissing) as info:
            authenticate_request(store, request, scope="read")
        assert challenge_headers(info.value) == {"WWW-Authenticate": 'Bearer realm="crm-api"'}
    with app.test_request_context(headers={"Authorization": "Bearer " + "z" * 5000}):
        from flask import request

        with pytest.raises(ApiKeyInvalid) as bad:
            authenticate_request(store, request, scope="read")
        assert "invalid_token" in challenge_headers(bad.value)["WWW-Authenticate"]
    _, reader = create_key(store, name="reader", scope="read")
    with app.test_request_context(headers={"Authorization": f"Bearer {reader}"}):
        from flask import request

        with pytest.raises(ApiKeyScopeError) as scope:
            authenticate_request(store, request, scope="write")
        assert "insufficient_scope" in challenge_headers(scope.value)["WWW-Authenticate"]


RACE = (
    "import sys, time\n"
    "from crm_templates.api_keys import authenticate, ApiRateLimited\n"
    "from crm_templates.storage import open_store\n"
    "s = open_store(sys.argv[1])\n"
    "time.sleep(max(0.0, float(sys.argv[5]) - time.time()))  # start together\n"
    "ok = limited = 0\n"
    "for _ in range(int(sys.argv[3])):\n"
    "    try:\n"
    "        authenticate(s, sys.argv[2], scope='read', now=float(sys.argv[4]))\n"
    "        ok += 1\n"
    "    except ApiRateLimited:\n"
    "        limited += 1\n"
    "s.close()\n"
    "print(ok, limited)\n"
)


@pytest.mark.slow
def test_the_rate_limit_holds_across_processes(store_url: str) -> None:
    store = open_store(store_url)
    try:
        key, secret = create_key(store, name="shared", scope="read", rate_limit=200)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        now, start = str(T0 + 7), str(time.time() + 3)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RACE, store_url, secret, "150", now, start],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            results.append(tuple(int(n) for n in out.split()))
        # 450 requests in one minute from three processes: exactly 200 pass, whoever sent them.
        assert sum(ok for ok, _ in results) == 200
        assert sum(limited for _, limited in results) == 250
        assert sum(1 for ok, _ in results if ok) >= 2  # they overlapped
        with pytest.raises(ApiRateLimited):
            authenticate(store, secret, scope="read", now=T0 + 8)
        assert authenticate(store, secret, scope="read", now=T0 + 60).id == key.id
    finally:
        store.close()
