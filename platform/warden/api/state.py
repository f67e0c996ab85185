"""What one API process holds: settings, the database, the policy service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from warden.config import Settings
from warden.policy.service import PolicyService


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    policy: PolicyService
    mask_key: bytes
    # Every decision reads time from here, so tests can move the clock instead of sleeping.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.clock()
