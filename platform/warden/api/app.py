"""The API application: the platform core, error handlers and one router per domain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from warden import __version__
from warden.api.console import install_console
from warden.api.edge_middleware import install_edge
from warden.api.errors import install_error_handlers, unavailable_response
from warden.api.fast_read import FastRead
from warden.api.limits import BodySizeLimit
from warden.api.openapi import install_openapi
from warden.api.primary import elect, serve_workers
from warden.api.routes.access import router as access_router
from warden.api.routes.audit import router as audit_router
from warden.api.routes.catalog import router as catalog_router
from warden.api.routes.experiments import router as experiments_router
from warden.api.routes.gateway import router as gateway_router
from warden.api.routes.identity import router as identity_router
from warden.api.routes.jobs import router as jobs_router
from warden.api.routes.policy import router as policy_router
from warden.api.routes.registry import router as registry_router
from warden.api.routes.sandbox import router as sandbox_router
from warden.api.routes.workspace import router as workspace_router
from warden.api.telemetry import HTTP_TELEMETRY, TraceContext
from warden.audit.telemetry import setup_telemetry
from warden.config import Settings, get_settings
from warden.core.platform import Platform, build_platform
from warden.core.process import WardenProcess
from warden.db.stamp_feed import stamp_feed_for
from warden.errors import Unavailable


def create_app(
    settings: Settings | None = None, state: Platform | None = None, *, jobs: bool | None = None
) -> FastAPI:
    """The API over `state` (built from `settings` when absent). Its lifespan starts and stops
    the process's background work; `jobs` None runs a job worker as WARDEN_JOBS_WORKER says."""
    settings = settings or get_settings()
    setup_telemetry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.process.start()
        try:
            yield
        finally:
            app.state.process.stop()
            if app.state.stamp_feed is not None:
                await app.state.stamp_feed.close()

    app = FastAPI(
        title="Warden",
        version=__version__,
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
        telemetry=HTTP_TELEMETRY,
    )
    platform = state or build_platform(settings)
    app.state.warden = platform
    # Background loops run in one process only (see api/primary.py); the lock lives with the app.
    primary, app.state.primary_lock = elect(settings)
    app.state.primary = primary
    app.state.stamp_feed = stamp_feed_for(platform.engine, serve_workers())
    app.state.process = WardenProcess.build(
        platform, socket_app=app, jobs=jobs if primary else False, access=primary
    )
    # The read route served without FastAPI's routing (api/fast_read.py): added first, so it
    # sits innermost, below every other middleware and right above the exception handlers.
    app.add_middleware(FastRead)
    # A hard cap for every route (the edge audits what it refuses); reads check a tighter one.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes * 16,
        wider=[(r"/v1/workspaces/[^/]+/archive", settings.workspace.max_archive_bytes)],
    )
    install_error_handlers(app)
    for router in (
        identity_router,
        catalog_router,
        gateway_router,
        policy_router,
        audit_router,
        sandbox_router,
        workspace_router,
        access_router,
        jobs_router,
        registry_router,
        experiments_router,
    ):
        app.include_router(router)
    # The browser console at /console: pages over the same services (api/console/).
    install_console(app)

    # Edge and contract: every refused request is audited and floods are folded (api/edge.py);
    # the OpenAPI document declares every error the server gives (api/openapi.py).
    install_edge(app, settings)
    install_openapi(app)
    # Outermost: the caller's trace context for what the edge audits too (api/telemetry.py).
    app.add_middleware(TraceContext)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    # Liveness above (the process answers); readiness here, for load balancers: the database
    # answers and this process holds a current policy snapshot. 503 + Retry-After otherwise.
    @app.get("/readyz", tags=["health"])
    def readyz(request: Request) -> JSONResponse:
        try:
            with platform.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            policy = platform.policy.ensure_fresh()
        except Unavailable as exc:
            return unavailable_response(request, f"not ready: {exc.detail}")
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said plainly
            return unavailable_response(request, f"not ready: database {type(exc).__name__}")
        return JSONResponse(
            {"status": "ready", "version": __version__, "policy_version": policy.version}
        )

    return app
