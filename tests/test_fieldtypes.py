"""`fieldtypes`, the one definition of a valid value per type (issue 9, item 3): canonical forms
are fixed points (so what the core stored passes the renderers' check unchanged), nothing but
`InvalidValue` escapes, and no check is slow on hostile text."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st

import fieldtypes
from fieldtypes.checks import _EDGE
from tests import value_strategies as vs

CHECKS: dict[str, Callable[[Any], Any]] = {
    "email": fieldtypes.email_address,
    "phone": fieldtypes.phone_number,
    "url": fieldtypes.http_url,
    "image": lambda v: fieldtypes.http_url(v, allow_path=True),
    "number": fieldtypes.number,
    "date": fieldtypes.iso_date,
    "datetime": fieldtypes.iso_datetime,
    "boolean": fieldtypes.boolean,
    "color": fieldtypes.hex_color,
    "json": fieldtypes.json_value,
    "text": fieldtypes.text,
}


@pytest.mark.parametrize("mode", vs.MODES)
def test_canonical_forms_are_fixed_points(mode: str) -> None:
    cases = st.sampled_from(sorted(CHECKS)).flatmap(
        lambda t: st.tuples(st.just(t), vs.ACCEPTED[t] | vs.HOSTILE)
    )

    def body(case: tuple[str, Any]) -> None:
        ftype, value = case
        check = CHECKS[ftype]
        try:
            canonical = check(value)
        except fieldtypes.InvalidValue as exc:
            assert str(exc)  # says what the type accepts
            return
        if ftype == "json" and isinstance(canonical, str):
            # A str given to a json field is JSON text, so a stored JSON *string* value is
            # written back as JSON text ('"abc"'), not as the bare str (docs: field types, Values).
            assert check(json.dumps(canonical)) == canonical
            return
        assert check(canonical) == canonical

    vs.run(mode, 400, cases, body)


def test_url_edges_cover_every_space() -> None:
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert spaces <= set(_EDGE)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (fieldtypes.phone_number, "12" + " " * 9_990 + "x"),
        (fieldtypes.phone_number, "1 " * 5_000),
        (fieldtypes.http_url, "a" + " " * 9_998 + "a"),
        (fieldtypes.http_url, "https://a.com/" + "&#92;" * 1_990),
        (fieldtypes.email_address, "a@" + "a." * 4_990),
        (fieldtypes.parse_json_text, '"' + '\\"' * 50_000),
        (fieldtypes.parse_json_text, '"' + '\\"' * 50_000 + "\\"),
        (fieldtypes.parse_json_text, "[" * 100_000),
        (fieldtypes.json_value, list(range(1_000_000))),
        (fieldtypes.iso_datetime, "2026-" + "1" * 9_990),
    ],
    ids=lambda v: getattr(v, "__name__", None) or f"{str(v)[:12]!r}x{len(v)}",
)
def test_hostile_text_is_refused_quickly(check: Callable[[Any], Any], value: Any) -> None:
    """Refused in linear time: within 10x a fixed amount of plain Python work timed around it in
    this process (a ratio, not seconds, so a loaded machine slows both alike). The slowest case,
    walking a 1,000,000-item list, takes about 3x; a quadratic scan would take thousands."""

    def baseline() -> float:
        started = time.perf_counter()
        sum(range(2_000_000))
        return time.perf_counter() - started

    before = baseline()
    started = time.perf_counter()
    with pytest.raises(fieldtypes.InvalidValue):
        check(value)
    elapsed = time.perf_counter() - started
    assert elapsed < 10 * max(before, baseline()), elapsed
