"""Request bodies for page backends (``page.data``): a form or a JSON object, bounded, and every
problem answered with a 4xx that says what to send instead (issue 8, item 10).

The size cap itself is enforced before any body is read: by waitress's
``max_request_body_size`` under ``crm-templates serve`` and by `security.check_request`
(``Content-Length`` over ``MAX_CONTENT_LENGTH`` → 413) under any WSGI server; werkzeug stops a
chunked body at the same cap while reading it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import abort, g, request

# Deep enough for any CRM value (entries hold objects in lists in objects); far below the
# depth at which json.loads, the CRM's validation or json.dumps would hit Python's recursion
# limit and answer 500.
MAX_JSON_DEPTH = 32
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# One pass, linear: a string (its closing quote optional, so an unterminated one is consumed
# once rather than rescanned from every later quote) or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)
_CACHE_KEY = "_crm_request_data"
_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (JSON): ``{}`` → 1, ``[[1]]`` → 2.

    Brackets inside strings do not count. Works on malformed text too (it only counts), so the
    depth can be checked before anything recursive parses it.
    """
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def read_json() -> Any:
    """The current request's body as JSON (any JSON value), or a 400 saying what is wrong.

    400 when the body is empty, not UTF-8, nested deeper than `MAX_JSON_DEPTH`, or not valid
    JSON (``NaN`` and ``Infinity`` included: they are Python's extension, not JSON; so are
    numbers too large for a float, like ``1e400``, and integers longer than Python converts,
    4300 digits); 413 when
    the body is over the app's ``MAX_CONTENT_LENGTH`` (raised by werkzeug while reading).
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        abort(400, 'The request body is empty; send a JSON object, like {"weight": 72.5}.')
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        abort(400, f"The JSON body is not UTF-8 text (invalid byte at position {exc.start}).")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        abort(
            400,
            f"The JSON body nests {depth} levels deep; this site accepts at most {MAX_JSON_DEPTH}.",
        )
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        abort(
            400,
            f"The request body is not valid JSON: {exc.msg} (line {exc.lineno}, "
            f"column {exc.colno}).",
        )
    except ValueError as exc:
        abort(400, f"The request body is not valid JSON: {exc}.")


def _has_body() -> bool:
    if request.content_length:
        return True
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def request_data() -> dict[str, Any]:
    """``page.data``: the request body as a dict, parsed once per request.

    - no body (a GET): ``{}``;
    - a form (``application/x-www-form-urlencoded`` or ``multipart/form-data``): its fields,
      first value of each, as strings (files are in ``request.files``);
    - JSON (``application/json`` or ``+json``): the object; any other JSON value → 400;
    - a body of any other type → 415, naming the types this site reads.
    """
    cached = g.get(_CACHE_KEY)
    if cached is not None:
        return dict(cached)
    data: dict[str, Any]
    if not _has_body():
        data = {}
    elif request.is_json:
        value = read_json()
        if not isinstance(value, dict):
            kind = "null" if value is None else _KINDS.get(type(value), type(value).__name__)
            abort(400, f'Send a JSON object, like {{"weight": 72.5}}; the body is {kind}.')
        data = value
    elif request.mimetype in FORM_TYPES:
        data = request.form.to_dict()
    else:
        abort(
            415,
            f"This page reads forms (application/x-www-form-urlencoded, multipart/form-data) "
            f"or JSON (application/json); the body is {request.mimetype or 'untyped'}.",
        )
    setattr(g, _CACHE_KEY, data)
    return dict(data)
