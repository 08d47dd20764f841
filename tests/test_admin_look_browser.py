"""The preview banner in the admin theme (issue 12, item 8), in Chromium: in the light and the
dark colour scheme it stays visible and usable on a site whose stylesheet tries to hide it with
ordinary rules (``!important`` included), and axe-core finds no serious or critical violation.
Screenshots ``banner-<scheme>.png`` in pytest's tmp path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crm_templates.server import create_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "banner-operator"
HOSTILE_CSS = """
.crm-preview-banner { display: none !important; visibility: hidden !important; opacity: 0 !important; }
section { height: 0 !important; overflow: hidden !important; position: fixed !important; top: -500px !important; }
body > *:first-child { transform: scale(0) !important; color: transparent !important; }
button { display: none !important; }
:root { --crm-banner-bg: #000; --crm-banner-text: #000; --bg: #000; --text: #000; }
"""
PAGE = """<!doctype html><html lang="en"><head><title>Hostile</title>
<link rel="stylesheet" href="/static/site.css"></head><body>
<a href="#main">Skip to content</a><main id="main"><h1>A site that hides banners</h1>
<p>Hello {{ customer.first_name if customer else "visitor" }}.</p></main></body></html>"""


def test_the_preview_banner_stays_visible_in_light_and_dark(tmp_path: Path, browser: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    from tests.test_server_browser import LiveServer

    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "static").mkdir()
    (site / "pages" / "index.html").write_text(PAGE)
    (site / "static" / "site.css").write_text(HOSTILE_CSS)
    app = create_app(
        site,
        f"sqlite:///{tmp_path / 'crm.db'}",
        CRM_OPERATOR_PASSWORD=PASSWORD,
        CRM_COOKIE_SECURE=False,
        SESSION_COOKIE_SECURE=False,
        TRUSTED_HOSTS=["127.0.0.1"],
    )
    dana = app.extensions["crm"].crm.create_customer("dana@example.com", first_name="Dana")
    server = LiveServer(app)
    axe = Axe()
    problems: list[str] = []
    try:
        for scheme in ("light", "dark"):
            context = browser.new_context(
                color_scheme=scheme, viewport={"width": 375, "height": 700}
            )
            page = context.new_page()
            try:
                page.goto(server.url + "/operator/sign-in?next=/admin/")
                page.fill("#password", PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(server.url + "/admin/")
                page.goto(f"{server.url}/?preview_customer={dana.id}")
                assert "Hello Dana." in page.inner_text("main")
                banner = page.locator(".crm-preview-banner")
                box = banner.bounding_box()
                if not banner.is_visible() or box is None or box["height"] < 20 or box["y"] < 0:
                    problems.append(f"{scheme}: the banner is hidden: {box}")
                leave = page.get_by_role("button", name="Leave preview")
                if not leave.is_visible():
                    problems.append(f"{scheme}: the Leave preview button is hidden")
                colours = banner.evaluate(
                    "e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]"
                )
                if colours[0] == colours[1]:
                    problems.append(f"{scheme}: the banner's text has its background's colour")
                page.screenshot(path=str(tmp_path / f"banner-{scheme}.png"))
                for violation in axe.run(page).response["violations"]:
                    if violation["impact"] in ("serious", "critical"):
                        targets = [n["target"] for n in violation["nodes"]]
                        problems.append(f"{scheme}: axe {violation['id']} {targets}")
                leave.click()
                page.wait_for_url(server.url + "/")
                if page.locator(".crm-preview-banner").count():
                    problems.append(f"{scheme}: the banner stayed after leaving the preview")
            finally:
                context.close()
    finally:
        server.stop()
    assert not problems, "\n".join(problems)
