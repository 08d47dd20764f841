"""Formatted scalars: number, date, datetime, boolean, color."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from markupsafe import Markup

from .field import FieldInfo
from .markup import classes, element, invalid
from .options import RenderOptions, babel_locale, zone
from .registry import FieldRenderer

# Beyond this many digits a "number" is a denial-of-service string, not a quantity.
_MAX_EXPONENT = 400


def to_decimal(value: Any) -> Decimal | None:
    """``value`` as a finite Decimal (numeric strings accepted), else None."""
    if isinstance(value, bool):
        return None  # bool is an int subclass, but True is not the number 1 here
    if isinstance(value, float):
        value = repr(value)  # the shortest round-trip form, not the binary expansion
    if not isinstance(value, (int, str, Decimal)):
        return None
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or abs(number.adjusted()) > _MAX_EXPONENT:
        return None
    return number


class NumberRenderer(FieldRenderer):
    """The locale's number format in ``<data value="raw">`` so scripts keep the raw value."""

    name = "number"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        number = to_decimal(value)
        if number is None:
            return invalid(field, value)
        shown = format_decimal(
            number, locale=babel_locale(options.locale), decimal_quantization=False
        )
        return element("data", shown, class_=classes(field), value=format(number, "f"))

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
        number = to_decimal(value)
        if number is None:
            return str(value)
        return format_decimal(
            number, locale=babel_locale(options.locale), decimal_quantization=False
        )


def to_temporal(value: Any) -> date | datetime | None:
    """A date or datetime from an object or an ISO 8601 string (``Z`` accepted), else None."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text[-1:] in {"Z", "z"}:
        text = text[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read "Z"
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class DateRenderer(FieldRenderer):
    """``<time datetime="YYYY-MM-DD">`` with the locale's medium date."""

    name = "date"

    def _parts(self, value: Any, options: RenderOptions) -> tuple[str, str] | None:
        moment = to_temporal(value)
        if moment is None:
            return None
        day = moment.date() if isinstance(moment, datetime) else moment
        return day.isoformat(), format_date(day, "medium", locale=babel_locale(options.locale))

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
    is shown as a date.
    """

    name = "datetime"

    def _parts(self, value: Any, options: RenderOptions) -> tuple[str, str] | None:
        moment = to_temporal(value)
        if not isinstance(moment, datetime):
            return super()._parts(value, options)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        shown = format_datetime(
            moment, "medium", tzinfo=zone(options.timezone), locale=babel_locale(options.locale)
        )
        return moment.isoformat(), shown


_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def to_bool(value: Any) -> bool | None:
    """True/False, "true"/"false" (any case) and 1/0; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
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


# fullmatch, not "$", so a trailing newline cannot slip into the style attribute.
_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")


def to_hex(value: Any) -> str | None:
    """``#rgb``/``#rrggbb`` in lower case, else None: the only text that reaches a style."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text.lower() if _HEX.fullmatch(text) else None


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
