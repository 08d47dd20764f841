"""Per-type coercion (SPEC §4) and the rich-text policy shared with the renderers."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from crm_templates import CrmValidationError
from crm_templates import values as core_values
from crm_templates.model import Field, Option
from crm_templates.values import coerce
from renderers import sanitize as render_sanitize
from tests.xss_payloads import PAYLOADS

SELECT = Field("pick", "Pick", "select", options=(Option("a", "A"), Option("b", "B")))
MULTI = Field("tags", "Tags", "multiselect", options=(Option("x", "X"), Option("y", "Y")))


def f(ftype: str) -> Field:
    return Field(
        key="k", label="K", type=ftype, target_entity="t" if "reference" in ftype else None
    )


@pytest.mark.parametrize(
    ("field", "given", "stored"),
    [
        (f("text"), "hi", "hi"),
        (f("text"), 12, "12"),
        (f("textarea"), "a\nb", "a\nb"),
        (f("number"), "82.5", 82.5),
        (f("number"), " 7 ", 7.0),
        (f("number"), 3, 3.0),
        (f("number"), 0, 0.0),
        (f("boolean"), "TRUE", True),
        (f("boolean"), "false", False),
        (f("boolean"), 1, True),
        (f("boolean"), 0, False),
        (f("date"), "2026-03-15", "2026-03-15"),
        (f("date"), "2026-03-15T23:30:00.000Z", "2026-03-15"),
        (f("date"), date(2026, 3, 15), "2026-03-15"),
        (f("date"), datetime(2026, 3, 15, 8), "2026-03-15"),
        (f("datetime"), "2026-03-15T10:00:00.000Z", "2026-03-15T10:00:00Z"),
        (f("datetime"), "2026-03-15T12:00:00+02:00", "2026-03-15T10:00:00Z"),
        (f("datetime"), "2026-03-15", "2026-03-15T00:00:00Z"),
        (f("datetime"), datetime(2026, 3, 15, 10, tzinfo=timezone(timedelta(hours=1))), "2026-03-15T09:00:00Z"),
        (f("color"), "#ABC", "#abc"),
        (f("color"), "#a1b2c3", "#a1b2c3"),
        (f("email"), "Ann@Example.COM", "Ann@example.com"),
        (f("phone"), "+1 (415) 555-0100", "+1 (415) 555-0100"),
        (f("phone"), "030 1234567 ext. 12", "030 1234567 ext. 12"),
        (f("url"), "https://example.com/a?b=1", "https://example.com/a?b=1"),
        (f("image"), "/uploads/a.png", "/uploads/a.png"),
        (f("file"), "https://cdn.example.com/f.pdf", "https://cdn.example.com/f.pdf"),
        (f("json"), {"a": [1, 2]}, {"a": [1, 2]}),
        (f("json"), '{"a": 1}', {"a": 1}),
        (f("json"), "[]", []),
        (f("reference"), "abc", "abc"),
        (f("multi_reference"), "abc", ["abc"]),
        (f("multi_reference"), ["a", "b", "a"], ["a", "b"]),
        (SELECT, "b", "b"),
        (MULTI, ["y", "x", "y"], ["y", "x"]),
        (f("rich_text"), "<p onclick='x()'>hi <script>bad()</script></p>", "<p>hi </p>"),
        (f("wysiwyg"), '<a href="https://e.com">e</a>', '<a href="https://e.com" rel="noopener noreferrer nofollow">e</a>'),
        (f("text"), None, None),
    ],
)  # fmt: skip
def test_coercion(field: Field, given: Any, stored: Any) -> None:
    assert coerce(field, given) == stored


@pytest.mark.parametrize(
    ("field", "given"),
    [
        (f("number"), "1_000"),
        (f("number"), float("nan")),
        (f("number"), [1]),
        (f("boolean"), 2),
        (f("boolean"), "yes"),
        (f("date"), "2026-13-01"),
        (f("datetime"), 5),
        (f("color"), "#ggg"),
        (f("email"), "a@"),
        (f("phone"), "12"),
        (f("phone"), "<script>"),
        (f("url"), "ftp://example.com"),
        (f("url"), "https://"),
        (f("url"), "java\tscript:alert(1)"),
        (f("image"), "/a/../../etc/passwd"),
        (f("image"), "\\\\evil\\share"),
        (f("file"), "vbscript:msgbox"),
        (f("json"), object()),
        (SELECT, "A"),
        (MULTI, [1]),
        (f("reference"), ""),
        (f("multi_reference"), {"a": 1}),
        (f("text"), {"a": 1}),
        (f("rich_text"), 5),
    ],
)  # fmt: skip
def test_rejections_name_the_field(field: Field, given: Any) -> None:
    with pytest.raises(CrmValidationError, match=f"field {field.key!r}"):
        coerce(field, given)


def test_rich_text_policy_is_the_one_shared_with_renderers() -> None:
    # One policy object (fieldtypes.richtext) used by both layers, not two copies kept in step.
    for name in (
        "ALLOWED_TAGS",
        "ALLOWED_ATTRIBUTES",
        "URL_SCHEMES",
        "LINK_REL",
        "CLEAN_CONTENT_TAGS",
    ):
        assert getattr(core_values, name) is getattr(render_sanitize, name), name
    assert core_values.sanitize_rich_text is render_sanitize.sanitize_html


@pytest.mark.parametrize("payload", PAYLOADS[:200])
def test_rich_text_sanitised_identically_on_write_and_render(payload: str) -> None:
    assert core_values.sanitize_rich_text(payload) == render_sanitize.sanitize_html(payload)
