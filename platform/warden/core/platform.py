"""What one Warden process holds: settings, the database, the policy service, the clock, the
mask key. The API, `warden worker`, the CLI's local commands and the demo all build it here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from warden.audit.keys import bind_settings
from warden.audit.owed import OwedRecords
from warden.audit.witness import JobReads
from warden.catalog.view import DatasetView
from warden.config import Settings
from warden.db.generation import GenerationCache
from warden.db.session import make_engine, make_sessionmaker
from warden.gateway.master_key import load_mask_key
from warden.identity.service import TokenRow
from warden.policy.service import PolicyService


@dataclass
class Platform:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    policy: PolicyService
    mask_key: bytes
    # Every decision reads time from here, so tests can move the clock instead of sleeping.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # What a governed read looks up, kept per change generation (see db/generation.py).
    tokens: GenerationCache[str, TokenRow] = field(default_factory=GenerationCache)
    views: GenerationCache[tuple[str, str], DatasetView] = field(default_factory=GenerationCache)
    mask_schedules: GenerationCache[str, tuple[tuple[int, datetime], ...]] = field(
        default_factory=GenerationCache
    )
    # A streamed read's completion the log refused: written before this process's next read.
    owed: OwedRecords = field(default_factory=OwedRecords)
    # The allowed reads of each job this process serves, named in its exit event.
    job_reads: JobReads = field(default_factory=JobReads)

    def now(self) -> datetime:
        return self.clock()


def build_platform(settings: Settings) -> Platform:
    engine = make_engine(
        settings.resolved_database_url, sqlite_busy_timeout_s=settings.sqlite_busy_timeout_s
    )
    bind_settings(engine, settings)  # the audit chain keys, kept outside the database
    return Platform(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        policy=PolicyService(engine, model_path=settings.model_path),
        mask_key=load_mask_key(settings),
    )


__all__ = ["Platform", "build_platform", "load_mask_key"]
