"""URL checks shared by every renderer that writes an href or src."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

# Browsers drop leading/trailing C0 controls and spaces and every tab/CR/LF inside a URL
# before they look at the scheme, so "java\tscript:" is "javascript:" to them.
_EDGE = "".join(chr(c) for c in range(0x21)) + "\x7f"
_INNER_IGNORED = re.compile(r"[\t\n\r]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(value: str) -> str:
    return _INNER_IGNORED.sub("", value.strip(_EDGE))


def _is_acceptable(url: str, *, allow_relative: bool) -> bool:
    if _CONTROL.search(url) or "\\" in url:
        return False
    if allow_relative and url.startswith("/") and not url.startswith("//"):
        return True
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.netloc)


def safe_url(value: object, *, allow_relative: bool = False) -> str | None:
    """The URL to write into an attribute, or None when it is not an http(s) URL.

    ``allow_relative`` also accepts site-relative paths (``/files/a.pdf``) but never
    protocol-relative ``//host`` ones. The check runs on the URL as a browser would read
    it and again after decoding HTML entities, so ``&#106;avascript:`` fails as well.
    """
    if not isinstance(value, str):
        return None
    url = _clean(value)
    decoded = _clean(html.unescape(url))
    if _is_acceptable(url, allow_relative=allow_relative) and _is_acceptable(
        decoded, allow_relative=allow_relative
    ):
        return url
    return None
