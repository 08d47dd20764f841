"""Stored text on an operator's terminal (attack11).

Customers, entry titles and values are written by visitors; printed as they are by
``crm-templates customers`` or ``entries``, an ESC or CSI sequence in a name could retitle the
window, clear the screen, or (CR, bidi overrides) make a listing show something other than what
is stored. Commands that print stored text pass it through `for_terminal` (plain lines) or
`json_for_terminal` (JSON output): every control character (C0, DEL, C1), line/paragraph
separator and bidirectional formatting character is shown as an escape (``\\x1b``,
``\\u202e``), so the terminal interprets nothing. Plain ASCII and ordinary Unicode text
(accents, CJK, emoji) are unchanged.
"""

from __future__ import annotations

import re

# C0 controls (TAB and LF included: a listing is one line per record), DEL, C1 controls, the
# line and paragraph separators, and the bidirectional marks, embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")


def _python_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def for_terminal(text: str) -> str:
    """``text`` with every character a terminal would act on written as its escape."""
    return _UNSAFE.sub(_python_escape, text)


def json_for_terminal(text: str) -> str:
    """JSON ``text`` (from `json.dumps`) with those characters as ``\\uXXXX`` escapes: still
    the same JSON (they can only occur inside strings), and inert on a terminal. Indentation
    newlines are outside strings and kept."""
    return "\n".join(_UNSAFE.sub(_json_escape, line) for line in text.split("\n"))


__all__ = ["for_terminal", "json_for_terminal"]
