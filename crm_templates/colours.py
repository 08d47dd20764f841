"""Entity and stage colours: any CSS colour a browser accepts, validated by a CSS parser.

Issue 9, item 7: an entity's or stage's ``color`` may be any CSS Color 4 value — a named colour
(``rebeccapurple``, ``transparent``), hex (``#rgb``, ``#rgba``, ``#rrggbb``, ``#rrggbbaa``),
``rgb()``/``rgba()``, ``hsl()``/``hsla()``, ``hwb()``, ``lab()``, ``lch()``, ``oklab()``,
``oklch()``, ``color(<space> …)`` — or ``currentcolor``. Parsing is tinycss2's CSS Color 4 parser
(`tinycss2.color4.parse_color`), not a pattern of our own. Refused: anything that is not exactly
one colour value (``red; background: url(…)``, ``red blue``), ``calc()`` and other functions,
system colours (``Canvas``), CSS comments and escapes, non-finite or absurd coordinates (beyond
±1,000,000), and strings over 100 characters.

Two forms:

* `check_colour` — the stored form: the author's text, stripped and lower-cased (``'#ABC'`` →
  ``'#abc'``, ``'HSL(120 50% 50%)'`` → ``'hsl(120 50% 50%)'``); raises `CrmValidationError`.
* `css_colour` — the form that may go into a ``style`` attribute: a hex code or colour name as
  written (lower-cased), any function form rebuilt from the parsed numbers (``rgb(…)``,
  ``hsl(…)``, ``color(display-p3 …)`` …), so it contains only letters, digits, spaces and
  ``#.%/()-``, whatever the stored text was; None for anything invalid. Renderers of stored
  colours (`crm_templates.extension.stage_badge`) call it at render time, so a colour written
  straight into the store (an old store, a migration, a hand edit) never reaches a ``style``
  attribute unless it parses.

The ``color`` *field type* is not this: its values stay hex codes (SPEC §4, the seed's "Hex
color code").
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

from .errors import CrmValidationError

MAX_LENGTH = 100
# Forms written into style attributes as they are (after parsing succeeded): hex and names.
_VERBATIM = re.compile(r"(?:#[0-9a-f]{3,8}|[a-z]{3,30})\Z")
_MAX_COORDINATE = 1_000_000.0
# tinycss2's space names -> the CSS function that writes them (others go into color()).
_FUNCTIONS = {
    "hsl": "hsl({} {}% {}%{})",
    "hwb": "hwb({} {}% {}%{})",
    "lab": "lab({} {} {}{})",
    "lch": "lch({} {} {}{})",
    "oklab": "oklab({} {} {}{})",
    "oklch": "oklch({} {} {}{})",
}
_EXAMPLES = "e.g. '#2563eb', 'rebeccapurple', 'rgb(37 99 235)', 'hsl(221 83% 53%)'"


def _number(x: float | None) -> str:
    """A CSS number with at most 6 decimals, never in exponent notation; ``none`` for None."""
    if x is None:
        return "none"
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _serialise(space: str, coordinates: tuple[float | None, ...], alpha: float) -> str:
    alpha_part = "" if alpha >= 1 else f" / {_number(alpha)}"
    if space == "srgb":
        channels = [None if c is None else c * 255 for c in coordinates]
        exact = all(c is not None and 0 <= c <= 255 and abs(c - round(c)) < 1e-6 for c in channels)
        if exact and not alpha_part:
            return "#" + "".join(f"{round(c):02x}" for c in channels if c is not None)
        return "rgb({} {} {}{})".format(*(_number(c) for c in channels), alpha_part)
    template = _FUNCTIONS.get(space)
    parts = [_number(c) for c in coordinates]
    if template is not None:
        return template.format(*parts, alpha_part)
    return f"color({space} {' '.join(parts)}{alpha_part})"


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> str | None:
    """The safe serialisation of one colour string, or None (cached: stage badges repeat)."""
    if len(text) > MAX_LENGTH or "/*" in text or "\\" in text:
        return None
    from tinycss2.color4 import parse_color

    try:
        parsed = parse_color(text)
    except Exception:  # a parser bug on hostile text must not escape as anything but "no"
        return None
    if parsed is None:
        return None
    if isinstance(parsed, str):  # the one keyword tinycss2 returns as text
        return "currentcolor" if parsed == "currentcolor" else None
    if _VERBATIM.match(text):  # a hex code or a colour name: safe as written
        return text
    coordinates = tuple(parsed.coordinates)
    numbers = [c for c in (*coordinates, parsed.alpha) if c is not None]
    if not all(math.isfinite(c) and abs(c) <= _MAX_COORDINATE for c in numbers):
        return None
    return _serialise(parsed.space, coordinates, parsed.alpha)


def css_colour(value: Any) -> str | None:
    """The colour as it may be written into a ``style`` attribute, or None if ``value`` is not
    a CSS colour (see the module docstring)."""
    if not isinstance(value, str):
        return None
    return _parse(value.strip().lower())


def check_colour(value: Any, where: str) -> str | None:
    """The stored form of an entity or stage colour (None stays None).

    Raises `CrmValidationError` naming ``where`` when ``value`` is not one CSS colour.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise CrmValidationError(f"{where} must be a CSS colour ({_EXAMPLES}); got {value!r}")
    text = value.strip().lower()
    if len(text) > MAX_LENGTH:
        raise CrmValidationError(
            f"{where} must be a CSS colour of at most {MAX_LENGTH} characters; got "
            f"{len(text)} characters"
        )
    if _parse(text) is None:
        raise CrmValidationError(
            f"{where} must be one CSS colour ({_EXAMPLES}; no comments, escapes or calc()); "
            f"got {value!r}"
        )
    return text


__all__ = ["MAX_LENGTH", "check_colour", "css_colour"]
