"""Per-type coercion and validation of field values (SPEC §4).

`coerce(field, value)` turns what a template or form sends into the stored JSON value, or raises
`CrmValidationError` with a message naming the field and what it accepts. Reference targets are
checked for existence by the service (it needs the store); everything else is checked here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import nh3

from .errors import CrmValidationError
from .model import Field

MAX_STRING = 10_000
MAX_JSON_BYTES = 10 * 1024
REFERENCE_TYPE_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
REFERENCE_ID_FORBIDDEN = set('{}[]"\\')
MAX_REFERENCE_ID = 512
_COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_PHONE_RE = re.compile(r"^\+?[0-9 ().\-/]{2,40}(?:\s*(?:x|ext\.?|#)\s*[0-9]{1,8})?$", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x20\x7f]")

# The rich-text allow-list, mirrored verbatim from renderers/sanitize.py: the two layers may not
# import each other (SPEC §2), rich text is sanitised on write here and again on render there,
# and tests/test_values.py fails if the two copies ever drift apart.
ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "div", "dl",
        "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
        "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "small", "span",
        "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u",
        "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "*": frozenset({"title"}),
    "a": frozenset({"href"}),
    "img": frozenset({"src", "alt", "width", "height"}),
    "ol": frozenset({"start"}),
    "td": frozenset({"colspan", "rowspan"}),
    "th": frozenset({"colspan", "rowspan", "scope"}),
}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"
CLEAN_CONTENT_TAGS: frozenset[str] = frozenset(
    {
        "script", "style", "iframe", "object", "embed", "applet", "svg", "math", "template",
        "noscript", "noembed", "noframes", "frameset", "frame", "xmp", "textarea", "select",
        "title",
    }
)  # fmt: skip


def sanitize_rich_text(html: str) -> str:
    """Sanitise rich text with the allow-list (links get a safe ``rel``)."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(CLEAN_CONTENT_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )


def _fail(f: Field, value: Any, expected: str) -> CrmValidationError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return CrmValidationError(f"field {f.key!r} ({f.type}) expects {expected}; got {shown}")


def _string(f: Field, value: Any, *, allow_numbers: bool = True) -> str:
    if isinstance(value, str):
        s = value
    elif allow_numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(f, value, "a finite number or text")
        s = str(value)
    else:
        raise _fail(f, value, "text")
    if len(s) > MAX_STRING:
        raise CrmValidationError(
            f"field {f.key!r} is {len(s):,} characters long; the limit is {MAX_STRING:,}"
        )
    return s


def _text(f: Field, value: Any) -> str:
    return _string(f, value)


def _rich_text(f: Field, value: Any) -> str:
    return sanitize_rich_text(_string(f, value, allow_numbers=False))


def _email(f: Field, value: Any) -> str:
    from email_validator import EmailNotValidError, validate_email

    s = _string(f, value, allow_numbers=False).strip()
    try:
        return str(validate_email(s, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise _fail(f, value, f"an email address ({exc})") from None


def _phone(f: Field, value: Any) -> str:
    s = _string(f, value).strip()
    if not _PHONE_RE.match(s) or sum(c.isdigit() for c in s) < 3:
        raise _fail(f, value, "a phone number such as '+1 415 555 0100'")
    return s


def is_safe_url(s: str, *, allow_path: bool) -> bool:
    """True for an absolute http(s) URL, or (when allowed) a site path like ``/uploads/a.png``."""
    if not s or _CONTROL_RE.search(s.strip()) or "\\" in s:
        return False
    if allow_path and s.startswith("/") and not s.startswith("//"):
        return ".." not in s.split("?")[0].split("/")
    try:
        parts = urlsplit(s)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _url(f: Field, value: Any) -> str:
    s = _string(f, value, allow_numbers=False).strip()
    if not is_safe_url(s, allow_path=False):
        raise _fail(f, value, "an absolute http(s) URL")
    return s


def _upload(f: Field, value: Any) -> str:
    s = _string(f, value, allow_numbers=False).strip()
    if not is_safe_url(s, allow_path=True):
        raise _fail(f, value, "an absolute http(s) URL or an uploaded file's path ('/…')")
    return s


def _number(f: Field, value: Any) -> float:
    if isinstance(value, bool):
        raise _fail(f, value, "a number")
    if isinstance(value, (int, float)):
        num = float(value)
    elif isinstance(value, str):
        try:
            num = float(value.strip().replace("_", "x"))  # reject Python's digit separators
        except ValueError:
            raise _fail(f, value, "a number or numeric text") from None
    else:
        raise _fail(f, value, "a number")
    if not math.isfinite(num):
        raise _fail(f, value, "a finite number")
    return num


def _parse_datetime(text: str) -> datetime:
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    return datetime.fromisoformat(t)


def _date(f: Field, value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    s = _string(f, value, allow_numbers=False)
    try:
        if len(s.strip()) == 10:
            return date.fromisoformat(s.strip()).isoformat()
        # Scripts send `new Date().toISOString()` for date fields: keep its calendar date.
        return _parse_datetime(s).date().isoformat()
    except ValueError:
        raise _fail(f, value, "an ISO 8601 date such as '2026-03-15'") from None


def _datetime(f: Field, value: Any) -> str:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        s = _string(f, value, allow_numbers=False)
        try:
            dt = _parse_datetime(s)
        except ValueError:
            raise _fail(f, value, "an ISO 8601 date-time such as '2026-03-15T09:30:00Z'") from None
    # Naive values are taken as UTC so every stored datetime is comparable.
    dt = dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
    return dt.isoformat().replace("+00:00", "Z")


def _boolean(f: Field, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise _fail(f, value, "true/false, 'true'/'false' or 1/0")


def _option_values(f: Field) -> list[str]:
    return [o.value for o in f.options]


def _select(f: Field, value: Any) -> str:
    allowed = _option_values(f)
    if not isinstance(value, str) or value not in allowed:
        raise _fail(f, value, f"one of {allowed!r}")
    return value


def _multiselect(f: Field, value: Any) -> list[str]:
    allowed = _option_values(f)
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise _fail(f, value, f"a list of values from {allowed!r}")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in allowed:
            raise _fail(f, item, f"values from {allowed!r}")
        if item not in out:
            out.append(item)
    return out


def _color(f: Field, value: Any) -> str:
    if not isinstance(value, str) or not _COLOR_RE.match(value.strip()):
        raise _fail(f, value, "a hex colour '#rgb' or '#rrggbb'")
    return value.strip().lower()


def _json(f: Field, value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _fail(f, value, "JSON text or a JSON-compatible value") from None
    try:
        encoded = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        raise _fail(f, value, "a JSON-compatible value (finite numbers, no objects)") from None
    if len(encoded.encode()) > MAX_JSON_BYTES:
        raise CrmValidationError(
            f"field {f.key!r} is {len(encoded.encode()):,} bytes as JSON; the limit is 10 KB"
        )
    return json.loads(encoded)  # a detached, plain-JSON copy


def _id(f: Field, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_REFERENCE_ID:
        raise _fail(f, value, f"an entry id of {f.target_entity!r}")
    return value


def _reference(f: Field, value: Any) -> str:
    return _id(f, value)


def _multi_reference(f: Field, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise _fail(f, value, f"a list of entry ids of {f.target_entity!r}")
    out: list[str] = []
    for item in items:
        ident = _id(f, item)
        if ident not in out:
            out.append(ident)
    return out


_COERCERS: dict[str, Callable[[Field, Any], Any]] = {
    "text": _text,
    "textarea": _text,
    "rich_text": _rich_text,
    "wysiwyg": _rich_text,
    "email": _email,
    "phone": _phone,
    "url": _url,
    "number": _number,
    "date": _date,
    "datetime": _datetime,
    "boolean": _boolean,
    "select": _select,
    "multiselect": _multiselect,
    "color": _color,
    "image": _upload,
    "file": _upload,
    "json": _json,
    "reference": _reference,
    "multi_reference": _multi_reference,
}


def coerce(f: Field, value: Any) -> Any:
    """The stored form of ``value`` for field ``f``; ``None`` clears the value."""
    if value is None:
        return None
    return _COERCERS[f.type](f, value)


def check_reference(reference_type: Any, reference_id: Any) -> None:
    """Validate a reference pair as the seed does (SPEC §4)."""
    if not isinstance(reference_type, str) or not REFERENCE_TYPE_RE.match(reference_type):
        raise CrmValidationError(
            f"referenceType must match ^[a-zA-Z0-9_-]+$ (e.g. 'customer'); got {reference_type!r}"
        )
    if not isinstance(reference_id, str) or not reference_id:
        raise CrmValidationError(f"referenceId must be a non-empty string; got {reference_id!r}")
    if len(reference_id) > MAX_REFERENCE_ID:
        raise CrmValidationError(
            f"referenceId is {len(reference_id)} characters; the limit is {MAX_REFERENCE_ID}"
        )
    if REFERENCE_ID_FORBIDDEN.intersection(reference_id):
        raise CrmValidationError(
            f'referenceId may not contain any of {{}}[]"\\ ; got {reference_id!r}'
        )


def check_plain_string(name: str, value: Any, *, required: bool = False) -> str | None:
    """Validate an optional free-text option (title, names) against the string cap."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise CrmValidationError(f"{name} must be a string; got {value!r}")
    if len(value) > MAX_STRING:
        raise CrmValidationError(
            f"{name} is {len(value):,} characters; the limit is {MAX_STRING:,}"
        )
    return value


def coerce_values(
    fields: Mapping[str, Field], values: Mapping[str, Any], entity: str
) -> dict[str, Any]:
    """Coerce a ``{key: value}`` mapping; undeclared keys are an error naming the declared ones."""
    from .errors import UnknownFieldError

    out: dict[str, Any] = {}
    for key, value in values.items():
        f = fields.get(key) if isinstance(key, str) else None
        if f is None:
            raise UnknownFieldError(
                f"entity {entity!r} declares no field {key!r}; declared keys: {sorted(fields)!r}"
            )
        out[key] = coerce(f, value)
    return out
