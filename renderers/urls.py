"""URL checks shared by every renderer that writes an href or src."""

from __future__ import annotations

import fieldtypes


def safe_url(value: object, *, allow_relative: bool = False) -> str | None:
    """The URL to write into an attribute, or None when it is not an http(s) URL.

    The check is `fieldtypes.http_url`, the one the core validates url/image/file values with,
    read leniently as a browser reads a URL (tabs and line breaks inside are dropped), so every
    URL the core stored is linked. ``allow_relative`` also accepts site paths (``/files/a.pdf``,
    no ``..`` segments) but never protocol-relative ``//host`` ones. The scheme is checked
    again after decoding HTML entities, so ``&#106;avascript:`` fails as well.
    """
    if not isinstance(value, str):
        return None
    try:
        return fieldtypes.http_url(value, allow_path=allow_relative, lenient=True)
    except fieldtypes.InvalidValue:
        return None
