"""ETags and ``If-Match`` (issue 13, item 4): an entry's (or entity's) version is its ETag.

GET and PUT answers carry ``ETag: "<version>"``. A PUT, DELETE or stage move with
``If-Match: "<version>"`` is refused with 409 when the stored version differs (nothing is
changed); without ``If-Match`` the write applies to whatever is stored (last write wins).
``If-Match: *`` matches any existing resource. A malformed header answers 400.
"""

from __future__ import annotations

import re

from flask import request

from .errors import ApiError

_VERSION = re.compile(r'^\s*(?:W/)?"?(\d{1,12})"?\s*$')


def etag(version: int) -> dict[str, str]:
    """The ``ETag`` header of a resource at ``version``."""
    return {"ETag": f'"{version}"'}


def if_match() -> int | None:
    """The version ``If-Match`` asks for; None when absent or ``*``."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    found = _VERSION.match(raw)
    if found is None:
        message = f'If-Match must be one ETag as answered by GET (e.g. "3"), or *; got {raw[:60]!r}'
        raise ApiError(400, message, {"If-Match": [message]})
    return int(found.group(1))


def check_version(current: int, wanted: int | None, what: str) -> None:
    """409 when ``wanted`` (from If-Match) is not ``current``."""
    if wanted is not None and wanted != current:
        message = (
            f"{what} was changed by someone else (If-Match version {wanted}, now {current}); "
            "GET it again and retry"
        )
        raise ApiError(409, message, {"If-Match": [message]})
