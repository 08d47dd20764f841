"""Attack review of webhooks (issue 13, item 8): the faults found and fixed on branch
``attackhooks``, each against a real HTTP server on loopback (no mocks):

* the connection goes to the address that was checked (no second DNS look-up: no rebinding
  window between the check and the connect);
* a receiver that drips its answer a byte at a time is cut at the attempt's deadline (2 ×
  timeout, inside the lease) instead of holding the worker (and outliving the lease);
* a URL the HTTP client cannot send (non-ASCII path, a bad IDN host) is refused at
  registration, and one already stored fails its attempt instead of crashing the round and
  leaving the delivery claimed forever;
* decimal/octal/hex/short IPv4 forms (``http://2130706433/``) are refused at registration;
* `verify` returns False (does not raise) for a non-ASCII signature header."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from crm_templates import Crm, CrmValidationError, open_store, webhooks
from crm_templates.webhooks import Settings
from tests.test_webhooks import DEALS, Receiver, only, store_url

__all__ = ["store_url"]  # the fixture (SQLite file and OpenSearch), shared


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def deals(crm: Crm) -> Crm:
    crm.ensure_entity(DEALS)
    return crm


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/x",  # 127.0.0.1 as one decimal number
        "http://0177.0.0.1/x",  # octal
        "http://0x7f.0.0.1/x",  # hex
        "http://0x7f000001/x",
        "http://127.1/x",  # short form
        "http://10.1/x",
        "http://0/x",  # 0.0.0.0
        "http://169.254.43518/x",  # 169.254.169.254
    ],
)
def test_numeric_ipv4_spellings_of_private_addresses_are_refused_at_registration(
    url: str,
) -> None:
    with pytest.raises(CrmValidationError, match="CRM_WEBHOOKS_ALLOW_PRIVATE"):
        webhooks.check_url(url)


def test_host_names_that_look_a_little_numeric_still_pass() -> None:
    for url in ("https://0xcafe.example/x", "https://1.example.com/x", "https://8.8.8.8/x"):
        assert webhooks.check_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://example.com/hoök", "percent-encode"),
        ("https://example.com/x?q=é", "percent-encode"),
        ("https://" + "a" * 64 + ".example/x", "host name"),
    ],
)
def test_urls_the_http_client_cannot_send_are_refused_at_registration(
    url: str, message: str
) -> None:
    with pytest.raises(CrmValidationError, match=message):
        webhooks.check_url(url)


def test_an_unsendable_stored_url_fails_its_attempt_instead_of_the_round(
    deals: Crm, receiver: Receiver
) -> None:
    """A URL stored before the rule (or written around `add_endpoint`) must not raise out of
    the worker: that left the delivery claimed, attempted again at every lease, forever."""
    endpoint = webhooks.add_endpoint(deals.store, receiver.url, "*", allow_private=True)
    assert deals.store.update_webhook_endpoint(replace(endpoint, url=receiver.url + "/hoök"))
    webhooks._forget(deals.store)
    deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")
    worker = webhooks.DeliveryWorker(
        deals.store, Settings(backoff=30, max_attempts=1, allow_private=True)
    )
    assert worker.run_once() == 1
    failed = only(deals)
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.lease_owner is None
    assert "UnicodeEncodeError" in (failed.last_error or "")


def test_the_connection_goes_to_the_address_that_was_checked(receiver: Receiver) -> None:
    """DNS rebinding: the host name is resolved once per attempt, checked, and the socket
    connects to that very address (the Host header keeps the name)."""
    port = receiver.server.server_port
    looked_up: list[str] = []

    def resolver(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        looked_up.append(host)
        return socket.getaddrinfo("127.0.0.1", port, *args, **kwargs)

    result = webhooks.post(
        f"http://hooks.invalid:{port}/hook",
        b"{}",
        {"Content-Type": "application/json"},
        timeout=5,
        allow_private=True,
        resolver=resolver,
    )
    assert result.ok, result
    assert looked_up == ["hooks.invalid"]  # once: no second look-up by the HTTP client
    ((headers, _),) = receiver.requests
    assert headers["Host"] == f"hooks.invalid:{port}"


def test_the_checked_address_is_refused_when_any_answer_is_private(receiver: Receiver) -> None:
    def resolver(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return socket.getaddrinfo("127.0.0.1", port, *args, **kwargs)

    result = webhooks.post(
        f"http://hooks.invalid:{receiver.server.server_port}/hook",
        b"{}",
        {},
        timeout=5,
        allow_private=False,
        resolver=resolver,
    )
    assert result.status is None and "refused" in (result.error or "")
    assert receiver.requests == []


class Dripper:
    """A raw TCP server on loopback answering every connection with a status line and then
    one header byte every 0.1 s until `close` (each read gets data well inside any timeout)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self.stop.is_set():
                conn.sendall(b"a")
                time.sleep(0.1)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_slow_drip_receiver_is_cut_at_the_attempt_deadline(deals: Crm) -> None:
    """Per-read timeouts never fire on a receiver dripping a byte at a time: the attempt
    as a whole ends at 2 × timeout (inside the lease, so no second process sends it too)."""
    dripper = Dripper()
    try:
        webhooks.add_endpoint(
            deals.store, f"http://127.0.0.1:{dripper.port}/hook", "*", allow_private=True
        )
        deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")
        settings = Settings(timeout=0.5, backoff=30, allow_private=True)
        worker = webhooks.DeliveryWorker(deals.store, settings)
        started = time.monotonic()
        worker.run_once()
        took = time.monotonic() - started
    finally:
        dripper.close()
    dripped = only(deals)
    assert dripped.status == "pending" and dripped.last_status is None
    assert "timed out" in (dripped.last_error or "")
    # before the fix the attempt lasted as long as the drip (until close, here: never)
    assert took < settings.lease_seconds


def test_verify_is_false_not_an_error_for_a_non_ascii_signature() -> None:
    now = int(time.time())
    assert not webhooks.verify("whsec_a", f"t={now},v1=é", b"{}")
    assert not webhooks.verify("whsec_a", f"t={now},v1=\udcff", b"{}")


def test_a_worker_started_without_webhooks_delivers_what_another_process_queues(
    store_url: str, receiver: Receiver
) -> None:
    """`crm-templates serve` started before any webhook existed never delivered an event
    queued by another process (the CLI added the endpoint, a cron job wrote): its thread only
    started when it queued something itself. Now it watches for a webhook every poll."""
    serving = Crm(open_store(store_url))  # the server's process
    serving.ensure_entity(DEALS)
    worker = webhooks.start_worker(
        serving.store, Settings(poll_interval=0.1, allow_private=True, backoff=30)
    )
    try:
        assert not worker.running
        other = Crm(open_store(store_url))  # another process's view of the same store
        try:
            webhooks.add_endpoint(other.store, receiver.url, "*", allow_private=True)
            other.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")
            deadline = time.monotonic() + 20
            while not receiver.requests and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            other.flush()
            other.store.close()
        assert len(receiver.requests) == 1 and worker.running
    finally:
        worker.stop(10)
        serving.store.close()
    assert not worker.running
