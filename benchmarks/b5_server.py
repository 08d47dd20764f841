"""B5: the page server's dashboard page under concurrent clients vs a bare Flask route served
by the same waitress process. Target: ≥ 0.9× (issue 14) the bare route's requests per second.

The bare route is what a developer would write without the page server: a plain Flask view
that reads the session customer, makes the same three reads with the `Crm` service and
renders the same dashboard templates with an ordinary (not sandboxed) Jinja environment, the
values handed in and each field rendered with `renderers.render` (like B1's hand-written
prefetch). The ratio therefore prices the page server's machinery — routing table, session
customer, sandbox, CRM extension, security headers — not the database or the renderers.
For context the result also reports a constant-string route's requests per second.

The server runs in a child process (``python -m benchmarks.b5_server --serve``) so the client
threads do not share its interpreter lock. It serves a copy of the weight-tracker sample site
with its seeded store; the clients carry a session cookie for the seeded customer, so every
dashboard request reads that customer's fields, history and stage. Both routes are added to
the app object here, never to the server package. Loopback only, bounded rounds.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import quick_default, result

SITE = Path(__file__).resolve().parent.parent / "sample_sites" / "weight_tracker"
BARE = "/_bench/bare"
TRIVIAL = "/_bench/trivial"
SLUG = "weight-tracker"


def _bare_dashboard(app: Any) -> Any:
    """The hand-written Flask view of the same dashboard (the baseline)."""
    from flask import session
    from flask_wtf.csrf import generate_csrf
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, pass_context
    from markupsafe import Markup

    import renderers
    from crm_templates.extension import stage_badge

    state = app.extensions["crm"]
    crm = state.crm
    entity = crm.get_entity(SLUG)
    fields = {f.key: f for f in entity.fields}
    stages = {s.id: s for p in entity.pipelines for s in p.stages}
    env = Environment(
        autoescape=True,
        extensions=["jinja2.ext.do"],
        loader=ChoiceLoader(
            [
                PrefixLoader({"pages": FileSystemLoader(state.site.pages_dir)}),
                FileSystemLoader(state.site.templates_dir),
            ]
        ),
    )
    # Filters are installed once; each render passes its own values through the context.
    env.filters.update(
        crm_label=lambda slug, key: fields[key].label,
        crm_render=pass_context(
            lambda ctx, slug, key: renderers.render(ctx["values"][key], fields[key])
        ),
        crm_stage=lambda entry: stage_badge(stages[entry.stage_id]),
    )
    template = env.get_template("pages/index.html")

    def view() -> str:
        customer = crm.get_customer(session["customer_id"])
        mine = crm.bind(customer.id)
        keys = ["current_weight", "goal_weight", "last_checkin"]
        values = mine.get_fields(slug=SLUG, fieldKeys=keys)
        history = mine.get_field_values(slug=SLUG, fieldKey="weighin_history", limit=10)
        latest = mine.get_entries(slug=SLUG, limit=1)
        return template.render(
            values=values,
            GetCrmFields=lambda o: values,
            GetCrmFieldValues=lambda o: history,
            GetCrmEntries=lambda o: latest,
            csrf_field=lambda: Markup('<input type="hidden" name="csrf_token" value="{}">').format(
                generate_csrf()
            ),
            customer=customer,
            customer_id=customer.id,
            is_customer=True,
            request={"path": "/"},
            var={},
        )

    return view


def _serve(site: str, port: int, threads: int) -> None:
    """Child process: the site plus the two baseline routes on waitress; prints the cookie."""
    import logging

    from waitress import serve

    from crm_templates.server import create_app
    from crm_templates.server.sessions import CUSTOMER

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" noise
    app = create_app(site, CRM_COOKIE_SECURE=False)
    app.add_url_rule(BARE, "bench_bare", _bare_dashboard(app))
    app.add_url_rule(TRIVIAL, "bench_trivial", lambda: "<!doctype html><p>trivial</p>")
    state = app.extensions["crm"]
    dana = state.crm.find_customer("dana@example.com")
    cookie = app.session_interface.get_signing_serializer(app).dumps(  # type: ignore[attr-defined]
        # With a CSRF secret already in the session, neither route has to set a new cookie.
        # A signed-in session has a session id and its customer's generation (0: never
        # bumped), which the page server checks in the store on every request.
        {
            "customer_id": dana.id,
            "signed_in": True,
            CUSTOMER.sid_key: "b5-session",
            CUSTOMER.generation_key: 0,
            "csrf_token": "b5" * 20,
        }
    )
    print(f"crm_session={cookie}", flush=True)
    try:
        serve(app, host="127.0.0.1", port=port, threads=threads, _quiet=True)
    finally:
        state.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hammer(port: int, path: str, cookie: str, clients: int, per_client: int) -> float:
    """Requests per second for ``clients`` keep-alive connections × ``per_client`` GETs."""
    failures: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for _ in range(per_client):
                conn.request("GET", path, headers={"Cookie": cookie})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or not body:
                    failures.append(f"{path}: {response.status}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - start
    if failures or any(t.is_alive() for t in threads):
        raise RuntimeError(f"B5 requests failed: {failures[:3]}")
    return clients * per_client / elapsed


def run(quick: bool | None = None) -> dict[str, Any]:
    quick = quick_default() if quick is None else quick
    clients, per_client, rounds = (4, 50, 3) if quick else (8, 250, 5)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "weight_tracker"
        shutil.copytree(SITE, site, ignore=shutil.ignore_patterns("instance"))
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.b5_server", "--serve", str(site), str(port), "8"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            assert server.stdout is not None
            cookie = server.stdout.readline().strip()
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the B5 server did not start") from None
                    time.sleep(0.05)
            _hammer(port, "/", cookie, clients, 10)  # warm up: templates compiled, caches filled
            _hammer(port, BARE, cookie, clients, 10)
            ours: list[float] = []
            bare: list[float] = []
            trivial: list[float] = []
            for _ in range(rounds):
                ours.append(_hammer(port, "/", cookie, clients, per_client))
                bare.append(_hammer(port, BARE, cookie, clients, per_client))
                trivial.append(_hammer(port, TRIVIAL, cookie, clients, per_client))
        finally:
            server.terminate()
            server.wait(30)
    ours_rps, bare_rps = statistics.median(ours), statistics.median(bare)
    ratio = ours_rps / bare_rps
    return result(
        "B5",
        f"page server dashboard vs bare Flask route, {clients} concurrent clients",
        ratio,
        "≥ 0.9×",
        ratio >= 0.9,
        dashboard_rps=round(ours_rps, 1),
        bare_rps=round(bare_rps, 1),
        trivial_rps=round(statistics.median(trivial), 1),
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        print(run("--quick" in sys.argv))
