"""The admin on a phone (issue 12, item 8: "responsive down to a phone"), in Chromium at
375×800 in the light and the dark colour scheme: every main view fits the screen (the page body
never scrolls sideways; only a deliberately scrollable board or table does), the board scrolls
horizontally, and axe-core finds no serious or critical violation. A full-page screenshot of
each view and scheme is saved to pytest's tmp path (``phone-<scheme>-<view>.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crm_templates.api_keys import create_key
from tests.admin_world import PASSWORD, make_admin_app, seed_two_customers

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTH, HEIGHT = 375, 800

# '' when the page body is no wider than the viewport; else what sticks out (outside any
# element that scrolls or clips sideways).
OVERFLOW_JS = """() => {
  const root = document.documentElement;
  const over = root.scrollWidth - root.clientWidth;
  if (over <= 0) return '';
  const culprits = [];
  for (const e of document.body.querySelectorAll('*')) {
    if (e.getBoundingClientRect().right <= root.clientWidth + 1) continue;
    let p = e.parentElement, contained = false;
    while (p && p !== document.body) {
      if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(p).overflowX)) { contained = true; break; }
      p = p.parentElement;
    }
    if (!contained) culprits.push(e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).split(' ').join('.') : ''));
  }
  return 'the page is ' + over + 'px wider than the screen: ' + culprits.slice(0, 6).join(', ');
}"""

BOARD_SCROLLS_JS = """() => {
  const board = document.querySelector('.board');
  return !!board && board.scrollWidth > board.clientWidth
    && ['auto', 'scroll'].includes(getComputedStyle(board).overflowX);
}"""


def test_every_main_view_fits_a_phone_in_light_and_dark(
    tmp_path: Path, request: pytest.FixtureRequest, browser: Any
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    from tests.test_server_browser import LiveServer

    application = make_admin_app(tmp_path, "sqlite", request)
    application.config["SESSION_COOKIE_SECURE"] = False
    ann, _ = seed_two_customers(application)
    crm = application.extensions["crm"].crm
    # Long unbroken values: the kind of content that pushes a layout wider than a phone.
    long = "https://example.com/" + "a-very-long-unbroken-value-" * 6
    made = crm.create_entry(
        slug="deals",
        title="A deal with a rather long title to wrap on a small screen " + "x" * 40,
        values={"amount": 1234567.89, "note": long},
        referenceId=ann.id,
    )
    assert made["ok"], made
    create_key(crm.store, name="A checkout with a long name " + "x" * 40, scope="write")
    from crm_templates import webhooks

    # A webhook with a long URL and a delivery in its log (a closed loopback port: the
    # delivery fails without leaving the machine).
    hook = webhooks.add_endpoint(
        crm.store, "http://127.0.0.1:9/" + "hooks/" * 12 + "crm", ["*"], allow_private=True
    )
    crm.set_field(slug="deals", fieldKey="note", value="hooked", referenceId=ann.id)
    server = LiveServer(application)
    views = {
        "dashboard": "/admin/",
        "customers": "/admin/customers",
        "customer": f"/admin/customers/{ann.id}",
        "entities": "/admin/entities",
        "entity": "/admin/entities/deals",
        "entries": "/admin/entities/deals/entries",
        "entry": f"/admin/entries/{made['id']}",
        "board": "/admin/entities/deals/pipelines/sales",
        "reports": "/admin/entities/deals/reports",
        "playground": "/admin/playground",
        "audit": "/admin/audit",
        "api-keys": "/admin/api-keys",
        "import": "/admin/entities/deals/import",
        "webhooks": "/admin/webhooks",
        "webhook": f"/admin/webhooks/{hook.id}",
        "error": "/admin/entities/nope",
        "sign-in": "/operator/sign-in",
    }
    axe = Axe()
    problems: list[str] = []
    shots: list[Path] = []
    try:
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": WIDTH, "height": HEIGHT}, color_scheme=scheme
            )
            page = context.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            try:
                page.goto(server.url + "/operator/sign-in?next=/admin/")
                page.fill("#password", PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(server.url + "/admin/")
                for name, url in views.items():
                    if name == "sign-in":
                        # Signed out: the page an operator sees first, in the same theme.
                        page.context.clear_cookies()
                    page.goto(server.url + url)
                    page.wait_for_load_state("networkidle")
                    state = f"{scheme} {name} ({url})"
                    if overflow := page.evaluate(OVERFLOW_JS):
                        problems.append(f"{state}: {overflow}")
                    if name == "board" and not page.evaluate(BOARD_SCROLLS_JS):
                        problems.append(f"{state}: the board does not scroll sideways")
                    shot = tmp_path / f"phone-{scheme}-{name}.png"
                    page.screenshot(path=str(shot), full_page=True)
                    shots.append(shot)
                    for violation in axe.run(page).response["violations"]:
                        if violation["impact"] in ("serious", "critical"):
                            targets = [n["target"] for n in violation["nodes"]][:4]
                            problems.append(f"{state}: axe {violation['id']} {targets}")
            finally:
                context.close()
    finally:
        server.stop()
    assert not problems, "\n".join(problems)
    assert len(shots) == 2 * len(views) and all(s.stat().st_size > 1000 for s in shots)
