"""The page server's web security: CSRF and same-origin checks, body cap, tampered cookies,
headers and cookie flags, magic-link sign-in (expiry, single use, tampering, rate limits,
reassigning the visitor's entries), operator sign-in and read-only previews."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import itsdangerous.timed
import pytest
from werkzeug.security import generate_password_hash

from crm_templates.server import create_app

CRM_YAML = """\
entities:
  - slug: notes
    fields:
      - {key: text, label: Text, type: text}
"""
PAGES = {
    "index.html": "home:{{ customer_id or 'none' }}:{{ is_customer }}:{{ customer.email if customer }}",
    "form.html": "<form method=post>{{ csrf_field() }}</form>",
    "read.html": "<html><body class=x>note={{ GetCrmField({'slug': 'notes', 'fieldKey': 'text'}) }}</body></html>",
    "write.html": (
        "{% set r = SetCrmField({'slug': 'notes', 'fieldKey': 'text', 'value': 'template'}) %}"
        "ok={{ r.ok }} error={{ r.error }}"
    ),
    "save.py": (
        "def handle(request, page):\n"
        "    text = page.data.get('text', 'backend') if request.method == 'POST' else 'get'\n"
        "    result = page.SetCrmField({'slug': 'notes', 'fieldKey': 'text', 'value': text})\n"
        "    return page.json(dict(result))\n"
    ),
}
PASSWORD = "correct horse battery staple"


def make_site(root: Path) -> Path:
    """A tiny site with read, write and backend pages."""
    for name, text in PAGES.items():
        path = root / "pages" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "static").mkdir()
    (root / "static" / "a.css").write_text("a{}")
    (root / "crm.yaml").write_text(CRM_YAML)
    return root


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The test site."""
    return make_site(tmp_path / "site")


def build(site: Path, **config: Any) -> Any:
    """An app over ``site`` (testing, operator password set, the test client's host trusted
    for sign-in links, unless overridden)."""
    settings: dict[str, Any] = {
        "TESTING": True,
        "CRM_OPERATOR_PASSWORD": PASSWORD,
        "TRUSTED_HOSTS": ["localhost"],
    }
    settings.update(config)
    return create_app(site, **settings)


@pytest.fixture
def app(site: Path) -> Iterator[Any]:
    """The app under test."""
    application = build(site)
    yield application
    application.extensions["crm"].close()


@pytest.fixture
def client(app: Any) -> Any:
    """A test client (one visitor)."""
    return app.test_client()


def token_of(client: Any) -> str:
    """A CSRF token valid for the client's session."""
    html = client.get("/form").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def crm_of(app: Any) -> Any:
    """The app's Crm service."""
    return app.extensions["crm"].crm


def entry_count(app: Any) -> int:
    """How many entries the store holds."""
    return sum(1 for _ in crm_of(app).store.iter_entries())


# --- CSRF and same-origin ---------------------------------------------------------------


def test_form_post_without_csrf_token_is_400(client: Any) -> None:
    response = client.post("/save", data={"text": "x"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_form_post_with_invalid_csrf_token_is_400(client: Any) -> None:
    token_of(client)
    assert client.post("/save", data={"csrf_token": "forged", "text": "x"}).status_code == 400


def test_form_post_with_another_sessions_token_is_400(app: Any) -> None:
    other = app.test_client()
    token = token_of(other)
    client = app.test_client()
    token_of(client)
    assert client.post("/save", data={"csrf_token": token}).status_code == 400


def test_form_post_with_token_is_accepted(app: Any, client: Any) -> None:
    response = client.post("/save", data={"csrf_token": token_of(client), "text": "kept"})
    assert response.status_code == 200
    assert response.get_json()["ok"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://localhost.evil.example"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "null"},
        {},
    ],
)
def test_cross_origin_json_post_is_403(app: Any, client: Any, headers: dict[str, str]) -> None:
    response = client.post("/save", json={"text": "x"}, headers=headers)
    assert response.status_code == 403
    assert response.get_json()["ok"] is False
    assert entry_count(app) == 0


@pytest.mark.parametrize(
    "headers", [{"Origin": "http://localhost"}, {"Referer": "http://localhost/form"}]
)
def test_same_origin_json_post_is_accepted(client: Any, headers: dict[str, str]) -> None:
    response = client.post("/save", json={"text": "json"}, headers=headers)
    assert response.status_code == 200
    assert response.get_json()["ok"] is True


def test_json_post_with_csrf_header_is_accepted(client: Any) -> None:
    token = token_of(client)
    response = client.post("/save", json={"text": "h"}, headers={"X-CSRFToken": token})
    assert response.status_code == 200
    bad = client.post("/save", json={"text": "h"}, headers={"X-CSRFToken": "nope"})
    assert bad.status_code == 400


def test_text_plain_post_needs_a_token(client: Any) -> None:
    # What a cross-site <form enctype=text/plain> can send: not JSON, so the token is required.
    response = client.post(
        "/save", data='{"text": "x"}', headers={"Content-Type": "text/plain", "Origin": "x"}
    )
    assert response.status_code == 400


# --- body cap ---------------------------------------------------------------------------


def test_oversize_form_body_is_413(app: Any, client: Any) -> None:
    token = token_of(client)
    response = client.post("/save", data={"csrf_token": token, "text": "x" * (70 * 1024)})
    assert response.status_code == 413
    assert "64 KB" in response.get_data(as_text=True)
    assert entry_count(app) == 0


def test_oversize_json_body_is_413_as_json(client: Any) -> None:
    response = client.post(
        "/save", json={"text": "x" * (70 * 1024)}, headers={"Origin": "http://localhost"}
    )
    assert response.status_code == 413
    assert response.get_json()["status"] == 413


def test_body_cap_is_configurable(site: Path) -> None:
    app = build(site, CRM_MAX_BODY=100)
    try:
        client = app.test_client()
        response = client.post(
            "/save", json={"text": "x" * 200}, headers={"Origin": "http://localhost"}
        )
        assert response.status_code == 413
    finally:
        app.extensions["crm"].close()


# --- cookies and headers ----------------------------------------------------------------


def tamper(signed: str) -> str:
    """Change one signature character that always changes the decoded bytes.

    Not the last one: base64's final character carries unused padding bits, so changing it can
    decode to the same signature, and the "tampered" value would (rarely) verify.
    """
    i = len(signed) - 5
    return signed[:i] + ("A" if signed[i] != "A" else "B") + signed[i + 1 :]


def test_tampered_session_cookie_is_ignored(app: Any, client: Any) -> None:
    client.get("/write")
    cid = crm_of(app).store.list_customers()[0].id
    value = client.get_cookie("crm_session").value
    client.set_cookie("crm_session", tamper(value))
    assert client.get("/").get_data(as_text=True) == "home:none:False:"
    # A forged cookie claiming someone's id is refused the same way.
    forged = app.test_client()
    forged.set_cookie("crm_session", f'{{"customer_id": "{cid}"}}')
    assert forged.get("/").get_data(as_text=True) == "home:none:False:"


def test_post_with_tampered_cookie_is_400(app: Any, client: Any) -> None:
    token = token_of(client)
    value = client.get_cookie("crm_session").value
    client.set_cookie("crm_session", tamper(value))
    assert client.post("/save", data={"csrf_token": token}).status_code == 400


@pytest.mark.parametrize("url", ["/", "/static/a.css", "/nope", "/auth/sign-in"])
def test_security_headers_on_every_response(client: Any, url: str) -> None:
    headers = client.get(url).headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src-attr")[0]
    assert "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"


def test_session_cookie_flags_in_testing(client: Any) -> None:
    client.get("/write")
    cookie = client.get_cookie("crm_session")
    assert cookie.http_only
    assert cookie.same_site == "Lax"
    assert not cookie.secure


def test_session_cookie_is_secure_in_production(site: Path) -> None:
    app = create_app(site)
    try:
        response = app.test_client().get("/write", base_url="https://localhost")
        header = response.headers["Set-Cookie"]
        assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header
    finally:
        app.extensions["crm"].close()
    plain = create_app(site, CRM_COOKIE_SECURE=False)
    try:
        header = plain.test_client().get("/write").headers["Set-Cookie"]
        assert "Secure" not in header
    finally:
        plain.extensions["crm"].close()


def test_pages_are_not_cached_by_shared_caches(client: Any) -> None:
    assert client.get("/").headers["Cache-Control"] == "private, no-store"


# --- magic-link sign-in -----------------------------------------------------------------


def request_link(app: Any, client: Any, email: str = "ann@example.com", **extra: str) -> str:
    """Ask for a sign-in link and return it (from the default mailer's outbox)."""
    before = len(app.extensions["crm"].outbox)
    response = client.post(
        "/auth/sign-in", data={"csrf_token": token_of(client), "email": email, **extra}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Check your email" in response.get_data(as_text=True)
    outbox = app.extensions["crm"].outbox
    assert len(outbox) == before + 1
    return str(outbox[-1].link)


def path_of(link: str) -> str:
    """The path and query of an absolute link (for the test client)."""
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def open_link(client: Any, link: str) -> Any:
    """Open a sign-in link and press the confirmation page's button; the POST's response."""
    page = client.get(path_of(link))
    assert page.status_code == 200, page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', html)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token and csrf
    return client.post("/auth/verify", data={"csrf_token": csrf.group(1), "token": token.group(1)})


def test_sign_in_flow(app: Any, client: Any, caplog: Any) -> None:
    caplog.set_level("INFO", logger="crm_templates.mail")
    link = request_link(app, client, "Ann@Example.com")
    assert link.startswith("http://localhost/auth/verify?token=")
    assert link in caplog.text  # the default mailer logs it
    assert app.extensions["crm"].outbox[-1].to == "ann@example.com"
    response = open_link(client, link)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    customer = crm_of(app).find_customer("ann@example.com")
    assert client.get("/").get_data(as_text=True) == f"home:{customer.id}:True:ann@example.com"


def test_sign_in_link_is_single_use(app: Any, client: Any) -> None:
    link = request_link(app, client)
    assert open_link(client, link).status_code == 303
    replay = app.test_client().get(path_of(link))
    assert replay.status_code == 400
    assert "already used" in replay.get_data(as_text=True)


def test_sign_in_link_expires(app: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    link = request_link(app, client)
    max_age = app.config["CRM_SIGN_IN_MAX_AGE"]
    signer = itsdangerous.timed.TimestampSigner
    monkeypatch.setattr(signer, "get_timestamp", lambda self: int(time.time()) + max_age + 5)
    response = client.get(path_of(link))
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    assert crm_of(app).find_customer("ann@example.com") is None


def test_short_max_age_is_configurable(site: Path) -> None:
    app = build(site, CRM_SIGN_IN_MAX_AGE=1)
    try:
        client = app.test_client()
        link = request_link(app, client)
        time.sleep(2.1)
        assert client.get(path_of(link)).status_code == 400
    finally:
        app.extensions["crm"].close()


@pytest.mark.parametrize("mangle", ["flip", "truncate", "other-key", "empty"])
def test_tampered_sign_in_token_is_refused(app: Any, client: Any, site: Path, mangle: str) -> None:
    link = request_link(app, client)
    token = parse_qs(urlsplit(link).query)["token"][0]
    if mangle == "flip":
        token = tamper(token)
    elif mangle == "truncate":
        token = token[: len(token) // 2]
    elif mangle == "other-key":
        other = itsdangerous.URLSafeTimedSerializer("another-secret", salt="crm-templates.sign-in")
        token = other.dumps({"e": "mallory@example.com", "n": "x", "next": "/"})
    else:
        token = ""
    response = client.get("/auth/verify", query_string={"token": token})
    assert response.status_code == 400
    assert "not valid" in response.get_data(as_text=True)
    assert crm_of(app).find_customer("mallory@example.com") is None


def test_invalid_email_is_a_form_error(app: Any, client: Any) -> None:
    response = client.post(
        "/auth/sign-in", data={"csrf_token": token_of(client), "email": "not-an-email"}
    )
    assert response.status_code == 400
    assert "valid email address" in response.get_data(as_text=True)
    assert len(app.extensions["crm"].outbox) == 0


def test_sign_in_is_rate_limited_per_email(site: Path) -> None:
    app = build(site, CRM_SIGN_IN_LIMIT=2)
    try:
        client = app.test_client()
        request_link(app, client)
        request_link(app, client)
        token = token_of(client)
        response = client.post(
            "/auth/sign-in", data={"csrf_token": token, "email": "ann@example.com"}
        )
        assert response.status_code == 429
        assert "Too many" in response.get_data(as_text=True)
        request_link(app, client, "bob@example.com")  # other addresses are not affected
    finally:
        app.extensions["crm"].close()


def test_sign_in_is_rate_limited_per_ip(site: Path) -> None:
    app = build(site, CRM_SIGN_IN_IP_LIMIT=3)
    try:
        client = app.test_client()
        for n in range(3):
            request_link(app, client, f"user{n}@example.com")
        response = client.post(
            "/auth/sign-in", data={"csrf_token": token_of(client), "email": "z@example.com"}
        )
        assert response.status_code == 429
    finally:
        app.extensions["crm"].close()


def test_sign_in_reassigns_the_visitors_entries(app: Any, client: Any) -> None:
    known = crm_of(app).create_customer("ann@example.com")
    client.post("/save", data={"csrf_token": token_of(client), "text": "before sign-in"})
    visitor = next(c for c in crm_of(app).store.list_customers() if c.email is None)
    open_link(client, request_link(app, client))
    crm = crm_of(app)
    assert crm.get_field(slug="notes", fieldKey="text", referenceId=known.id) == "before sign-in"
    assert crm.get_entries(slug="notes", referenceId=visitor.id) == []
    assert client.get("/read").get_data(as_text=True).endswith("note=before sign-in</body></html>")


def test_sign_in_does_not_take_another_customers_entries(app: Any) -> None:
    crm = crm_of(app)
    ann = crm.create_customer("ann@example.com")
    crm.set_field(slug="notes", fieldKey="text", value="ann's", referenceId=ann.id)
    client = app.test_client()
    open_link(client, request_link(app, client, "ann@example.com"))
    # Signed in as Ann, the same browser signs in as Bob: Ann's entries stay Ann's.
    open_link(client, request_link(app, client, "bob@example.com"))
    assert crm.get_field(slug="notes", fieldKey="text", referenceId=ann.id) == "ann's"


def test_sign_in_redirects_only_within_the_site(app: Any) -> None:
    for wanted, expected in [
        ("/read", "/read"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
    ]:
        client = app.test_client()
        link = request_link(app, client, "ann@example.com", next=wanted)
        assert open_link(client, link).headers["Location"] == expected


def test_sign_in_links_use_the_configured_base_url(site: Path) -> None:
    app = build(site, CRM_BASE_URL="https://shop.example/")
    try:
        client = app.test_client()
        link = request_link(app, client)
        assert link.startswith("https://shop.example/auth/verify?token=")
    finally:
        app.extensions["crm"].close()


def test_sign_out(app: Any, client: Any) -> None:
    open_link(client, request_link(app, client))
    assert client.get("/").get_data(as_text=True).endswith(":True:ann@example.com")
    assert client.get("/auth/sign-out").status_code in (404, 405)  # only a POST signs out
    assert client.post("/auth/sign-out").status_code == 400  # no CSRF token
    response = client.post("/auth/sign-out", data={"csrf_token": token_of(client)})
    assert response.status_code == 303
    assert client.get("/").get_data(as_text=True) == "home:none:False:"


# --- operator and preview ---------------------------------------------------------------


def operator_sign_in(client: Any, password: str = PASSWORD) -> Any:
    """Post the operator form."""
    token = token_of(client)
    return client.post("/operator/sign-in", data={"csrf_token": token, "password": password})


@pytest.fixture
def customer_with_note(app: Any) -> Any:
    """A customer whose note says 'private'."""
    crm = crm_of(app)
    customer = crm.create_customer("cat@example.com", first_name="Cat")
    crm.set_field(slug="notes", fieldKey="text", value="private", referenceId=customer.id)
    return customer


def test_operator_disabled_without_password(site: Path) -> None:
    app = build(site, CRM_OPERATOR_PASSWORD=None)
    try:
        client = app.test_client()
        for url in ("/operator/sign-in", "/operator/"):
            response = client.get(url)
            assert response.status_code == 403
            assert "CRM_OPERATOR_PASSWORD" in response.get_data(as_text=True)
        assert client.get("/?preview_customer=x").status_code == 403
    finally:
        app.extensions["crm"].close()


def test_operator_wrong_password_is_refused(client: Any) -> None:
    response = operator_sign_in(client, "wrong")
    assert response.status_code == 403
    assert "not right" in response.get_data(as_text=True)
    assert client.get("/operator/").status_code == 302  # still not an operator


def test_operator_sign_in_is_rate_limited(site: Path) -> None:
    app = build(site, CRM_OPERATOR_LIMIT=2)
    try:
        client = app.test_client()
        assert operator_sign_in(client, "a").status_code == 403
        assert operator_sign_in(client, "b").status_code == 403
        assert operator_sign_in(client).status_code == 429
    finally:
        app.extensions["crm"].close()


def test_operator_password_hash(site: Path) -> None:
    app = build(
        site,
        CRM_OPERATOR_PASSWORD=None,
        CRM_OPERATOR_PASSWORD_HASH=generate_password_hash("s3cret"),
    )
    try:
        client = app.test_client()
        assert operator_sign_in(client, "nope").status_code == 403
        assert operator_sign_in(client, "s3cret").status_code == 303
        assert client.get("/admin/customers").status_code == 200
    finally:
        app.extensions["crm"].close()


def test_preview_without_operator_is_403(client: Any, customer_with_note: Any) -> None:
    response = client.get(f"/read?preview_customer={customer_with_note.id}")
    assert response.status_code == 403
    assert "private" not in response.get_data(as_text=True)


def test_preview_shows_the_customer_with_a_banner(client: Any, customer_with_note: Any) -> None:
    assert operator_sign_in(client).status_code == 303
    listing = client.get("/operator/", follow_redirects=True).get_data(as_text=True)
    assert customer_with_note.id in listing
    response = client.get(f"/read?preview_customer={customer_with_note.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "note=private" in html
    assert "Preview as <strong>Cat</strong>" in html
    # The banner comes right after <body>, with a button leaving the preview for this page.
    assert re.search(
        r"<body class=x><link[^>]+crm\.css[^>]*>\s*<section class=\"crm-preview-banner\"", html
    )
    assert 'action="/_crm/preview/leave"' in html and 'name="next" value="/read"' in html
    index = client.get(f"/?preview_customer={customer_with_note.id}").get_data(as_text=True)
    assert f"home:{customer_with_note.id}:True:cat@example.com" in index


def test_preview_never_writes(app: Any, client: Any, customer_with_note: Any) -> None:
    operator_sign_in(client)
    store = crm_of(app).store
    before = [e.to_dict() for e in store.iter_entries()]
    customers_before = store.count_customers()
    html = client.get(f"/write?preview_customer={customer_with_note.id}").get_data(as_text=True)
    assert "ok=False error=preview" in html
    backend = client.get(f"/save?preview_customer={customer_with_note.id}").get_json()
    assert (backend["ok"], backend["error"], backend["preview"]) == (False, "preview", True)
    token = token_of(client)
    post = client.post(
        f"/save?preview_customer={customer_with_note.id}", data={"csrf_token": token, "text": "x"}
    )
    assert post.status_code == 403
    assert [e.to_dict() for e in store.iter_entries()] == before
    assert store.count_customers() == customers_before


def test_preview_of_unknown_customer_is_404(client: Any) -> None:
    operator_sign_in(client)
    assert client.get("/?preview_customer=cus_nobody").status_code == 404


def test_operator_sign_out(client: Any, customer_with_note: Any) -> None:
    operator_sign_in(client)
    response = client.post("/operator/sign-out", data={"csrf_token": token_of(client)})
    assert response.status_code == 303
    assert client.get(f"/?preview_customer={customer_with_note.id}").status_code == 403


# --- sandbox ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "request.__class__",
        "request.environ",
        "request._get_current_object",
        "var._values",
        "customer.__class__.__init__.__globals__",
        "csrf_token.__globals__",
        "GetCrmField.__call__.__globals__",
    ],
)
def test_templates_reach_no_internals(site: Path, expression: str) -> None:
    (site / "pages" / "probe.html").write_text("{{ " + expression + " }}")
    app = build(site, PROPAGATE_EXCEPTIONS=False)
    try:
        client = app.test_client()
        client.get("/write")
        response = client.get("/probe")
        body = response.get_data(as_text=True)
        assert response.status_code in (200, 500)
        assert "secret" not in body.lower() and "environ" not in body and "<class" not in body
        assert "function" not in body
    finally:
        app.extensions["crm"].close()
