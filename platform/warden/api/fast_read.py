"""The governed read's route without FastAPI's routing: `POST /v1/datasets/{name}/read` is
matched here, innermost of the app's own middleware, and handed straight to its endpoint.

The read route takes no dependencies and no validated parameters (it parses its own body), so
FastAPI's machinery (walking every router to match the path, two exit stacks, dependency
solving, the request handler's wrappers) only cost a small read CPU: about a seventh of the
event loop's time under load. Everything the route relied on stays: the middleware outside
this one (telemetry, the edge, the body caps) runs as before; the scope gets what routing
would have put there (`route`, `endpoint`, `path_params`, the telemetry's `http.route`); and an
error is answered by the app's own exception handlers, as the ExceptionMiddleware below
would have. Any other request goes on down the stack untouched.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.routing import APIRoute
from fastapi.telemetry._api import _route_selected
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette._utils import get_route_path
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from warden.api.errors import route_table
from warden.api.routes.gateway import read_dataset
from warden.api.routes.gateway import router as gateway_router

log = logging.getLogger("warden.api")

ROUTE: APIRoute = next(r for r in gateway_router.routes if isinstance(r, APIRoute))
PREFIX = "/v1/datasets/"


class FastRead:
    """Serves the read route directly; must sit right above Starlette's ExceptionMiddleware
    (whose handlers answer its errors), i.e. be the first middleware the app adds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.handlers: tuple[Any, Any] | None = None
        self.checked = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = ROUTE.path_regex.match(get_route_path(scope))
        if match is None or not self._serves(scope["app"]):
            await self.app(scope, receive, send)
            return
        name = ROUTE.param_convertors["name"].convert(match["name"])
        # What routing would have set: the edge reads `route`, telemetry the route's template.
        scope["route"] = ROUTE
        scope["endpoint"] = ROUTE.endpoint
        scope["path_params"] = {**scope.get("path_params", {}), "name": name}
        _route_selected(scope=scope, path=ROUTE.path_format)
        scope["starlette.exception_handlers"] = self.handlers
        request = Request(scope, receive, send)

        async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            response = await read_dataset(name, request)
            await response(scope, receive, send)

        await wrap_app_handling_exceptions(endpoint, request)(scope, receive, send)

    def _serves(self, app: Any) -> bool:
        """Whether this app's router would pick the read route for such a path (checked once):
        no other route that takes POST (or a mount) could match a path under the prefix."""
        if not self.checked:
            self.checked = True
            below = self.app
            clash = [
                template
                for _, template, methods in route_table(app)
                if template != ROUTE.path
                and (not methods or "POST" in methods)
                and _overlaps(template.split("{", 1)[0])
            ]
            if isinstance(below, ExceptionMiddleware) and ROUTE.path in _templates(app):
                if clash:
                    log.warning("the read's fast path is off: %s may match its paths", clash)
                else:
                    self.handlers = (below._exception_handlers, below._status_handlers)
        return self.handlers is not None


def _overlaps(literal: str) -> bool:
    """Whether paths starting with `literal` can also start with PREFIX (or the reverse)."""
    return literal.startswith(PREFIX) or PREFIX.startswith(literal)


def _templates(app: Any) -> set[str]:
    return {template for _, template, _ in route_table(app)}
