"""Fixtures for the audit tests: sessions on the shared (Alembic-built) `engine`, telemetry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from warden.audit import telemetry
from warden.db.session import make_sessionmaker

OTEL_VARS = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTEL_* from the surrounding shell; loopback never through a proxy."""
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return monkeypatch


class Captured:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.logs = InMemoryLogRecordExporter()

    def log_attributes(self) -> list[dict[str, object]]:
        return [dict(r.log_record.attributes or {}) for r in self.logs.get_finished_logs()]


@pytest.fixture
def captured(otel_env: pytest.MonkeyPatch) -> Iterator[Captured]:
    """Telemetry set up afresh with in-memory exporters, shut down afterwards."""
    telemetry.shutdown()
    cap = Captured()
    telemetry.setup_telemetry(
        "warden-test", span_exporter=cap.spans, log_exporter=cap.logs, install_global=False
    )
    yield cap
    telemetry.shutdown()


@pytest.fixture(autouse=True)
def audit_keys_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The process-default audit keys (engines nobody bound) in a folder of this test's own;
    subprocesses inherit it through the environment."""
    from warden.audit import keys

    folder = tmp_path_factory.mktemp("audit-keys")
    monkeypatch.setenv("WARDEN_AUDIT_KEYS_DIR", str(folder))
    monkeypatch.delenv("WARDEN_AUDIT_CHAIN_KEY", raising=False)
    keys.reset_default()
    yield folder
    keys.reset_default()


def _make_platform_admin(sessions: sessionmaker[Session], policy: object, name: str) -> None:
    """Make `name` (a person of tenant acme) a platform admin: acme becomes the installation
    tenant and `name` may manage sys:tenants there (what `warden init` gives its admin)."""
    from sqlalchemy import select

    from warden.db.session import unit_of_work
    from warden.identity.models import Tenant

    with unit_of_work(sessions) as db:  # through the ORM, as Warden writes: the row is resealed
        db.scalars(select(Tenant).where(Tenant.name == "acme")).one().installation = True
    rule = ("p", (name, "acme", "sys:tenants", "*", "*", "manage", "allow", "", ""))
    policy.add_rules([rule])  # type: ignore[attr-defined]


@pytest.fixture
def make_platform_admin():  # type: ignore[no-untyped-def]
    return _make_platform_admin
