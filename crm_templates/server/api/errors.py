"""The API's one error shape (issue 13, item 2): ``{"message": str, "errors": {field: [str]}}``.

Every answer under ``/api/crm/`` that is not a success has this body — the API's own refusals
(`ApiError`), the core's errors (`from_crm_error`), werkzeug's (404, 405, 413, malformed
bodies) and unexpected failures (500, logged, no details) — so a client parses one shape.
``errors`` maps a request field (a body key such as ``values.amount``, a query parameter, a
header such as ``If-Match``) to its problems; it is ``{}`` when the problem is the request as a
whole.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from flask import Response, current_app, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ...api_shapes import EntityHoldsData
from ...entity_admin import ConfirmationRequired, InvalidEdit
from ...errors import (
    ConflictError,
    CrmError,
    DuplicateError,
    StaleEntryError,
    StoreUnavailable,
)

log = logging.getLogger("crm_templates.api")

#: The message for each status when werkzeug's default text would be all there is.
MESSAGES = {
    400: "The request could not be understood.",
    401: "An API key is required: send it as 'Authorization: Bearer <key>'.",
    403: "The API key may not do this.",
    404: "There is nothing at this address.",
    405: "This address does not accept that method.",
    409: "The resource changed or holds data; see errors.",
    413: "The request body is too large.",
    415: "The API accepts JSON bodies only (Content-Type: application/json).",
    422: "A value was not accepted.",
    429: "Too many requests.",
    500: "Something went wrong on our side.",
    503: "The store is unavailable; try again shortly.",
}


class ApiError(Exception):
    """A refusal with a status, a message and per-field problems (the error shape)."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        errors: Mapping[str, Sequence[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or MESSAGES.get(status, "Error"))
        self.status = status
        self.message = message or MESSAGES.get(status, "Error")
        self.errors = {k: list(v) for k, v in (errors or {}).items()}
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The JSON response."""
        return error_response(self.status, self.message, self.errors, self.headers)


def error_response(
    status: int,
    message: str,
    errors: Mapping[str, Sequence[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A response with the error shape."""
    response = jsonify(message=message, errors={k: list(v) for k, v in (errors or {}).items()})
    response.status_code = status
    response.headers.update(dict(headers or {}))
    return response


def from_crm_error(exc: CrmError, field: str | None = None) -> ApiError:
    """The API error for a core error: 409 for version conflicts and confirmations, 503 for
    an unavailable store, else 422 (``field``, or an `InvalidEdit`'s input, names the field)."""
    message = str(exc)
    if isinstance(exc, StaleEntryError | ConflictError) and not isinstance(exc, DuplicateError):
        return ApiError(409, message, {field or "If-Match": [message]})
    if isinstance(exc, ConfirmationRequired | EntityHoldsData):
        return ApiError(409, message, {"confirm": [message]})
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, MESSAGES[503])
    if isinstance(exc, InvalidEdit) and exc.input:
        field = exc.input
    return ApiError(422, message, {field: [message]} if field else {})


def from_http_exception(exc: HTTPException) -> Response:
    """werkzeug's error (routing, body parsing, size) in the error shape."""
    status = exc.code or 500
    message = MESSAGES.get(status, exc.name)
    if exc.description and exc.description != type(exc).description:
        message = exc.description
    if status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if limit:
            message = f"The request body is larger than the {limit} bytes this server accepts."
    headers: dict[str, str] = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    return error_response(status, message, {}, headers)
