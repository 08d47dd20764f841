"""The API's description (issue 13, item 5): ``GET /api/crm/openapi.json`` (OpenAPI 3.1, made
from the operations' own definitions — `spec.OPERATIONS`) and ``GET /api/crm/docs`` (a
reference page rendered by the vendored Swagger UI in ``static/swagger-ui/``; no CDN). Both are
public: they describe the API, they hold no data.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify, render_template_string, url_for

from . import bp
from . import schemas as s
from .spec import OPERATIONS, PREFIX, Operation

TITLE = "crm-templates CRM API"


def _error_response(status: int) -> dict[str, Any]:
    from .errors import MESSAGES

    return {
        "description": MESSAGES.get(status, "Error"),
        "content": {"application/json": {"schema": s.ref("Error")}},
    }


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in op.path_params
    ]
    params += [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in op.query.items()
    ]
    if op.if_match:
        params.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "description": 'The ETag (version) the change is based on, e.g. "3"; 409 '
                "when the resource changed since.",
                "schema": {"type": "string", "pattern": '^(\\*|(W/)?"?[0-9]{1,12}"?)$'},
            }
        )
    return params


def _operation(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "OK" if op.status == 200 else "Created"}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": op.response}}
    headers: dict[str, Any] = {}
    if op.etag:
        headers["ETag"] = {"description": "The version", "schema": {"type": "string"}}
    if op.paged:
        headers["Link"] = {
            "description": 'The next page (rel="next")',
            "schema": {"type": "string"},
        }
    if headers:
        success["headers"] = headers
    if op.links:
        # OpenAPI links: where the answer's id leads (schemathesis walks them statefully).
        success["links"] = {
            name: {"operationId": target, "parameters": params}
            for name, (target, params) in op.links.items()
        }
    responses: dict[str, Any] = {str(op.status): success}
    statuses = set(op.errors) | {500}
    if not op.public:
        statuses |= {401, 403, 429}
    if op.body is not None:
        statuses |= {400, 413, 415, 422}
    if op.query:
        statuses.add(422)
    if op.path_params:
        statuses.add(404)
    for status in sorted(statuses):
        responses[str(status)] = _error_response(status)
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _parameters(op),
        "responses": responses,
    }
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": op.body}},
        }
    if op.public:
        out["security"] = []
    return out


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every registered operation."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = _operation(op)
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("crm-templates")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout
        release = "0"
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": TITLE,
            "version": release,
            "description": "Entities, pipelines, stages, fields and entries of the CRM, in the "
            "seed platform's shape. Errors: {message, errors: {field: [..]}}.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"efAccessKey": []}],
        "paths": paths,
        "components": {
            "schemas": s.COMPONENTS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `crm-templates apikey create`.",
                },
                "efAccessKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "EF-Access-Key",
                    "description": "The same key under the platform's header name.",
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI document (public)."""
    cached = current_app.extensions.get("crm_api_openapi")
    if cached is None:
        cached = current_app.extensions["crm_api_openapi"] = openapi_document()
    return jsonify(cached)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{{ css }}">
</head>
<body>
<div id="swagger-ui" data-spec-url="{{ spec }}"></div>
<script src="{{ bundle }}"></script>
<script src="{{ init }}"></script>
</body>
</html>
"""


def docs_policy() -> str:
    """The page's Content-Security-Policy: the server's (`CRM_CONTENT_SECURITY_POLICY`, or the
    default) with ``data:`` images allowed — Swagger UI's stylesheet draws its icons as data
    URLs. Scripts and styles still come from this server only."""
    from ..security import DEFAULT_CSP

    policy = str(current_app.config.get("CRM_CONTENT_SECURITY_POLICY") or DEFAULT_CSP)
    parts = [p.strip() for p in policy.split(";") if p.strip()]
    images = [p for p in parts if p.split()[0] == "img-src"]
    if images:
        parts = [p + " data:" if p in images and "data:" not in p.split() else p for p in parts]
    else:
        parts.append("img-src 'self' data:")
    return "; ".join(parts)


@bp.get("/docs")
def api_docs() -> Response:
    """The rendered reference (public; scripts and styles from this server only)."""
    html = render_template_string(
        _PAGE,
        title=TITLE,
        css=url_for("crm_api.static", filename="swagger-ui/swagger-ui.css"),
        bundle=url_for("crm_api.static", filename="swagger-ui/swagger-ui-bundle.js"),
        init=url_for("crm_api.static", filename="swagger-ui/init.js"),
        spec=url_for("crm_api.openapi_json"),
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = docs_policy()
    return response
