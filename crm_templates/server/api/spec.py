"""One definition per API operation: the route, its validation and its OpenAPI entry
(issue 13, item 5).

`operation` registers a view on the API blueprint together with the JSON Schemas (draft
2020-12, which is OpenAPI 3.1's schema language) of its query parameters, body and answer.
The same schemas validate every request (`jsonschema`, already a core dependency) and make
the OpenAPI document (`openapi_document`), so the document cannot drift from what the routes
accept; ``tests/test_api_openapi.py`` also checks that every Flask rule under ``/api/crm`` is in
the document with its methods, and nothing else is.

Validation failures answer 422 with ``errors`` keyed by the parameter or the body path
(``values.amount``, ``order``); a body that is not JSON answers 415, malformed JSON 400.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, request
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .encoding import dumps
from .errors import ApiError

PREFIX = "/api/crm"
_PATH_PARAM = re.compile(r"\{(\w+)\}")

View = Callable[..., Any]


@dataclass
class Operation:
    """One method on one path: what it takes, what it answers, and the view."""

    method: str
    path: str  # OpenAPI form, relative to PREFIX: "/entries/{entry_id}"
    summary: str
    tag: str
    view: View
    operation_id: str
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    if_match: bool = False
    etag: bool = False
    paged: bool = False
    public: bool = False
    links: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    body_validator: Any = None
    query_validators: dict[str, Any] = field(default_factory=dict)
    query_checks: dict[str, Callable[[Any], bool] | None] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        """The key scope the method needs (GET/HEAD read, everything else write)."""
        return "read" if self.method in ("GET", "HEAD") else "write"

    @property
    def path_params(self) -> list[str]:
        """The ``{name}`` parameters of the path."""
        return _PATH_PARAM.findall(self.path)


OPERATIONS: list[Operation] = []


def _flask_path(path: str) -> str:
    return _PATH_PARAM.sub(r"<\1>", path)


def _field_of(error: ValidationError, root: str) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = re.match(r"'([^']*)' is a required property", error.message)
        if missing:
            parts.append(missing.group(1))
    elif error.validator == "additionalProperties":
        extra = re.findall(r"'([^']*)'", error.message)
        if extra:
            parts.append(extra[0])
    return ".".join(parts) or root


def _schema_errors(validator: Any, instance: Any, root: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        message = error.message
        if len(message) > 300:
            message = message[:300] + "…"
        found.setdefault(_field_of(error, root), []).append(message)
    return found


def _query_value(raw: str, schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        text = raw.strip()
        if re.fullmatch(r"[+-]?\d{1,12}", text):
            return int(text)
        return raw
    if kind == "boolean":
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no", ""):
            return False
        return raw
    return raw


#: Schema keywords `quick_check` understands; a schema with any other keyword is left to
#: jsonschema alone.
_QUICK_KEYWORDS = frozenset({"type", "minimum", "maximum", "minLength", "maxLength", "default"})


def quick_check(schema: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    """A fast "is this value valid" test for the simple schemas query parameters have
    (``type`` integer, string or boolean with ``minimum``/``maximum``/``minLength``/
    ``maxLength``), or None for any other schema. It agrees with jsonschema on validity
    (booleans are not integers; lengths count code points); when it says invalid, jsonschema
    is asked for the messages, so the answers stay jsonschema's. Running jsonschema on a valid
    ``per_page`` cost ~15 µs of every listing (issue 13, item 7: B9)."""
    if not set(schema) <= _QUICK_KEYWORDS:
        return None
    kind = schema.get("type")
    low, high = schema.get("minimum"), schema.get("maximum")
    shortest, longest = schema.get("minLength"), schema.get("maxLength")
    if kind == "integer":

        def integer(value: Any) -> bool:
            return (
                isinstance(value, int)
                and not isinstance(value, bool)
                and (low is None or value >= low)
                and (high is None or value <= high)
            )

        return integer
    if kind == "string" and low is None and high is None:

        def string(value: Any) -> bool:
            return (
                isinstance(value, str)
                and (shortest is None or len(value) >= shortest)
                and (longest is None or len(value) <= longest)
            )

        return string
    if kind == "boolean" and low is high is shortest is longest is None:
        return lambda value: isinstance(value, bool)
    return None


def parse_query(op: Operation) -> dict[str, Any]:
    """The operation's query parameters, typed and validated (422 naming each bad one)."""
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    args = request.args
    for name, schema in op.query.items():
        if name not in args:
            continue
        raw = args.get(name, "")
        value = _query_value(raw, schema)
        check = op.query_checks.get(name)
        if check is not None and check(value):
            values[name] = value
            continue
        problems = _schema_errors(op.query_validators[name], value, name)
        if problems:
            errors[name] = [m for ms in problems.values() for m in ms]
        else:
            values[name] = value
    if errors:
        raise ApiError(422, "A query parameter was not accepted.", errors)
    return values


def parse_body(op: Operation) -> Any:
    """The JSON body, validated by the operation's schema: 415 for another content type,
    400 for malformed JSON, 422 naming each bad field."""
    data = request.get_data(cache=True)
    if not request.is_json:
        if not data:
            raise ApiError(
                415, "Send a JSON body with Content-Type: application/json.", {"body": ["missing"]}
            )
        raise ApiError(415, "The API accepts JSON bodies only (Content-Type: application/json).")
    try:
        body = request.get_json(force=True, silent=False, cache=True)
    except Exception as exc:  # werkzeug's BadRequest, or a RecursionError on deep nesting
        raise ApiError(400, "The body is not valid JSON.", {"body": [str(exc)[:200]]}) from None
    problems = _schema_errors(op.body_validator, body, "body")
    if problems:
        raise ApiError(422, "The body was not accepted.", problems)
    return body


def operation(
    bp: Blueprint,
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    query: Mapping[str, Mapping[str, Any]] | None = None,
    body: Mapping[str, Any] | None = None,
    response: Mapping[str, Any] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    if_match: bool = False,
    etag: bool = False,
    paged: bool = False,
    public: bool = False,
    links: Mapping[str, Any] | None = None,
) -> Callable[[View], View]:
    """Register the decorated view as ``method path`` on ``bp`` with its definition.

    The view is called with the path parameters as keyword arguments plus ``query`` (the
    validated parameters) and, when the operation has a body, ``body``. It returns a JSON-able
    value (answered with ``status``), or a ``(value, status)`` / ``(value, status, headers)``
    tuple, or a `Response`.
    """

    def register(view: View) -> View:
        op = Operation(
            method=method,
            path=path,
            summary=summary,
            tag=tag,
            view=view,
            operation_id=view.__name__,
            query={k: dict(v) for k, v in (query or {}).items()},
            body=dict(body) if body is not None else None,
            response=dict(response) if response is not None else None,
            status=status,
            errors=errors,
            if_match=if_match,
            etag=etag,
            paged=paged,
            public=public,
            links=dict(links or {}),
            description=(view.__doc__ or "").strip(),
        )
        if op.body is not None:
            op.body_validator = Draft202012Validator(op.body)
        op.query_validators = {k: Draft202012Validator(v) for k, v in op.query.items()}
        op.query_checks = {k: quick_check(v) for k, v in op.query.items()}

        @functools.wraps(view)
        def endpoint(**path_args: Any) -> Any:
            kwargs: dict[str, Any] = dict(path_args)
            kwargs["query"] = parse_query(op)
            if op.body is not None:
                kwargs["body"] = parse_body(op)
            result = view(**kwargs)
            if isinstance(result, Response):
                return result
            headers: dict[str, str] = {}
            code = op.status
            if isinstance(result, tuple):
                if len(result) == 3:
                    result, code, headers = result
                else:
                    result, code = result
            answer = Response(dumps(result), status=code, mimetype="application/json")
            answer.headers.update(headers)
            return answer

        bp.add_url_rule(
            _flask_path(path), endpoint=view.__name__, view_func=endpoint, methods=[method]
        )
        endpoint.api_operation = op  # type: ignore[attr-defined]
        OPERATIONS.append(op)
        return view

    return register


def operation_for(endpoint: str | None) -> Operation | None:
    """The operation behind a blueprint endpoint name (``crm_api.<view>``)."""
    if not endpoint:
        return None
    name = endpoint.rsplit(".", 1)[-1]
    return next((op for op in OPERATIONS if op.operation_id == name), None)
