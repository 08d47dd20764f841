"""The page server never shows one visitor another's data through any Jinja construct, in
the test client and under concurrent requests on waitress's threads (issue 8, fault 1)."""

from __future__ import annotations

import http.cookiejar
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_templates.server import create_app
from tests.test_render_isolation import CONSTRUCTS, LIBRARY, TWICE
from tests.test_server import make_site

CRM_YAML = """\
entities:
  - slug: notes
    entityMode: data
    fields:
      - {key: secret, type: text}
"""
PAGES = {
    # A write from a template on GET keeps the test free of CSRF plumbing.
    "save.html": "{% do SetCrmField(slug='notes', fieldKey='secret', value=query.v) %}saved",
    **{f"{name}.html": body for name, body in CONSTRUCTS.items()},
}


def make_isolation_site(root: Path) -> Path:
    site = make_site(root, PAGES, CRM_YAML)
    for name, body in LIBRARY.items():
        (site / "templates" / name).write_text(body)
    return site


@pytest.fixture(params=["sqlite", "opensearch"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    site = make_isolation_site(tmp_path / "site")
    config: dict[str, Any] = {"TESTING": True, "CRM_SEED": False}
    if request.param == "opensearch":
        import uuid

        prefix = f"t{uuid.uuid4().hex[:12]}_"
        # The factory drops this prefix's indices after the test.
        request.getfixturevalue("search_store_factory")(prefix=prefix).close()
        config["CRM_STORE_URL"] = f"{request.getfixturevalue('search_url')}?prefix={prefix}"
    application = create_app(site, **config)
    yield application
    application.extensions["crm"].close()


def shown(construct: str, value: str) -> str:
    text = f"[{value}]"
    if construct == "imported-caller":
        text = f"<{text}>"
    return text * (2 if construct in TWICE else 1)


@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
def test_visitors_see_only_their_own_value_through_every_construct(
    app: Any, construct: str
) -> None:
    alice, bob, newcomer = app.test_client(), app.test_client(), app.test_client()
    url = f"/{construct}"
    assert alice.get("/save?v=alice-private").status_code == 200
    assert alice.get(url).get_data(as_text=True) == shown(construct, "alice-private")
    assert bob.get(url).get_data(as_text=True) == shown(construct, "")
    assert newcomer.get(url).get_data(as_text=True) == shown(construct, "")
    assert bob.get("/save?v=bob-private").status_code == 200
    assert bob.get(url).get_data(as_text=True) == shown(construct, "bob-private")
    assert alice.get("/save?v=alice-changed").status_code == 200
    assert alice.get(url).get_data(as_text=True) == shown(construct, "alice-changed")
    assert bob.get(url).get_data(as_text=True) == shown(construct, "bob-private")
    assert newcomer.get(url).get_data(as_text=True) == shown(construct, "")


@pytest.mark.slow
def test_concurrent_customers_on_waitress_threads_never_see_foreign_values(
    tmp_path: Path,
) -> None:
    from waitress import create_server

    site = make_isolation_site(tmp_path / "site")
    app = create_app(site, CRM_SEED=False, CRM_COOKIE_SECURE=False)
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    base = f"http://127.0.0.1:{server.effective_port}"
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except Exception:  # closing the server under its loop: expected only when stopping
            if not stopping.is_set():
                raise

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    pages = ["import", "from-import", "include-without-context", "imported-filter", "caller"]
    foreign: list[str] = []
    failures: list[str] = []
    barrier = threading.Barrier(8)

    def visitor(name: str) -> urllib.request.OpenerDirector:
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        with opener.open(f"{base}/save?v={name}", timeout=30) as answer:
            assert answer.status == 200
        return opener

    def work(n: int) -> None:
        try:
            mine = {f"t{n}-a": visitor(f"t{n}-a"), f"t{n}-b": visitor(f"t{n}-b")}
            barrier.wait(timeout=60)
            for i in range(50):
                name = f"t{n}-{'ab'[i % 2]}"
                construct = pages[i % len(pages)]
                with mine[name].open(f"{base}/{construct}", timeout=30) as answer:
                    body = answer.read().decode()
                if body != shown(construct, name):
                    foreign.append(f"{name} {construct}: {body}")
        except Exception as exc:  # reported by the main thread below
            failures.append(f"worker {n}: {exc!r}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        stopping.set()
        server.close()
        app.extensions["crm"].close()
    assert failures == []
    assert foreign == []
    assert not any(t.is_alive() for t in threads)
