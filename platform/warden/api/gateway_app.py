"""The gateway-only app `warden worker` serves on its sandboxes' sockets: the governed read
path alone. A module of its own so the worker does not import the console and every other
route (about 0.45 s of start-up)."""

from __future__ import annotations

from fastapi import FastAPI

from warden import __version__
from warden.api.errors import install_error_handlers
from warden.api.fast_read import FastRead
from warden.api.routes.gateway import router as gateway_router
from warden.api.telemetry import HTTP_TELEMETRY, TraceContext
from warden.audit.telemetry import setup_telemetry
from warden.core.platform import Platform


def create_gateway_app(platform: Platform) -> FastAPI:
    """Only the governed read path, with the API's error shape and telemetry."""
    setup_telemetry()  # the worker's reads are exported like the API's
    app = FastAPI(
        title="Warden gateway",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        telemetry=HTTP_TELEMETRY,
    )
    app.state.warden = platform
    install_error_handlers(app)
    app.include_router(gateway_router)
    app.add_middleware(FastRead)  # the read route without FastAPI's routing (api/fast_read.py)
    app.add_middleware(TraceContext)  # the caller's trace, when no server span carries it
    return app
