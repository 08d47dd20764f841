"""Per-type coercion and validation of field values (SPEC §4).

`coerce(field, value)` turns what a template or form sends into the stored JSON value, or raises
`CrmValidationError` with a message naming the field and what it accepts. Whatever the value —
huge, deeply nested, non-finite, of the wrong type, odd Unicode — nothing but a `CrmError`
escapes (issue 9, item 1). What is valid for each type, and its stored form, is defined once in
`fieldtypes`, which the renderers use too, so every stored value renders normally (issue 9,
item 3). Reference targets are checked for existence by the service (it needs the store).
"""

from __future__ import annotations

import functools
import math
import re
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

import fieldtypes

from .errors import CrmValidationError
from .model import Field

MAX_STRING = fieldtypes.MAX_STRING
MAX_JSON_BYTES = fieldtypes.MAX_JSON_BYTES
REFERENCE_TYPE_RE = re.compile(r"^[a-zA-Z0-9_-]+\Z")  # not "$": it accepts a final "\n"
REFERENCE_ID_FORBIDDEN = set('{}[]"\\')
MAX_REFERENCE_ID = 512
# A multiselect or multi_reference value holds at most this many items (issue 9: a 50,000-id
# list took seconds to check).
MAX_LIST_ITEMS = 1_000

# The rich-text policy lives in `fieldtypes.richtext`, shared with the renderers (issue 9).
ALLOWED_TAGS = fieldtypes.ALLOWED_TAGS
ALLOWED_ATTRIBUTES = fieldtypes.ALLOWED_ATTRIBUTES
URL_SCHEMES = fieldtypes.URL_SCHEMES
LINK_REL = fieldtypes.LINK_REL
CLEAN_CONTENT_TAGS = fieldtypes.CLEAN_CONTENT_TAGS
sanitize_rich_text = fieldtypes.sanitize_html

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def shown(value: Any) -> str:
    """A short ``repr`` of user input for messages: never raises, whatever the value is (a
    3,000-deep list or a 5,000-digit int makes plain ``repr`` raise)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a hostile __repr__, or an int past sys.get_int_max_str_digits()
        return f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(f: Field, value: Any, expected: str) -> CrmValidationError:
    return CrmValidationError(f"field {f.key!r} ({f.type}) expects {expected}; got {shown(value)}")


def _check(f: Field, value: Any, check: Callable[[Any], Any]) -> Any:
    """Run a `fieldtypes` check, turning its `InvalidValue` into a validation error."""
    try:
        return check(value)
    except fieldtypes.InvalidValue as exc:
        raise _fail(f, value, str(exc)) from None


def _string(f: Field, value: Any, *, allow_numbers: bool = True) -> str:
    if isinstance(value, str):
        s = value
    elif allow_numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(f, value, "a finite number or text")
        try:
            s = str(value)
        except ValueError:  # an int past sys.get_int_max_str_digits()
            raise _fail(f, value, f"text of at most {MAX_STRING:,} characters") from None
    else:
        raise _fail(f, value, "text")
    if len(s) > MAX_STRING:
        raise CrmValidationError(
            f"field {f.key!r} is {len(s):,} characters long; the limit is {MAX_STRING:,}"
        )
    return _check(f, s, fieldtypes.text)


def _text(f: Field, value: Any) -> str:
    return _string(f, value)


def _rich_text(f: Field, value: Any) -> str:
    return sanitize_rich_text(_string(f, value, allow_numbers=False))


def _email(f: Field, value: Any) -> str:
    return _check(f, _string(f, value, allow_numbers=False), fieldtypes.email_address)


def _phone(f: Field, value: Any) -> str:
    return _check(f, _string(f, value), fieldtypes.phone_number)


def _url(f: Field, value: Any) -> str:
    return _check(f, _string(f, value, allow_numbers=False), fieldtypes.http_url)


def _upload(f: Field, value: Any) -> str:
    s = _string(f, value, allow_numbers=False)
    return _check(f, s, lambda v: fieldtypes.http_url(v, allow_path=True))


def _number(f: Field, value: Any) -> float:
    # The usual values answered without the generic check (issue 14, B2): what
    # `fieldtypes.number` returns for a finite float or a printable-size int.
    kind = type(value)
    if kind is float and value - value == 0.0:
        return value + 0.0  # -0.0 becomes 0.0, as fieldtypes.number does
    if kind is int and value.bit_length() <= 1000:
        return float(value)
    return float(_check(f, value, fieldtypes.number))


def _date(f: Field, value: Any) -> str:
    return str(_check(f, value, fieldtypes.iso_date))


def _datetime(f: Field, value: Any) -> str:
    # Naive values are taken as UTC so every stored datetime is comparable.
    return str(_check(f, value, fieldtypes.iso_datetime))


def _boolean(f: Field, value: Any) -> bool:
    return bool(_check(f, value, fieldtypes.boolean))


def _option_values(f: Field) -> list[str]:
    return [o.value for o in f.options]


def _select(f: Field, value: Any) -> str:
    allowed = _option_values(f)
    if not isinstance(value, str) or value not in allowed:
        raise _fail(f, value, f"one of {allowed!r}")
    return _check(f, value, fieldtypes.text)


def _multiselect(f: Field, value: Any) -> list[str]:
    allowed = _option_values(f)
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise _fail(f, value, f"a list of values from {allowed!r}")
    if len(value) > MAX_LIST_ITEMS:
        raise _fail(f, value, f"at most {MAX_LIST_ITEMS:,} values")
    allowed_set = set(allowed)
    out: dict[str, None] = {}  # ordered and de-duplicated in linear time
    for item in value:
        if not isinstance(item, str) or item not in allowed_set:
            raise _fail(f, item, f"values from {shown(allowed)}")
        if item not in out:
            out[_check(f, item, fieldtypes.text)] = None
    return list(out)


def _color(f: Field, value: Any) -> str:
    return str(_check(f, value, fieldtypes.hex_color))


def _json(f: Field, value: Any) -> Any:
    return _check(f, value, fieldtypes.json_value)


def _is_entry_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_REFERENCE_ID


def _id(f: Field, value: Any) -> str:
    if not _is_entry_id(value):
        raise _fail(f, value, f"an entry id of {f.target_entity!r}")
    return _check(f, value, fieldtypes.text)


def check_entry_id(value: Any) -> str:
    """An entry id given from outside (an import file's ``id`` column): a non-empty string of
    at most 512 characters of valid Unicode, as reference values hold them."""
    if not _is_entry_id(value):
        raise CrmValidationError(
            f"an entry id is text of 1 to {MAX_REFERENCE_ID} characters; got {shown(value)}"
        )
    return _plain("id", value)


def _reference(f: Field, value: Any) -> str:
    return _id(f, value)


def _multi_reference(f: Field, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise _fail(f, value, f"a list of entry ids of {f.target_entity!r}")
    if len(items) > MAX_LIST_ITEMS:
        raise _fail(f, value, f"at most {MAX_LIST_ITEMS:,} entry ids")
    out: dict[str, None] = {}  # ordered and de-duplicated in linear time
    for item in items:
        out.setdefault(_id(f, item))
    return list(out)


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
            "referenceType must match ^[a-zA-Z0-9_-]+$ (e.g. 'customer'); "
            f"got {shown(reference_type)}"
        )
    if not isinstance(reference_id, str) or not reference_id:
        raise CrmValidationError(
            f"referenceId must be a non-empty string; got {shown(reference_id)}"
        )
    if len(reference_id) > MAX_REFERENCE_ID:
        raise CrmValidationError(
            f"referenceId is {len(reference_id)} characters; the limit is {MAX_REFERENCE_ID}"
        )
    if REFERENCE_ID_FORBIDDEN.intersection(reference_id):
        raise CrmValidationError(
            f'referenceId may not contain any of {{}}[]"\\ ; got {reference_id!r}'
        )
    _plain("referenceId", reference_id)


# Most writes repeat the same (referenceType, referenceId): remember the pairs that passed
# (bounded). Invalid pairs raise, and lru_cache does not cache exceptions.
check_reference_cached = functools.lru_cache(maxsize=4096)(check_reference)


def check_plain_string(name: str, value: Any, *, required: bool = False) -> str | None:
    """Validate an optional free-text option (title, names) against the string cap."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise CrmValidationError(f"{name} must be a string; got {shown(value)}")
    if len(value) > MAX_STRING:
        raise CrmValidationError(
            f"{name} is {len(value):,} characters; the limit is {MAX_STRING:,}"
        )
    return _plain(name, value)


def _plain(name: str, value: str) -> str:
    try:
        return fieldtypes.text(value)
    except fieldtypes.InvalidValue as exc:
        raise CrmValidationError(f"{name} must be {exc}; got {shown(value)}") from None


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
                f"entity {entity!r} declares no field {shown(key)}; declared keys: "
                f"{sorted(fields)!r}"
            )
        out[key] = coerce(f, value)
    return out
