"""One definition of a valid value per field type, shared by the core and the renderers.

The core (`crm_templates.values`) coerces every written value with these functions and stores
their canonical result; `renderers` decides with the same functions whether a value gets its
type's normal markup (a ``mailto:``/``tel:`` link, a ``<time>``, a swatch …) or is shown as
``crm-invalid`` text. So every value the core accepts renders normally (issue 9, item 3).

SPEC §2 forbids `renderers` to import `crm_templates` and the core to import `renderers`; this
package sits below both and imports neither (nor Jinja, Flask or MarkupSafe) — only the standard
library, nh3 (rich text) and, lazily, email-validator. `tests/test_boundaries.py` checks that,
and that both layers really load it.

    >>> import fieldtypes
    >>> fieldtypes.email_address(" Ann@Example.COM ")
    'Ann@example.com'
    >>> fieldtypes.number("-0")
    0.0
"""

from __future__ import annotations

from .checks import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_JSON_TEXT,
    MAX_STRING,
    InvalidValue,
    boolean,
    email_address,
    has_lone_surrogates,
    hex_color,
    http_url,
    iso_date,
    iso_datetime,
    json_value,
    number,
    parse_json_text,
    phone_dial,
    phone_number,
    temporal,
    text,
    utc,
)
from .richtext import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    CLEAN_CONTENT_TAGS,
    LINK_REL,
    URL_SCHEMES,
    sanitize_html,
)

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "ALLOWED_TAGS",
    "CLEAN_CONTENT_TAGS",
    "LINK_REL",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_JSON_TEXT",
    "MAX_STRING",
    "URL_SCHEMES",
    "InvalidValue",
    "boolean",
    "email_address",
    "has_lone_surrogates",
    "hex_color",
    "http_url",
    "iso_date",
    "iso_datetime",
    "json_value",
    "number",
    "parse_json_text",
    "phone_dial",
    "phone_number",
    "sanitize_html",
    "temporal",
    "text",
    "utc",
]
