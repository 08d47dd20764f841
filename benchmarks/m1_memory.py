"""M1: the memory of a real ``crm-templates serve`` process does not grow with customers or
renders (issue 14, item 2; SPEC §10). Target: its RSS after 20,000 requests from 2,000
distinct signed-in customers is within 1.1× of its RSS after the first 2,000 requests.

The server is the real command (``python -m crm_templates serve`` on a copy of the
weight-tracker sample site, waitress, its default 8 threads), on loopback. Customers come one
after another (a few at a time, on ``CLIENTS`` keep-alive connections), and each makes
``PER_CUSTOMER`` = 10 requests, as a browser would:

1. ``GET /auth/sign-in`` (the form: a session cookie and its CSRF token);
2. ``POST /auth/sign-in`` with a new address (the server logs the link; read from its output);
3. ``POST /auth/verify`` with the link's token (signed in: a session id, a new customer);
4. ``GET /``, 5. ``GET /checkin``, 6. ``POST /checkin`` (a weigh-in: a write), 7.–10. ``GET /``,
   ``GET /checkin``, ``GET /``, ``GET /``.

So after the first 2,000 requests 200 customers have been served, after 20,000 all 2,000: any
per-customer state kept in the process (sessions, caches keyed by customer, compiled templates,
loggers) or per-render leak shows as growth. RSS is read from ``/proc/<pid>/status`` (VmRSS)
after the server has been idle for a moment. The sign-in limits per client address are raised
(``CRM_SIGN_IN_IP_LIMIT``): every customer signs in from 127.0.0.1.

``measure()`` is shared with tests/test_memory.py, which runs a smaller version (200 vs 20
customers).
"""

from __future__ import annotations

import http.client
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from benchmarks.harness import quick_default, result

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "sample_sites" / "weight_tracker"
PER_CUSTOMER = 10
CLIENTS = 4
_LINK = re.compile(r"sign-in link for (?P<email>\S+): \S+/auth/verify\?token=(?P<token>[\w.-]+)")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_COOKIE = re.compile(r"crm_session=([^;]*)")


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (Linux: ``/proc/<pid>/status`` VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A running ``crm-templates serve`` process; collects the sign-in links it logs."""

    def __init__(self, site: Path, db: Path) -> None:
        self.port = _free_port()
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "CRM_SIGN_IN_IP_LIMIT": "1000000",
            "CRM_LOG_LEVEL": "info",
        }
        for key in ("CRM_STORE_URL", "CRM_BASE_URL"):
            env.pop(key, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crm_templates", "serve", str(site), "--port", str(self.port),
             "--store", f"sqlite:///{db}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        self.links: dict[str, str] = {}
        self.tail: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the server did not start:\n" + "\n".join(self.tail))
                time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = _LINK.search(line)
            with self._cond:
                if found:
                    self.links[found["email"]] = found["token"]
                    self._cond.notify_all()
                self.tail = [*self.tail[-30:], line.rstrip("\n")]

    def link_token(self, email: str, timeout: float = 60) -> str:
        """The token of the sign-in link the server logged for ``email``."""
        with self._cond:
            if not self._cond.wait_for(lambda: email in self.links, timeout):
                raise RuntimeError(f"no sign-in link for {email}:\n" + "\n".join(self.tail))
            return self.links.pop(email)

    @property
    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


class Browser:
    """One customer's browser on a keep-alive connection: a cookie and the last CSRF token."""

    def __init__(self, conn: http.client.HTTPConnection, origin: str) -> None:
        self.conn = conn
        self.origin = origin
        self.cookie = ""
        self.csrf = ""

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> str:
        headers = {"Cookie": f"crm_session={self.cookie}"} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = self.origin
        self.conn.request(method, path, body, headers)
        response = self.conn.getresponse()
        text = response.read().decode()
        expected = 303 if method == "POST" and path != "/auth/sign-in" else 200
        if response.status != expected:
            raise RuntimeError(f"{method} {path}: {response.status} {text[:300]}")
        for header in response.headers.get_all("Set-Cookie") or []:
            found = _COOKIE.match(header)
            if found:
                self.cookie = found[1]
        csrf = _CSRF.search(text)
        if csrf:
            self.csrf = csrf[1]
        return text


def _customer(server: Server, conn: http.client.HTTPConnection, n: int, weight: float) -> None:
    """Customer ``n``'s ten requests: sign in through the real flow, then use the site."""
    browser = Browser(conn, f"http://127.0.0.1:{server.port}")
    email = f"m1-{n}@example.com"
    browser.request("GET", "/auth/sign-in")
    browser.request("POST", "/auth/sign-in", {"csrf_token": browser.csrf, "email": email})
    token = server.link_token(email)
    browser.request("POST", "/auth/verify", {"csrf_token": browser.csrf, "token": token})
    page = browser.request("GET", "/")
    if "No check-ins yet" not in page:
        raise RuntimeError(f"customer {n} sees someone else's dashboard")
    browser.request("GET", "/checkin")
    form = {"csrf_token": browser.csrf, "weight": f"{weight:.1f}", "goal": "70", "note": email}
    browser.request("POST", "/checkin", form)
    page = browser.request("GET", "/")
    if f"{weight:.1f}" not in page:
        raise RuntimeError(f"customer {n} does not see their own weigh-in")
    browser.request("GET", "/checkin")
    browser.request("GET", "/")
    browser.request("GET", "/")


def _serve_customers(server: Server, first: int, last: int, clients: int) -> None:
    """Customers ``first`` … ``last - 1``, in order, on ``clients`` connections."""
    todo: queue.Queue[int] = queue.Queue()
    for n in range(first, last):
        todo.put(n)
    errors: list[BaseException] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            while not errors:
                try:
                    n = todo.get_nowait()
                except queue.Empty:
                    return
                _customer(server, conn, n, 40 + (n % 3000) / 10)
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _settled_rss(server: Server) -> int:
    """RSS once the server has been idle for a moment (its async writer drained)."""
    time.sleep(1.0)
    return server.rss


@dataclass(frozen=True)
class Measurement:
    customers_first: int
    customers_total: int
    rss_first: int
    rss_total: int
    seconds: float

    @property
    def ratio(self) -> float:
        return self.rss_total / self.rss_first


def measure(customers: int, first: int, clients: int = CLIENTS) -> Measurement:
    """Serve ``first`` customers, read RSS, serve the rest up to ``customers``, read it again."""
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "weight_tracker"
        shutil.copytree(SITE, site, ignore=shutil.ignore_patterns("instance"))
        server = Server(site, Path(tmp) / "crm.db")
        try:
            started = time.perf_counter()
            _serve_customers(server, 0, first, clients)
            rss_first = _settled_rss(server)
            _serve_customers(server, first, customers, clients)
            rss_total = _settled_rss(server)
            seconds = time.perf_counter() - started
        finally:
            server.stop()
    return Measurement(first, customers, rss_first, rss_total, seconds)


def run(quick: bool | None = None) -> dict[str, Any]:
    quick = quick_default() if quick is None else quick
    customers = 200 if quick else 2000
    m = measure(customers, customers // 10)
    return result(
        "M1",
        f"serve RSS after {customers * PER_CUSTOMER:,} requests from {customers:,} customers "
        f"vs after {m.customers_first * PER_CUSTOMER:,}",
        m.ratio,
        "≤ 1.1×",
        m.ratio <= 1.1,
        rss_first_mb=round(m.rss_first / 2**20, 1),
        rss_total_mb=round(m.rss_total / 2**20, 1),
        requests_per_s=round(customers * PER_CUSTOMER / m.seconds),
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
