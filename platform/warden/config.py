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
