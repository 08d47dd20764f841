"""Sessions and sign-in records in the store (issue 8, items 4 and 5): sign-out ends a session
server-side (a copied cookie is refused), "sign out everywhere" ends a customer's other
browsers, and single-use tokens, sign-out and rate limits hold across processes — two apps on
one store (SQLite file and the search backend), and two real ``crm-templates serve`` processes.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from tests import test_auth_links
from tests.test_server_security import (
    crm_of,
    make_site,
    open_link,
    operator_sign_in,
    path_of,
    request_link,
    token_of,
)

ROOT = Path(__file__).resolve().parent.parent
COOKIE = "crm_session"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The test site of test_server_security."""
    return make_site(tmp_path / "site")


# Builds apps over this module's site (each one stands for a server process); closes them after.
make = test_auth_links.make


@pytest.fixture(params=["sqlite", "opensearch"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL several apps share: a SQLite file, or indices on the search server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    search_url = request.getfixturevalue("search_url")
    admin = request.getfixturevalue("search_admin")
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    yield f"{search_url}?prefix={prefix}"
    from crm_templates.storage.elasticsearch import ElasticsearchStore

    leftover = ElasticsearchStore.from_url(search_url, prefix=prefix)
    names = ",".join(leftover.indices.values())
    leftover.close()
    admin.client.options(ignore_status=404).indices.delete(index=names)


def home(client: Any) -> str:
    """The index page: ``home:<customer id>:<signed in>:<email>``."""
    return str(client.get("/").get_data(as_text=True))


def copy_of(client: Any, app: Any) -> Any:
    """A new client of ``app`` holding a copy of ``client``'s session cookie (a stolen one)."""
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie(COOKIE, cookie.value)
    return thief


def signed_in(app: Any, email: str = "ann@example.com") -> Any:
    """A client of ``app`` signed in as ``email``."""
    client = app.test_client()
    assert open_link(client, request_link(app, client, email)).status_code == 303
    assert home(client).endswith(f":True:{email}")
    return client


def post(client: Any, url: str) -> Any:
    """A CSRF-protected form post with no other fields."""
    return client.post(url, data={"csrf_token": token_of(client)})


# --- sign-out ends the session server-side --------------------------------------------------


def test_a_cookie_copied_before_sign_out_is_refused_after(make: Any) -> None:
    app = make()
    crm = crm_of(app)
    ann = signed_in(app)
    post(ann, "/save")  # Ann's note: "backend"
    customer = crm.find_customer("ann@example.com")
    thief = copy_of(ann, app)
    assert home(thief) == home(ann)  # the copy works while Ann is signed in
    assert post(ann, "/auth/sign-out").status_code == 303
    assert home(ann) == "home:none:False:"
    assert home(thief) == "home:none:False:"
    # The copy is a new anonymous visitor now: its writes never reach Ann.
    token = token_of(thief)
    thief.post("/save", data={"csrf_token": token, "text": "overwritten"})
    assert crm.get_field(slug="notes", fieldKey="text", referenceId=customer.id) == "backend"


def test_an_operator_cookie_copied_before_sign_out_is_refused_after(make: Any) -> None:
    app = make()
    operator = app.test_client()
    assert operator_sign_in(operator).status_code == 303
    thief = copy_of(operator, app)
    assert thief.get("/admin/customers").status_code == 200
    assert post(operator, "/operator/sign-out").status_code == 303
    for client in (operator, thief):
        response = client.get("/admin/customers")
        assert response.status_code == 302
        assert "/operator/sign-in" in response.headers["Location"]
    assert operator_sign_in(operator).status_code == 303  # signing in again works
    assert operator.get("/admin/customers").status_code == 200
    assert thief.get("/admin/customers").status_code == 302


def test_sign_out_everywhere_ends_every_browser_of_the_customer(make: Any) -> None:
    app = make()
    laptop, phone = signed_in(app), signed_in(app)
    copy = copy_of(phone, app)
    assert laptop.post("/auth/sign-out-everywhere").status_code == 400  # CSRF token needed
    assert home(phone).endswith(":True:ann@example.com")
    assert post(laptop, "/auth/sign-out-everywhere").status_code == 303
    for client in (laptop, phone, copy):
        assert home(client) == "home:none:False:"
    again = signed_in(app)  # a sign-in after it starts a valid session
    assert home(again).endswith(":True:ann@example.com")


def test_one_customers_sign_out_never_affects_another(make: Any) -> None:
    app = make()
    ann, bob = signed_in(app, "ann@example.com"), signed_in(app, "bob@example.com")
    bob_copy = copy_of(bob, app)
    assert post(ann, "/auth/sign-out-everywhere").status_code == 303
    assert post(signed_in(app, "ann@example.com"), "/auth/sign-out").status_code == 303
    assert home(ann) == "home:none:False:"
    for client in (bob, bob_copy):
        assert home(client).endswith(":True:bob@example.com")


def test_operator_sign_out_everywhere(make: Any) -> None:
    app = make()
    first, second = app.test_client(), app.test_client()
    for client in (first, second):
        assert operator_sign_in(client).status_code == 303
    assert post(first, "/operator/sign-out-everywhere").status_code == 303
    assert first.get("/admin/customers").status_code == 302
    assert second.get("/admin/customers").status_code == 302


def test_operator_and_customer_sessions_end_separately(make: Any) -> None:
    app = make()
    client = signed_in(app)
    assert operator_sign_in(client).status_code == 303
    assert post(client, "/auth/sign-out").status_code == 303
    assert client.get("/admin/customers").status_code == 200  # still an operator
    assert signed_in(app) is not None
    assert post(client, "/operator/sign-out").status_code == 303
    assert client.get("/admin/customers").status_code == 302


def test_sessions_without_a_session_id_are_signed_out(make: Any) -> None:
    """Cookies signed before sessions had ids (or forged with the key) carry no session id."""
    app = make()
    ann = crm_of(app).create_customer("ann@example.com")
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(customer_id=ann.id, signed_in=True, operator=True)
    assert home(client) == "home:none:False:"
    assert client.get("/admin/customers").status_code == 302


def test_an_account_is_never_reached_as_an_anonymous_visitor(make: Any) -> None:
    app = make()
    crm = crm_of(app)
    client = app.test_client()
    post(client, "/save")
    visitor = next(c for c in crm.store.list_customers() if c.email is None)
    # Site code gives the visitor's record an email: from now on only a sign-in reaches it.
    crm.update_customer(dataclasses.replace(visitor, email="ann@example.com"))
    assert home(client) == "home:none:False:"
    assert home(signed_in(app)) == f"home:{visitor.id}:True:ann@example.com"


def test_anonymous_pages_read_no_session_records(make: Any) -> None:
    app = make()
    client = app.test_client()
    post(client, "/save")
    store = crm_of(app).store
    calls: list[str] = []
    for name in ("is_token_claimed", "session_generation", "session_state"):
        original = getattr(store, name)

        def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return _original(*args)

        setattr(store, name, spy)
    client.get("/read")
    assert calls == []
    ann = signed_in(app)
    calls.clear()
    ann.get("/read")
    # Both checks (revoked? generation?) in one store read, once per request (issue 14, B5).
    assert calls == ["session_state"]


# --- operator lockout -------------------------------------------------------------------------


def test_successful_operator_sign_ins_never_count(make: Any) -> None:
    app = make(CRM_OPERATOR_LIMIT=2)
    client = app.test_client()
    for _ in range(5):
        assert operator_sign_in(client).status_code == 303
    assert operator_sign_in(client, "wrong").status_code == 403
    assert operator_sign_in(client).status_code == 303  # and a success clears the failures
    assert operator_sign_in(client, "wrong").status_code == 403
    assert operator_sign_in(client, "wrong").status_code == 403
    assert operator_sign_in(client).status_code == 429  # locked, even with the right password


def test_sign_in_requests_purge_expired_records_hourly(make: Any, tmp_path: Path) -> None:
    db = tmp_path / "purge.db"
    app = make(CRM_STORE_URL=f"sqlite:///{db}")
    store = crm_of(app).store

    def claims() -> list[str]:
        with sqlite3.connect(db) as connection:
            rows = connection.execute("SELECT key FROM security_records WHERE kind = 'claim'")
            return sorted(key for (key,) in rows)

    store.claim_token("session-revoked:old", time.time() - 1)
    request_link(app, app.test_client())
    assert claims() == []  # the first sign-in request of a process purges
    store.claim_token("session-revoked:older", time.time() - 1)
    request_link(app, app.test_client(), "bob@example.com")
    assert claims() == ["session-revoked:older"]  # then not again within the hour


# --- across processes: two apps on one store ---------------------------------------------------


@pytest.fixture
def pair(make: Any, shared_store: str) -> Callable[..., tuple[Any, Any]]:
    """Two apps (two "processes") on one store with the given settings."""

    def factory(**config: Any) -> tuple[Any, Any]:
        return make(CRM_STORE_URL=shared_store, **config), make(
            CRM_STORE_URL=shared_store, **config
        )

    return factory


def test_a_token_used_on_one_process_is_refused_on_the_other(pair: Any) -> None:
    one, two = pair()
    client = one.test_client()
    link = request_link(one, client)
    assert open_link(two.test_client(), link).status_code == 303  # confirmed on the other one
    replay = client.get(path_of(link))
    assert replay.status_code == 400
    assert "already used" in replay.get_data(as_text=True)
    link = request_link(two, two.test_client())
    assert open_link(one.test_client(), link).status_code == 303
    assert "already used" in two.test_client().get(path_of(link)).get_data(as_text=True)


def test_a_sign_out_on_one_process_is_honoured_by_the_other(pair: Any) -> None:
    one, two = pair()
    ann = signed_in(one)
    elsewhere = copy_of(ann, two)
    assert home(elsewhere).endswith(":True:ann@example.com")
    assert post(ann, "/auth/sign-out").status_code == 303
    assert home(elsewhere) == "home:none:False:"
    phone = signed_in(two)
    laptop = signed_in(one)
    assert post(phone, "/auth/sign-out-everywhere").status_code == 303
    assert home(laptop) == "home:none:False:"


def test_an_operator_sign_out_on_one_process_is_honoured_by_the_other(pair: Any) -> None:
    one, two = pair()
    operator = one.test_client()
    assert operator_sign_in(operator).status_code == 303
    elsewhere = copy_of(operator, two)
    assert elsewhere.get("/admin/customers").status_code == 200
    assert post(operator, "/operator/sign-out").status_code == 303
    assert elsewhere.get("/admin/customers").status_code == 302


def test_rate_limits_add_up_across_processes(pair: Any) -> None:
    one, two = pair(CRM_SIGN_IN_LIMIT=2, CRM_OPERATOR_LIMIT=2)
    request_link(one, one.test_client())
    request_link(two, two.test_client())
    client = one.test_client()
    response = client.post(
        "/auth/sign-in", data={"csrf_token": token_of(client), "email": "ann@example.com"}
    )
    assert response.status_code == 429
    assert operator_sign_in(one.test_client(), "wrong").status_code == 403
    assert operator_sign_in(two.test_client(), "wrong").status_code == 403
    assert operator_sign_in(one.test_client()).status_code == 429


def test_a_used_token_stays_used_after_a_restart(make: Any, shared_store: str) -> None:
    first = make(CRM_STORE_URL=shared_store)
    link = request_link(first, first.test_client())
    assert open_link(first.test_client(), link).status_code == 303
    first.extensions["crm"].close()
    restarted = make(CRM_STORE_URL=shared_store)
    assert "already used" in restarted.test_client().get(path_of(link)).get_data(as_text=True)


# --- two real `crm-templates serve` processes on one store ------------------------------------


# The sign-in link goes to the `crm_templates.mail` logger, which `serve` prints.
def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Browser:
    """A minimal HTTP client with one session cookie (copyable, like a stolen cookie)."""

    def __init__(self, cookie: str | None = None) -> None:
        self.cookie = cookie

    def request(
        self, port: int, method: str, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> tuple[int, str]:
        """``(status, body)``; remembers the session cookie the server sets."""
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        if self.cookie:
            headers["Cookie"] = f"{COOKIE}={self.cookie}"
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
            for header in response.headers.get_all("Set-Cookie") or []:
                match = re.match(rf"{COOKIE}=([^;]*)", header)
                if match:
                    self.cookie = match.group(1) or None
            return response.status, text
        finally:
            connection.close()

    def csrf(self, port: int) -> str:
        """A CSRF token for this browser's session."""
        _, html = self.request(port, "GET", "/form")
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, html
        return match.group(1)

    def confirm(self, port: int, link: str) -> int:
        """Open a sign-in link on ``port`` and press the button; the POST's status."""
        status, html = self.request(port, "GET", path_of(link))
        if status != 200:
            return status
        token = re.search(r'name="token" value="([^"]+)"', html)
        assert token, html
        form = {"csrf_token": self.csrf(port), "token": token.group(1)}
        return self.request(port, "POST", "/auth/verify", form)[0]


def test_two_serve_processes_share_tokens_and_sign_outs(tmp_path: Path, shared_store: str) -> None:
    """Two real `crm-templates serve` processes on one store (a SQLite file; the search
    backend's indices)."""
    site = make_site(tmp_path / "site")
    url = shared_store
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    servers: list[tuple[int, subprocess.Popen[bytes], Path]] = []
    try:
        for n in range(2):
            port = free_port()
            log = tmp_path / f"serve{n}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "crm_templates", "serve", str(site), "--store", url,
                     "--port", str(port), "--threads", "2"],
                    stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                )  # fmt: skip
            servers.append((port, process, log))
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert process.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.1)
        (one, _, one_log), (two, _, _) = servers

        # The Host header never makes the link: an untrusted host is refused outright.
        attacker = Browser()
        status, _ = attacker.request(
            one, "POST", "/auth/sign-in", {"email": "ann@example.com"}, Host="attacker.example"
        )
        assert status == 400

        ann = Browser()
        form = {"csrf_token": ann.csrf(one), "email": "ann@example.com"}
        assert ann.request(one, "POST", "/auth/sign-in", form)[0] == 200
        deadline = time.monotonic() + 10
        while not (links := re.findall(r"http://\S+/auth/verify\?token=\S+", one_log.read_text())):
            assert time.monotonic() < deadline, one_log.read_text()
            time.sleep(0.05)
        link = links[-1]
        assert urlsplit(link).netloc == f"127.0.0.1:{one}"  # serve on loopback trusts it

        assert ann.confirm(one, link) == 303
        assert ann.request(one, "GET", "/")[1].endswith(":True:ann@example.com")
        replay = Browser()
        status, body = replay.request(two, "GET", path_of(link))
        assert status == 400 and "already used" in body

        thief = Browser(ann.cookie)
        assert thief.request(two, "GET", "/")[1].endswith(":True:ann@example.com")
        assert ann.request(one, "POST", "/auth/sign-out", {"csrf_token": ann.csrf(one)})[0] == 303
        assert thief.request(two, "GET", "/")[1] == "home:none:False:"
    finally:
        for _, process, _ in servers:
            process.terminate()
        for _, process, _ in servers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- found by attacking the first version -----------------------------------------------------


def test_a_client_over_its_own_limit_spends_nobody_elses_quota(make: Any) -> None:
    app = make(CRM_SIGN_IN_IP_LIMIT=3, CRM_SIGN_IN_LIMIT=2)

    def ask(email: str, ip: str) -> int:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = ip
        data = {"csrf_token": token_of(client), "email": email}
        return int(client.post("/auth/sign-in", data=data).status_code)

    attacker, victim = "203.0.113.9", "198.51.100.7"
    assert [ask(f"x{i}@example.com", attacker) for i in range(3)] == [200] * 3
    assert [ask("ceo@example.com", attacker) for _ in range(5)] == [429] * 5
    # The refused requests recorded nothing against the address: its owner still gets links.
    assert [ask("ceo@example.com", victim) for _ in range(3)] == [200, 200, 429]


def test_changing_the_operator_password_ends_operator_sessions(make: Any) -> None:
    before = make(CRM_OPERATOR_PASSWORD="leaked-password-1")
    operator = before.test_client()
    assert operator_sign_in(operator, "leaked-password-1").status_code == 303
    assert operator.get("/admin/customers").status_code == 200
    # The operator rotates the password and restarts (same site, secret key and store).
    after = make(CRM_OPERATOR_PASSWORD="rotated-password-2")
    thief = copy_of(operator, after)
    response = thief.get("/admin/customers")
    assert response.status_code == 302
    assert "/operator/sign-in" in response.headers["Location"]
    assert thief.get("/?preview_customer=anyone").status_code == 403
    fresh = after.test_client()
    assert operator_sign_in(fresh, "rotated-password-2").status_code == 303
    assert fresh.get("/admin/customers").status_code == 200
    # The same holds for a werkzeug hash: its digest, not the plain text, is what is kept.
    from werkzeug.security import generate_password_hash

    hashed = make(CRM_OPERATOR_PASSWORD_HASH=generate_password_hash("hash-pw"))
    assert copy_of(fresh, hashed).get("/admin/customers").status_code == 302


def test_a_used_link_stays_used_through_the_last_second_of_its_life(make: Any) -> None:
    # itsdangerous counts whole seconds, so a link is accepted up to a second past max_age;
    # the used-token record must outlive that (and clock differences between servers).
    app = make(CRM_SIGN_IN_MAX_AGE=1)
    while time.time() % 1 > 0.3:  # start early in a second: the token's timestamp is whole
        time.sleep(0.05)
    started = int(time.time())
    link = request_link(app, app.test_client())
    assert open_link(app.test_client(), link).status_code == 303
    time.sleep(max(0.0, started + 1.2 - time.time()))
    replay = app.test_client().get(path_of(link))
    assert replay.status_code == 400
    assert "already used" in replay.get_data(as_text=True)
