"""Response headers on every kind of answer (issue 8, item 11): Permissions-Policy,
Cross-Origin-Resource-Policy, and ``Cache-Control: no-store`` wherever a response is private
(sign-in, operator, admin, errors); pages stay ``private, no-store``, static files cacheable."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from crm_templates.server import create_app
from crm_templates.server.security import DEFAULT_PERMISSIONS_POLICY

SAMPLES = Path(__file__).resolve().parent.parent / "sample_sites"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    """The weight tracker with operator features on."""
    site = tmp_path / "site"
    shutil.copytree(SAMPLES / "weight_tracker", site, ignore=shutil.ignore_patterns("instance"))
    application = create_app(site, TESTING=True, CRM_OPERATOR_PASSWORD=PASSWORD)
    yield application
    application.extensions["crm"].close()


def csrf_token(client: Any, url: str = "/auth/sign-in") -> str:
    """A CSRF token of the client's session."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True))
    assert match
    return match.group(1)


def signed_in_operator(app: Any) -> Any:
    """A client with an operator session."""
    client = app.test_client()
    token = csrf_token(client, "/operator/sign-in")
    response = client.post("/operator/sign-in", data={"csrf_token": token, "password": PASSWORD})
    assert response.status_code == 303
    return client


# (kind, request maker) — every kind of response the server gives.
def _responses(app: Any) -> dict[str, Any]:
    visitor = app.test_client()
    operator = signed_in_operator(app)
    token = csrf_token(visitor)
    customer = app.extensions["crm"].crm.store.list_customers()[0].id
    return {
        "page": visitor.get("/"),
        "page 422": visitor.post("/checkin", data={"csrf_token": token, "weight": "x"}),
        "static": visitor.get("/static/site.css"),
        "server static": visitor.get("/_crm/static/crm.css"),
        "static 404": visitor.get("/static/missing.css"),
        "error 404": visitor.get("/nope"),
        "error 404 json": visitor.get("/nope", headers={"Accept": "application/json"}),
        "error 400 csrf": visitor.post("/checkin", data={"weight": "70"}),
        "error 403 json": visitor.post("/checkin", json={}),
        "auth form": visitor.get("/auth/sign-in"),
        "auth sent": visitor.post("/auth/sign-in", data={"csrf_token": token, "email": "a@example.com"}),
        "auth error": visitor.post("/auth/sign-in", data={"csrf_token": token, "email": "nope"}),
        "auth verify error": visitor.get("/auth/verify?token=bad"),
        "auth sign-out": visitor.post("/auth/sign-out", data={"csrf_token": token}),
        "operator redirect": app.test_client().get("/operator/"),
        "operator form": app.test_client().get("/operator/sign-in"),
        "operator wrong password": operator.post("/operator/sign-in", data={"csrf_token": csrf_token(operator, "/operator/sign-in"), "password": "x"}),
        "operator list": operator.get("/operator/"),
        "operator preview": operator.get(f"/?preview_customer={customer}"),
        "operator error": operator.get("/?preview_customer=cus_nobody"),
    }  # fmt: skip


NO_STORE = {
    "error 404", "static 404", "error 404 json", "error 400 csrf", "error 403 json", "auth form", "auth sent",
    "auth error", "auth verify error", "auth sign-out", "operator redirect", "operator form",
    "operator wrong password", "operator list", "operator error", "page 422",
}  # fmt: skip
PRIVATE_PAGES = {"page", "operator preview"}
PUBLIC_ASSETS = {"static", "server static"}


def test_every_response_has_the_policy_headers(app: Any) -> None:
    for kind, response in _responses(app).items():
        headers = response.headers
        assert headers["Permissions-Policy"] == DEFAULT_PERMISSIONS_POLICY, kind
        # Public assets may be embedded anywhere (the admin playground's opaque-origin frame
        # loads the site's stylesheet); every other answer is same-origin only.
        corp = "cross-origin" if kind in PUBLIC_ASSETS else "same-origin"
        assert headers["Cross-Origin-Resource-Policy"] == corp, kind
        assert headers["X-Content-Type-Options"] == "nosniff", kind
        assert "default-src 'self'" in headers["Content-Security-Policy"], kind


def test_private_responses_are_never_stored(app: Any) -> None:
    responses = _responses(app)
    assert set(NO_STORE) | PRIVATE_PAGES <= set(responses)
    for kind, response in responses.items():
        cache = response.headers.get("Cache-Control", "")
        if kind in NO_STORE:
            assert cache == "no-store", (kind, response.status_code, cache)
        elif kind in PRIVATE_PAGES:
            assert cache == "private, no-store", (kind, cache)
        else:  # static files may be cached
            assert "no-store" not in cache, (kind, cache)


def test_permissions_policy_denies_powerful_features() -> None:
    features = dict(item.split("=") for item in DEFAULT_PERMISSIONS_POLICY.split(", "))
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert features[feature] == "()"


def test_permissions_policy_is_configurable(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text("hi")
    app = create_app(site, TESTING=True, CRM_PERMISSIONS_POLICY="camera=(self)")
    try:
        assert app.test_client().get("/").headers["Permissions-Policy"] == "camera=(self)"
    finally:
        app.extensions["crm"].close()


@pytest.mark.browser
def test_chromium_recognises_every_permissions_policy_feature(app: Any, page: Any) -> None:
    # An unknown feature name makes Chromium log "Unrecognized feature" on the console.
    app.config["TESTING"] = False
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        messages: list[str] = []
        page.on("console", lambda message: messages.append(message.text))
        page.goto(f"http://127.0.0.1:{server.server_port}/")
        page.wait_for_load_state("load")
        assert [m for m in messages if "Permissions-Policy" in m] == []
    finally:
        page.close()  # before the server stops: a favicon load still running would fail
        server.shutdown()
        thread.join(10)
