"""One error shape across the API: {"error": ClassName, "detail": message}.

Every error response also carries the headers HTTP asks for: `WWW-Authenticate` on 401,
`Allow` on 405 (Starlette names the methods), `Retry-After` on 429 (the edge sets it) and on
503. A database that cannot be reached (connection refused or lost, pool exhausted, SQLite's
write lock not free in time) is a 503 `Unavailable` with `Retry-After`, never a 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from warden.api.limits import SCOPE_REFUSAL
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


# What "the database is out" looks like from here; anything else from the database is a bug.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)
DEFAULT_RETRY_AFTER_S = 2


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) says the database cannot be reached now."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, DATABASE_UNAVAILABLE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_after(request: Request | None) -> str:
    state = getattr(getattr(request, "app", None), "state", None)
    settings = getattr(getattr(state, "warden", None), "settings", None)
    return str(getattr(settings, "unavailable_retry_after_s", DEFAULT_RETRY_AFTER_S))


def unavailable_response(request: Request | None, detail: str) -> JSONResponse:
    return error_response(503, "Unavailable", detail, {"Retry-After": retry_after(request)})


def error_response(
    status: int, error: str, detail: object, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=all_headers)


# Refusals of authority or state: each leaves an audit record (bad input, 4xx otherwise,
# changes nothing and is answered, not audited, unless the route audits it itself).
AUDITED_REFUSALS = (403, 409)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WardenError)
    async def _warden(request: Request, exc: WardenError) -> JSONResponse:
        if (exc.status_code in AUDITED_REFUSALS or exc.audit_refusal) and not exc.audited:
            # A route's refusal with no event of its own (a self-approval, an action without
            # the right, a conflicting state): the edge audits it like its own (folded floods).
            request.scope[SCOPE_REFUSAL] = (type(exc).__name__, exc.detail)
        headers = {"Retry-After": retry_after(request)} if exc.status_code == 503 else None
        return error_response(exc.status_code, type(exc).__name__, exc.detail, headers)

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return unavailable_response(request, "the database is unavailable; try again shortly")

    for kind in DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, _database)

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
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if database_unavailable(exc):  # raised outside the routes (middleware, the edge)
            return await _database(request, exc)
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
        table = [
            (compile_path(path)[0], path, frozenset(methods or ()))
            for path, methods in _paths(app.routes)
        ]
        app.state.warden_route_table = table
    return table  # type: ignore[no-any-return]


def _paths(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, set[str] | None]]:
    """(path, methods) of each route, an included router's under its prefix. Read off the
    routers: FastAPI's route contexts (`iter_route_contexts`) would first inspect every
    endpoint of every router, 0.1 s of CPU per app, where routing builds only the one it uses."""
    for route in routes:
        if (router := getattr(route, "original_router", None)) is not None:  # included
            yield from _paths(router.routes, prefix + route.include_context.prefix)
        elif isinstance(path := getattr(route, "path", None), str):
            yield prefix + path, getattr(route, "methods", None)
