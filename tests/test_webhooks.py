"""Webhooks (issue 13, item 8; `crm_templates.webhooks`) against a real HTTP receiver on
loopback, on every backend: deliveries are signed over the exact bytes received, a receiver
that fails and recovers gets the delivery on a retry, a hanging one hits the timeout, redirects
are not followed, private addresses are refused unless allowed, two workers (and two
processes) never send one delivery twice, two customers' events carry only their own data, the
CLI does what the docs say, and a killed `crm-templates serve` still delivers after a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from crm_templates import Crm, CrmValidationError, audit, open_store, webhooks
from crm_templates.webhooks import Settings

ROOT = Path(__file__).resolve().parent.parent
FAST = Settings(backoff=0.05, backoff_cap=0.2, timeout=5.0, allow_private=True, poll_interval=0.1)
DEALS = {
    "slug": "deals",
    "fields": [{"key": "amount", "type": "number"}, {"key": "note", "type": "text"}],
    "pipelines": [{"slug": "sales", "stages": [{"slug": "new"}, {"slug": "won"}]}],
}


class Receiver:
    """A stdlib HTTP server on loopback recording every POST; ``answers`` scripts the replies
    (a status, ``"hang"`` to stall until `release`, or ``("redirect", url)``), then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[Any] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append((dict(self.headers), body))
                    answer = receiver.answers.pop(0) if receiver.answers else 200
                if answer == "hang":
                    receiver.released.wait(30)
                    answer = 200
                if isinstance(answer, tuple):
                    self.send_response(302)
                    self.send_header("Location", answer[1])
                else:
                    self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(body) for _, body in self.requests]

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def deals(crm: Crm) -> Crm:
    crm.ensure_entity(DEALS)
    return crm


def add(crm: Crm, url: str, names: Any = "*") -> webhooks.WebhookEndpoint:
    return webhooks.add_endpoint(crm.store, url, names, allow_private=True)


def drain(worker: webhooks.DeliveryWorker, until: Callable[[], bool], timeout: float = 20) -> None:
    """Run delivery rounds until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "deliveries did not settle"
        worker.run_once()
        time.sleep(0.02)


def only(crm: Crm) -> webhooks.WebhookDelivery:
    (delivery,) = crm.store.list_webhook_deliveries()
    return delivery


# --- rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("https://", "host name"),
        ("https://user:pw@example.com/x", "credentials"),
        ("https://example.com/x#frag", "fragment"),
        ("https://exa mple.com/", "no spaces"),
        ("https://example.com:0/", "port"),
        ("https://example.com:99999/", "not a valid webhook URL"),
        ("http://127.0.0.1:8000/x", "CRM_WEBHOOKS_ALLOW_PRIVATE"),
        ("http://localhost/x", "CRM_WEBHOOKS_ALLOW_PRIVATE"),
        ("http://10.1.2.3/x", "private"),
        ("http://[::1]/x", "private"),
        ("http://169.254.169.254/latest/meta-data", "private"),
        ("http://[::ffff:127.0.0.1]/x", "private"),
        ("https://" + "a" * 2050 + ".com/", "2048"),
        (None, "required"),
    ],
)
def test_bad_urls_are_refused_with_the_rule_they_break(url: Any, message: str) -> None:
    with pytest.raises(CrmValidationError, match=message):
        webhooks.check_url(url)


def test_urls_that_pass_and_the_private_switch() -> None:
    assert webhooks.check_url(" https://hooks.example.com/crm?x=1 ") == (
        "https://hooks.example.com/crm?x=1"
    )
    assert webhooks.check_url("http://127.0.0.1:8000/x", allow_private=True)
    assert webhooks.check_events(["entry.updated", "entry.created"]) == (
        "entry.created",
        "entry.updated",
    )
    assert webhooks.check_events("*") == webhooks.events.EVENT_NAMES
    with pytest.raises(CrmValidationError, match=r"unknown webhook event 'entry\.made'"):
        webhooks.check_events(["entry.made"])
    with pytest.raises(CrmValidationError, match="at least one"):
        webhooks.check_events([])


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_WEBHOOKS_TIMEOUT", "2.5")
    monkeypatch.setenv("CRM_WEBHOOKS_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("CRM_WEBHOOKS_ALLOW_PRIVATE", "yes")
    settings = Settings.from_env()
    assert (settings.timeout, settings.max_attempts, settings.allow_private) == (2.5, 3, True)
    monkeypatch.setenv("CRM_WEBHOOKS_BACKOFF", "soon")
    with pytest.raises(CrmValidationError, match="CRM_WEBHOOKS_BACKOFF must be a number"):
        Settings.from_env()


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    settings = Settings(backoff=10, backoff_cap=60)
    for attempts, full in ((1, 10), (2, 20), (3, 40), (4, 60), (9, 60)):
        delays = [webhooks.backoff_delay(attempts, settings) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jitter


def test_verify_refuses_tampering_wrong_secrets_and_old_timestamps() -> None:
    body = b'{"id":"evt_1"}'
    header = webhooks.signature("whsec_a", 1_000, body)
    assert webhooks.verify("whsec_a", header, body, now=1_010)
    assert not webhooks.verify("whsec_b", header, body, now=1_010)
    assert not webhooks.verify("whsec_a", header, body + b" ", now=1_010)
    assert not webhooks.verify("whsec_a", header, body, now=1_000 + 301)
    assert not webhooks.verify("whsec_a", "v1=abc", body, now=1_010)


# --- delivering to a real receiver -----------------------------------------------------------


def test_a_delivery_is_signed_over_the_exact_bytes_received(deals: Crm, receiver: Receiver) -> None:
    endpoint = add(deals, receiver.url)
    made = deals.bind("cus_ann").create_entry(slug="deals", values={"amount": 5})
    queued = only(deals)
    assert queued.status == "pending" and queued.entry_id == made["id"]
    worker = webhooks.DeliveryWorker(deals.store, FAST)
    assert worker.run_once() == 1
    ((headers, raw),) = receiver.requests
    assert webhooks.verify(endpoint.secret, headers["CRM-Signature"], raw)
    assert not webhooks.verify(endpoint.secret, headers["CRM-Signature"], raw.replace(b"5", b"6"))
    timestamp = headers["CRM-Webhook-Timestamp"]
    assert headers["CRM-Signature"].startswith(f"t={timestamp},v1=")
    body = json.loads(raw)
    assert set(body) == {"id", "event", "created_at", "data"}
    assert body["event"] == headers["CRM-Webhook-Event"] == "entry.created"
    assert body["id"] == headers["CRM-Webhook-Id"] and body["id"].startswith("evt_")
    assert headers["Content-Type"] == "application/json"
    data = body["data"]
    assert (data["entity"], data["entry_id"], data["customer_id"]) == (
        "deals",
        made["id"],
        "cus_ann",
    )
    assert data["changes"] == {"amount": 5}
    assert data["actor"] == {"type": "customer", "id": "cus_ann"}
    done = only(deals)
    assert (done.status, done.attempts, done.last_status, done.last_error) == (
        "delivered",
        1,
        200,
        None,
    )
    assert done.finished_at and done.last_duration_ms is not None
    assert worker.run_once() == 0 and len(receiver.requests) == 1  # sent once


def test_a_receiver_that_fails_then_recovers_gets_it_on_a_retry(
    deals: Crm, receiver: Receiver
) -> None:
    add(deals, receiver.url, ["entry.stage_changed"])
    deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")
    assert deals.store.list_webhook_deliveries() == []  # not subscribed to entry.created
    receiver.answers = [500, 503]
    deals.move_to_stage(slug="deals", stageSlug="won", referenceId="cus_a")
    worker = webhooks.DeliveryWorker(deals.store, FAST)
    worker.run_once()
    first = only(deals)
    assert (first.status, first.attempts, first.last_status) == ("pending", 1, 500)
    assert first.last_error == "HTTP 500" and first.next_attempt_at > first.queued_at
    drain(worker, lambda: only(deals).status == "delivered")
    done = only(deals)
    assert (done.attempts, done.last_status) == (3, 200)
    bodies = [raw for _, raw in receiver.requests]
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same bytes every time
    assert json.loads(bodies[0])["data"]["stage_id"] is not None


def test_a_hanging_receiver_hits_the_timeout(deals: Crm, receiver: Receiver) -> None:
    add(deals, receiver.url)
    receiver.answers = ["hang"]
    deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")
    worker = webhooks.DeliveryWorker(
        deals.store, Settings(timeout=0.5, backoff=30, allow_private=True)
    )
    started = time.monotonic()
    worker.run_once()
    took = time.monotonic() - started
    receiver.released.set()
    hung = only(deals)
    assert hung.status == "pending" and hung.last_status is None
    assert hung.last_error == "timed out after 0.5 s"
    assert took < 25  # it did not wait for the receiver (which waits up to 30 s)


def test_giving_up_after_the_last_attempt_and_a_retry_by_hand(
    deals: Crm, receiver: Receiver
) -> None:
    add(deals, receiver.url)
    receiver.answers = [500, 500]
    deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")
    worker = webhooks.DeliveryWorker(
        deals.store, Settings(backoff=0.01, backoff_cap=0.02, max_attempts=2, allow_private=True)
    )
    drain(worker, lambda: only(deals).status == "failed")
    failed = only(deals)
    assert failed.attempts == 2 and failed.last_status == 500 and failed.finished_at
    assert [d.id for d in webhooks.deliveries(deals.store, failed=True)] == [failed.id]
    again = webhooks.retry(deals.store, failed.id)
    assert (again.status, again.attempts) == ("pending", 0)
    drain(worker, lambda: only(deals).status == "delivered")
    assert webhooks.deliveries(deals.store, failed=True) == []
    with pytest.raises(webhooks.WebhookNotFoundError):
        webhooks.retry(deals.store, "whd_nope")


def test_redirects_are_not_followed(deals: Crm, receiver: Receiver) -> None:
    add(deals, receiver.url)
    receiver.answers = [("redirect", receiver.url + "/elsewhere")]
    deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")
    webhooks.DeliveryWorker(deals.store, Settings(backoff=30, allow_private=True)).run_once()
    moved = only(deals)
    assert moved.status == "pending" and moved.last_status == 302
    assert "redirects are not followed" in (moved.last_error or "")
    assert len(receiver.requests) == 1


def test_a_private_address_is_refused_at_delivery_unless_allowed(
    deals: Crm, receiver: Receiver
) -> None:
    add(deals, receiver.url)
    deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")
    webhooks.DeliveryWorker(deals.store, Settings(backoff=30, allow_private=False)).run_once()
    refused = only(deals)
    assert refused.status == "pending" and "refused" in (refused.last_error or "")
    assert "CRM_WEBHOOKS_ALLOW_PRIVATE" in (refused.last_error or "")
    assert receiver.requests == []


def test_paused_and_removed_endpoints(deals: Crm, receiver: Receiver) -> None:
    endpoint = add(deals, receiver.url)
    deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")
    webhooks.set_active(deals.store, endpoint.id, False)
    webhooks._forget(deals.store)
    deals.create_entry(slug="deals", values={"amount": 2}, referenceId="cus_a")
    assert len(deals.store.list_webhook_deliveries()) == 1  # nothing queued while paused
    webhooks.DeliveryWorker(deals.store, FAST).run_once()
    paused = only(deals)
    assert paused.status == "failed" and paused.last_error == "the webhook was removed or paused"
    assert receiver.requests == []
    webhooks.remove_endpoint(deals.store, endpoint.id)
    assert (
        deals.store.list_webhook_deliveries() == [] and webhooks.list_endpoints(deals.store) == []
    )
    with pytest.raises(webhooks.WebhookNotFoundError):
        webhooks.remove_endpoint(deals.store, endpoint.id)


def test_async_writes_are_queued_once_committed(deals: Crm, receiver: Receiver) -> None:
    add(deals, receiver.url)
    view = deals.bind("cus_async")
    for n in range(3):
        view.create_entry(slug="deals", values={"amount": n}, **{"async": True})
    assert deals.flush(30)
    assert len(deals.store.list_webhook_deliveries()) == 3
    drain(
        webhooks.DeliveryWorker(deals.store, FAST),
        lambda: len(receiver.requests) == 3,
    )
    assert sorted(b["data"]["changes"]["amount"] for b in receiver.bodies()) == [0, 1, 2]


def test_two_customers_deliveries_carry_only_their_own_data(deals: Crm, receiver: Receiver) -> None:
    add(deals, receiver.url)
    deals.bind("cus_ann").set_fields(slug="deals", fields={"note": "ann-private"})
    deals.bind("cus_bob").set_fields(slug="deals", fields={"note": "bob-private"})
    drain(webhooks.DeliveryWorker(deals.store, FAST), lambda: len(receiver.requests) == 2)
    for _, raw in receiver.requests:
        data = json.loads(raw)["data"]
        mine, other = ("ann", "bob") if data["customer_id"] == "cus_ann" else ("bob", "ann")
        assert f"{mine}-private".encode() in raw
        assert f"{other}-private".encode() not in raw and f"cus_{other}".encode() not in raw


def test_two_workers_never_send_one_delivery_twice(deals: Crm, receiver: Receiver) -> None:
    add(deals, receiver.url)
    for n in range(24):
        deals.create_entry(slug="deals", values={"amount": n}, referenceId=f"cus_{n}")
    workers = [webhooks.DeliveryWorker(deals.store, FAST) for _ in range(2)]
    threads = [
        threading.Thread(
            target=drain,
            args=(
                w,
                lambda: all(d.status == "delivered" for d in deals.store.list_webhook_deliveries()),
            ),
        )
        for w in workers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [b["id"] for b in receiver.bodies()]
    assert len(ids) == 24 and len(set(ids)) == 24


def test_the_background_worker_delivers_and_stops_cleanly(deals: Crm, receiver: Receiver) -> None:
    add(deals, receiver.url)
    worker = webhooks.start_worker(deals.store, FAST)
    try:
        assert worker.running  # the store has a webhook: started at once
        deals.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_a")
        deadline = time.monotonic() + 20
        while not receiver.requests:
            assert time.monotonic() < deadline, "the worker did not deliver"
            time.sleep(0.02)
    finally:
        worker.stop(10)
    assert not worker.running
    worker.wake()  # a stopped worker stays stopped
    assert not worker.running


# --- the CLI and real processes -----------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Any:
    environment = {**os.environ, "CRM_WEBHOOKS_ALLOW_PRIVATE": "1", **(env or {})}
    environment.pop("CRM_STORE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "crm_templates", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=120,
        input=input,
    )


@pytest.fixture(params=["sqlite", "opensearch"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL for subprocesses, with the deals entity in it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        search_url = request.getfixturevalue("search_url")
        request.getfixturevalue("search_admin")
        url = f"{search_url}?prefix=t{uuid.uuid4().hex[:12]}_"
    store = open_store(url)
    with Crm(store) as crm:
        crm.ensure_entity(DEALS)
    yield url
    if request.param == "opensearch":
        admin = request.getfixturevalue("search_admin")
        prefix = url.rsplit("prefix=", 1)[1]
        admin.client.options(ignore_status=404).indices.delete(index=f"{prefix}*")


def test_the_cli_registers_lists_delivers_retries_and_removes(
    store_url: str, receiver: Receiver
) -> None:
    refused = cli("webhooks", "add", "ftp://x", "--event", "*", "--store", store_url)
    assert refused.returncode == 1 and "http:// or https://" in refused.stderr
    unknown = cli("webhooks", "add", receiver.url, "--event", "entry.made", "--store", store_url)
    assert unknown.returncode == 1 and "unknown webhook event" in unknown.stderr
    added = cli("webhooks", "add", receiver.url, "--event", "entry.created", "--store", store_url)
    assert added.returncode == 0, added.stderr
    secret = added.stdout.split("signing secret (shown only now): ", 1)[1].strip()
    assert secret.startswith("whsec_")
    listed = cli("webhooks", "list", "--json", "--store", store_url)
    (row,) = json.loads(listed.stdout)
    assert row["url"] == receiver.url and row["events"] == ["entry.created"]
    assert secret not in listed.stdout
    with Crm(open_store(store_url)) as crm:
        crm.create_entry(slug="deals", values={"amount": 1}, referenceId="cus_cli")
    receiver.answers = [500]
    env = {"CRM_WEBHOOKS_BACKOFF": "60"}
    sent = cli("webhooks", "deliver", "--once", "--store", store_url, env=env)
    assert sent.returncode == 0 and "attempted 1 deliveries" in sent.stdout, sent.stderr
    log = json.loads(cli("webhooks", "deliveries", "--json", "--store", store_url).stdout)
    assert [(d["status"], d["last_status"]) for d in log] == [("pending", 500)]
    retried = cli("webhooks", "retry", log[0]["id"], "--store", store_url)
    assert retried.returncode == 0, retried.stderr
    assert cli("webhooks", "deliver", "--once", "--store", store_url).returncode == 0
    ((_, raw), (headers2, raw2)) = receiver.requests
    assert raw == raw2 and webhooks.verify(secret, headers2["CRM-Signature"], raw2)
    failed = cli("webhooks", "deliveries", "--failed", "--store", store_url)
    assert failed.returncode == 0 and "no deliveries" in failed.stderr
    assert cli("webhooks", "retry", "whd_nope", "--store", store_url).returncode == 1
    gone = cli("webhooks", "remove", row["id"], "--store", store_url)
    assert gone.returncode == 0 and row["id"] in gone.stdout
    again = cli("webhooks", "remove", row["id"], "--store", store_url)
    assert again.returncode == 1 and "there is no webhook" in again.stderr
    store = open_store(store_url)
    try:
        actions = [r.action for r in audit.records(store, operator_id="cli")[0]]
    finally:
        store.close()
    assert actions == ["webhook.remove", "webhook.retry", "webhook.add"]


@pytest.mark.slow
def test_two_processes_never_deliver_one_delivery_twice(store_url: str, receiver: Receiver) -> None:
    store = open_store(store_url)
    with Crm(store) as crm:
        webhooks.add_endpoint(crm.store, receiver.url, ["*"], allow_private=True)
        for n in range(30):
            crm.create_entry(slug="deals", values={"amount": n}, referenceId=f"cus_{n}")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "crm_templates",
                "webhooks",
                "deliver",
                "--once",
                "--store",
                store_url,
            ],
            env={**os.environ, "CRM_WEBHOOKS_ALLOW_PRIVATE": "1"},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    attempted = [int(out.split("attempted ", 1)[1].split()[0]) for out, _ in outs]
    ids = [b["id"] for b in receiver.bodies()]
    assert sum(attempted) == 30 and len(ids) == 30 and len(set(ids)) == 30


@pytest.mark.slow
def test_a_killed_server_delivers_the_queued_event_after_a_restart(
    tmp_path: Path, receiver: Receiver, store_url: str
) -> None:
    import shutil

    from tests.test_serve import SAMPLES, Served

    site = tmp_path / "site"
    shutil.copytree(SAMPLES / "weight_tracker", site, ignore=shutil.ignore_patterns("instance"))
    url = store_url
    # A short timeout: a delivery the kill interrupts mid-attempt is claimed again once its
    # lease (2 * timeout + 5 s) ran out.
    env = {"CRM_WEBHOOKS_ALLOW_PRIVATE": "1", "CRM_WEBHOOKS_BACKOFF": "0.3",
           "CRM_WEBHOOKS_POLL": "0.2", "CRM_WEBHOOKS_TIMEOUT": "1"}  # fmt: skip
    receiver.answers = [500] * 1000  # down until the restart
    store = open_store(url)  # registered before the server starts: it runs its worker at once
    try:
        secret = webhooks.add_endpoint(
            store, receiver.url, ["entry.created"], allow_private=True
        ).secret
    finally:
        store.close()
    first = Served(site, None, "--store", url, env=env)
    try:
        request = urllib.request.Request(
            first.url("/checkin"),
            data=json.dumps({"weight": 80, "goal": 70}).encode(),
            headers={"Content-Type": "application/json",
                     "Origin": f"http://127.0.0.1:{first.port}"},
            method="POST",
        )  # fmt: skip

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        try:
            urllib.request.build_opener(NoRedirect).open(request, timeout=30)
        except urllib.error.HTTPError as exc:
            assert exc.code == 303, exc.read()[:300]
        deadline = time.monotonic() + 30
        while not receiver.requests:  # the server's worker tried (and the receiver failed)
            assert time.monotonic() < deadline, "\n".join(first.lines)
            time.sleep(0.05)
    finally:
        first.proc.kill()  # no shutdown: whatever was in memory is gone
        first.proc.wait()
    store = open_store(url)
    try:
        queued = store.list_webhook_deliveries()  # the check-in's entries
        assert queued and all(d.status in ("pending", "sending") for d in queued)
        assert all(d.last_status in (500, None) for d in queued)
    finally:
        store.close()
    events_queued = {json.loads(d.body)["id"] for d in queued}
    receiver.answers = []
    second = Served(site, None, "--store", url, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            store = open_store(url)
            try:
                statuses = [d.status for d in store.list_webhook_deliveries()]
            finally:
                store.close()
            if statuses == ["delivered"] * len(queued):
                break
            assert time.monotonic() < deadline, "\n".join(second.lines)
            time.sleep(0.1)
    finally:
        second.stop()
    # Every queued event reached the receiver, signed, and carries the check-in's entity.
    delivered = {}
    for headers, raw in receiver.requests:
        assert webhooks.verify(secret, headers["CRM-Signature"], raw)
        delivered[json.loads(raw)["id"]] = json.loads(raw)
    assert set(delivered) == events_queued
    assert {b["data"]["entity"] for b in delivered.values()} == {"weight-tracker"}


def test_a_store_without_webhooks_builds_no_events(deals: Crm) -> None:
    store = deals.store
    assert not webhooks.events.listening("entry.created", store)
    assert not webhooks.events.listening("entry.stage_changed", store)
    endpoint = add(deals, "http://127.0.0.1:9/x", ["entry.stage_changed"])
    assert webhooks.events.listening("entry.stage_changed", store)
    assert not webhooks.events.listening("entry.created", store)
    webhooks.set_active(store, endpoint.id, False)
    assert not webhooks.events.listening("entry.stage_changed", store)


def test_pruning_keeps_pending_and_recent_deliveries(deals: Crm) -> None:
    endpoint = add(deals, "http://127.0.0.1:9/x")

    def made(ident: str, status: str, finished_at: str | None) -> webhooks.WebhookDelivery:
        return webhooks.WebhookDelivery(
            id=ident, endpoint_id=endpoint.id, event="entry.created", entry_id="e",
            created_at="2020-01-01T00:00:00.000000Z", body="{}", status=status,
            finished_at=finished_at,
        )  # fmt: skip

    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    deals.store.enqueue_webhook_deliveries(
        [
            made("whd_1", "delivered", "2020-01-01T00:00:00.000000Z"),
            made("whd_2", "failed", "2020-01-02T00:00:00.000000Z"),
            made("whd_3", "delivered", now),
            made("whd_4", "pending", None),
        ]
    )
    assert webhooks.prune(deals.store, 30) == 2
    assert sorted(d.id for d in deals.store.list_webhook_deliveries()) == ["whd_3", "whd_4"]
    assert webhooks.prune(deals.store, 0) == 1  # finished "now" is older than 0 days by now
    assert [d.id for d in deals.store.list_webhook_deliveries()] == ["whd_4"]
    with pytest.raises(CrmValidationError, match="0 days or more"):
        webhooks.prune(deals.store, -1)


def test_the_cli_prunes(store_url: str) -> None:
    done = cli("webhooks", "prune", "--days", "7", "--store", store_url)
    assert done.returncode == 0 and "deleted 0 finished deliveries older than 7 days" in done.stdout
    bad = cli("webhooks", "prune", "--days", "-1", "--store", store_url)
    assert bad.returncode == 2 and "--days" in bad.stderr
