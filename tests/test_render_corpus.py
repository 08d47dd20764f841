"""Issue 9, items 2 and 3: every value the core accepts renders — html and text, in every
supported time zone and locale — without raising, and with its type's normal markup (never
``crm-invalid``): the renderers judge validity with the core's own checks (`fieldtypes`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import available_timezones

import pytest
from babel import localedata
from bs4 import BeautifulSoup, Tag
from hypothesis import assume
from hypothesis import strategies as st
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

import renderers
from crm_templates import Crm, CrmExtension, CrmValidationError
from crm_templates.model import Field, Option
from crm_templates.values import coerce
from renderers import RenderOptions
from renderers.registry import is_empty
from tests import value_strategies as vs
from tests.value_strategies import World, seed_world

LOCALES = sorted(localedata.locale_identifiers())
ZONES = sorted(available_timezones())
# Zones west of UTC, where year 1 moves into year 0 (the example), and east of it,
# where 9999-12-31 moves into year 10000.
WEST = ["America/New_York", "Pacific/Honolulu", "Etc/GMT+12", "America/St_Johns"]
EAST = ["Asia/Tokyo", "Pacific/Kiritimati", "Etc/GMT-14", "Asia/Kathmandu"]

BUDGET = {"sqlite-memory": 600, "sqlite-file": 150, "opensearch": 150}
# What the locale changes: number and date formats, and the phone region.
LOCALE_TYPES = {"number", "date", "datetime", "phone"}


def labels(target: str, ids: Sequence[str]) -> Mapping[str, str]:
    return {ident: f"Place {ident[-4:]}" for ident in ids}


def outer(html: Markup) -> Tag:
    element = BeautifulSoup(str(html), "html.parser").find()
    assert isinstance(element, Tag), html
    return element


def assert_normal(html: Markup, field: Field, stored: Any) -> None:
    """``html`` is the type's normal markup for the stored value (docs/reference/field-types.md)."""
    ftype = field.type
    if is_empty(stored):
        assert html == "", html
        return
    el = outer(html)
    classes = el.get("class") or []
    assert "crm-field" in classes and f"crm-{ftype}" in classes, html
    assert "crm-invalid" not in classes, html
    expected_tag = {
        "text": "span", "textarea": "div", "rich_text": "div", "wysiwyg": "div", "email": "a",
        "phone": "a", "url": "a", "number": "data", "date": "time", "datetime": "time",
        "boolean": "span", "select": "span", "multiselect": "ul", "color": "span", "image": "a",
        "file": "a", "json": "div", "reference": "span", "multi_reference": "ul",
    }[ftype]  # fmt: skip
    assert el.name == expected_tag, html
    href = el.get("href")
    if ftype == "email":
        assert str(href).startswith("mailto:") and "@" in str(href), html
    elif ftype == "phone":
        assert str(href).startswith("tel:") and any(c.isdigit() for c in str(href)), html
    elif ftype in ("url", "file"):
        assert href == stored, html
    elif ftype == "image":
        img = el.find("img")
        assert isinstance(img, Tag) and img.get("src") == stored == href, html
    elif ftype == "color":
        swatch = el.find("span", class_="crm-swatch")
        assert isinstance(swatch, Tag) and swatch.get("style") == f"background-color:{stored}"
    elif ftype == "number":
        assert Decimal(str(el["value"])) == Decimal(repr(float(stored))), html
        if stored == 0:
            assert el["value"] == "0" and not any(c in el.get_text() for c in "-−‐‑–"), html
    elif ftype in ("date", "datetime"):
        assert el.get("datetime"), html
    elif ftype == "boolean":
        assert el.get("aria-label") == ("Yes" if stored else "No"), html
    elif ftype == "select":
        assert el.get("data-value") == stored, html
    elif ftype in ("multiselect", "multi_reference"):
        assert len(el.find_all("li", recursive=False)) == len(stored), html


def render_both(stored: Any, field: Field, options: RenderOptions) -> None:
    assert_normal(renderers.render(stored, field, options), field, stored)
    text = renderers.render_text(stored, field, options)
    assert isinstance(text, str)
    if field.type == "number" and stored == 0:
        assert not text.lstrip("\u200e\u200f\u061c").startswith(("-", "−")), text


# --- accepted values at the edges, swept over every locale and every zone -------------------

SELECT = Field("pick", "Pick", "select", options=(Option("a", "A"), Option("ok ✓", "उदाहरण")))
EDGES: list[tuple[str, Any]] = [
    ("text", "\u202eevil\u0000 e\u0301 \U0001f600"),
    ("textarea", "a\r\nb"),
    ("rich_text", "<p onclick=x>hi<script>x</script></p>"),
    ("email", "उदाहरण@उदाहरण.भारत"),
    ("email", "jürgen@exämple.de"),
    ("email", "пример@пример.рф"),
    ("phone", "+1 415 555 0100"),
    ("phone", "030 1234567 ext. 12"),
    ("phone", "+999 123"),
    ("url", "https://उदाहरण.भारत/पथ?q=१"),
    ("url", "https://[::1]:8080/a"),
    ("image", "/uploads/a%20b.png"),
    ("file", "https://example.com/f.pdf?sig=%2e"),
    ("number", -0.0),
    ("number", "-0"),
    ("number", "-1e-400"),
    ("number", 1.7976931348623157e308),
    ("number", -5e-324),
    ("number", 1e25),
    ("number", 10**300),
    ("date", "0001-01-01"),
    ("date", "9999-12-31"),
    ("date", "0001-01-01T00:00:00+01:00"),
    ("datetime", "0001-01-01T00:00:00Z"),
    ("datetime", "9999-12-31T23:59:59.999999Z"),
    ("datetime", "0001-01-01T01:00:00+01:00"),
    ("datetime", "9999-12-31"),
    ("boolean", "FALSE"),
    ("select", "ok ✓"),
    ("multiselect", ["ok ✓", "a"]),
    ("color", " #ABC "),
    ("json", vs.nested(64)),
    ("json", {"\u202e": [1e308, -0.0, None, True, "\x00"]}),
    ("reference", "01abc"),
    ("multi_reference", ["01abc", "01abd"]),
]


def edge_field(ftype: str) -> Field:
    if ftype == "select":
        return SELECT
    if ftype == "multiselect":
        return Field("tags", "Tags", "multiselect", options=SELECT.options)
    target = "places" if "reference" in ftype else None
    return Field(f"f_{ftype}", ftype.title(), ftype, target_entity=target)


STORED_EDGES = [(edge_field(t), coerce(edge_field(t), raw)) for t, raw in EDGES]


def test_edges_render_in_every_locale() -> None:
    for locale in LOCALES:
        for zone in ("UTC", WEST[0]):
            options = RenderOptions(locale=locale, timezone=zone, reference_labels=labels)
            for field, stored in STORED_EDGES:
                if field.type not in LOCALE_TYPES and locale not in ("en_US", "ar_EG", "hi_IN"):
                    continue
                try:
                    render_both(stored, field, options)
                except AssertionError as exc:
                    raise AssertionError(
                        f"{locale} {zone} {field.type} {stored!r}: {exc}"
                    ) from None


def test_edge_moments_render_in_every_time_zone() -> None:
    moments = [(f, s) for f, s in STORED_EDGES if f.type in ("date", "datetime")]
    for zone in ZONES:
        for locale in ("en_US", "ar_EG", "ja_JP"):
            options = RenderOptions(locale=locale, timezone=zone)
            for field, stored in moments:
                try:
                    render_both(stored, field, options)
                except AssertionError as exc:
                    raise AssertionError(f"{zone} {locale} {stored!r}: {exc}") from None


# --- the examples -------------------------------------------------------------------


@pytest.mark.parametrize("zone", WEST + EAST)
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_year_one_and_year_9999_render_in_any_zone(zone: str, value: str) -> None:
    field = edge_field("datetime")
    stored = coerce(field, value)
    assert stored == value  # accepted and stored as given
    el = outer(renderers.render(stored, field, RenderOptions(timezone=zone)))
    assert el.name == "time" and el["datetime"] == value.replace("Z", "+00:00")
    shown = el.get_text()
    # Either Babel's display in the zone, or, where the zone leaves years 1-9999, the ISO text.
    assert shown == el["datetime"] or any(year in shown for year in ("1", "9999", "10000"))
    assert renderers.render_text(stored, field, RenderOptions(timezone=zone))


def test_year_one_west_of_utc_shows_the_iso_value() -> None:
    html = renderers.render(
        "0001-01-01T00:00:00Z", {"type": "datetime"}, RenderOptions(timezone="America/New_York")
    )
    assert html == Markup(
        '<time class="crm-field crm-datetime" datetime="0001-01-01T00:00:00+00:00">'
        "0001-01-01T00:00:00+00:00</time>"
    )


@pytest.mark.parametrize(
    "address",
    ["उदाहरण@उदाहरण.भारत", "δοκιμή@παράδειγμα.δοκιμή", "用户@例子.广告", "Ann@Example.COM"],
)
def test_addresses_the_core_accepts_get_a_mailto_link(address: str) -> None:
    field = edge_field("email")
    stored = coerce(field, address)
    el = outer(renderers.render(stored, field))
    assert el.name == "a" and "crm-invalid" not in el["class"]
    assert el["href"].startswith("mailto:")
    assert el.get_text() == stored


@pytest.mark.parametrize("value", [-0.0, "-0", "-0.000", "-1e-400", 0, "0"])
def test_a_zero_shows_0_never_minus_0(value: Any) -> None:
    field = edge_field("number")
    stored = coerce(field, value)
    assert str(stored) == "0.0"  # the core stores a plain zero
    for raw in (value, stored):  # and the renderer shows one, whatever it is given
        el = outer(renderers.render(raw, field, RenderOptions(locale="de_DE")))
        assert (el.get_text(), el["value"]) == ("0", "0")
        assert renderers.render_text(raw, field) == "0"


@pytest.mark.parametrize(
    ("field_type", "value"), EDGES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(EDGES)]
)
def test_edges_through_a_page_in_a_west_zone(sqlite_crm: Crm, field_type: str, value: Any) -> None:
    # The page path: stored through the service, read and rendered by the Jinja filter.
    world = seed_world(sqlite_crm)
    value = world.place if value == "01abc" else value
    if field_type in ("select", "multiselect"):
        value = "ok ✓" if field_type == "select" else ["ok ✓", "a"]
    if field_type == "multi_reference":
        value = [world.place]
    view = sqlite_crm.bind("cus_1")
    view.set_field(slug="things", fieldKey=vs.key_of(field_type), value=value)
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(  # type: ignore[attr-defined]
        sqlite_crm, render_options=RenderOptions(locale="hi_IN", timezone="America/New_York")
    )
    page = env.from_string(
        "{{ 'things' | crm_render(key) }}<!--end-->{{ 'things' | crm_text(key) }}"
    ).render(key=vs.key_of(field_type), customer_id="cus_1")
    html = Markup(page.split("<!--end-->", 1)[0])
    assert_normal(
        html,
        world.fields[vs.key_of(field_type)],
        view.get_field(slug="things", fieldKey=vs.key_of(field_type)),
    )


# --- a generated corpus, stored on every backend --------------------------------------------

corpus = st.sampled_from(vs.TYPES).flatmap(
    lambda t: st.tuples(
        st.just(t), vs.ACCEPTED[t], st.sampled_from(LOCALES), st.sampled_from(ZONES)
    )
)


@pytest.mark.parametrize("mode", vs.MODES)
def test_accepted_values_render_everywhere(
    crm: Crm, request: pytest.FixtureRequest, mode: str
) -> None:
    world: World = seed_world(crm)
    backend = request.node.callspec.params["store"]
    view = crm.bind("cus_1")

    def body(case: tuple[str, Any, str, str]) -> None:
        ftype, raw, locale, zone = case
        key = vs.key_of(ftype)
        field = world.fields[key]
        raw = world.real(raw)
        try:
            expected = coerce(field, raw)
        except CrmValidationError:
            assume(False)
        view.call("SetCrmField", {"slug": "things", "fieldKey": key, "value": raw})
        stored = view.get_field(slug="things", fieldKey=key)
        assert stored == expected
        render_both(
            stored, field, RenderOptions(locale=locale, timezone=zone, reference_labels=labels)
        )

    vs.run(mode, BUDGET[backend], corpus, body)
