"""Shared fixtures: the browser, the storage backends (one run per backend) and the search server.

Fixtures skip when a part is missing on this machine (Chromium, the search server); under CI
(``CI`` set, as ``.ci/run`` does) tests/skip_guard.py turns every such skip into a failed run.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

# skip_guard: under CI, skips and deselections fail the run (issue 10). pytester: its tests.
pytest_plugins = ["pytester", "tests.skip_guard"]

CHROMIUM = os.environ.get("CRM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (skips when Chromium is absent)."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(
            f"Chromium not found at {CHROMIUM} (apt-get install chromium to run browser tests)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser page in its own context; fails the test on uncaught page errors and on
    console errors, but for those matching an ``allow_console_errors`` marker's regexes."""
    allowed = [
        re.compile(pattern)
        for marker in request.node.iter_markers("allow_console_errors")
        for pattern in marker.args
    ]
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not any(p.search(message.text) for p in allowed):
            where = message.location.get("url") or "?"
            problems.append(f"console error at {where}: {message.text}")

    def on_page_error(error: Any) -> None:
        problems.append(f"uncaught page error: {getattr(error, 'stack', None) or error}")

    context = browser.new_context()
    pg = context.new_page()
    pg.on("console", on_console)
    pg.on("pageerror", on_page_error)
    try:
        yield pg
    finally:
        context.close()
    if problems:
        pytest.fail(
            "the browser page reported errors (allow expected console errors with "
            "@pytest.mark.allow_console_errors(regex)):\n" + "\n".join(problems),
            pytrace=False,
        )


# --- storage backends: every contract/service test runs once per backend -----------------

BACKENDS = ["sqlite-memory", "sqlite-file", "opensearch"]


def make_store(backend: str, request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """Open a fresh, empty store of the given backend kind."""
    from crm_templates import open_store

    if backend == "sqlite-memory":
        return open_store("sqlite:///:memory:")
    if backend == "sqlite-file":
        return open_store(f"sqlite:///{tmp_path / 'crm.db'}")
    if backend == "opensearch":
        factory = request.getfixturevalue("search_store_factory")
        return factory()
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """A fresh, empty store, once per backend."""
    s = make_store(request.param, request, tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def crm(store: Any) -> Iterator[Any]:
    """A Crm service over a fresh store (per backend), drained at teardown."""
    from crm_templates import Crm

    service = Crm(store)
    try:
        yield service
    finally:
        service.flush()


@pytest.fixture
def sqlite_crm(tmp_path: Any) -> Iterator[Any]:
    """A Crm over a real SQLite file, for tests that are about SQLite itself."""
    from crm_templates import Crm, open_store

    service = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    try:
        yield service
    finally:
        service.close()


# The Elasticsearch/OpenSearch backend's fixtures (search server, factory) live below this line.
@pytest.fixture(scope="session")
def search_url() -> Iterator[str]:
    """A search cluster URL: CRM_TEST_ELASTICSEARCH_URL, else an osmem-server on loopback."""
    given = os.environ.get("CRM_TEST_ELASTICSEARCH_URL")
    if given:
        yield given
        return
    try:
        from osmem_server import OsmemServer

        server = OsmemServer.start(addr="127.0.0.1:0", japanese=False)
    except Exception as exc:  # ImportError, OsmemError, OSError: all mean "no server here"
        pytest.skip(
            f"osmem-server could not start ({type(exc).__name__}: {exc}); "
            "pip install osmem-server or set CRM_TEST_ELASTICSEARCH_URL"
        )
    try:
        # osmem speaks the OpenSearch API, so the store talks to it as opensearch://.
        yield server.url.replace("http://", "opensearch://", 1)
    finally:
        server.close()


@pytest.fixture(scope="session")
def search_admin(search_url: str) -> Iterator[Any]:
    """A session-wide store whose client drops the indices of each test's stores."""
    from crm_templates.storage.elasticsearch import ElasticsearchStore

    admin = ElasticsearchStore.from_url(search_url, prefix="crm_test_admin_")
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture
def search_store_factory(search_url: str, search_admin: Any) -> Iterator[Any]:
    """Opens fresh ElasticsearchStores under a unique index prefix; drops their indices after."""
    import uuid

    from crm_templates.storage.elasticsearch import ElasticsearchStore

    opened: list[Any] = []

    def factory(**options: Any) -> Any:
        options.setdefault("prefix", f"t{uuid.uuid4().hex[:12]}_")
        store = ElasticsearchStore.from_url(search_url, **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()
        search_admin.client.options(ignore_status=404).indices.delete(
            index=",".join(store.indices.values())
        )
