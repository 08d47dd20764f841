"""XSS suite: every payload through every renderer, checked by parsing and in a real browser."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from bs4 import BeautifulSoup
from markupsafe import Markup, escape

import renderers
from renderers import RenderOptions
from tests.xss_payloads import PAYLOADS

# A payload that is only a URL makes bs4 warn that we might have meant to fetch it; we did not.
pytestmark = pytest.mark.filterwarnings("ignore::bs4.MarkupResemblesLocatorWarning")

FIELD_TYPES = renderers.registry.names()

FORBIDDEN_ELEMENTS = frozenset(
    {
        "script", "iframe", "frame", "frameset", "object", "embed", "applet", "style", "link",
        "meta", "base", "form", "input", "button", "textarea", "select", "svg", "math",
        "template", "noscript",
    }
)  # fmt: skip
URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "srcset", "background"}
)
SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
# The only styles a renderer writes: the colour swatch and the thumbnail bound (an int option).
ALLOWED_STYLES = (
    re.compile(r"background-color:#(?:[0-9a-f]{3}){1,2}"),
    re.compile(r"max-width:\d+px;max-height:\d+px"),
)
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
_IGNORABLE = re.compile(r"[\x00-\x20\x7f]")


def hostile_field(field_type: str, payload: str) -> dict[str, Any]:
    """A field definition whose label and options are the payload too."""
    return {
        "type": field_type,
        "key": "k",
        "label": payload,
        "options": [payload, {"value": payload, "label": payload}],
        "target_entity": "deals",
    }


def hostile_options(payload: str) -> RenderOptions:
    """Options whose placeholder, reference labels and reference URLs are the payload."""
    return RenderOptions(
        placeholder=payload,
        reference_labels=lambda entity, ids: dict.fromkeys(ids, payload),
        reference_url=lambda entity, id_: payload,
    )


def hostile_values(payload: str) -> list[Any]:
    """The payload as a scalar, a list, a nested JSON-ish structure, and an empty value."""
    return [payload, [payload, payload + "x"], {payload: [payload, {payload: payload}]}, None]


def render_all(payload: str, field_type: str) -> list[Markup]:
    """Every hostile rendering of ``payload`` as ``field_type``."""
    field = hostile_field(field_type, payload)
    options = hostile_options(payload)
    return [renderers.render(value, field, options) for value in hostile_values(payload)]


def audit(html: str) -> list[str]:
    """What in ``html`` could execute script: forbidden elements, handlers, URLs, styles."""
    problems = []
    for tag in BeautifulSoup(html, "html.parser").find_all(True):
        if tag.name in FORBIDDEN_ELEMENTS:
            problems.append(f"<{tag.name}> element")
        for name, value in tag.attrs.items():
            text = " ".join(value) if isinstance(value, list) else str(value)
            if name.lower().startswith("on"):
                problems.append(f"event handler {name}={text!r}")
            if name.lower() in URL_ATTRIBUTES:
                scheme = _SCHEME.match(_IGNORABLE.sub("", text).lower())
                if scheme and scheme.group(1) not in SAFE_SCHEMES:
                    problems.append(f"{name} with scheme {scheme.group(1)!r}: {text!r}")
            if name.lower() == "style" and not any(p.fullmatch(text) for p in ALLOWED_STYLES):
                problems.append(f"style={text!r}")
    return problems


def test_corpus_is_large_and_distinct() -> None:
    assert len(PAYLOADS) >= 100
    assert len(set(PAYLOADS)) == len(PAYLOADS)


def test_audit_catches_unsafe_markup() -> None:
    """Positive control: the checker below is not vacuous."""
    unsafe = (
        '<a href="java\tscript:alert(1)">x</a><img src=x onerror=alert(1)>'
        '<span style="color:red"></span><script>alert(1)</script>'
    )
    assert len(audit(unsafe)) == 4


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
@pytest.mark.parametrize("field_type", FIELD_TYPES)
def test_renderer_output_is_inert(field_type: str, payload: str) -> None:
    for html in render_all(payload, field_type):
        assert audit(html) == [], html


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_sanitize_html_output_is_inert(payload: str) -> None:
    assert audit(renderers.sanitize_html(payload)) == []


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_text_round_trips_escaped(payload: str) -> None:
    """Plain text comes back verbatim: escaped, not stripped or mangled."""
    html = renderers.render(payload, {"type": "text"})
    assert BeautifulSoup(html, "html.parser").get_text() == payload


# --- in a real browser --------------------------------------------------------------------

PAGE_URL = "http://crm-xss.test/"

# Runs before any page script: records every dialog function call.
HOOKS = """
window.__xss = [];
for (const name of ["alert", "confirm", "prompt", "print"]) {
  const original = window[name];
  window[name] = function (...args) {
    window.__xss.push(name + ":" + String(args[0]));
    return original.apply(window, args);
  };
}
"""

# Handlers that need a user gesture never fire on load; dispatch the common ones ourselves.
POKE = """
() => {
  for (const el of document.querySelectorAll("#fragments *")) {
    for (const type of ["mouseover", "mouseenter", "pointerenter", "focus", "toggle"]) {
      el.dispatchEvent(new Event(type));
    }
  }
}
"""

# The browser's own reading of the DOM: forbidden elements, on* attributes, URL schemes.
DOM_AUDIT = """
([forbidden, urlAttributes, safeProtocols]) => {
  const bad = [];
  for (const el of document.querySelectorAll("#fragments *")) {
    if (forbidden.includes(el.localName)) bad.push("<" + el.localName + ">");
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      if (name.startsWith("on")) bad.push(name + "=" + attr.value);
      if (urlAttributes.includes(name)) {
        let url = null;
        try { url = new URL(attr.value, document.baseURI); } catch (e) { continue; }
        if (!safeProtocols.includes(url.protocol)) bad.push(name + "=" + attr.value);
      }
    }
  }
  return bad;
}
"""


def page_of(fragments: list[str]) -> str:
    """A whole document wrapping ``fragments`` in the container the audits look at."""
    body = "\n".join(f"<div>{fragment}</div>" for fragment in fragments)
    return (
        '<!doctype html><html><head><meta charset="utf-8"></head>'
        f'<body><div id="fragments">{body}</div></body></html>'
    )


def load_and_watch(page: Any, document: str) -> dict[str, list[str]]:
    """Serve ``document`` to ``page`` with no other network, and report what executed."""
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.add_init_script(HOOKS)

    def serve(route: Any) -> None:
        if route.request.url == PAGE_URL:
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=document)
        else:
            route.abort()  # images and scripts named by payloads never leave the machine

    page.route("**/*", serve)
    page.goto(PAGE_URL, wait_until="load")
    page.evaluate(POKE)
    page.wait_for_timeout(500)
    return {
        "dialogs": dialogs,
        "hooks": page.evaluate("window.__xss"),
        "dom": page.evaluate(
            DOM_AUDIT,
            [
                sorted(FORBIDDEN_ELEMENTS),
                sorted(URL_ATTRIBUTES),
                ["http:", "https:", "mailto:", "tel:"],
            ],
        ),
    }


def all_fragments(render: Callable[[str, str], list[Markup]]) -> list[str]:
    """Every payload through every renderer, plus sanitize_html on its own."""
    fragments = [str(html) for t in FIELD_TYPES for p in PAYLOADS for html in render(p, t)]
    fragments += [renderers.sanitize_html(p) for p in PAYLOADS]
    return fragments


@pytest.mark.browser
# load_and_watch aborts every request but the page's own: images named by payloads fail to load.
@pytest.mark.allow_console_errors(r"^Failed to load resource: net::ERR_FAILED$")
def test_nothing_executes_in_chromium(page: Any) -> None:
    # Positive control on its own page: raw, unrendered payloads must trip every detector.
    control_page = page.context.new_page()
    control = load_and_watch(
        control_page,
        page_of(
            [
                "<img src=x onerror=alert('control')>",
                "<div onmouseover=confirm('poke')>x</div>",
                '<a href="javascript:alert(1)">x</a>',
                str(escape("<img src=x onerror=alert('escaped')>")),
            ]
        ),
    )
    control_page.close()
    assert any("control" in message for message in control["dialogs"]), control
    assert "alert:control" in control["hooks"], control
    assert "confirm:poke" in control["hooks"], control
    assert any("javascript:" in finding for finding in control["dom"]), control
    assert not any("escaped" in hit for hit in control["hooks"]), control

    outcome = load_and_watch(page, page_of(all_fragments(render_all)))
    assert outcome == {"dialogs": [], "hooks": [], "dom": []}
