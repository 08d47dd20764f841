"""Live reload (issue 11, item 3): a real ``crm-templates serve --reload`` process on a copy of
the weight tracker picks up edited pages, page backends, static files and crm.yaml (a new field
usable) without a restart, logs each reload, survives syntax errors and recovers when they are
fixed, and still stops cleanly on Ctrl+C. ``--debug`` implies ``--reload``."""

from __future__ import annotations

import re
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from watchfiles import Change

from crm_templates.server.reload import SiteFilter
from tests.test_serve import SAMPLES, Served, browser_session

T = TypeVar("T")
# Generous: the watcher waits for a quiet spell before it applies a batch, and the machine
# running the tests may be busy. Polls return as soon as the change shows.
BOUND = 60.0


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of the weight tracker."""
    root = tmp_path / "site"
    shutil.copytree(SAMPLES / "weight_tracker", root, ignore=shutil.ignore_patterns("instance"))
    return root


@pytest.fixture
def serve(site: Path, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Starts ``crm-templates serve SITE ARGS…`` on the copy; stopped afterwards."""
    started: list[Served] = []

    def start(*args: str) -> Served:
        served = Served(site, tmp_path / "crm.db", *args)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def get(served: Served, path: str, opener: Any = None) -> tuple[int, str]:
    """Status and body of a GET (errors included)."""
    open_url = (opener or browser_session()).open
    try:
        with open_url(served.url(path), timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def poll(read: Callable[[], T], done: Callable[[T], bool], what: str, served: Served) -> T:
    """``read()`` until ``done`` holds for its value (at most `BOUND` seconds)."""
    deadline = time.monotonic() + BOUND
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            log = "\n".join(served.lines[-40:])
            raise AssertionError(f"{what} did not happen within {BOUND:.0f} s: {value!r}\n{log}")
        assert served.proc.poll() is None, "the server died:\n" + "\n".join(served.lines)
        time.sleep(0.1)


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (present once) with ``new`` in a file."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new), encoding="utf-8")


def logged(served: Served, pattern: str) -> list[str]:
    """Printed lines matching ``pattern`` (a regex searched in each line), waiting for one."""
    found = served.wait_for(re.compile(f".*{pattern}"), timeout=BOUND)
    assert found, f"no line matching {pattern!r}:\n" + "\n".join(served.lines)
    return found


@pytest.mark.parametrize("flag", ["--reload", "--debug"])
def test_edited_page_and_static_file_show_without_a_restart(
    serve: Any, site: Path, flag: str
) -> None:
    served = serve(flag)
    logged(served, r"^Serving .*; reloading on changes\)")
    status, body = get(served, "/")
    assert status == 200 and "Your progress" in body and "Edited progress" not in body

    edit(site / "pages" / "index.html", "Your progress", "Edited progress")
    poll(lambda: get(served, "/"), lambda r: "Edited progress" in r[1], "the page edit", served)
    logged(served, r"INFO +crm_templates\.reload: reloaded pages/index\.html$")

    (site / "static" / "site.css").write_text("body { color: #111; } /* edited */\n")
    poll(
        lambda: get(served, "/static/site.css"),
        lambda r: "/* edited */" in r[1],
        "the stylesheet edit",
        served,
    )
    logged(served, r"INFO +crm_templates\.reload: reloaded static/site\.css$")
    # One process all along: the port answered throughout and nothing was restarted.
    assert sum(line.startswith("Serving ") for line in served.lines) == 1


def test_new_page_and_edited_backend_run_the_new_code(serve: Any, site: Path) -> None:
    served = serve("--reload")
    assert get(served, "/hello")[0] == 404
    pages = site / "pages"
    (pages / "hello.html").write_text("<p>greeting={{ var.greeting }}</p>\n")
    backend = pages / "hello.py"
    backend.write_text(
        "def handle(request, page):\n    page.set_variable('greeting', 'hello one')\n"
    )
    poll(lambda: get(served, "/hello"), lambda r: "greeting=hello one" in r[1], "new page", served)

    # Same length, same second: only the source, not a cached bytecode file, tells them apart.
    edit(backend, "hello one", "hello two")
    poll(lambda: get(served, "/hello"), lambda r: "greeting=hello two" in r[1], "edit", served)
    logged(served, r"INFO +crm_templates\.reload: reloaded pages/hello\.py$")
    assert not (pages / "__pycache__").exists()

    # A backend that does not compile: an error page and a log line naming it; then fixed.
    edit(backend, "def handle(request, page):", "def handle(request, page)")
    poll(lambda: get(served, "/hello"), lambda r: r[0] == 500, "the error page", served)
    logged(served, r"ERROR +crm_templates\.reload: pages/hello\.py, line 1: ")
    edit(backend, "def handle(request, page)", "def handle(request, page):")
    edit(backend, "hello two", "hello three")
    poll(lambda: get(served, "/hello"), lambda r: r == (200, "<p>greeting=hello three</p>"), "fix", served)  # fmt: skip


def test_template_syntax_error_shows_and_the_fix_recovers(serve: Any, site: Path) -> None:
    served = serve("--reload")
    assert get(served, "/")[0] == 200
    page = site / "pages" / "index.html"
    edit(page, "Your progress", "{% if %}")
    _, body = poll(lambda: get(served, "/"), lambda r: r[0] == 500, "the error page", served)
    assert "Something went wrong" in body
    line = logged(served, r"ERROR +crm_templates\.reload: pages/index\.html, line \d+: ")[0]
    assert "Expected an expression" in line
    # The layout breaks every page that extends it; fixing both brings them back.
    layout = site / "templates" / "layout.html"
    layout.write_text(layout.read_text() + "{% endblock %}")
    logged(served, r"ERROR +crm_templates\.reload: templates/layout\.html, line \d+: ")
    edit(page, "{% if %}", "Fixed progress")
    layout.write_text(layout.read_text().removesuffix("{% endblock %}"))
    _, body = poll(lambda: get(served, "/"), lambda r: r[0] == 200, "recovery", served)
    assert "Fixed progress" in body
    logged(served, r"INFO +crm_templates\.reload: reloaded templates/layout\.html$")


MOOD_BACKEND = """\
def handle(request, page):
    page.SetCrmFields({'slug': 'weight-tracker', 'fields': {'mood': 'sunny'}})
    page.set_variable('mood', page.GetCrmField({'slug': 'weight-tracker', 'fieldKey': 'mood'}))
"""


def test_crm_yaml_change_adds_a_field_usable_at_once(serve: Any, site: Path) -> None:
    served = serve("--reload")
    pages = site / "pages"
    (pages / "mood.html").write_text("mood={{ var.mood }}")
    (pages / "mood.py").write_text(MOOD_BACKEND)
    visitor = browser_session()
    # No field 'mood' yet: the backend's write is refused.
    status, _ = poll(lambda: get(served, "/mood", visitor), lambda r: r[0] != 404, "page", served)
    assert status in (400, 500)

    edit(
        site / "crm.yaml",
        "      - key: goal_weight\n",
        "      - {key: mood, label: Mood, type: text}\n      - key: goal_weight\n",
    )
    logged(
        served,
        r"INFO +crm_templates\.reload: reloaded crm\.yaml: added field weight-tracker\.mood$",
    )
    poll(lambda: get(served, "/mood", visitor), lambda r: r == (200, "mood=sunny"), "mood", served)

    # A broken file is reported and changes nothing; the site keeps serving.
    schema = site / "crm.yaml"
    good = schema.read_text()
    schema.write_text(good + "  - slug: [unclosed\n")
    logged(served, r"ERROR +crm_templates\.reload: crm\.yaml: ")
    assert get(served, "/mood", visitor) == (200, "mood=sunny")
    schema.write_text(good)
    logged(served, r"INFO +crm_templates\.reload: reloaded crm\.yaml: nothing to add")

    # The store was seeded at start and has data: an edited seed file is not loaded again.
    seed = site / "seed.yaml"
    seed.write_text(seed.read_text() + "\n")
    logged(served, r"INFO +crm_templates\.reload: seed\.yaml changed; the store has data")


def test_ctrl_c_stops_a_reloading_server_cleanly(serve: Any) -> None:
    served = serve("--reload")
    assert get(served, "/")[0] == 200
    served.proc.send_signal(signal.SIGINT)
    served.proc.wait(timeout=BOUND)
    served._reader.join(10)
    assert any("Stopped; queued writes drained" in line for line in served.lines), served.lines
    assert not [line for line in served.lines if "Traceback" in line], served.lines


@pytest.mark.parametrize(
    ("relative", "watched"),
    [
        ("pages/index.html", True),
        ("pages/sub/page.py", True),
        ("templates/layout.html", True),
        ("static/img/logo.svg", True),
        ("crm.yaml", True),
        ("crm.json", True),
        ("seed.yaml", True),
        ("instance/crm.db", False),
        ("instance/crm.db-wal", False),
        ("pages/.index.html.swp", False),
        ("pages/index.html~", False),
        ("pages/__pycache__/x.pyc", False),
        ("pages/.hidden/x.html", False),
        ("README.md", False),
        ("notes/todo.txt", False),
    ],
)
def test_what_the_watcher_reacts_to(tmp_path: Path, relative: str, watched: bool) -> None:
    accept = SiteFilter(tmp_path)
    assert accept(Change.modified, str(tmp_path / relative)) is watched
    assert accept(Change.modified, "/elsewhere/" + relative) is False


def test_a_change_that_keeps_the_modification_time_is_applied(site: Path) -> None:
    """attack11: backends and templates were reloaded only when their mtime changed, so a file
    replaced by one with the same mtime (a coarse-timestamp file system, ``cp -p``, ``rsync
    -t``, a restored backup) kept running the old code even after the watcher reported
    ``reloaded``. The watcher's own report of a change now drops the cached file."""
    import os

    from crm_templates.server.reload import SiteWatcher
    from tests.test_server_security import build

    app = build(site)
    watcher = SiteWatcher(app)
    watcher.start()
    try:
        client = app.test_client()
        html, backend = site / "pages" / "probe.html", site / "pages" / "probe.py"
        layout = site / "templates" / "probe_layout.html"
        layout.write_text("L1[{% block b %}{% endblock %}]", encoding="utf-8")
        html.write_text(
            '{% extends "probe_layout.html" %}{% block b %}T1 {{ var.v }}{% endblock %}',
            encoding="utf-8",
        )
        backend.write_text('def handle(request, page):\n    page.set_variable("v", "B1")\n')
        assert "L1[T1 B1]" in client.get("/probe").get_data(as_text=True)
        for path, old, new in ((html, "T1", "T2"), (backend, "B1", "B2"), (layout, "L1", "L2")):
            stat = path.stat()
            path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same mtime as before
            watcher.apply([(Change.modified, str(path))])
        assert "L2[T2 B2]" in client.get("/probe").get_data(as_text=True)
    finally:
        watcher.stop()
        app.extensions["crm"].close()
