"""Whole numbers typed into forms and query strings (versions, page numbers).

``str.isdigit()`` is true for characters ``int()`` refuses (``"²"``, ``"①"``) and ``int()``
refuses more than 4,300 digits (CPython's limit, ``sys.get_int_max_str_digits``): a check with
``isdigit()`` followed by ``int()`` answered 500 for ``version=²`` or a 5,000-digit page number
(attack review of issue 12). `parse_whole_number` is the one parser: ASCII digits only, at most
`MAX_DIGITS` of them.
"""

from __future__ import annotations

import re
from typing import Any

MAX_DIGITS = 18  # fits a signed 64-bit integer; no version or page number comes near it
_DIGITS = re.compile(f"[0-9]{{1,{MAX_DIGITS}}}", re.ASCII)


def parse_whole_number(raw: Any) -> int | None:
    """The whole number (>= 0) written in ``raw`` — a str of ASCII digits 0-9, surrounding
    whitespace allowed, at most `MAX_DIGITS` digits — or None for anything else (other
    characters, Unicode digits, signs, too many digits, a non-str)."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not _DIGITS.fullmatch(text):
        return None
    return int(text)
