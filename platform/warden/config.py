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
    # Edge (api/edge.py): refused requests (no or bad token, body or headers over the cap, no
    # such route or method) are audited. Per source (client address, or an authenticated
    # token) and fixed window, the first `edge_record_per_window` refusals are recorded one by
    # one and the rest folded into one counted record per window; past `edge_refusals_per_window`
    # the source gets 429 until its window ends. Counters live in this process's memory.
    edge_window_s: float = Field(default=60.0, gt=0)
    edge_record_per_window: int = Field(default=20, ge=0)
    edge_refusals_per_window: int = Field(default=120, ge=1)
    edge_max_sources: int = Field(default=10_000, ge=1)
    edge_max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    # Peers (addresses or networks) whose X-Forwarded-For is believed; none by default.
    edge_trusted_proxies: list[str] = Field(default_factory=list)
    # How often the edge writes the counted records of windows that have ended; 0: only when
    # the next refusal arrives and at shut-down.
    edge_flush_interval_s: float = Field(default=30.0, ge=0)

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
