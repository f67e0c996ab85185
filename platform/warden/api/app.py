"""The API application: state, error handlers and one router per domain."""

from __future__ import annotations

from fastapi import FastAPI

from warden import __version__
from warden.api.edge import install_edge
from warden.api.errors import install_error_handlers
from warden.api.limits import BodySizeLimit
from warden.api.openapi import install_openapi
from warden.api.routes.access import router as access_router
from warden.api.routes.audit import router as audit_router
from warden.api.routes.catalog import router as catalog_router
from warden.api.routes.gateway import router as gateway_router
from warden.api.routes.identity import router as identity_router
from warden.api.routes.jobs import router as jobs_router
from warden.api.routes.policy import router as policy_router
from warden.api.routes.registry import router as registry_router
from warden.api.routes.sandbox import install_lifecycle
from warden.api.routes.sandbox import router as sandbox_router
from warden.audit.telemetry import setup_telemetry
from warden.config import Settings, get_settings
from warden.core.platform import Platform, build_platform


def create_app(settings: Settings | None = None, state: Platform | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_telemetry()
    app = FastAPI(title="Warden", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.warden = state or build_platform(settings)
    # A hard cap for every route (the edge audits what it refuses); reads check a tighter one.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes * 16)
    install_error_handlers(app)
    for router in (
        identity_router,
        catalog_router,
        gateway_router,
        policy_router,
        audit_router,
        sandbox_router,
        access_router,
        jobs_router,  # its lifespan runs the in-process job worker (WARDEN_JOBS_WORKER)
        registry_router,
    ):
        app.include_router(router)
    install_lifecycle(app)  # reap orphaned sandboxes at start-up, stop ours at shut-down

    # Edge and contract: every refused request is audited and floods are folded (api/edge.py);
    # the OpenAPI document declares every error the server gives (api/openapi.py).
    install_edge(app, settings)
    install_openapi(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
