"""Settings in one place: environment variables prefixed `WARDEN_`, embedded defaults."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from platformdirs import user_config_path, user_data_path
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WARDEN_", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: user_data_path("warden"))
    config_dir: Path = Field(default_factory=lambda: user_config_path("warden"))
    database_url: str | None = None
    policies_dir: Path = REPO_ROOT / "policies"
    url: str = "http://127.0.0.1:8765"
    token: str | None = None
    # Key for the masking hash of identifiers; generated into the data dir when unset.
    mask_key: str | None = None
    max_read_rows: int = 50_000_000
    default_read_limit: int = 10_000_000
    max_request_bytes: int = 64 * 1024
    # Access workflow: how long a request may stay pending, and a break-glass grant's length.
    access_pending_ttl_hours: float = Field(default=168.0, gt=0)
    access_break_glass_minutes: int = Field(default=60, ge=1)
    # Background tidy-up (expire due requests and grants, drop expired grants' rules); 0: off.
    access_tidy_interval_s: float = Field(default=300.0, ge=0)
    # Webhooks for access requests: POSTed JSON, signed with HMAC-SHA256 of the body.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_max_attempts: int = Field(default=6, ge=1)
    webhook_backoff_s: float = Field(default=2.0, gt=0)
    webhook_poll_s: float = Field(default=1.0, gt=0)
    # Reviewed changes: approvals a widening change needs (never fewer than one other
    # person), and the longest grant each class may ever allow, whatever a dataset says.
    change_quorum: int = Field(default=1, ge=1, le=10)
    access_pii_max_duration_days: int = Field(default=90, ge=1, le=3650)
    access_internal_max_duration_days: int = Field(default=365, ge=1, le=3650)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'warden.db'}"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
