"""What a valid value of each field type is, and its canonical (stored) form.

Every function takes a value as a template, form or page backend sends it and returns the
canonical form, or raises `InvalidValue` whose message says what the type accepts. None of them
raises anything else for any input (huge, deeply nested, non-finite, wrong type, odd Unicode):
issue 9, item 1. Canonical forms are fixed points — checking a canonical value again returns it
unchanged — which is what lets the renderers trust what the core stored (issue 9, item 3).
"""

from __future__ import annotations

import html
import json
import math
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

MAX_STRING = 10_000
"""Longest string value, in characters (SPEC §4, from the seed)."""

MAX_JSON_BYTES = 10 * 1024
"""Largest json value, in bytes of its compact, ASCII-escaped serialisation (SPEC §4)."""

MAX_JSON_TEXT = 100 * 1024
"""Longest JSON *text* parsed at all (room for pretty-printing a 10 KB value), in characters."""

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects in a json value (issue 9: 2,000 levels blew the stack)."""


class InvalidValue(ValueError):
    """A value is not valid for its type; the message says what the type accepts."""


def has_lone_surrogates(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate: not Unicode text, and UTF-8 (SQLite, JSON on
    the wire, nh3, a page sent to a browser) refuses it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text(value: str, *, limit: int = MAX_STRING) -> str:
    """``value`` if it is at most ``limit`` characters of valid Unicode (no lone surrogates).

    NUL, bidirectional marks and combining characters are text like any other: they are
    stored as given and escaped where shown.
    """
    if not isinstance(value, str):
        raise InvalidValue(f"text (not {type(value).__name__})")
    if len(value) > limit:
        raise InvalidValue(f"at most {limit:,} characters (got {len(value):,})")
    if has_lone_surrogates(value):
        raise InvalidValue("valid Unicode text (it contains a lone surrogate code point)")
    return value


# --- email ----------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _email(address: str) -> tuple[str | None, str]:
    # Imported here: email_validator costs ~35 ms to import and most pages never need it.
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(
            address,
            allow_smtputf8=True,  # internationalised local parts (RFC 6531)
            allow_empty_local=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            check_deliverability=False,  # no DNS on a page render or a write
            globally_deliverable=True,
            test_environment=False,
        )
    except EmailNotValidError as exc:
        return None, str(exc)
    return str(checked.normalized), ""


def email_address(value: str) -> str:
    """The normalised address (domain lower-cased and in Unicode form, local part kept).

    One definition for the core and the renderers: `email_validator` with the options above,
    internationalised local parts and domains included (``उदाहरण@उदाहरण.भारत``).
    """
    address = text(value).strip()
    normalised, reason = _email(address)
    if normalised is None:
        raise InvalidValue(f"an email address ({reason})")
    return normalised


# --- phone ----------------------------------------------------------------------------------

_PHONE = re.compile(r"(\+?[0-9 ().\-/]{2,40})(?:\s*(?:x|ext\.?|#)\s*([0-9]{1,8}))?", re.IGNORECASE)


def phone_number(value: str) -> str:
    """``value`` stripped, when it is digits with ``+ ( ) - . /`` and spaces (at least three
    digits) plus an optional extension (``x 12``, ``ext. 12``, ``# 12``). Stored as entered."""
    number = text(value).strip()
    if not _PHONE.fullmatch(number) or sum(c in "0123456789" for c in number) < 3:
        raise InvalidValue("a phone number such as '+1 415 555 0100'")
    return number


def phone_dial(value: str) -> str:
    """The dialable form of a valid phone number: ``+``, its digits and ``;ext=`` (RFC 3966).

    Used for ``tel:`` links when the number cannot be read as an E.164 number in the page's
    region (for example a national number shown in another country's locale).
    """
    match = _PHONE.fullmatch(phone_number(value))
    assert match is not None
    main, extension = match.groups()
    digits = re.sub(r"[^0-9]", "", main)
    dial = ("+" if main.startswith("+") else "") + digits
    return f"{dial};ext={extension}" if extension else dial


# --- URLs -----------------------------------------------------------------------------------

# Browsers drop leading/trailing C0 controls and spaces and every tab/CR/LF inside a URL
# before they look at the scheme, so "java\tscript:" is "javascript:" to them. The edges also
# lose any Unicode space (a pasted URL's trailing no-break space is not part of it).
_EDGE = (
    "".join(chr(c) for c in range(0x21))
    + "\x7f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    + "\u2028\u2029\u202f\u205f\u3000"
)  # C0 controls, space, DEL and every other character str.isspace() calls a space
_INNER_IGNORED = re.compile(r"[\t\n\r]")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


def _browser_clean(url: str) -> str:
    return _INNER_IGNORED.sub("", url.strip(_EDGE))


def _acceptable(url: str, allow_path: bool) -> bool:
    if _FORBIDDEN.search(url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port a browser would refuse
    except ValueError:
        return False
    if allow_path and url.startswith("/") and not url.startswith("//"):
        return ".." not in parts.path.split("/")
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def http_url(value: str, *, allow_path: bool = False, lenient: bool = False) -> str:
    """The URL to store and to write into ``href``/``src``: an absolute http(s) URL with a host
    (or, with ``allow_path``, a site path ``/…`` without ``..`` segments, never ``//host``).

    The URL is read as a browser reads it (leading/trailing controls and spaces removed) and
    checked again after decoding HTML entities, so ``&#106;avascript:`` fails as well. Spaces,
    controls and backslashes inside are refused. Tabs and line breaks inside are refused too,
    unless ``lenient`` (the renderers, for values that did not come through the core) removes
    them as browsers do.
    """
    url = text(value).strip(_EDGE)
    cleaned = _browser_clean(url)
    if cleaned != url and not lenient:
        raise InvalidValue("an absolute http(s) URL without tabs or line breaks")
    decoded = _browser_clean(html.unescape(cleaned))
    if not (_acceptable(cleaned, allow_path) and _acceptable(decoded, allow_path)):
        if allow_path:
            raise InvalidValue("an absolute http(s) URL or an uploaded file's path ('/…')")
        raise InvalidValue("an absolute http(s) URL")
    return cleaned


# --- numbers, booleans, colours -------------------------------------------------------------


def number(value: Any) -> float:
    """A finite float from an int, float, Decimal or numeric text (``-0`` becomes ``0``).

    Text is Python's float syntax without digit separators (``"1_000"`` is refused); values
    that overflow a double (``10**400``, ``"1e400"``) are refused, tiny ones round to 0.
    """
    if isinstance(value, bool):
        raise InvalidValue("a number (true/false is not one)")
    if isinstance(value, (int, float, Decimal)):
        try:
            result = float(value)
        except (OverflowError, ValueError):  # 10**400, Decimal('sNaN')
            raise InvalidValue("a finite number") from None
    elif isinstance(value, str):
        candidate = text(value).strip()
        if "_" in candidate:
            raise InvalidValue("a number or numeric text")
        try:
            result = float(candidate)
        except ValueError:
            raise InvalidValue("a number or numeric text") from None
    else:
        raise InvalidValue("a number")
    if not math.isfinite(result):
        raise InvalidValue("a finite number")
    return result + 0.0  # -0.0 + 0.0 is 0.0: a zero never shows as "-0"


def boolean(value: Any) -> bool:
    """True/False, ``1``/``0`` (ints) and ``"true"``/``"false"``/``"1"``/``"0"`` (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "1"):
            return True
        if word in ("false", "0"):
            return False
    raise InvalidValue("true/false, 'true'/'false' or 1/0")


# fullmatch, not "$", so a trailing newline cannot slip into a style attribute.
_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")


def hex_color(value: Any) -> str:
    """``#rgb``/``#rrggbb`` in lower case: the only colour text that reaches a style."""
    if isinstance(value, str):
        candidate = value.strip()
        if _HEX.fullmatch(candidate):
            return candidate.lower()
    raise InvalidValue("a hex colour '#rgb' or '#rrggbb'")


# --- dates and times ------------------------------------------------------------------------


def temporal(value: Any) -> date | datetime:
    """A ``date`` (for ``YYYY-MM-DD``-style text or a date object) or a ``datetime`` (naive ones
    taken as UTC) from an object or ISO 8601 text; ``Z`` is accepted for UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise InvalidValue("an ISO 8601 date or date-time")
    candidate = text(value).strip()
    if candidate[-1:] in ("Z", "z"):
        candidate = candidate[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read "Z"
    try:
        return date.fromisoformat(candidate)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        raise InvalidValue("an ISO 8601 date or date-time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def iso_date(value: Any) -> str:
    """``YYYY-MM-DD``; a date-time keeps the calendar date it was written with (scripts send
    ``new Date().toISOString()`` for date fields)."""
    try:
        moment = temporal(value)
    except InvalidValue:
        raise InvalidValue("an ISO 8601 date such as '2026-03-15'") from None
    day = moment.date() if isinstance(moment, datetime) else moment
    return day.isoformat()


def utc(value: Any) -> datetime:
    """The moment as an aware UTC ``datetime`` (a date is its midnight in UTC).

    Refused when the moment falls outside the years 1–9999 in UTC, as
    ``0001-01-01T00:00:00+01:00`` does (issue 9: it raised ``OverflowError``), and when a
    ``datetime`` object's ``tzinfo`` gives no valid offset (not a ``timedelta`` within ±24 h:
    ``TypeError``/``ValueError`` from Python). A ``tzinfo`` that gives ``None`` makes the
    moment naive, so it is taken as UTC like any naive value (``astimezone`` would take it
    as the server's local time).
    """
    try:
        moment = temporal(value)
    except InvalidValue:
        raise InvalidValue("an ISO 8601 date-time such as '2026-03-15T09:30:00Z'") from None
    if not isinstance(moment, datetime):
        return datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)
    try:
        if moment.utcoffset() is None:
            return moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)
    except (OverflowError, TypeError, ValueError):
        raise InvalidValue(
            "a date-time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z once in UTC"
        ) from None


def iso_datetime(value: Any) -> str:
    """The UTC ISO 8601 form ending in ``Z`` (``2026-03-15T09:30:00Z``), microseconds kept."""
    return utc(value).isoformat().replace("+00:00", "Z")


# --- json -----------------------------------------------------------------------------------


def parse_json_text(value: str) -> Any:
    """Parse a JSON document, refusing texts over `MAX_JSON_TEXT` characters or nested deeper
    than `MAX_JSON_DEPTH` (checked before any recursive code sees them)."""
    if len(value) > MAX_JSON_TEXT:
        raise InvalidValue(f"JSON text of at most {MAX_JSON_TEXT:,} characters")
    _check_text_depth(value)
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        raise InvalidValue("JSON text or a JSON-compatible value") from None


# A string runs to its closing quote or, in a broken document, to the end (so no string is
# scanned twice: linear time whatever the text); brackets outside strings are counted.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.?)*(?:"|\Z)|[\[\]{}]', re.DOTALL)


def _check_text_depth(document: str) -> None:
    depth = 0
    for token in _JSON_TOKENS.finditer(document):
        mark = token.group()
        if mark in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidValue(f"JSON nested at most {MAX_JSON_DEPTH} levels deep")
        elif mark in "]}":
            depth -= 1


_SCALARS = (str, int, float, bool, type(None))


def _check_tree(value: Any) -> None:
    """Walk a Python value without recursion: depth, size and Unicode checked before json's
    (recursive) encoder sees it. Cycles and huge containers stop at the depth or size bound."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_JSON_BYTES:  # every node costs at least one byte of JSON
            raise InvalidValue(f"a JSON value of at most {MAX_JSON_BYTES // 1024} KB")
        if isinstance(item, str):
            if len(item) > MAX_JSON_BYTES:
                raise InvalidValue(f"a JSON value of at most {MAX_JSON_BYTES // 1024} KB")
            if has_lone_surrogates(item):
                raise InvalidValue("valid Unicode text (a string contains a lone surrogate)")
        elif isinstance(item, (dict, list, tuple)):
            if depth >= MAX_JSON_DEPTH:
                raise InvalidValue(f"JSON nested at most {MAX_JSON_DEPTH} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, _SCALARS):
                        raise InvalidValue("JSON object keys that are strings")
                    stack.append((key, depth))  # a scalar: its depth is never read
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif not isinstance(item, _SCALARS):
            raise InvalidValue(
                f"a JSON-compatible value (objects, arrays, strings, finite numbers, "
                f"true/false/null; not {type(item).__name__})"
            )


def json_value(value: Any) -> Any:
    """A detached plain-JSON copy of ``value`` (JSON text is parsed first).

    At most `MAX_JSON_BYTES` serialised and `MAX_JSON_DEPTH` levels deep; numbers finite;
    object keys become strings (as JSON has them); tuples become lists.
    """
    if isinstance(value, str):
        value = parse_json_text(value)
    _check_tree(value)
    try:
        encoded = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        # NaN/Infinity, an int too long to print (sys.get_int_max_str_digits), float keys.
        raise InvalidValue("a JSON-compatible value (finite numbers, no objects)") from None
    size = len(encoded.encode())
    if size > MAX_JSON_BYTES:
        raise InvalidValue(
            f"a JSON value of at most {MAX_JSON_BYTES // 1024} KB (got {size:,} bytes)"
        )
    return json.loads(encoded)
