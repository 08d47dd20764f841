"""Tests written for mutants of the value and sanitising modules that survived their targeted
suites (issue 10, item 1): `crm_templates.values`, `fieldtypes.checks`, `fieldtypes.richtext`,
`renderers.sanitize` and `renderers.markup`.

Each test pins a documented rule — a value exactly at a limit and one past it, a type that must
be refused, an output that must be escaped — and names the mutant it was written to kill.
`tools/mutation.py` runs this file first for each of those modules. The tests call the
functions directly, so they are fast and say exactly which comparison or branch broke.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timedelta, tzinfo
from typing import Any

import pytest

import fieldtypes
from crm_templates import CrmValidationError, UnknownFieldError
from crm_templates import values as core_values
from crm_templates.model import Field, Option
from crm_templates.values import (
    MAX_REFERENCE_ID,
    check_plain_string,
    check_reference,
    coerce,
    coerce_values,
)
from renderers import FieldInfo, markup
from renderers.sanitize import html_to_text, sanitize_html


def _field(ftype: str, **extra: Any) -> Field:
    target = "deals" if "reference" in ftype else None
    return Field(key="k", label="K", type=ftype, target_entity=target, **extra)


MULTI = _field("multiselect", options=(Option("x", "X"), Option("y", "Y")))


# --- crm_templates.values: limits (SPEC §4) ----------------------------------------------------


def test_reference_ids_at_512_characters_and_one_past() -> None:
    """Kills `MAX_REFERENCE_ID = 512` -> 511/513: the documented limit, not the constant, is
    checked (the constant is asserted too, so a change to it is a visible decision)."""
    assert MAX_REFERENCE_ID == 512
    at, past = "r" * 512, "r" * 513
    check_reference("customer", at)
    with pytest.raises(CrmValidationError, match="referenceId is 513 characters"):
        check_reference("customer", past)
    for ftype, stored in (("reference", at), ("multi_reference", [at])):
        assert coerce(_field(ftype), at) == stored
        with pytest.raises(CrmValidationError, match="field 'k'"):
            coerce(_field(ftype), past)


@pytest.mark.parametrize("required", [False, True])
def test_plain_strings_at_10000_characters_and_one_past(required: bool) -> None:
    """Kills `len(value) > MAX_STRING` negated in check_plain_string (titles, names)."""
    at = "t" * 10_000
    assert check_plain_string("title", at, required=required) == at
    with pytest.raises(CrmValidationError, match="title is 10,001 characters"):
        check_plain_string("title", at + "t", required=required)


def test_plain_string_none_is_only_allowed_when_not_required() -> None:
    """Kills `required=False` -> True as the default, and `value is None and not required`
    -> `or` (which returned None for every optional string, dropping titles)."""
    assert check_plain_string("title", None) is None
    assert check_plain_string("title", "Q3 plan") == "Q3 plan"
    assert check_plain_string("first_name", "Ann", required=False) == "Ann"
    with pytest.raises(CrmValidationError, match="title must be a string; got None"):
        check_plain_string("title", None, required=True)
    with pytest.raises(CrmValidationError, match="title must be a string; got 5"):
        check_plain_string("title", 5)
    with pytest.raises(CrmValidationError, match="lone surrogate"):
        check_plain_string("title", "a\ud800")


# --- crm_templates.values: check_reference (SPEC §4, the seed's rules) --------------------------


@pytest.mark.parametrize("reference_type", ["customer", "deal_2", "A-b"])
@pytest.mark.parametrize("reference_id", ["c1", "x" * 40, "émile", "a b"])
def test_valid_reference_pairs_pass(reference_type: str, reference_id: str) -> None:
    """The valid baseline for the refusals below: kills the negations on line 217 (`not not
    isinstance`, `or REFERENCE_TYPE_RE.match`), 222 (`or reference_id`) and 230 (`not
    intersection`), each of which refuses every valid pair."""
    assert check_reference(reference_type, reference_id) is None


@pytest.mark.parametrize(
    ("reference_type", "reference_id", "message"),
    [
        (5, "c1", "referenceType must match"),
        (None, "c1", "referenceType must match"),
        ("cust omer", "c1", "referenceType must match"),
        ("customer\n", "c1", "referenceType must match"),
        ("", "c1", "referenceType must match"),
        ("customer", 5, "referenceId must be a non-empty string; got 5"),
        ("customer", None, "referenceId must be a non-empty string"),
        ("customer", ["c1"], "referenceId must be a non-empty string"),
        ("customer", "", "referenceId must be a non-empty string"),
        ("customer", "a{b", "referenceId may not contain"),
        ("customer", 'a"b', "referenceId may not contain"),
        ("customer", "a\\b", "referenceId may not contain"),
        ("customer", "[1]", "referenceId may not contain"),
        ("customer", "a\udc00", "lone surrogate"),
    ],
)
def test_invalid_reference_pairs_are_refused(
    reference_type: Any, reference_id: Any, message: str
) -> None:
    """Kills deleting `not` before `isinstance(reference_id, str)` (an int id then raised
    TypeError from len()) and the negations above in the other direction."""
    with pytest.raises(CrmValidationError, match=message):
        check_reference(reference_type, reference_id)


# --- crm_templates.values: coercion by type ------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"), [(1.5, "1.5"), (-0.25, "-0.25"), (7, "7"), (10**20, str(10**20))]
)
def test_text_fields_take_finite_numbers_as_text(given: Any, stored: str) -> None:
    """Kills `isinstance(value, float) and not isfinite` -> `or`: every finite float given to
    a text field was refused."""
    assert coerce(_field("text"), given) == stored
    assert coerce(_field("phone"), 4155550100) == "4155550100"


def test_an_int_too_long_to_print_is_refused_as_too_long() -> None:
    """Kills `except ValueError` replaced in _string: str() of an int past
    sys.get_int_max_str_digits() raises ValueError, which must become a validation error."""
    for ftype in ("text", "phone"):
        with pytest.raises(CrmValidationError, match="text of at most 10,000 characters"):
            coerce(_field(ftype), 10**5_000)


@pytest.mark.parametrize("given", [float("inf"), float("-inf"), float("nan"), True])
def test_text_fields_refuse_non_finite_numbers_and_booleans(given: Any) -> None:
    with pytest.raises(CrmValidationError, match="field 'k'"):
        coerce(_field("text"), given)


@pytest.mark.parametrize("ftype", ["email", "url", "image", "file", "rich_text", "wysiwyg"])
@pytest.mark.parametrize("given", [12, 1.5])
def test_number_given_to_an_address_type_is_refused_as_not_text(ftype: str, given: Any) -> None:
    """Kills `allow_numbers=False` -> True for url (line 103) and image/file (line 107): a
    number must be refused because it is not text, not turned into "12" and then judged as a
    malformed URL (the message must say what the type accepts)."""
    with pytest.raises(CrmValidationError, match=rf"field 'k' \({ftype}\) expects text; got "):
        coerce(_field(ftype), given)


@pytest.mark.parametrize("given", [{"x": 1}, 5, 1.5, b"x", "x", None.__class__])
def test_multiselect_refuses_what_is_not_a_list(given: Any) -> None:
    """Kills `isinstance(value, str) or not isinstance(value, (list, …))` -> `and`: a dict
    was then taken as the list of its keys, and an int raised TypeError from len()."""
    with pytest.raises(CrmValidationError, match=r"field 'k' \(multiselect\) expects a list"):
        coerce(MULTI, given)
    assert coerce(MULTI, ("y", "x")) == ["y", "x"]
    assert coerce(MULTI, frozenset({"x"})) == ["x"]


@pytest.mark.parametrize("items", [["x", "z"], ["X"], [1], [["x"]], [{"x": 1}], [None]])
def test_multiselect_refuses_items_that_are_not_option_values(items: list[Any]) -> None:
    """Kills `not isinstance(item, str) or item not in allowed_set` -> `and`: a string that
    is no option's value ("z", or the label "X") was stored, and an unhashable item raised
    TypeError from the set lookup."""
    with pytest.raises(CrmValidationError, match=r"field 'k' \(multiselect\) expects values"):
        coerce(MULTI, items)


def test_multiselect_and_multi_reference_at_1000_items_and_one_past() -> None:
    assert coerce(MULTI, ["x"] * 1_000) == ["x"]
    with pytest.raises(CrmValidationError, match="at most 1,000 values"):
        coerce(MULTI, ["x"] * 1_001)
    ids = [f"e{i}" for i in range(1_000)]
    assert coerce(_field("multi_reference"), ids) == ids
    with pytest.raises(CrmValidationError, match="at most 1,000 entry ids"):
        coerce(_field("multi_reference"), [*ids, "e1000"])


def test_coerce_values_coerces_declared_keys_and_names_undeclared_ones() -> None:
    """Kills `if f is None` negated: a declared key was refused as undeclared."""
    fields = {"k": _field("number"), "t": _field("text")}
    assert coerce_values(fields, {"k": "2", "t": 3}, "deals") == {"k": 2.0, "t": "3"}
    with pytest.raises(UnknownFieldError, match=r"no field 'x'; declared keys: \['k', 't'\]"):
        coerce_values(fields, {"k": 1, "x": 1}, "deals")
    with pytest.raises(UnknownFieldError, match="no field 5"):
        coerce_values(fields, {5: 1}, "deals")


# --- crm_templates.values.shown: messages quote at most 80 characters ---------------------------


def test_shown_keeps_80_characters_and_shortens_81() -> None:
    """Kills `len(text) <= 80` -> `<`: a repr of exactly 80 characters is shown whole."""
    eighty = "'" + "a" * 78 + "'"
    assert core_values.shown("a" * 78) == eighty
    longer = core_values.shown({"a" * 50: 1, "b" * 50: 2})  # reprlib gives 116 characters
    assert longer == "{'" + "a" * 50 + "': 1, '" + "b" * 18 + "..."
    assert core_values.shown(10**6000) == "<int>"


# --- fieldtypes.checks: limits -----------------------------------------------------------------


def test_json_value_at_10_kb_and_one_byte_past() -> None:
    """Kills `MAX_JSON_BYTES = 10 * 1024` -> 9/11 * 1024 (and 10 * 1023/1025): 10,240 bytes
    of compact JSON is kept, 10,241 refused, through the core as well."""
    at = ["a" * 10_236]  # '["' + 10,236 + '"]' = 10,240 bytes
    assert len(json.dumps(at, separators=(",", ":"))) == 10_240
    assert fieldtypes.json_value(at) == at
    assert coerce(_field("json"), at) == at
    past = ["a" * 10_237]
    with pytest.raises(fieldtypes.InvalidValue, match="at most 10 KB"):
        fieldtypes.json_value(past)
    with pytest.raises(CrmValidationError, match="at most 10 KB"):
        coerce(_field("json"), past)


@pytest.mark.parametrize(
    "value",
    [{"a": "b" * 10_241}, [0] * 20_000, {str(i): None for i in range(6_000)}],
    ids=["long-string", "many-items", "many-keys"],
)
def test_json_size_messages_name_10_kb(value: Any) -> None:
    """Kills `MAX_JSON_BYTES // 1024` -> `// 1025` (9 KB) in the messages of the bounds
    checked before encoding: a string longer than 10,240 characters, more than 10,240 nodes."""
    with pytest.raises(fieldtypes.InvalidValue, match=r"^a JSON value of at most 10 KB$"):
        fieldtypes.json_value(value)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (fieldtypes.phone_number, "12" + " " * 9_990 + "x"),
        (fieldtypes.phone_number, "1 " * 5_000),
        (fieldtypes.http_url, "a" + " " * 9_998 + "a"),
        (fieldtypes.http_url, "https://a.com/" + "&#92;" * 1_990),
        (fieldtypes.email_address, "a@" + "a." * 4_990),
        (fieldtypes.parse_json_text, '"' + '\\"' * 50_000),
        (fieldtypes.parse_json_text, "[" * 100_000),
        (fieldtypes.parse_json_text, "[" + " " * 102_400 + "]"),
        (fieldtypes.json_value, list(range(1_000_000))),
        (fieldtypes.iso_datetime, "2026-" + "1" * 9_990),
    ],
    ids=lambda v: getattr(v, "__name__", None) or f"{str(v)[:12]!r}x{len(v)}",
)
def test_hostile_values_are_refused(check: Any, value: Any) -> None:
    """tests/test_fieldtypes.py's hostile values without its clock (which a loaded machine
    fails, so `tools/mutation.py` leaves that test out): each is refused as invalid."""
    with pytest.raises(fieldtypes.InvalidValue):
        check(value)


@pytest.mark.parametrize(
    "value",
    [float("nan"), [float("inf")], {"a": -float("inf")}, '{"a": NaN}', "[Infinity]", "-Infinity"],
)
def test_json_numbers_must_be_finite(value: Any) -> None:
    """Kills `allow_nan=False` -> True: NaN and infinities, given as Python floats or as
    JavaScript's JSON extensions, were stored (and "NaN" is not JSON to any other reader)."""
    with pytest.raises(fieldtypes.InvalidValue, match="finite numbers"):
        fieldtypes.json_value(value)
    with pytest.raises(CrmValidationError, match=r"field 'k' \(json\)"):
        coerce(_field("json"), value)


def _nested_list(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_json_values_nested_64_deep_and_one_past() -> None:
    """Kills `depth + 1` -> `+ 2`/`+ 0` for list children: 64 levels of lists are kept."""
    assert fieldtypes.MAX_JSON_DEPTH == 64
    assert fieldtypes.json_value(_nested_list(64)) == _nested_list(64)
    with pytest.raises(fieldtypes.InvalidValue, match="nested at most 64 levels"):
        fieldtypes.json_value(_nested_list(65))
    nested: Any = 0
    for _ in range(64):
        nested = {"k": nested}
    assert fieldtypes.json_value(nested) == nested
    with pytest.raises(fieldtypes.InvalidValue, match="nested at most 64 levels"):
        fieldtypes.json_value({"k": nested})


def test_json_text_nested_64_deep_and_one_past() -> None:
    """Kills `depth = 0` -> 1/-1 in the text scan: JSON *text* is checked before parsing at
    the same 64 levels (brackets inside strings do not count)."""
    at = "[" * 64 + "]" * 64
    assert fieldtypes.parse_json_text(at) == _nested_list(64)
    with pytest.raises(fieldtypes.InvalidValue, match="nested at most 64 levels"):
        fieldtypes.parse_json_text("[" + at + "]")
    assert fieldtypes.parse_json_text('["[[[[' + "[" * 70 + '"]') == ["[" * 74]


@pytest.mark.parametrize(
    ("document", "parsed"),
    [
        (json.dumps(["a"] * 100), ["a"] * 100),
        ("[" + "[]," * 100 + "{}]", [[]] * 100 + [{}]),
        ('{"k": ' + "[" * 63 + "]" * 63 + ', "j": 1}', {"k": _nested_list(63), "j": 1}),
    ],
    ids=["100-strings", "100-siblings", "deep-then-sibling"],
)
def test_json_text_depth_counts_open_brackets_only(document: str, parsed: Any) -> None:
    """Kills `mark in "[{"` negated (strings and closing brackets counted as depth) and
    `depth -= 1` -> `-= 0` (siblings added up): a wide document is not a deep one."""
    assert fieldtypes.parse_json_text(document) == parsed


def test_json_text_depth_goes_back_one_level_per_closing_bracket() -> None:
    """Kills `depth -= 1` -> `-= 2`: a closed sibling must not buy a deeper nesting after it."""
    deep = "[" * 64 + "]" * 64
    with pytest.raises(fieldtypes.InvalidValue, match="nested at most 64 levels"):
        fieldtypes.parse_json_text("[[]," + deep + "]")
    with pytest.raises(fieldtypes.InvalidValue, match="nested at most 64 levels"):
        fieldtypes.parse_json_text('[{"a": []},' + deep + "]")


# --- fieldtypes.checks: email, phone, URL, dates ----------------------------------------------


@pytest.mark.parametrize("address", ["@example.com", " @example.com", '""@example.com'])
def test_an_address_with_an_empty_local_part_is_refused(address: str) -> None:
    """Kills `allow_empty_local=False` -> True."""
    with pytest.raises(fieldtypes.InvalidValue, match="an email address"):
        fieldtypes.email_address(address)


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ('"a b"@example.com', "allow_quoted_local=False"),
        ("a@[192.0.2.1]", "allow_domain_literal=False"),
        ("Ann <ann@example.com>", "allow_display_name=False"),
        ("a@intranet", "globally_deliverable=True: a domain needs a dot"),
        ("a@1.2.3.4", "globally_deliverable=True"),
        ("a@example.test", "test_environment=False"),
        ("a@example.local", "special-use domain"),
    ],
)
def test_addresses_outside_the_documented_options_are_refused(address: str, rule: str) -> None:
    """Kills each email_validator option of `_email` flipped (quoted local parts, domain
    literals, display names, undeliverable and test domains refused)."""
    with pytest.raises(fieldtypes.InvalidValue, match="an email address"):
        fieldtypes.email_address(address)


def test_internationalised_addresses_are_accepted() -> None:
    """Kills `allow_smtputf8=True` -> False: the docstring's own example (RFC 6531)."""
    assert fieldtypes.email_address("उदाहरण@उदाहरण.भारत") == "उदाहरण@उदाहरण.भारत"
    assert fieldtypes.email_address("josé@Example.COM") == "josé@example.com"


@pytest.mark.parametrize(("number", "valid"), [("123", True), ("1-2-3", True), ("12", False)])
def test_a_phone_number_needs_at_least_three_digits(number: str, valid: bool) -> None:
    """Kills `< 3` -> `< 2`/`< 4` in phone_number's digit count."""
    if valid:
        assert fieldtypes.phone_number(number) == number
    else:
        with pytest.raises(fieldtypes.InvalidValue, match="a phone number"):
            fieldtypes.phone_number(number)


@pytest.mark.parametrize("url", ['"https://a.example/"', "!https://a.example/"])
def test_only_controls_and_spaces_are_stripped_from_url_edges(url: str) -> None:
    """Kills `range(0x21)` -> `range(0x22)`: browsers strip C0 controls and the space (up to
    0x20) from an href, not a quote, so '"https://…"' is not an absolute URL."""
    with pytest.raises(fieldtypes.InvalidValue, match="absolute"):
        fieldtypes.http_url(url)
    assert fieldtypes.http_url("\x00\x1f https://a.example/ ") == "https://a.example/"


def test_json_text_at_100_kb_and_one_character_past() -> None:
    """Kills `MAX_JSON_TEXT = 100 * 1024` -> 99/101 * 1024 (or 100 * 1023/1025): JSON text of
    102,400 characters (pretty-printed room for a 10 KB value) is parsed, one more is not."""
    at = "[" + " " * 102_398 + "]"
    assert fieldtypes.parse_json_text(at) == []
    with pytest.raises(fieldtypes.InvalidValue, match="at most 102,400 characters"):
        fieldtypes.parse_json_text(at + " ")


@pytest.mark.parametrize(
    ("number", "dial"),
    [
        ("+1 (415) 555-0100", "+14155550100"),
        ("030 1234567 ext. 12", "0301234567;ext=12"),
        ("+44 20 7946 0958 x 7", "+442079460958;ext=7"),
        ("555.0100 #3", "5550100;ext=3"),
    ],
)
def test_phone_dial_is_plus_digits_and_extension(number: str, dial: str) -> None:
    """Kills `assert match is not None` -> `is None` (every valid number then failed)."""
    assert fieldtypes.phone_dial(number) == dial


@pytest.mark.parametrize(
    "url", ["https://a.example:99999/", "http://a.example:-1/", "https://a.example:x/"]
)
def test_a_url_with_a_port_browsers_refuse_is_refused(url: str) -> None:
    """Kills `return False` -> True when urlsplit's port check raises ValueError."""
    with pytest.raises(fieldtypes.InvalidValue):
        fieldtypes.http_url(url)
    assert fieldtypes.http_url("https://a.example:65535/") == "https://a.example:65535/"


def test_http_url_takes_site_paths_and_inner_tabs_only_when_asked() -> None:
    """Kills `allow_path=False` -> True and `lenient=False` -> True as defaults: a url field
    holds an absolute URL, and a tab or line break inside is refused unless lenient."""
    with pytest.raises(fieldtypes.InvalidValue, match=r"^an absolute http\(s\) URL$"):
        fieldtypes.http_url("/uploads/a.png")
    assert fieldtypes.http_url("/uploads/a.png", allow_path=True) == "/uploads/a.png"
    with pytest.raises(fieldtypes.InvalidValue, match="without tabs or line breaks"):
        fieldtypes.http_url("https://exa\tmple.com/\n")
    assert fieldtypes.http_url("https://exa\tmple.com/\n", lenient=True) == "https://example.com/"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-03-15T10:00:00z", "2026-03-15T10:00:00Z"),
        ("2026-03-15T10:00:00Z", "2026-03-15T10:00:00Z"),
        ("2026-03-15z", "2026-03-15T00:00:00Z"),
        ("2026-03-15Z", "2026-03-15T00:00:00Z"),
        (" 2026-03-15T23:30z ", "2026-03-15T23:30:00Z"),
    ],
)
def test_a_final_z_in_either_case_means_utc(given: str, stored: str) -> None:
    """Kills `candidate[-1:]` -> `[1:]`/`[~1:]`: Python's fromisoformat reads neither a
    lower-case "z" nor a "Z" after a bare date, so the check must look at the last character."""
    assert fieldtypes.iso_datetime(given) == stored
    assert fieldtypes.iso_date(given) == stored[:10]


class _Offset(tzinfo):
    """A tzinfo answering whatever offset it is given (a template or script may pass any)."""

    def __init__(self, offset: Any) -> None:
        self.offset = offset

    def utcoffset(self, dt: datetime | None) -> Any:
        return self.offset

    def dst(self, dt: datetime | None) -> None:
        return None


@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01T00:00:00+01:00",  # OverflowError: before year 1 once in UTC
        "9999-12-31T23:59:59-00:01",
        datetime(2026, 3, 15, 10, tzinfo=_Offset(timedelta(hours=30))),  # ValueError
        datetime(2026, 3, 15, 10, tzinfo=_Offset(5)),  # TypeError: not a timedelta
    ],
    ids=["year-0", "year-10000", "offset-30h", "offset-int"],
)
def test_a_datetime_that_has_no_utc_form_is_refused(moment: Any) -> None:
    """Kills each exception of utc's `except (OverflowError, TypeError, ValueError)` being
    replaced. Product fix: a tzinfo whose utcoffset() is not a timedelta made Python raise
    TypeError, which escaped `fieldtypes` and `coerce` (issue 9: only InvalidValue /
    CrmValidationError may)."""
    with pytest.raises(fieldtypes.InvalidValue, match="once in UTC"):
        fieldtypes.iso_datetime(moment)
    with pytest.raises(CrmValidationError, match=r"field 'k' \(datetime\)"):
        coerce(_field("datetime"), moment)


def test_a_datetime_whose_tzinfo_gives_no_offset_is_taken_as_utc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Product fix: such a moment is naive (Python's rule), and naive values are UTC, but
    astimezone() took it as the server's local time. Run in a zone west of UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        naive = datetime(2026, 3, 15, 10)
        odd = datetime(2026, 3, 15, 10, tzinfo=_Offset(None))
        assert fieldtypes.iso_datetime(naive) == "2026-03-15T10:00:00Z"
        assert fieldtypes.iso_datetime(odd) == "2026-03-15T10:00:00Z"
        assert coerce(_field("datetime"), odd) == "2026-03-15T10:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


# --- fieldtypes.richtext / renderers.sanitize -----------------------------------------------


@pytest.mark.parametrize(
    ("html", "clean"),
    [
        ("<p>a<!-- secret note --></p>", "<p>a</p>"),
        ("<!--[if IE]><script>x()</script><![endif]-->b", "b"),
        ("<p>--&gt; <!----> c</p>", "<p>--&gt;  c</p>"),
    ],
)
def test_rich_text_drops_html_comments(html: str, clean: str) -> None:
    """Kills `strip_comments=True` -> False: a comment (conditional comments included) is
    not part of the shown text and never reaches a page, on write or on render."""
    assert sanitize_html(html) == clean
    assert coerce(_field("rich_text"), html) == clean


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p>two", "One\ntwo"),
        ("<b>bold</b>tail", "boldtail"),
        ("a<em>b</em>c<div>d</div>e", "abc\nd\ne"),
        ("<ul><li>x</li><li>y</li></ul>z", "x\ny\nz"),
    ],
)
def test_html_to_text_breaks_lines_at_block_ends_only(html: str, text: str) -> None:
    """Kills `tag in _BLOCK_TAGS` negated in handle_endtag: the end of an inline element
    must not start a new line, the end of a block must."""
    assert html_to_text(html) == text


# --- renderers.markup: the one place HTML is assembled ----------------------------------------


def test_element_writes_true_bare_and_drops_none_and_false_anywhere() -> None:
    """Kills `continue` -> `break` (attributes after a dropped one were lost) and `value is
    True` -> `is False` (a True attribute was written as `open="True"`)."""
    assert str(markup.element("details", "x", open=True)) == "<details open>x</details>"
    assert (
        str(markup.element("a", "x", hidden=None, download=False, title="<t>", class_="c"))
        == '<a title="&lt;t&gt;" class="c">x</a>'
    )
    assert str(markup.element("img", "ignored", alt="a&b")) == '<img alt="a&amp;b">'


def test_shown_escapes_lone_surrogates_and_keeps_valid_text() -> None:
    """Kills `has_lone_surrogates(text)` negated: a lone surrogate cannot be sent as UTF-8."""
    assert markup.shown("a\ud800b") == "a\\ud800b"
    assert markup.shown("é\u202e😀") == "é\u202e😀"
    shown = str(markup.invalid(FieldInfo(type="text"), "x\udfff"))
    assert shown.encode("utf-8") == b'<span class="crm-field crm-text crm-invalid">x\\udfff</span>'


class _StrRaises:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __str__(self) -> str:
        raise self.error


def _deep_list() -> list[Any]:
    value: list[Any] = []
    for _ in range(100_000):
        value = [value]
    return value


class _StrNotText:
    def __str__(self) -> Any:
        return 5


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (_deep_list(), "<list>"),  # str() raises RecursionError
        (10**5_000, "<int>"),  # past sys.get_int_max_str_digits(): ValueError
        (_StrNotText(), "<_StrNotText>"),  # __str__ returned non-string: TypeError
        (_StrRaises(OverflowError("x")), "<_StrRaises>"),
        (_StrRaises(RecursionError()), "<_StrRaises>"),
        (_StrRaises(ValueError()), "<_StrRaises>"),
        (_StrRaises(TypeError()), "<_StrRaises>"),
    ],
    ids=["deep-list", "huge-int", "str-not-text", "overflow", "recursion", "value", "type"],
)
def test_shown_never_raises_for_values_built_in_a_template(value: Any, text: str) -> None:
    """Kills each exception of `except (RecursionError, ValueError, OverflowError,
    TypeError)` being replaced: every one is what `str()` of a template value can raise."""
    assert markup.shown(value) == text
    assert f">{text.replace('<', '&lt;').replace('>', '&gt;')}</span>" in str(
        markup.invalid(FieldInfo(type="json"), value)
    )


# --- crm_templates.values: the number fast path (issue 14, B2) -------------------------------


@pytest.mark.parametrize(
    ("given", "stored"), [(2.5, 2.5), (-0.0, 0.0), (0.0, 0.0), (7, 7.0), (2**900, float(2**900))]
)
def test_number_fast_path_stores_what_the_generic_check_stores(given: Any, stored: float) -> None:
    """Kills mutants of `values._number`'s fast path (`value + 0.0`, its guards): a finite
    float or a printable-size int is stored as `fieldtypes.number` stores it, -0.0 as 0.0."""
    got = coerce(_field("number"), given)
    assert type(got) is float and got == stored
    assert math.copysign(1.0, got) == math.copysign(1.0, fieldtypes.number(given))
    assert got == fieldtypes.number(given)
