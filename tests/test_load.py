"""The page server under concurrent load (SPEC §10, "load"): `crm-templates serve` on waitress,
loopback only, 8 clients × 50 requests mixing dashboard GETs, check-in form POSTs (CSRF token
and session cookie from their own GETs) and async JSON writes. Every request must be answered
as expected; after SIGTERM the server drains, and every acknowledged write is in the store."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from crm_templates import Crm, open_store

SAMPLES = Path(__file__).resolve().parent.parent / "sample_sites"
CLIENTS = 8
REQUESTS = 50
DEADLINE = 120.0  # seconds for the whole run; the test fails rather than hang

# A JSON endpoint whose write is queued on the background writer: what SIGTERM must drain.
NOTE_BACKEND = """\
def handle(request, page):
    value = {"date": "2025-01-01", "weight": page.data["weight"], "note": "async"}
    page.AddCrmFieldValue(
        {"slug": "weight-tracker", "fieldKey": "weighin_history", "value": value, "async": True}
    )
    return page.json({"customer": page.customer_id}, status=202)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Visitor:
    """One client: its own connection and session cookie, counting what the server acked."""

    port: int
    cookie: str = ""
    customer: str | None = None
    acked_checkins: int = 0
    acked_notes: int = 0
    last_weight: float | None = None
    errors: list[str] = field(default_factory=list)

    def request(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if self.cookie:
                headers["Cookie"] = self.cookie
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            for value in response.headers.get_all("Set-Cookie") or []:
                if value.startswith("crm_session="):
                    self.cookie = value.split(";", 1)[0]
            return response.status, text
        finally:
            conn.close()

    def run(self, n: int) -> None:
        """Make ``n`` requests; any exception is recorded in ``errors`` (the test asserts none)."""
        try:
            self._visit(n)
        except Exception as exc:  # a dropped connection, a page without its form
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _visit(self, n: int) -> None:
        status, html = self.request("GET", "/checkin")
        if status != 200:
            self.errors.append(f"GET /checkin {status}")
            return
        token = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert token, "no CSRF token on /checkin"
        for i in range(n):
            kind = i % 3
            if kind == 0:
                status, _ = self.request("GET", "/")
                if status != 200:
                    self.errors.append(f"GET / {status}")
            elif kind == 1:
                weight = 60 + (i % 40) + 0.5
                body = urlencode({"csrf_token": token.group(1), "weight": weight, "goal": 70})
                status, _ = self.request(
                    "POST",
                    "/checkin",
                    body.encode(),
                    **{"Content-Type": "application/x-www-form-urlencoded"},
                )
                if status == 303:
                    self.acked_checkins += 1
                    self.last_weight = weight
                else:
                    self.errors.append(f"POST /checkin {status}")
            else:
                status, text = self.request(
                    "POST",
                    "/api/note",
                    json.dumps({"weight": i}).encode(),
                    **{
                        "Content-Type": "application/json",
                        "Origin": f"http://127.0.0.1:{self.port}",
                    },
                )
                if status == 202:
                    self.acked_notes += 1
                    self.customer = json.loads(text)["customer"]
                else:
                    self.errors.append(f"POST /api/note {status}")


def test_serve_under_concurrent_load_then_drains_on_sigterm(tmp_path: Path) -> None:
    site = tmp_path / "weight_tracker"
    shutil.copytree(SAMPLES / "weight_tracker", site, ignore=shutil.ignore_patterns("instance"))
    (site / "pages" / "api").mkdir()
    (site / "pages" / "api" / "note.py").write_text(NOTE_BACKEND)
    db = tmp_path / "load.db"
    port = free_port()
    env = {**os.environ, "CRM_SEED": "0"}
    env.pop("CRM_STORE_URL", None)
    # The output (an access-log line per request) goes to a file: a pipe nobody reads until
    # the end would fill up and block the server.
    log = (tmp_path / "serve.log").open("w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "crm_templates", "serve", str(site), "--port", str(port),
         "--threads", "8", "--store", f"sqlite:///{db}"],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)

        visitors = [Visitor(port) for _ in range(CLIENTS)]
        threads = [threading.Thread(target=v.run, args=(REQUESTS,)) for v in visitors]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, DEADLINE - (time.monotonic() - started)))
        assert not any(t.is_alive() for t in threads), "clients did not finish in time"
        assert [e for v in visitors for e in v.errors] == []

        # Stop right away: async writes may still be queued and must be drained, not lost.
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        output = (tmp_path / "serve.log").read_text()
        assert server.returncode == 0, output
        assert "drained" in output
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()

    with Crm(open_store(f"sqlite:///{db}")) as crm:
        for v in visitors:
            assert v.customer is not None
            history = crm.get_entries(slug="weight-tracker", referenceId=v.customer, limit=200)
            weighins = [e for e in history if "weighin_history" in e.values]
            assert len(weighins) == v.acked_checkins + v.acked_notes
            assert sum(
                1 for e in weighins if e.values["weighin_history"].get("note") == "async"
            ) == (v.acked_notes)
            current = crm.get_field(
                slug="weight-tracker", fieldKey="current_weight", referenceId=v.customer
            )
            assert current == v.last_weight
        assert len({v.customer for v in visitors}) == CLIENTS
