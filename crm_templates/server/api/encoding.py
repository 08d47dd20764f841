"""The API's JSON output (issue 13, item 7: B9): `orjson`, with the standard library for what
orjson cannot write.

Every successful API answer is compact UTF-8 JSON in the order the API builds its objects
(not sorted). Encoding a 100-entry page (~48 KB) with the standard library's ``json`` took
~0.4 ms of the ~2.3 ms request; orjson (a maintained Rust extension) takes ~0.05 ms and writes
bytes, which the response sends as they are (no ``str`` → UTF-8 round trip).

The output is the same JSON as ``json.dumps(value, ensure_ascii=False, separators=(",", ":"),
allow_nan=False)`` gave before, except where noted:

* Object keys that are not strings (``int``, ``float``, ``bool``, ``None``) become strings as
  the standard library writes them (``OPT_NON_STR_KEYS``); tuples are arrays.
* Text: the same characters, unescaped except the JSON-required ones (quotes, backslash,
  U+0000–U+001F); ``</script>``, U+2028/U+2029 and emoji pass as UTF-8.
* Numbers: the same values. A float may be written in another *form* of the same number
  (``1e-7`` where ``json`` wrote ``1e-07``; both read back as the same float).
* **Integers beyond 64 bits** (a ``json`` field may hold any integer the core accepts) and
  anything else orjson refuses (a lone surrogate, a type neither library knows) go to the
  standard library, exactly as before — which may itself refuse (500, logged, as before).
* **NaN and ±Infinity** — which the core never stores (`crm_templates.values` refuses them)
  but a store written around the core could hold — are written as ``null`` (as JavaScript's
  ``JSON.stringify`` does) instead of failing the whole answer with a 500.
* ``datetime``, ``date``, ``time`` and dataclass instances are *not* given orjson's own
  formatting (``OPT_PASSTHROUGH_*``): they go to the standard library, which refuses them,
  as before (the API's shapes never hold them).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = (
    orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_APPEND_NEWLINE
)


def stdlib_dumps(value: Any) -> bytes:
    """The API's JSON as the standard library writes it (what `dumps` falls back to); raises
    ``ValueError`` for NaN/Infinity and ``TypeError`` for what JSON cannot hold."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text + "\n").encode("utf-8")


def dumps(value: Any) -> bytes:
    """``value`` as the API answers it: compact UTF-8 JSON and a newline (see the module
    docstring for the rules). Raises what `stdlib_dumps` raises for a value neither can write."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return stdlib_dumps(value)


__all__ = ["dumps", "stdlib_dumps"]
