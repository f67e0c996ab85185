"""The reviewer and operator console: server-rendered pages under /console, over the same
services as the API (see web.py for sessions, CSRF and the security headers)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from warden.api.console import access, audit, auth, ml
from warden.api.console.web import HERE, PREFIX, ConsoleMiddleware


def install_console(app: FastAPI) -> None:
    """Mount the console's pages and static files, and its headers-and-channel middleware."""
    for module in (auth, access, audit, ml):
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_middleware(ConsoleMiddleware)


__all__ = ["PREFIX", "install_console"]
