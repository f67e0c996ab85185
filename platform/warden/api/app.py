"""The API application: state, error handlers and one router per domain."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI

from warden import __version__
from warden.access.routes import router as access_router
from warden.api.errors import install_error_handlers
from warden.api.limits import BodySizeLimit
from warden.api.state import AppState
from warden.audit.routes import router as audit_router
from warden.audit.telemetry import setup_telemetry
from warden.catalog.routes import router as catalog_router
from warden.config import Settings, get_settings
from warden.db.session import make_engine, make_sessionmaker
from warden.gateway.routes import router as gateway_router
from warden.identity.routes import router as identity_router
from warden.jobs.routes import router as jobs_router
from warden.policy.routes import router as policy_router
from warden.policy.service import PolicyService
from warden.registry.routes import router as registry_router
from warden.sandbox.routes import install_lifecycle
from warden.sandbox.routes import router as sandbox_router


def load_mask_key(settings: Settings) -> bytes:
    """The masking key: from WARDEN_MASK_KEY, else a random one kept in the data directory."""
    if settings.mask_key:
        return settings.mask_key.encode()
    path = Path(settings.data_dir) / "mask.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def build_state(settings: Settings) -> AppState:
    engine = make_engine(settings.resolved_database_url)
    return AppState(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        policy=PolicyService(engine),
        mask_key=load_mask_key(settings),
    )


def create_app(settings: Settings | None = None, state: AppState | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_telemetry()
    app = FastAPI(title="Warden", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.warden = state or build_state(settings)
    # A hard cap for every route; reads check a tighter limit themselves, so they are audited.
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

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
