"""The SQLite store under a thread-per-request server (found with issue 11, item 1).

``flask run`` and ``crm-templates serve --debug`` serve each request in a new thread; the store
opens one connection per thread, and kept every one of them open until the store closed: about
two file descriptors per request ever served, until the process ran out of them. Connections of
threads that have ended are closed now.
"""

from __future__ import annotations

import http.client
import os
import threading
from pathlib import Path

from werkzeug.serving import make_server

from crm_templates import Crm, open_store
from tests.flask_demo import create_app
from tests.flask_demo import crm as demo_crm


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'threads.db'}")
    try:
        crm = Crm(store)
        crm.ensure_entity({"slug": "w", "fields": [{"key": "kg", "type": "number"}]})
        before = open_fds()
        for i in range(150):
            t = threading.Thread(
                target=lambda i=i: crm.bind(f"c{i}").set_field(slug="w", fieldKey="kg", value=i)
            )
            t.start()
            t.join()
        assert open_fds() - before < 10  # was ~300: two descriptors per ended thread
        # Every thread's write is there, and a live thread's connection still works.
        assert crm.bind("c149").get_field(slug="w", fieldKey="kg") == 149
        assert sum(1 for _ in store.iter_entries()) == 150
    finally:
        crm.close()
    assert store._conns == []


def test_a_thread_per_request_server_does_not_leak_descriptors(tmp_path: Path) -> None:
    app = create_app({"CRM_STORE_URL": f"sqlite:///{tmp_path / 'served.db'}"})
    server = make_server("127.0.0.1", 0, app, threaded=True)  # what `flask run` uses
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/account/login/1")
        response = conn.getresponse()
        cookie = response.getheader("Set-Cookie", "").split(";")[0]
        response.read()
        conn.close()

        def get() -> str:
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            c.request("GET", "/account/weight", headers={"Cookie": cookie})
            r = c.getresponse()
            body = r.read().decode()
            c.close()
            assert r.status == 200, body
            return body

        get()
        before = open_fds()
        for _ in range(150):
            assert '<p id="user">Alice</p>' in get()
        assert open_fds() - before < 20
    finally:
        server.shutdown()
        demo_crm.close(app)
