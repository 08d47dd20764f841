"""Field-type renderers: HTML structure per type, empties, locales, references, the registry."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup, Tag
from markupsafe import Markup

import renderers
from renderers import DuplicateRenderer, FieldInfo, RenderOptions, UnknownFieldType

ALL_TYPES = {
    "text", "textarea", "rich_text", "wysiwyg", "email", "phone", "url", "number", "date",
    "datetime", "boolean", "select", "multiselect", "color", "image", "file", "json",
    "reference", "multi_reference",
}  # fmt: skip


def outer(html: str) -> Tag:
    """The single top-level element of a rendering (fails if there is not exactly one)."""
    soup = BeautifulSoup(html, "html.parser")
    elements = [node for node in soup.contents if isinstance(node, Tag)]
    assert len(elements) == 1, html
    assert not [n for n in soup.contents if not isinstance(n, Tag) and str(n).strip()], html
    return elements[0]


def render(value: Any, field_type: str, **field: Any) -> Tag:
    """Render with the default options and return the outer element."""
    html = renderers.render(value, {"type": field_type, **field})
    assert isinstance(html, Markup)
    return outer(html)


@pytest.fixture
def registry() -> renderers.RendererRegistry:
    """A private copy of the built-in registry, so overrides do not leak between tests."""
    return renderers.registry.copy()


@pytest.fixture
def lookups() -> list[tuple[str, list[str]]]:
    """Records every reference_labels call."""
    return []


@pytest.fixture
def ref_options(lookups: list[tuple[str, list[str]]]) -> RenderOptions:
    """Options resolving references to "Deal <id>" (except id "gone") and linking to /deals/<id>."""

    def labels(entity: str, ids: Any) -> dict[str, str]:
        lookups.append((entity, list(ids)))
        return {id_: f"Deal {id_}" for id_ in ids if id_ != "gone"}

    return RenderOptions(
        reference_labels=labels, reference_url=lambda entity, id_: f"/{entity}/{id_}"
    )


# --- every type -------------------------------------------------------------------------

TYPICAL: list[tuple[str, Any, dict[str, Any], str]] = [
    ("text", "hello", {}, "span"),
    ("textarea", "a\nb", {}, "div"),
    ("rich_text", "<p>hi</p>", {}, "div"),
    ("wysiwyg", "<p>hi</p>", {}, "div"),
    ("email", "ann@example.com", {}, "a"),
    ("phone", "(202) 555-0143", {}, "a"),
    ("url", "https://example.com/", {}, "a"),
    ("number", 42, {}, "data"),
    ("date", "2024-03-05", {}, "time"),
    ("datetime", "2024-03-05T10:20:00Z", {}, "time"),
    ("boolean", True, {}, "span"),
    ("select", "b", {"options": ["a", "b"]}, "span"),
    ("multiselect", ["a", "b"], {"options": ["a", "b"]}, "ul"),
    ("color", "#aabbcc", {}, "span"),
    ("image", "https://example.com/cat.png", {}, "a"),
    ("file", "https://example.com/a.pdf", {}, "a"),
    ("json", {"a": 1}, {}, "div"),
    ("reference", "e1", {"target_entity": "deals"}, "span"),
    ("multi_reference", ["e1"], {"target_entity": "deals"}, "ul"),
]


def test_table_covers_every_registered_type() -> None:
    assert set(renderers.registry.names()) == ALL_TYPES
    assert {row[0] for row in TYPICAL} == ALL_TYPES


@pytest.mark.parametrize(("field_type", "value", "field", "tag"), TYPICAL)
def test_outer_element_carries_type_classes(
    field_type: str, value: Any, field: dict[str, Any], tag: str
) -> None:
    element = render(value, field_type, **field)
    assert element.name == tag
    assert element["class"][:2] == ["crm-field", f"crm-{field_type}"]
    assert "crm-invalid" not in element["class"]


@pytest.mark.parametrize("field_type", sorted(ALL_TYPES))
@pytest.mark.parametrize("empty", [None, "", [], {}], ids=["None", "str", "list", "dict"])
def test_empty_values_render_as_empty_string(field_type: str, empty: Any) -> None:
    assert renderers.render(empty, {"type": field_type}) == ""
    assert renderers.render_text(empty, {"type": field_type}) == ""


@pytest.mark.parametrize("field_type", sorted(ALL_TYPES))
def test_placeholder_is_escaped_in_a_marked_span(field_type: str) -> None:
    options = RenderOptions(placeholder="<none>")
    element = outer(renderers.render(None, {"type": field_type}, options))
    assert element.name == "span"
    assert element["class"] == ["crm-field", f"crm-{field_type}", "crm-empty"]
    assert element.get_text() == "<none>"
    assert renderers.render_text(None, {"type": field_type}, options) == "<none>"


@pytest.mark.parametrize(
    ("field_type", "value", "text"),
    [
        ("text", 0, "0"),
        ("number", 0, "0"),
        ("number", 0.0, "0"),
        ("boolean", False, "No"),
        ("boolean", 0, "No"),
        ("select", 0, "zero"),
        ("json", 0, "0"),
        ("json", False, "false"),
    ],
)
def test_zero_and_false_are_values(field_type: str, value: Any, text: str) -> None:
    field = {"type": field_type, "options": [{"value": 0, "label": "zero"}]}
    html = renderers.render(value, field)
    assert html != ""
    assert renderers.render_text(value, field) == text


# --- text types ---------------------------------------------------------------------------


def test_text_is_escaped_in_a_span() -> None:
    element = render("<b>Tom & Jerry</b>", "text")
    assert element.name == "span"
    assert element.get_text() == "<b>Tom & Jerry</b>"
    assert element.find("b") is None


@pytest.mark.parametrize("text", ["one\ntwo\nthree", "one\r\ntwo\rthree"])
def test_textarea_keeps_line_breaks_and_escapes(text: str) -> None:
    element = render(text.replace("two", "<i>two</i>"), "textarea")
    assert len(element.find_all("br")) == 2
    assert element.find("i") is None
    assert [s.strip() for s in element.strings] == ["one", "<i>two</i>", "three"]


def test_rich_text_keeps_allowed_markup_and_drops_the_rest() -> None:
    element = render(
        '<p style="color:red" onclick="x()">Hi <strong>there</strong> '
        '<a href="https://example.com" target="_blank">ok</a> '
        '<a href="javascript:alert(1)">bad</a></p><script>alert(1)</script><iframe></iframe>',
        "rich_text",
    )
    paragraph = element.find("p")
    assert paragraph is not None and paragraph.attrs == {}
    assert element.find("strong").get_text() == "there"
    good, bad = element.find_all("a")
    assert good["href"] == "https://example.com"
    assert good["rel"] == ["noopener", "noreferrer", "nofollow"]
    assert "target" not in good.attrs
    assert "href" not in bad.attrs
    assert element.find(["script", "iframe"]) is None
    assert "alert" not in element.get_text()


def test_wysiwyg_shares_the_rich_text_class() -> None:
    assert render("<p>x</p>", "wysiwyg")["class"] == [
        "crm-field",
        "crm-wysiwyg",
        "crm-rich_text",
    ]


def test_rich_text_plain_twin_keeps_paragraphs_apart() -> None:
    html = "<h1>Title</h1><p>One &amp; <b>two</b></p><script>x</script><ul><li>a</li></ul>"
    assert renderers.render_text(html, {"type": "rich_text"}) == "Title\nOne & two\na"


def test_sanitize_html_is_exported_with_its_policy() -> None:
    assert renderers.sanitize_html('<a href="HTTPS://x.org" onclick=1>x</a>') == (
        '<a href="HTTPS://x.org" rel="noopener noreferrer nofollow">x</a>'
    )
    from renderers import sanitize

    assert "style" not in set().union(*sanitize.ALLOWED_ATTRIBUTES.values())
    assert {"http", "https", "mailto"} == sanitize.URL_SCHEMES


# --- links --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "href"),
    [
        ("ann@example.com", "mailto:ann@example.com"),
        ("o'neil+crm@example.co.uk", "mailto:o%27neil%2Bcrm@example.co.uk"),
        ("  ann@example.com ", "mailto:ann@example.com"),
        ("jürgen@exämple.de", "mailto:j%C3%BCrgen@ex%C3%A4mple.de"),
    ],
)
def test_email_becomes_a_percent_encoded_mailto_link(address: str, href: str) -> None:
    element = render(address, "email")
    assert element.name == "a"
    assert element["href"] == href
    assert element.get_text() == address.strip()


@pytest.mark.parametrize(
    "value",
    [
        "not an address",
        "ann@localhost",
        "a@b@example.com",
        '"ann"@example.com',
        "ann@example.com?subject=hi",
        "ann@example.com\nBcc: eve@example.com",
        "<ann@example.com>",
    ],
)
def test_email_that_is_not_an_address_is_plain_text(value: str) -> None:
    element = render(value, "email")
    assert element.name == "span"
    assert "crm-invalid" in element["class"]
    assert element.get_text() == value


@pytest.mark.parametrize(
    ("number", "locale", "tel"),
    [
        ("(202) 555-0143", "en_US", "tel:+12025550143"),
        ("+44 20 7946 0958", "en_US", "tel:+442079460958"),
        ("030 1234567", "de_DE", "tel:+49301234567"),
        ("+1-202-555-0143", "de", "tel:+12025550143"),
    ],
)
def test_phone_links_to_e164_and_shows_the_number_as_entered(
    number: str, locale: str, tel: str
) -> None:
    element = outer(renderers.render(number, {"type": "phone"}, RenderOptions(locale=locale)))
    assert element.name == "a"
    assert element["href"] == tel
    assert element.get_text() == number


@pytest.mark.parametrize("value", ["call me", "12", "+1 415 <b>555</b>", "555-0100 ext 123456789"])
def test_unparsable_phone_is_plain_text(value: str) -> None:
    element = render(value, "phone")
    assert element.name == "span"
    assert "crm-invalid" in element["class"]
    assert element.find("a") is None
    assert element.get_text() == value


@pytest.mark.parametrize(
    ("value", "tel"),
    [
        # A Berlin number read in en_US is no valid US number: it still dials as entered.
        ("030 1234567", "tel:0301234567"),
        ("+999 123", "tel:+999123"),
        ("030 1234567 ext. 12", "tel:0301234567;ext=12"),
        ("+1 (202) 555-0143 x 7", "tel:+12025550143;ext=7"),
    ],
)
def test_phone_the_core_accepts_links_even_when_not_valid_in_the_region(
    value: str, tel: str
) -> None:
    # Issue 9: the renderer's idea of a phone number is the core's (fieldtypes.phone_number).
    element = render(value, "phone")
    assert element.name == "a"
    assert element["href"] == tel
    assert element.get_text() == value


@pytest.mark.parametrize(
    "url",
    ["https://example.com/a?b=1&c=2", "http://example.com", "HTTPS://EXAMPLE.COM/x"],
)
def test_url_links_http_and_https(url: str) -> None:
    element = render(url, "url")
    assert element.name == "a"
    assert element["href"] == url
    assert element["rel"] == ["noopener", "noreferrer", "nofollow"]
    assert element.get_text() == url


def test_url_is_stripped_of_what_browsers_ignore() -> None:
    assert render(" \thttps://exa\nmple.com/ \n", "url")["href"] == "https://example.com/"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "&#106;avascript:alert(1)",
        "&#x6A;avascript:alert(1)",
        "javascript&colon;alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "ftp://example.com/file",
        "mailto:ann@example.com",
        "/relative/path",
        "//example.com/protocol-relative",
        "https:javascript:alert(1)",
        "https://",
        "example.com",
        "http://exa\x00mple.com",
    ],
)
def test_url_other_than_http_is_plain_text(url: str) -> None:
    element = render(url, "url")
    assert element.name == "span"
    assert "crm-invalid" in element["class"]
    assert element.get("href") is None
    assert element.get_text() == url


def test_image_is_a_lazy_bounded_thumbnail_linking_to_the_full_image() -> None:
    element = render("https://example.com/pics/cat%20one.png", "image", label="Photo")
    img = element.find("img")
    assert element.name == "a"
    assert element["href"] == img["src"] == "https://example.com/pics/cat%20one.png"
    assert img["loading"] == "lazy"
    assert img["alt"] == "Photo"
    assert img["style"] == "max-width:160px;max-height:160px"


def test_image_alt_falls_back_to_the_file_name_and_size_follows_options() -> None:
    html = renderers.render(
        "/uploads/cat%20one.png", {"type": "image"}, RenderOptions(image_max_size=48)
    )
    img = outer(html).find("img")
    assert img["alt"] == "cat one.png"
    assert img["style"] == "max-width:48px;max-height:48px"


@pytest.mark.parametrize("field_type", ["image", "file"])
@pytest.mark.parametrize(
    "value",
    [
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "//evil.example/x.png",
        "relative/x.png",
        "/\\evil.example/x.png",
    ],
)
def test_image_and_file_refuse_other_schemes(field_type: str, value: str) -> None:
    element = render(value, field_type)
    assert element.name == "span"
    assert element.find(["a", "img"]) is None
    assert element.get_text() == value


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://example.com/files/Q3%20report.pdf?sig=abc", "Q3 report.pdf"),
        ("/uploads/a/b/notes.txt", "notes.txt"),
        ("https://example.com/files/%3Cb%3Ex.pdf", "<b>x.pdf"),
        ("https://example.com/", "https://example.com/"),
    ],
)
def test_file_is_a_download_link_named_after_the_file(url: str, name: str) -> None:
    element = render(url, "file")
    assert element.name == "a"
    assert element["href"] == url
    assert element.has_attr("download")
    assert element.find("b") is None
    assert element.get_text() == name


# --- formatted scalars ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "locale", "shown", "raw"),
    [
        (1234.5, "en_US", "1,234.5", "1234.5"),
        (1234.5, "de_DE", "1.234,5", "1234.5"),
        (1234567, "fr_FR", "1\u202f234\u202f567", "1234567"),
        ("-0.125", "en_US", "-0.125", "-0.125"),
        ("1e3", "en_US", "1,000", "1000.0"),  # the float the core stores
        (1e25, "en_US", "10,000,000,000,000,000,000,000,000", "10000000000000000000000000"),
        (0.1 + 0.2, "en_US", "0.30000000000000004", "0.30000000000000004"),
    ],
)
def test_number_is_locale_formatted_with_the_raw_value(
    value: Any, locale: str, shown: str, raw: str
) -> None:
    html = renderers.render(value, {"type": "number"}, RenderOptions(locale=locale))
    element = outer(html)
    assert element.name == "data"
    assert element["value"] == raw
    assert element.get_text() == shown
    assert renderers.render_text(value, {"type": "number"}, RenderOptions(locale=locale)) == shown


@pytest.mark.parametrize("value", ["abc", "NaN", "inf", float("nan"), True, "1e999999", [1]])
def test_non_number_is_plain_text(value: Any) -> None:
    element = render(value, "number")
    assert element.name == "span"
    assert "crm-invalid" in element["class"]


@pytest.mark.parametrize(
    ("value", "locale", "iso", "shown"),
    [
        ("2024-03-05", "en_US", "2024-03-05", "Mar 5, 2024"),
        (date(2024, 3, 5), "de_DE", "2024-03-05", "05.03.2024"),
        (datetime(2024, 3, 5, 23, 0), "en_US", "2024-03-05", "Mar 5, 2024"),
        ("2024-03-05T10:00:00Z", "en_US", "2024-03-05", "Mar 5, 2024"),
    ],
)
def test_date_is_a_time_element_with_a_readable_display(
    value: Any, locale: str, iso: str, shown: str
) -> None:
    element = outer(renderers.render(value, {"type": "date"}, RenderOptions(locale=locale)))
    assert element.name == "time"
    assert element["datetime"] == iso
    assert element.get_text() == shown


def test_datetime_is_shown_in_the_configured_time_zone() -> None:
    options = RenderOptions(timezone="America/New_York")
    field = {"type": "datetime"}
    element = outer(renderers.render("2024-03-05T23:30:00Z", field, options))
    assert element["datetime"] == "2024-03-05T23:30:00+00:00"
    assert element.get_text().replace("\u202f", " ") == "Mar 5, 2024, 6:30:00 PM"
    naive = outer(renderers.render(datetime(2024, 3, 5, 23, 30), field, options))
    assert naive["datetime"] == "2024-03-05T23:30:00+00:00"  # naive values are UTC
    aware = datetime(2024, 7, 1, 12, 0, tzinfo=timezone.utc)
    german = RenderOptions(locale="de_DE", timezone="Europe/Berlin")
    assert renderers.render_text(aware, field, german) == "01.07.2024, 14:00:00"


def test_datetime_given_a_date_shows_a_date() -> None:
    element = render("2024-03-05", "datetime")
    assert element["datetime"] == "2024-03-05"
    assert element.get_text() == "Mar 5, 2024"


@pytest.mark.parametrize("field_type", ["date", "datetime"])
@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "<b>2024</b>", 1709600000])
def test_unparsable_date_is_escaped_text(field_type: str, value: Any) -> None:
    element = render(value, field_type)
    assert element.name == "span"
    assert element.find("b") is None
    assert element.get_text() == str(value)


@pytest.mark.parametrize(
    ("value", "word", "mark"),
    [
        (True, "Yes", "✓"),
        (False, "No", "✗"),
        ("true", "Yes", "✓"),
        (" FALSE ", "No", "✗"),
        (1, "Yes", "✓"),
        (0, "No", "✗"),
        ("1", "Yes", "✓"),
        ("0", "No", "✗"),
    ],
)
def test_boolean_is_a_mark_with_an_accessible_label(value: Any, word: str, mark: str) -> None:
    element = render(value, "boolean")
    assert element["aria-label"] == word
    assert element["role"] == "img"
    assert element.get_text() == mark
    assert f"crm-{word.lower()}" in element["class"]
    assert renderers.render_text(value, {"type": "boolean"}) == word


@pytest.mark.parametrize("value", ["maybe", 2, "<b>yes</b>"])
def test_boolean_rejects_other_values(value: Any) -> None:
    element = render(value, "boolean")
    assert "crm-invalid" in element["class"]
    assert element.get_text() == str(value)


@pytest.mark.parametrize(("value", "hex_code"), [("#ABC", "#abc"), (" #a1b2c3 ", "#a1b2c3")])
def test_color_is_a_swatch_plus_the_hex_code(value: str, hex_code: str) -> None:
    element = render(value, "color")
    swatch = element.find("span", class_="crm-swatch")
    assert swatch["style"] == f"background-color:{hex_code}"
    assert element.find("code").get_text() == hex_code


@pytest.mark.parametrize(
    "value",
    ["red", "#abcd", "#abc;background:url(x)", "#ab\nc", "#gggggg", "rgb(0,0,0)", "#abc</span>"],
)
def test_invalid_color_never_reaches_a_style_attribute(value: str) -> None:
    element = render(value, "color")
    assert "crm-invalid" in element["class"]
    assert element.find(style=True) is None and not element.has_attr("style")
    assert element.get_text() == value


# --- choices and references ---------------------------------------------------------------

OPTIONS = ["plain", {"value": "b", "label": "Bee"}, {"value": "x", "label": "<i>X</i>"}]


@pytest.mark.parametrize(
    ("value", "label"), [("plain", "plain"), ("b", "Bee"), ("x", "<i>X</i>"), ("zz<", "zz<")]
)
def test_select_shows_the_option_label(value: str, label: str) -> None:
    element = render(value, "select", options=OPTIONS)
    assert element.get_text() == label
    assert element["data-value"] == value
    assert element.find("i") is None


def test_multiselect_is_a_tag_list_of_labels() -> None:
    element = render(["b", "plain", "unknown"], "multiselect", options=OPTIONS)
    assert element.name == "ul"
    assert "crm-tags" in element["class"]
    assert [li.get_text() for li in element.find_all("li")] == ["Bee", "plain", "unknown"]
    field = {"type": "multiselect", "options": OPTIONS}
    assert renderers.render_text(["b", "x"], field) == "Bee, <i>X</i>"


@dataclass(frozen=True)
class Option:
    """Mirrors the core's option record (attributes, not a mapping)."""

    value: str
    label: str


@dataclass(frozen=True)
class Field:
    """Mirrors the core's frozen Field dataclass, which renderers must accept as-is."""

    key: str
    label: str
    type: str = "text"
    options: tuple[Option, ...] = ()
    target_entity: str | None = None


def test_field_objects_with_attributes_work_like_mappings() -> None:
    field = Field("stage", "Stage", "select", (Option("won", "Won!"),))
    assert outer(renderers.render("won", field)).get_text() == "Won!"
    assert renderers.render_text("won", field) == "Won!"
    info = FieldInfo.of(field)
    assert info.source is field and info.label == "Stage"


def test_reference_shows_the_label_linked(
    ref_options: RenderOptions, lookups: list[tuple[str, list[str]]]
) -> None:
    field = Field("deal", "Deal", "reference", target_entity="deals")
    element = outer(renderers.render("e1", field, ref_options))
    link = element.find("a")
    assert (link["href"], link["data-id"], link.get_text()) == ("/deals/e1", "e1", "Deal e1")
    assert lookups == [("deals", ["e1"])]


def test_multi_reference_resolves_all_labels_in_one_call(
    ref_options: RenderOptions, lookups: list[tuple[str, list[str]]]
) -> None:
    field = {"type": "multi_reference", "target_entity": "deals"}
    element = outer(renderers.render(["e1", "e2", "gone"], field, ref_options))
    assert lookups == [("deals", ["e1", "e2", "gone"])]
    assert element.name == "ul" and "crm-tags" in element["class"]
    assert [li.get_text() for li in element.find_all("li")] == ["Deal e1", "Deal e2", "gone"]
    assert renderers.render_text(["e1", "gone"], field, ref_options) == "Deal e1, gone"
    assert len(lookups) == 2


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,x", "//evil.example/x", "deals/e1", None]
)
def test_reference_with_unsafe_or_no_url_is_not_linked(url: str | None) -> None:
    options = RenderOptions(
        reference_labels=lambda entity, ids: dict.fromkeys(ids, "<b>Acme</b>"),
        reference_url=lambda entity, id_: url,
    )
    html = renderers.render("e1", {"type": "reference", "target_entity": "deals"}, options)
    element = outer(html)
    assert element.find("a") is None
    assert element.find("b") is None
    assert element.get_text() == "<b>Acme</b>"


def test_reference_without_a_resolver_shows_the_ids() -> None:
    element = render(["e1", 7], "multi_reference", target_entity="deals")
    assert [li.get_text() for li in element.find_all("li")] == ["e1", "7"]


# --- json ---------------------------------------------------------------------------------


def test_json_object_is_a_labelled_key_value_list() -> None:
    element = render({"<k>": "<v>", "list": [1, None, True], "empty": ""}, "json")
    root = element.find("dl", recursive=False)
    assert root is not None and "crm-json-object" in root["class"]
    assert element.find("details") is None  # nothing nested: nothing collapsible
    pairs = [(d.find("dt").get_text(), d.find("dd")) for d in root.find_all("div", recursive=False)]
    assert [key for key, _ in pairs] == ["<k>", "list", "empty"]
    assert element.find(["k", "v"]) is None  # keys and values are escaped text
    assert pairs[0][1].get_text() == "<v>"  # a string reads as its text
    items = pairs[1][1].find("ul", class_="crm-json-list").find_all("li")
    assert [li.get_text() for li in items] == ["1", "null", "true"]  # scalars: a plain list
    assert pairs[2][1].get_text() == '""'


def test_json_only_nested_parts_are_collapsible() -> None:
    element = render({"name": "Ann", "address": {"city": "Faro"}, "rows": [{"a": 1}]}, "json")
    details = element.find_all("details")
    assert [d.find("summary").get_text() for d in details] == ["1 key", "1 item"]
    assert not any(d.has_attr("open") for d in details)
    assert details[0].find("dl").find("dt").get_text() == "city"
    assert details[1].find("ol", class_="crm-json-array").find("dt").get_text() == "a"
    # A top-level array of scalars is a list, of objects an ordered list of key/value lists.
    assert [li.get_text() for li in render(["x", 2], "json").select("ul.crm-json-list > li")] == [
        "x",
        "2",
    ]
    assert render([{"a": 1}], "json").select_one("ol > li > dl > div > dt").get_text() == "a"


def test_json_accepts_a_json_string_and_limits_depth() -> None:
    deep = '{"a": {"b": {"c": {"d": {"e": 1}}}}}'
    element = render(deep, "json")
    assert len(element.find_all("dl")) == 4
    assert len(element.find_all("details")) == 3  # every level but the top one
    assert element.find("span", class_="crm-json-more").get_text() == "…"
    shallow = outer(renderers.render(deep, {"type": "json"}, RenderOptions(json_max_depth=1)))
    assert len(shallow.find_all("dl")) == 1 and shallow.find("details") is None
    assert shallow.find("span", class_="crm-json-more").get_text() == "…"


def test_json_text_twin_is_compact() -> None:
    assert renderers.render_text('{"a": [1, 2], "b": "ü"}', {"type": "json"}) == (
        '{"a":[1,2],"b":"ü"}'
    )
    assert renderers.render_text("not json", {"type": "json"}) == '"not json"'


# --- render_text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_type", "value", "field", "text"),
    [
        ("text", "<b>x</b>", {}, "<b>x</b>"),
        ("textarea", "a\nb", {}, "a\nb"),
        ("email", "ann@example.com", {}, "ann@example.com"),
        ("phone", "(202) 555-0143", {}, "(202) 555-0143"),
        ("url", "https://example.com", {}, "https://example.com"),
        ("number", 1234.5, {}, "1,234.5"),
        ("date", "2024-03-05", {}, "Mar 5, 2024"),
        ("boolean", "true", {}, "Yes"),
        ("select", "b", {"options": OPTIONS}, "Bee"),
        ("color", "#ABC", {}, "#abc"),
        ("image", "/a.png", {}, "/a.png"),
        ("file", "/a.pdf", {}, "/a.pdf"),
        ("json", [1, {"a": None}], {}, '[1,{"a":null}]'),
        ("reference", "e1", {"target_entity": "deals"}, "e1"),
    ],
)
def test_render_text_is_the_plain_twin(
    field_type: str, value: Any, field: dict[str, Any], text: str
) -> None:
    assert renderers.render_text(value, {"type": field_type, **field}) == text


# --- registry and errors --------------------------------------------------------------------


def test_unknown_type_is_a_value_error_naming_the_known_types() -> None:
    with pytest.raises(UnknownFieldType, match=r"'bogus'.*known types: boolean, color") as info:
        renderers.render("x", {"type": "bogus"})
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownFieldType, match="None"):
        renderers.render_text("x", {"label": "no type"})


def test_registering_a_name_twice_fails_loudly(registry: renderers.RendererRegistry) -> None:
    with pytest.raises(DuplicateRenderer, match=r"'email'.*replace=True"):
        registry.register("email", renderers.TextRenderer())


def test_replace_overrides_a_builtin_and_none_falls_through(
    registry: renderers.RendererRegistry,
) -> None:
    def internal_only(value: Any, field: FieldInfo, options: RenderOptions) -> Markup | None:
        if not str(value).startswith("https://intranet."):
            return None
        return renderers.element("a", "intranet", href=value, class_="crm-field crm-url")

    registry.register("url", internal_only, replace=True)
    field = {"type": "url"}
    assert outer(registry.render("https://intranet.example/x", field)).get_text() == "intranet"
    assert outer(registry.render("https://example.com/", field))["rel"] == [
        "noopener",
        "noreferrer",
        "nofollow",
    ]
    assert registry.render_text("https://intranet.example/x", field) == (
        "https://intranet.example/x"
    )
    # The process-wide registry is untouched.
    assert outer(renderers.render("https://intranet.example/x", field)).get_text() != "intranet"


def test_an_application_can_add_a_type(registry: renderers.RendererRegistry) -> None:
    class RatingRenderer(renderers.FieldRenderer):
        name = "rating"

        def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
            stars = "★" * int(value)
            return renderers.element("span", stars, class_=f"crm-field crm-{field.type}")

        def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
            return f"{int(value)}/5"

    registry.register("rating", RatingRenderer())
    assert outer(registry.render(3, {"type": "rating"})).get_text() == "★★★"
    assert registry.render_text(3, {"type": "rating"}) == "3/5"
    assert "rating" not in renderers.registry


def test_a_renderer_that_always_falls_through_shows_escaped_text(
    registry: renderers.RendererRegistry,
) -> None:
    registry.register("note", lambda value, field, options: None)
    element = outer(registry.render("<b>x</b>", {"type": "note"}))
    assert element["class"] == ["crm-field", "crm-note"]
    assert element.get_text() == "<b>x</b>"
    assert registry.render_text("<b>x</b>", {"type": "note"}) == "<b>x</b>"


@pytest.mark.parametrize("name", ["Bad Name", 'x"y', "", "1abc", "crm-x"])
def test_type_names_must_be_css_safe(registry: renderers.RendererRegistry, name: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        registry.register(name, renderers.TextRenderer())


def test_registering_a_class_instead_of_an_instance_is_refused(
    registry: renderers.RendererRegistry,
) -> None:
    with pytest.raises(TypeError, match="instance of TextRenderer"):
        registry.register("plain", renderers.TextRenderer)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"locale": "xx_NOPE"}, "unknown locale 'xx_NOPE'"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"json_max_depth": 0}, "json_max_depth"),
        ({"image_max_size": 0}, "image_max_size"),
    ],
)
def test_render_options_are_checked_when_built(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RenderOptions(**options)


def test_renderers_import_no_jinja_flask_or_core() -> None:
    code = (
        "import sys, renderers; "
        "print(sorted(m for m in ('jinja2', 'flask', 'crm_templates') if m in sys.modules))"
    )
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo
    )
    assert result.stdout.strip() == "[]"
