"""Accessibility of every page and state authors copy (issue 11, item 8): axe-core in Chromium.

axe-core comes bundled with ``axe-playwright-python`` (the ``test`` extra) and is injected into
each page through Playwright, so nothing is fetched at run time. Every state below must have no
axe violation at all (of any impact: serious and critical ones are the issue's bar, the minor
and moderate ones — content outside landmarks, an empty table header — are in its list too),
a skip link as the first thing a keyboard reaches (after the operator's preview banner), and,
after a form was sent with errors, focus on the error summary at the top of ``<main>``.

The states are found, not listed: every page in each sample site's ``pages/`` (and the pages
its links lead to, such as ``/property?id=…``), signed out and signed in as the seeded customer,
every form with a text input sent empty, the built-in pages (sign-in, check your email,
confirm, the error pages 400/403/404/413/429/500) inside the site's layout, the operator pages
and every page under the preview banner. A new sample page is covered without editing this file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from crm_templates.server import create_app
from crm_templates.server.site import Site
from tests.test_server_browser import LiveServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    # Error pages and forms sent with errors answer 4xx/5xx, which Chromium logs as a failed load.
    pytest.mark.allow_console_errors(r"status of (400|403|404|413|422|429|500) "),
]
SAMPLES = Path(__file__).resolve().parent.parent / "sample_sites"
SITES = sorted(p.name for p in SAMPLES.iterdir() if (p / "pages").is_dir())
AXE = Axe()
ERROR_PAGE = "/crm-a11y-error"  # a helper page added to the copied site: ?status=N
OPERATOR_PASSWORD = "a11y-operator"
# The helper page: answers the asked-for error, or fails (500).
ERROR_BACKEND = """
def handle(request, page):
    status = int(request.args.get("status", "500"))
    if status == 500:
        raise RuntimeError("the accessibility test asked for a 500")
    page.abort(status)
"""

# The first element a keyboard reaches (outside the preview banner) must be a link to an
# element that is, or is inside, <main>.
SKIP_LINK_JS = """() => {
  const focusable = [...document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]:not([tabindex="-1"])'
  )].filter(e => !e.closest('.crm-preview-banner'));
  const first = focusable[0];
  if (!first || first.tagName !== 'A') return 'the first focusable element is ' + (first ? first.outerHTML.slice(0, 80) : 'missing');
  const href = first.getAttribute('href') || '';
  if (!href.startsWith('#') || href.length < 2) return 'the first link is not a skip link: ' + first.outerHTML.slice(0, 80);
  const target = document.getElementById(decodeURIComponent(href.slice(1)));
  if (!target || !(target.tagName === 'MAIN' || target.closest('main'))) return 'the skip link ' + href + ' does not lead into <main>';
  return '';
}"""

# After a form sent with errors: focus is on an element in <main> that links to an invalid field.
FOCUS_JS = """() => {
  const active = document.activeElement;
  if (!active || active === document.body) return 'focus is on <body>';
  if (!active.closest('main')) return 'focus is outside <main>: ' + active.outerHTML.slice(0, 80);
  const invalid = [...document.querySelectorAll('[aria-invalid=true]')].map(e => e.id);
  if (!invalid.length) return 'no field is marked aria-invalid';
  const links = [...active.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href').slice(1));
  if (!invalid.some(id => links.includes(id))) return 'the focused element links to no invalid field: ' + active.outerHTML.slice(0, 120);
  return '';
}"""


def audit(page: Any, state: str) -> list[str]:
    """Every axe violation on the page, and a missing skip link, as lines naming the state."""
    where = f"{state} ({urlsplit(page.url).path})"
    problems = []
    results = AXE.run(page)
    for violation in results.response["violations"]:
        for node in violation["nodes"]:
            problems.append(
                f"{where}: {violation['id']} [{violation['impact']}] at {node['target']}: "
                f"{violation['help']}"
            )
    skip = page.evaluate(SKIP_LINK_JS)
    if skip:
        problems.append(f"{where}: skip link: {skip}")
    return problems


def seeded_email(site: str) -> str:
    """The first seeded customer's email (signed in, the pages show their data)."""
    seed = SAMPLES / site / "seed.yaml"
    data = yaml.safe_load(seed.read_text(encoding="utf-8")) if seed.exists() else None
    for customer in (data or {}).get("customers") or []:
        if isinstance(customer, dict) and customer.get("email"):
            return str(customer["email"])
    return "a11y@example.com"


def page_urls(site_dir: Path) -> list[str]:
    """Every page of the site that has a template (a backend-only URL renders no page)."""
    site = Site(site_dir)
    return [url for url in site.urls if site.route(url).template is not None]  # type: ignore[union-attr]


def linked_pages(page: Any, base: str, known: set[str]) -> list[str]:
    """Same-site links on this page to pages with a query (``/property?id=…``): one per path."""
    hrefs = page.eval_on_selector_all("main a[href]", "as => as.map(a => a.getAttribute('href'))")
    found = []
    for href in hrefs:
        parts = urlsplit(href)
        if parts.netloc or not parts.path.startswith("/") or not parts.query:
            continue
        if parts.path in known or parts.path.startswith(("/auth/", "/operator/", "/_crm/")):
            continue
        known.add(parts.path)
        found.append(href)
    return found


def all_states(page: Any, server: LiveServer, urls: list[str], state: str) -> list[str]:
    problems: list[str] = []
    known = set(urls)
    queue = list(urls)
    while queue:
        url = queue.pop(0)
        page.goto(server.url + url)
        problems += audit(page, state)
        queue += linked_pages(page, server.url, known)
    return problems


def sign_in(page: Any, server: LiveServer, email: str) -> list[str]:
    """Sign in with the built-in pages, auditing each: sign-in, check your email, confirm."""
    problems: list[str] = []
    page.goto(server.url + "/auth/sign-in?next=/")
    problems += audit(page, "built-in sign-in")
    page.fill("#email", email)
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.locator("h1", has_text="Check your email")).to_be_visible()
    problems += audit(page, "built-in check your email")
    link = server.app.extensions["crm"].outbox[-1].link
    page.goto(link)
    problems += audit(page, "built-in confirm sign-in")
    page.get_by_role("button", name=f"Sign in as {email}").click()
    page.wait_for_url(server.url + "/")
    return problems


def text_forms(page: Any) -> int:
    """How many POST forms on the page have a visible text-like field."""
    return int(
        page.eval_on_selector_all(
            "main form",
            """fs => fs.filter(f => (f.method || '').toLowerCase() === 'post' && [...f.elements].some(
                e => ['INPUT', 'TEXTAREA'].includes(e.tagName)
                     && !['hidden', 'submit', 'button', 'checkbox', 'radio'].includes(e.type)
                     && e.offsetParent !== null)).length""",
        )
    )


def failed_submit(page: Any, url: str, index: int, state: str) -> list[str]:
    """Send the page's index-th text form with every text field empty; audit the answer."""
    page.goto(url)
    form = (
        page.locator("main form[method=post]")
        .filter(has=page.locator("input:not([type=hidden]):not([type=submit]), textarea"))
        .nth(index)
    )
    form.evaluate("f => { f.noValidate = true; }")
    for field in form.locator(
        "input:not([type=hidden]):not([type=submit]):not([type=checkbox]):not([type=radio]), textarea"
    ).all():
        field.fill("")
    form.locator("button[type=submit], button:not([type]), input[type=submit]").first.click()
    page.wait_for_load_state()
    problems = audit(page, f"{state}, sent with errors")
    focus = page.evaluate(FOCUS_JS)
    if focus:
        problems.append(f"{state} ({url}), sent with errors: {focus}")
    return problems


def start(tmp_path: Path, name: str, **config: Any) -> LiveServer:
    site = tmp_path / name
    shutil.copytree(SAMPLES / name, site, ignore=shutil.ignore_patterns("instance"))
    (site / "pages" / (ERROR_PAGE.lstrip("/") + ".py")).write_text(ERROR_BACKEND, encoding="utf-8")
    config.setdefault("TRUSTED_HOSTS", ["127.0.0.1"])
    app = create_app(
        site, CRM_COOKIE_SECURE=False, CRM_OPERATOR_PASSWORD=OPERATOR_PASSWORD, **config
    )
    return LiveServer(app)


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    live = start(tmp_path, request.param)
    yield live
    live.stop()


def report(problems: list[str]) -> str:
    return f"{len(problems)} accessibility problem(s):\n" + "\n".join(problems)


@pytest.mark.parametrize("server", SITES, indirect=True)
def test_every_page_signed_out_and_signed_in(server: LiveServer, page: Any) -> None:
    site = Path(server.app.config["CRM_SITE_DIR"])
    urls = page_urls(SAMPLES / site.name)
    assert urls, f"{site.name} has no pages"
    problems = all_states(page, server, urls, "signed out")
    problems += sign_in(page, server, seeded_email(site.name))
    problems += all_states(page, server, urls, "signed in")
    assert not problems, report(problems)


@pytest.mark.parametrize("server", SITES, indirect=True)
def test_every_form_sent_with_errors(server: LiveServer, page: Any) -> None:
    site = Path(server.app.config["CRM_SITE_DIR"])
    problems: list[str] = []
    sent = 0
    for url in [*page_urls(SAMPLES / site.name), "/auth/sign-in", "/operator/sign-in"]:
        page.goto(server.url + url)
        for index in range(text_forms(page)):
            problems += failed_submit(page, server.url + url, index, f"form {index} of {url}")
            sent += 1
    assert sent >= 2, "expected the sign-in forms at least"
    assert not problems, report(problems)


@pytest.mark.parametrize("server", SITES, indirect=True)
def test_error_operator_and_preview_pages(server: LiveServer, page: Any) -> None:
    site = Path(server.app.config["CRM_SITE_DIR"])
    problems: list[str] = []
    for status in (400, 403, 404, 413, 429, 500):
        page.goto(f"{server.url}{ERROR_PAGE}?status={status}")
        problems += audit(page, f"built-in error {status}")
    for url, state in [
        ("/no/such/page", "built-in error 404 (unknown address)"),
        ("/auth/verify?token=forged", "built-in error 400 (bad sign-in link)"),
        ("/operator/sign-in", "operator sign-in"),
    ]:
        page.goto(server.url + url)
        problems += audit(page, state)
    if not server.app.extensions["crm"].crm.store.list_customers(limit=1):
        server.app.extensions["crm"].crm.create_customer("preview@example.com")
    page.fill("#password", OPERATOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/admin/")
    page.goto(server.url + "/operator/")  # the old customers page: now the admin's
    page.wait_for_url(server.url + "/admin/customers")
    problems += audit(page, "operator: customers")
    customer_id = page.locator("main table code").first.inner_text()
    page.goto(f"{server.url}/?preview_customer={customer_id}")
    expect(page.locator(".crm-preview-banner")).to_be_visible()
    problems += all_states(page, server, page_urls(SAMPLES / site.name), "preview")
    page.goto(server.url + "/auth/sign-in")
    problems += audit(page, "preview: built-in sign-in")
    assert not problems, report(problems)


def test_builtin_pages_without_a_site_layout(tmp_path: Path, page: Any) -> None:
    """A site without a layout: the built-in pages use their own (the server's look)."""
    site = tmp_path / "bare"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text(
        '<!doctype html><html lang="en"><head><title>Bare</title></head><body>'
        '<a class="skip" href="#main">Skip to content</a>'
        '<main id="main"><h1>Bare</h1></main></body></html>',
        encoding="utf-8",
    )
    app = create_app(site, CRM_COOKIE_SECURE=False, TRUSTED_HOSTS=["127.0.0.1"])
    live = LiveServer(app)
    try:
        problems = sign_in(page, live, "bare@example.com")
        for url, state in [("/nope", "built-in 404"), ("/auth/verify?token=x", "built-in 400")]:
            page.goto(live.url + url)
            problems += audit(page, state)
        problems += failed_submit(page, live.url + "/auth/sign-in", 0, "built-in sign-in")
    finally:
        live.stop()
    assert not problems, report(problems)
