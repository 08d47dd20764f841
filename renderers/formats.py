"""Formatted scalars: number, date, datetime, boolean, color.

Whether a value is valid for its type is decided by `fieldtypes` — the same functions the core
validates writes with — so every value the core stored gets its type's markup (issue 9). A
moment Babel cannot show in the page's time zone (``0001-01-01T00:00:00Z`` west of UTC) is
shown as its ISO 8601 text instead of failing the page.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import Any

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from markupsafe import Markup

import fieldtypes

from .field import FieldInfo
from .markup import classes, element, invalid
from .options import RenderOptions, babel_locale, zone
from .registry import FieldRenderer


def to_decimal(value: Any) -> Decimal | None:
    """The number `fieldtypes.number` reads from ``value``, as a Decimal to format; else None.

    Ints stay exact; floats and numeric text become the float the core would store, written in
    its shortest round-trip form. A zero is always ``0``, never ``-0``.
    """
    try:
        as_float = fieldtypes.number(value)
    except fieldtypes.InvalidValue:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    else:
        number = Decimal(repr(as_float))
    return number if number else Decimal(0)


def format_number(number: Decimal, locale: str) -> str:
    """The locale's format of ``number``, every digit kept (no rounding to the pattern)."""
    with localcontext() as context:
        # Babel quantizes in the current context; its default 28 digits cannot hold 1e25 with
        # the pattern's 3 decimals (InvalidOperation). A double has at most ~330 digits.
        context.prec = 400
        return format_decimal(number, locale=babel_locale(locale), decimal_quantization=False)


class NumberRenderer(FieldRenderer):
    """The locale's number format in ``<data value="raw">`` so scripts keep the raw value."""

    name = "number"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        number = to_decimal(value)
        if number is None:
            return invalid(field, value)
        shown = format_number(number, options.locale)
        return element("data", shown, class_=classes(field), value=format(number, "f"))

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
        number = to_decimal(value)
        if number is None:
            return str(value)
        return format_number(number, options.locale)


def _shown(display: Callable[[], str], iso: str) -> str:
    """Babel's display, or the ISO text when the moment cannot be shown in the page's zone."""
    try:
        return display()
    except (OverflowError, ValueError):  # e.g. year 1 shifted west of UTC is year 0
        return iso


class DateRenderer(FieldRenderer):
    """``<time datetime="YYYY-MM-DD">`` with the locale's medium date."""

    name = "date"

    def _parts(self, value: Any, options: RenderOptions) -> tuple[str, str] | None:
        try:
            iso = fieldtypes.iso_date(value)
        except fieldtypes.InvalidValue:
            return None
        day = date.fromisoformat(iso)
        locale = babel_locale(options.locale)
        return iso, _shown(lambda: format_date(day, "medium", locale=locale), iso)

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        parts = self._parts(value, options)
        if parts is None:
            return invalid(field, value)
        iso, shown = parts
        return element("time", shown, class_=classes(field), datetime=iso)

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
        parts = self._parts(value, options)
        return str(value) if parts is None else parts[1]


class DatetimeRenderer(DateRenderer):
    """``<time datetime="ISO">`` shown as the medium date and time in ``options.timezone``.

    Naive values are taken as UTC, which is how the core stores them; a date-only value
    is shown as a date. A moment outside the years 1–9999 once in UTC is invalid (the core
    refuses it); one that leaves that range in the page's zone shows its ISO text.
    """

    name = "datetime"

    def _parts(self, value: Any, options: RenderOptions) -> tuple[str, str] | None:
        try:
            moment = fieldtypes.temporal(value)
            if not isinstance(moment, datetime):
                return super()._parts(value, options)
            fieldtypes.utc(moment)
        except fieldtypes.InvalidValue:
            return None
        iso = moment.isoformat()
        tz, locale = zone(options.timezone), babel_locale(options.locale)
        return iso, _shown(lambda: format_datetime(moment, "medium", tzinfo=tz, locale=locale), iso)


def to_bool(value: Any) -> bool | None:
    """`fieldtypes.boolean` (true/false, "true"/"false" in any case, 1/0), else None."""
    try:
        return fieldtypes.boolean(value)
    except fieldtypes.InvalidValue:
        return None


class BooleanRenderer(FieldRenderer):
    """A ✓/✗ mark whose accessible name is "Yes"/"No" (screen readers skip the glyph)."""

    name = "boolean"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        flag = to_bool(value)
        if flag is None:
            return invalid(field, value)
        word = "Yes" if flag else "No"
        return element(
            "span",
            "✓" if flag else "✗",
            class_=classes(field, f"crm-{word.lower()}"),
            role="img",
            aria_label=word,
            title=word,
        )

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
        flag = to_bool(value)
        return str(value) if flag is None else ("Yes" if flag else "No")


def to_hex(value: Any) -> str | None:
    """``#rgb``/``#rrggbb`` in lower case (`fieldtypes.hex_color`), else None: the only text
    that reaches a style."""
    try:
        return fieldtypes.hex_color(value)
    except fieldtypes.InvalidValue:
        return None


class ColorRenderer(FieldRenderer):
    """A swatch plus the hex code; anything but valid hex is text without a swatch."""

    name = "color"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        hex_code = to_hex(value)
        if hex_code is None:
            return invalid(field, value)
        swatch = element(
            "span", class_="crm-swatch", style=f"background-color:{hex_code}", aria_hidden="true"
        )
        return element("span", swatch + element("code", hex_code), class_=classes(field))

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
        return to_hex(value) or str(value)
