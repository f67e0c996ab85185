"""One error shape across the API: {"error": ClassName, "detail": message}.

Every error response also carries the headers HTTP asks for: `WWW-Authenticate` on 401,
`Allow` on 405 (Starlette names the methods), `Retry-After` on 429 (the edge sets it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from warden.errors import WardenError

log = logging.getLogger("warden.api")

# RFC 9110 §11.6.1: a 401 names the scheme the client must use.
WWW_AUTHENTICATE = 'Bearer realm="warden"'
HTTP_ERROR_NAMES = {
    400: "BadRequest",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    422: "Unprocessable",
    429: "TooManyRequests",
    431: "HeadersTooLarge",
    500: "InternalError",
    503: "Unavailable",
}


def error_response(
    status: int, error: str, detail: object, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=all_headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WardenError)
    async def _warden(_: Request, exc: WardenError) -> JSONResponse:
        return error_response(exc.status_code, type(exc).__name__, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        return error_response(422, "ValidationError", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = HTTP_ERROR_NAMES.get(exc.status_code, "HTTPError")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path; list them all.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, name, exc.detail, headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "InternalError", "internal error; see the server log")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on this request's path."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for pattern, _, route_methods in route_table(request.app):
        if pattern.fullmatch(path):
            methods |= route_methods
    return sorted(methods)


def route_table(app: Any) -> list[tuple[re.Pattern[str], str, frozenset[str]]]:
    """(path pattern, template, methods) of every route, included routers' too; made once."""
    table = getattr(app.state, "warden_route_table", None)
    if table is None:
        table = []
        for route in iter_route_contexts(app.routes):
            path = getattr(route, "path", None)
            if isinstance(path, str):
                pattern = compile_path(path)[0]
                table.append((pattern, path, frozenset(route.methods or ())))
        app.state.warden_route_table = table
    return table  # type: ignore[no-any-return]
