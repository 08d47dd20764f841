"""The real `crm-templates serve` process (issue 8, items 8, 10, 11): its log shows the sign-in
link and one access line per request (secrets redacted), under waitress and under --debug;
an oversized Content-Length is refused before the body is sent; no Server banner."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_sites"
TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
LINK_LINE = re.compile(
    rf"^{TIMESTAMP} INFO +crm_templates\.mail: sign-in link for (?P<email>\S+): "
    r"(?P<link>http://\S+/auth/verify\?token=(?P<token>[\w.-]+))$"
)
ACCESS_LINE = re.compile(
    rf'^{TIMESTAMP} INFO +crm_templates\.access: 127\.0\.0\.1 "(?P<method>[A-Z]+) (?P<target>\S+) '
    r'HTTP/1\.[01]" (?P<status>\d{3}) (?P<bytes>\d+) bytes (?P<ms>\d+\.\d) ms$'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """A running `crm-templates serve` process and the lines it printed so far."""

    def __init__(self, site: Path, db: Path | None, *args: str, env: dict[str, str] | None = None):
        """``db=None`` leaves ``--store`` out: the site's default store, as the docs run it."""
        self.port = free_port()
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        for key in ("CRM_STORE_URL", "CRM_LOG_LEVEL", "CRM_BASE_URL"):
            if key not in (env or {}):
                environment.pop(key, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crm_templates", "serve", str(site), "--port", str(self.port),
             *(["--store", f"sqlite:///{db}"] if db is not None else []), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, cwd=ROOT,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait_until_listening()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, "\n".join(self.lines)
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 10) -> list[str]:
        """Every printed line matching ``pattern``, waiting until there is at least one."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in list(self.lines) if pattern.match(line)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def access_line(self, method: str, target: str) -> re.Match[str]:
        """The access-log line of a request (waiting for it: it is written after the answer)."""
        wanted = re.compile(rf'.* "{method} {re.escape(target)} HTTP/')
        found = [m for m in map(ACCESS_LINE.match, self.wait_for(wanted)) if m]
        assert found, f"no access line for {method} {target}:\n" + "\n".join(self.lines)
        return found[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start `crm-templates serve` on a copy of the weight tracker; stopped afterwards."""
    started: list[Served] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Served:
        n = len(started)
        site = tmp_path / f"site{n}"
        shutil.copytree(SAMPLES / "weight_tracker", site, ignore=shutil.ignore_patterns("instance"))
        served = Served(site, tmp_path / f"crm{n}.db", *args, env=env)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def browser_session() -> urllib.request.OpenerDirector:
    """A urllib client with a cookie jar that does not follow redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)


def request_sign_in(served: Served, email: str) -> None:
    """GET the sign-in form, then POST it with its CSRF token (as a browser would)."""
    client = browser_session()
    html = client.open(served.url("/auth/sign-in"), timeout=10).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token, html
    body = urlencode({"csrf_token": token.group(1), "email": email}).encode()
    with client.open(served.url("/auth/sign-in"), body, timeout=10) as response:
        assert response.status == 200


def fetch(url: str) -> tuple[int, Any]:
    """Status and headers of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


@pytest.mark.parametrize("mode", ["waitress", "debug"])
def test_sign_in_link_and_access_log_are_printed(serve: Any, mode: str) -> None:
    served = serve(*(["--debug"] if mode == "debug" else []))
    request_sign_in(served, "ann@example.com")

    links = [m for m in map(LINK_LINE.match, served.wait_for(LINK_LINE)) if m]
    assert len(links) == 1, "\n".join(served.lines)
    assert links[0]["email"] == "ann@example.com"
    assert f":{served.port}/auth/verify?token=" in links[0]["link"]

    for method in ("GET", "POST"):
        line = served.access_line(method, "/auth/sign-in")
        assert line["status"] == "200"
        assert int(line["bytes"]) > 0

    # Opening the link is logged, but never with its token.
    token = links[0]["token"]
    fetch(served.url(f"/auth/verify?token={token}&next=/"))
    fetch(served.url("/static/site.css"))
    served.access_line("GET", "/auth/verify?token=REDACTED&next=/")
    assert served.access_line("GET", "/static/site.css")["status"] == "200"
    assert [
        line for line in served.lines if token in line and "crm_templates.mail" not in line
    ] == []
    # werkzeug's own request lines (which print the token) are not written under --debug.
    assert not [line for line in served.lines if "werkzeug" in line and "/auth/" in line]


def test_log_level_from_the_environment(serve: Any) -> None:
    served = serve(env={"CRM_LOG_LEVEL": "warning"})
    request_sign_in(served, "bob@example.com")
    assert fetch(served.url("/nope"))[0] == 404
    time.sleep(0.3)  # what would have been logged has been written by now
    assert not [line for line in served.lines if "crm_templates.mail" in line]
    assert not [line for line in served.lines if "crm_templates.access" in line]


def test_oversized_content_length_is_refused_before_the_body(serve: Any) -> None:
    served = serve()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        started = time.monotonic()
        conn.sendall(
            b"POST /checkin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{}"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert elapsed < 5, f"the 413 took {elapsed:.1f} s: the server waited for the body"
    headers = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nserver:" not in headers


def test_no_server_banner(serve: Any) -> None:
    served = serve()
    for path in ("/", "/static/site.css", "/nope", "/auth/sign-in"):
        status, headers = fetch(served.url(path))
        assert status in (200, 404)
        assert headers.get("Server") is None, (path, headers.get("Server"))
        assert headers["Permissions-Policy"].startswith("accelerometer=()")


def test_the_start_line_says_how_to_turn_the_admin_on(serve: Any, tmp_path: Path) -> None:
    """Without an operator the start line names the command that creates one; once an account
    exists in the store (issue 12), the next start says the admin is on, where it is."""
    served = serve()
    off = served.wait_for(re.compile(r"^Serving "))[0]
    assert "operator admin off (run crm-templates operator add EMAIL --site " in off, off
    served.stop()
    added = subprocess.run(
        [sys.executable, "-m", "crm_templates", "operator", "add", "ops@example.com",
         "--password-stdin", "--store", f"sqlite:///{tmp_path / 'crm0.db'}"],
        input="a long enough password\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    again = Served(tmp_path / "site0", tmp_path / "crm0.db")
    try:
        on = again.wait_for(re.compile(r"^Serving "))[0]
        assert "operator admin on at /admin/" in on, on
    finally:
        again.stop()
