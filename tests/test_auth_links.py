"""Sign-in links (issue 8, items 2 and 3): absolute links never come from request headers an
attacker controls (CRM_BASE_URL or TRUSTED_HOSTS, else a clear refusal), and opening a link
signs nobody in — a confirmation page posts the token back with CSRF protection."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from crm_templates.server import create_app
from crm_templates.server.urls import check_base_url, check_trusted_hosts, trust_loopback
from tests.test_server_security import (
    build,
    crm_of,
    make_site,
    open_link,
    path_of,
    request_link,
    token_of,
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The test site (pages from test_server_security, plus one showing request.url)."""
    root = make_site(tmp_path / "site")
    (root / "pages" / "url.html").write_text("url={{ request.url }}")
    return root


@pytest.fixture
def make(site: Path) -> Iterator[Any]:
    """Builds apps over the site with the given settings; closes them afterwards."""
    apps: list[Any] = []

    def factory(**config: Any) -> Any:
        app = build(site, **config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["crm"].close()


def ask(client: Any, email: str = "ann@example.com", **headers: str) -> Any:
    """Load the sign-in form and POST it, both with extra request headers (``Host`` …), as an
    attacker's own client would."""
    html = client.get("/auth/sign-in", headers=headers).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token, html
    return client.post(
        "/auth/sign-in", data={"csrf_token": token.group(1), "email": email}, headers=headers
    )


def outbox(app: Any) -> list[Any]:
    """The messages the default mailer kept."""
    return list(app.extensions["crm"].outbox)


def confirmation(client: Any, link: str) -> tuple[Any, str, str]:
    """GET a link: (response, its token field, its CSRF field)."""
    page = client.get(path_of(link))
    html = page.get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', html)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
    return page, token.group(1) if token else "", csrf.group(1) if csrf else ""


def home(client: Any) -> str:
    """The index page: ``home:<customer id>:<signed in>:<email>``."""
    return str(client.get("/").get_data(as_text=True))


# --- item 2: where links point ----------------------------------------------------------


def test_untrusted_host_is_refused_before_any_view(make: Any, caplog: Any) -> None:
    app = make()  # TRUSTED_HOSTS=["localhost"]
    client = app.test_client()
    token_of(client)
    caplog.set_level("WARNING", logger="crm_templates.server")
    for method, url in [("GET", "/"), ("POST", "/auth/sign-in"), ("GET", "/_crm/static/crm.css")]:
        response = client.open(
            url,
            method=method,
            data={"email": "victim@example.com"} if method == "POST" else None,
            headers={"Host": "attacker.example"},
        )
        assert response.status_code == 400
        assert "does not answer for the host name 'attacker.example'" in response.get_data(
            as_text=True
        )
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert outbox(app) == []
    assert "refused a request for host 'attacker.example'" in caplog.text
    assert "CRM_TRUSTED_HOSTS" in caplog.text


def test_host_header_never_reaches_the_mailed_link(make: Any) -> None:
    app = make()
    client = app.test_client()
    response = ask(client, "victim@example.com", **{"X-Forwarded-Host": "attacker.example"})
    assert response.status_code == 200
    [message] = outbox(app)
    assert message.link.startswith("http://localhost/auth/verify?token=")
    assert "attacker" not in message.body


def test_without_base_url_or_trusted_hosts_no_link_is_mailed(make: Any, caplog: Any) -> None:
    app = make(TRUSTED_HOSTS=None)
    client = app.test_client()
    caplog.set_level("ERROR", logger="crm_templates.server")
    for host in ("attacker.example", "localhost"):
        response = ask(client, "victim@example.com", Host=host)
        assert response.status_code == 400
        assert "operator has to set CRM_BASE_URL" in response.get_data(as_text=True)
    assert outbox(app) == []
    assert "refused to mail a sign-in link" in caplog.text
    assert "Set CRM_BASE_URL" in caplog.text
    # Refused before counting: nothing was rate-limited either.
    assert crm_of(app).store.count_rate_hits("sign-in-email:victim@example.com", 900) == 0


@pytest.mark.parametrize("base", ["https://shop.example", "https://shop.example/"])
def test_base_url_makes_the_links_whatever_the_host(make: Any, base: str) -> None:
    app = make(TRUSTED_HOSTS=None, CRM_BASE_URL=base)
    client = app.test_client()
    response = ask(client, Host="attacker.example", **{"X-Forwarded-Host": "evil.example"})
    assert response.status_code == 200
    assert outbox(app)[-1].link.startswith("https://shop.example/auth/verify?token=")


def test_base_url_with_a_path_prefix(make: Any) -> None:
    app = make(CRM_BASE_URL="https://shop.example/crm/")
    client = app.test_client()
    assert ask(client).status_code == 200
    assert outbox(app)[-1].link.startswith("https://shop.example/crm/auth/verify?token=")
    # An app mounted under that prefix (SCRIPT_NAME) does not repeat it.
    token = token_of(client)
    client.post(
        "/auth/sign-in",
        data={"csrf_token": token, "email": "bob@example.com"},
        environ_overrides={"SCRIPT_NAME": "/crm"},
    )
    assert outbox(app)[-1].link.startswith("https://shop.example/crm/auth/verify?token=")


def test_trusted_host_with_a_port_must_match_the_port(make: Any) -> None:
    app = make(TRUSTED_HOSTS=["localhost:8000"])
    client = app.test_client()
    # werkzeug ignores ports when it checks TRUSTED_HOSTS; the server does not: a request
    # for another port is refused before anything runs, like one for another name.
    form = client.get("/auth/sign-in", headers={"Host": "localhost:8000"}).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    for url, method in [("/", "get"), ("/auth/sign-in", "get"), ("/auth/sign-in", "post")]:
        response = getattr(client, method)(
            url,
            headers={"Host": "localhost:9999"},
            data={"csrf_token": token.group(1), "email": "ann@example.com"},
        )
        assert response.status_code == 400
        assert response.mimetype == "text/plain"
        assert "localhost:9999" in response.text
    assert outbox(app) == []
    assert ask(client, Host="localhost:8000").status_code == 200
    assert outbox(app)[-1].link.startswith("http://localhost:8000/auth/verify?token=")


def test_trusted_subdomains(make: Any) -> None:
    app = make(TRUSTED_HOSTS=[".shop.example"])
    client = app.test_client()
    assert ask(client, Host="www.shop.example").status_code == 200
    assert outbox(app)[-1].link.startswith("http://www.shop.example/auth/verify?token=")
    assert client.get("/", headers={"Host": "evilshop.example"}).status_code == 400


def test_templates_see_the_public_url(make: Any) -> None:
    app = make(TRUSTED_HOSTS=None, CRM_BASE_URL="https://shop.example")
    response = app.test_client().get("/url?a=1", headers={"Host": "attacker.example"})
    assert response.get_data(as_text=True) == "url=https://shop.example/url?a=1"


def test_json_posts_from_the_base_url_origin_pass_behind_a_tls_proxy(make: Any) -> None:
    app = make(CRM_BASE_URL="https://shop.example")
    client = app.test_client()
    ok = client.post("/save", json={"text": "x"}, headers={"Origin": "https://shop.example"})
    assert ok.status_code == 200
    bad = client.post("/save", json={"text": "x"}, headers={"Origin": "https://evil.example"})
    assert bad.status_code == 403


@pytest.mark.parametrize(
    "value",
    [
        "shop.example",
        "ftp://shop.example",
        "https://",
        "https:///path",
        "https://shop.example/?next=1",
        "https://shop.example/#top",
        "https://user:pw@shop.example",
        "https://shop.example:99999",
        "https://shop example",
        42,
    ],
)
def test_bad_base_url_fails_at_start_up(site: Path, value: Any) -> None:
    with pytest.raises(ValueError, match="CRM_BASE_URL"):
        create_app(site, TESTING=True, CRM_BASE_URL=value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://shop.example/", "https://shop.example"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://shop.example/crm/", "https://shop.example/crm"),
        ("", None),
        (None, None),
    ],
)
def test_good_base_urls(value: Any, expected: Any) -> None:
    assert check_base_url(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "shop.example, .Shop.example ,localhost:8000",
            ["shop.example", ".shop.example", "localhost:8000"],
        ),
        (["[::1]:8000"], ["[::1]:8000"]),
        ("", None),
        ([], None),  # werkzeug would trust every host for an empty list: we trust none
        (None, None),
    ],
)
def test_trusted_hosts_are_checked(value: Any, expected: Any) -> None:
    assert check_trusted_hosts(value) == expected


@pytest.mark.parametrize("value", ["https://shop.example", "shop.example/crm", "a b", [3]])
def test_bad_trusted_hosts_fail_at_start_up(site: Path, value: Any) -> None:
    with pytest.raises(ValueError, match="TRUSTED_HOSTS"):
        create_app(site, TESTING=True, TRUSTED_HOSTS=value)


def test_trusted_hosts_from_the_environment(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TRUSTED_HOSTS", "shop.example,www.shop.example")
    app = create_app(site, TESTING=True)
    try:
        assert app.config["TRUSTED_HOSTS"] == ["shop.example", "www.shop.example"]
        assert app.test_client().get("/", headers={"Host": "evil.example"}).status_code == 400
    finally:
        app.extensions["crm"].close()


def test_serve_on_loopback_trusts_the_loopback_names_on_its_port(make: Any) -> None:
    app = make(TRUSTED_HOSTS=None)
    trust_loopback(app, "127.0.0.1", 8123)
    assert app.config["TRUSTED_HOSTS"] == ["localhost:8123", "127.0.0.1:8123", "[::1]:8123"]
    configured = make(TRUSTED_HOSTS=None, CRM_BASE_URL="https://shop.example")
    trust_loopback(configured, "127.0.0.1", 8123)
    assert configured.config["TRUSTED_HOSTS"] is None  # behind a proxy: the base URL rules


# --- item 3: opening a link signs nobody in ------------------------------------------------


def test_get_of_a_link_asks_first_and_uses_nothing_up(make: Any) -> None:
    app = make()
    client = app.test_client()
    link = request_link(app, client)
    for _ in range(2):  # a mail scanner, then the human: both only see the question
        page, token, csrf = confirmation(client, link)
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "Sign in as ann@example.com?" in html
        assert "You asked for this link in this browser." in html
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert home(client) == "home:none:False:"
    assert crm_of(app).find_customer("ann@example.com") is None
    assert client.head(path_of(link)).status_code == 200
    response = client.post("/auth/verify", data={"csrf_token": csrf, "token": token})
    assert response.status_code == 303
    assert home(client).endswith(":True:ann@example.com")


def test_a_scanner_elsewhere_does_not_use_the_link_up(make: Any) -> None:
    app = make()
    client = app.test_client()
    link = request_link(app, client)
    scanner = app.test_client()
    page, _, _ = confirmation(scanner, link)
    assert page.status_code == 200
    assert "was not asked for in this browser" in page.get_data(as_text=True)
    assert open_link(client, link).status_code == 303
    assert home(client).endswith(":True:ann@example.com")
    assert home(scanner) == "home:none:False:"


def test_confirming_needs_the_csrf_token(make: Any) -> None:
    app = make()
    client = app.test_client()
    link = request_link(app, client)
    _, token, _ = confirmation(client, link)
    for csrf in (None, "forged"):
        data = {"token": token} if csrf is None else {"token": token, "csrf_token": csrf}
        response = client.post("/auth/verify", data=data)
        assert response.status_code == 400
        assert "CSRF" in response.get_data(as_text=True)
    assert home(client) == "home:none:False:"
    assert open_link(client, link).status_code == 303  # the token was not used up


def test_login_csrf_cannot_sign_the_victim_into_the_attackers_account(make: Any) -> None:
    app = make()
    crm = crm_of(app)
    attacker = app.test_client()
    link = request_link(app, attacker, "mallory@example.com")
    victim = app.test_client()
    victim.post("/save", data={"csrf_token": token_of(victim), "text": "victim secret"})
    visitor = next(c for c in crm.store.list_customers() if c.email is None)

    # The attacker gets the victim's browser to open the link: a question, with a warning.
    page, token, _ = confirmation(victim, link)
    html = page.get_data(as_text=True)
    assert "Sign in as mallory@example.com?" in html
    assert "was not asked for in this browser" in html
    assert "will move to mallory@example.com" in html
    assert home(victim) == f"home:{visitor.id}:False:"
    # A cross-site form post carries the attacker's CSRF token at best: refused.
    forged = victim.post("/auth/verify", data={"csrf_token": token_of(attacker), "token": token})
    assert forged.status_code == 400
    assert home(victim) == f"home:{visitor.id}:False:"
    assert crm.get_field(slug="notes", fieldKey="text", referenceId=visitor.id) == "victim secret"
    mallory = crm.find_customer("mallory@example.com")
    assert mallory is None or crm.get_entries(slug="notes", referenceId=mallory.id) == []


def test_the_visitors_entries_move_only_on_the_post(make: Any) -> None:
    app = make()
    crm = crm_of(app)
    client = app.test_client()
    client.post("/save", data={"csrf_token": token_of(client), "text": "mine"})
    visitor = next(c for c in crm.store.list_customers() if c.email is None)
    link = request_link(app, client)
    page, token, csrf = confirmation(client, link)
    assert "will move to ann@example.com" in page.get_data(as_text=True)
    assert crm.get_field(slug="notes", fieldKey="text", referenceId=visitor.id) == "mine"
    assert client.post("/auth/verify", data={"csrf_token": csrf, "token": token}).status_code == 303
    ann = crm.find_customer("ann@example.com")
    assert crm.get_field(slug="notes", fieldKey="text", referenceId=ann.id) == "mine"
    assert crm.get_entries(slug="notes", referenceId=visitor.id) == []


def test_a_replayed_token_is_refused(make: Any) -> None:
    app = make()
    client = app.test_client()
    link = request_link(app, client)
    _, token, csrf = confirmation(client, link)
    assert client.post("/auth/verify", data={"csrf_token": csrf, "token": token}).status_code == 303
    again = client.post("/auth/verify", data={"csrf_token": csrf, "token": token})
    assert again.status_code == 400
    assert "already used" in again.get_data(as_text=True)
    other = app.test_client()
    assert "already used" in other.get(path_of(link)).get_data(as_text=True)


@pytest.mark.parametrize("token", ["", "garbage", None])
def test_a_post_without_a_valid_token_is_refused(make: Any, token: Any) -> None:
    app = make()
    client = app.test_client()
    data = {"csrf_token": token_of(client)}
    if token is not None:
        data["token"] = token
    response = client.post("/auth/verify", data=data)
    assert response.status_code == 400
    assert "not valid" in response.get_data(as_text=True)


def test_two_customers_sign_in_to_their_own_data(make: Any) -> None:
    app = make()
    crm = crm_of(app)
    ann, bob = app.test_client(), app.test_client()
    for client, text in ((ann, "note of ann"), (bob, "note of bob")):
        client.post("/save", data={"csrf_token": token_of(client), "text": text})
    links = {
        c: request_link(app, c, e) for c, e in ((ann, "ann@example.com"), (bob, "bob@example.com"))
    }
    # Each opens their own link: each ends up with exactly their own note.
    for client in (ann, bob):
        assert open_link(client, links[client]).status_code == 303
    for client, email, text in (
        (ann, "ann@example.com", "note of ann"),
        (bob, "bob@example.com", "note of bob"),
    ):
        assert home(client).endswith(f":True:{email}")
        assert client.get("/read").get_data(as_text=True).endswith(f"note={text}</body></html>")
        customer = crm.find_customer(email)
        assert [
            e.values["text"] for e in crm.get_entries(slug="notes", referenceId=customer.id)
        ] == [text]


def test_the_link_token_carries_no_host(make: Any) -> None:
    app = make()
    client = app.test_client()
    link = request_link(app, client)
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert "localhost" not in token
