"""The server's built-in pages in the site's look (issue 11, item 8): a site's
``templates/crm/<name>.html`` overrides one, they sit in the site's ``layout.html`` (or
``base.html``) by default, the server's own look otherwise, and they keep every safety property
(autoescape, CSRF, the sandbox) with a fallback when the site's templates fail."""

from __future__ import annotations

import logging
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_templates.server.builtin_pages import LAYOUT_NAMES, PAGES, STANDALONE, TEMPLATES_DIR
from tests.test_serve import SAMPLES, Served
from tests.test_server_security import build, make_site, open_link, request_link, token_of

LAYOUT = """<!doctype html><html lang="en"><head><title>{% block title %}{% endblock %} · Acme</title>
<link rel="stylesheet" href="/static/a.css"></head><body><header>ACME-HEADER
{% if is_customer %}as={{ customer.email }}{% else %}signed-out{% endif %} path={{ request.path }}
</header><main id="main">{% block content %}{% endblock %}</main></body></html>"""
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Builds an app over a fresh test site with the given extra templates."""
    apps: list[Any] = []

    def factory(templates: dict[str, str] | None = None, **config: Any) -> Any:
        root = make_site(tmp_path / f"site{len(apps)}")
        (root / "pages" / "oops.py").write_text(
            "def handle(request, page):\n    page.abort(403, request.args.get('m'))\n"
        )
        for name, text in (templates or {}).items():
            path = root / "templates" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        app = build(root, **config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["crm"].close()


def html_of(response: Any) -> str:
    return str(response.get_data(as_text=True))


def test_every_built_in_page_sits_in_the_sites_layout(make: Any) -> None:
    app = make({"layout.html": LAYOUT})
    client = app.test_client()
    sign_in = html_of(client.get("/auth/sign-in?next=/form"))
    assert "ACME-HEADER" in sign_in and "signed-out path=/auth/sign-in" in sign_in
    assert "<title>Sign in · Acme</title>" in sign_in
    assert 'name="csrf_token"' in sign_in and 'action="/auth/sign-in"' in sign_in
    assert 'name="next" value="/form"' in sign_in
    assert "crm.css" not in sign_in  # the site's look, not the server's
    for status, url in [(404, "/nope"), (400, "/auth/verify?token=x"), (403, "/oops?m=no")]:
        response = client.get(url)
        assert response.status_code == status
        assert response.mimetype == "text/html"
        assert "ACME-HEADER" in html_of(response) and f"Error {status}" in html_of(response)
    link = request_link(app, client, "ann@example.com")
    confirm = html_of(client.get(link.removeprefix("http://localhost")))
    assert "ACME-HEADER" in confirm and "Sign in as ann@example.com?" in confirm
    assert 'name="csrf_token"' in confirm and 'action="/auth/verify"' in confirm


def test_base_html_is_the_layout_when_there_is_no_layout_html(make: Any) -> None:
    assert LAYOUT_NAMES == ("layout.html", "base.html")
    app = make({"base.html": LAYOUT})
    assert "ACME-HEADER" in html_of(app.test_client().get("/auth/sign-in"))


def test_without_a_layout_the_server_look_is_used(make: Any) -> None:
    html = html_of(make().test_client().get("/auth/sign-in"))
    assert "/_crm/static/crm.css" in html and 'class="crm-skip" href="#main"' in html
    assert '<main class="crm-card" id="main"' in html


def test_a_sites_crm_template_overrides_the_built_in_page(make: Any) -> None:
    override = (
        '{% extends "crm/base.html" %}{% block crm_title %}Log in{% endblock %}'
        "{% block crm_content %}OWN-SIGN-IN email={{ email }} error={{ error }} "
        "<form method=post action={{ action }}>{{ csrf_field() }}</form>{% endblock %}"
    )
    own_error = "OWN-ERROR {{ status }} {{ message }}"
    app = make({"layout.html": LAYOUT, "crm/sign_in.html": override, "crm/error.html": own_error})
    client = app.test_client()
    html = html_of(client.get("/auth/sign-in"))
    assert "OWN-SIGN-IN" in html and "ACME-HEADER" in html and "<title>Log in · Acme" in html
    assert 'name="csrf_token"' in html
    bad = client.post("/auth/sign-in", data={"csrf_token": token_of(client), "email": SCRIPT})
    assert bad.status_code == 400
    assert "OWN-SIGN-IN email=&lt;script&gt;" in html_of(bad) and SCRIPT not in html_of(bad)
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert html_of(missing) == "OWN-ERROR 404 There is no page at this address."


def test_reflected_input_is_escaped_in_every_built_in_page(make: Any) -> None:
    app = make({"layout.html": LAYOUT})
    client = app.test_client()
    bad = client.post(
        "/auth/sign-in", data={"csrf_token": token_of(client), "email": SCRIPT, "next": SCRIPT}
    )
    assert bad.status_code == 400 and SCRIPT not in html_of(bad)
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in html_of(bad)
    assert "autofocus" in html_of(bad) and 'href="#email"' in html_of(bad)  # error summary
    message = client.get("/oops", query_string={"m": SCRIPT})
    assert message.status_code == 403 and SCRIPT not in html_of(message)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_of(message)
    path = client.get("/<script>x")
    assert path.status_code == 404 and "<script>x" not in html_of(path)


def test_the_layout_shows_each_customer_only_their_own_email(make: Any) -> None:
    app = make({"layout.html": LAYOUT})
    ann, bob = app.test_client(), app.test_client()
    assert open_link(ann, request_link(app, ann, "ann@example.com")).status_code == 303
    assert open_link(bob, request_link(app, bob, "bob@example.com")).status_code == 303
    ann_page, bob_page = html_of(ann.get("/nope")), html_of(bob.get("/nope"))
    assert "as=ann@example.com" in ann_page and "bob@example.com" not in ann_page
    assert "as=bob@example.com" in bob_page and "ann@example.com" not in bob_page


@pytest.mark.parametrize(
    ("templates", "logged"),
    [
        ({"layout.html": "{{ 1 / 0 }}{% block content %}{% endblock %}"}, "division by zero"),
        ({"layout.html": '{% extends "missing.html" %}'}, "missing.html"),
        ({"layout.html": "<html><body>no content block</body></html>"}, "no {% block content %}"),
        # Site templates are sandboxed here too: an override reaching for internals fails.
        ({"crm/error.html": "{{ ''.__class__.__mro__ }}"}, "SecurityError"),
        ({"layout.html": "{{ request.__class__.__mro__[1].__subclasses__() }}"}, "SecurityError"),
    ],
    ids=["raises", "missing-parent", "no-content-block", "sandbox-override", "sandbox-layout"],
)
def test_a_broken_site_template_falls_back_to_the_server_look(
    make: Any, caplog: pytest.LogCaptureFixture, templates: dict[str, str], logged: str
) -> None:
    client = make(templates).test_client()
    with caplog.at_level(logging.ERROR, logger="crm_templates.server"):
        response = client.get("/nope")
    assert response.status_code == 404
    html = html_of(response)
    assert "There is no page at this address." in html and "/_crm/static/crm.css" in html
    assert "__subclasses__" not in html and "<class" not in html
    assert logged in caplog.text


def test_an_oversized_body_gets_the_413_page_in_the_layout(make: Any) -> None:
    app = make({"layout.html": LAYOUT}, CRM_MAX_BODY=1024)
    client = app.test_client()
    response = client.post(
        "/auth/sign-in", data={"csrf_token": token_of(client), "email": "x" * 5000}
    )
    assert response.status_code == 413
    assert "ACME-HEADER" in html_of(response) and "larger than the 1 KB" in html_of(response)


def test_operator_pages_keep_the_server_look(make: Any) -> None:
    app = make({"layout.html": LAYOUT, "crm/operator_sign_in.html": "HIJACKED"})
    html = html_of(app.test_client().get("/operator/sign-in"))
    assert "HIJACKED" not in html and "ACME-HEADER" not in html
    # The admin theme (issue 12, item 8), public at /operator/theme.css before signing in.
    assert "Operator sign-in" in html and "/operator/theme.css" in html


def test_the_contract_lists_every_built_in_page() -> None:
    files = {p.stem for p in (TEMPLATES_DIR / "crm").glob("*.html")}
    assert set(PAGES) <= files
    assert STANDALONE == "crm/standalone.html" and "standalone" in files


def test_served_sample_site_shows_its_built_in_pages_in_its_layout(tmp_path: Path) -> None:
    """`crm-templates serve` (the real process) on the weight tracker, as the docs describe."""
    site = tmp_path / "site"
    shutil.copytree(SAMPLES / "weight_tracker", site, ignore=shutil.ignore_patterns("instance"))
    served = Served(site, tmp_path / "crm.db")
    try:
        with urllib.request.urlopen(served.url("/auth/sign-in"), timeout=10) as response:
            html = response.read().decode()
        assert "<title>Sign in · Weight Tracker</title>" in html
        assert 'class="skip-link" href="#main"' in html and "Email me a sign-in link" in html
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(served.url("/no-such-page"), timeout=10)
        assert info.value.code == 404
        body = info.value.read().decode()
        assert "Weight Tracker" in body and re.search(r"There is no page at this address", body)
    finally:
        served.stop()
