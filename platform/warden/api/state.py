"""What one API process holds: settings, the database, the policy service."""

from __future__ import annotations

from dataclasses import dataclass

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
