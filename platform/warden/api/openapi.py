"""The OpenAPI document says what the server does: one error shape for every refusal.

Routes declare their successful answers; this module adds, to every operation and in one
place, the errors the server can give it, each with the `{"error", "detail"}` body and the
headers HTTP asks for (`WWW-Authenticate` on 401, `Retry-After` on 429):

- every operation: 413 (body over the size cap), 429 (the edge's rate limit), 431 (headers over
  the cap), 500; and 422 where the operation takes parameters or a body;
- every `/v1` operation (all of them authenticate): 400, 401, 403, 404, 409 and 503 too.

FastAPI's own 422 schema (`HTTPValidationError`) is replaced by the one error shape, which is
what `api/errors.py` sends. A route that reads its raw body declares the model it parses with
`json_body(Model)`, so the document shows the body a client must send.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from warden.api.errors import WWW_AUTHENTICATE

ERROR_REF = "#/components/schemas/Error"
_BODY_MODELS: dict[str, type[BaseModel]] = {}

_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, invalid, expired or revoked token",
    403: "Refused by policy",
    404: "No such thing, or not one the caller may know of",
    409: "Conflicts with the current state",
    413: "Request body too large",
    422: "Request does not validate",
    429: "Too many refused requests from this source; retry after `Retry-After` seconds",
    431: "Request headers too large",
    500: "Internal error",
    503: "A store the request needs (audit log, policy) is unavailable; nothing was done",
}
EVERY_OPERATION = (413, 429, 431, 500)
WITH_INPUT = (422,)
AUTHENTICATED = (400, 401, 403, 404, 409, 503)

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "title": "Error",
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "The error's class, e.g. NotFound"},
            "detail": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
                ],
                "description": "A message, or one entry per invalid input (422)",
            },
        },
    },
    "Problem": {
        "title": "Problem",
        "type": "object",
        "required": ["loc", "msg"],
        "properties": {
            "loc": {"type": "array", "items": {"type": "string"}},
            "msg": {"type": "string"},
        },
    },
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "required": True,
            "description": f"Always `{WWW_AUTHENTICATE}`",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "required": True,
            "description": "Seconds until this source's window ends",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}


def json_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route that parses its raw body as `model`."""
    _BODY_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` return the document with every error declared (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            declare_errors(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def declare_errors(document: dict[str, Any]) -> None:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(_SCHEMAS)
    for model in _BODY_MODELS.values():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`wdn_…`) or a job token (`wjt_…`)",
    }
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            authenticated = path.startswith("/v1/")
            has_input = bool(operation.get("parameters") or operation.get("requestBody"))
            codes = list(EVERY_OPERATION)
            codes += list(WITH_INPUT) if has_input else []
            codes += list(AUTHENTICATED) if authenticated else []
            responses = operation.setdefault("responses", {})
            for code in sorted(codes):
                responses[str(code)] = _error_response(code)
            if authenticated:
                operation["security"] = [{"bearer": []}]
    # Nothing refers to FastAPI's validation shapes any more: the one error shape replaced them.
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _error_response(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
    if code in _HEADERS:
        response["headers"] = _HEADERS[code]
    return response
