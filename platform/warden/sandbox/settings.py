"""Sandbox settings (environment prefix WARDEN_SANDBOX_), apart from the core Settings."""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from platformdirs import user_cache_path
from pydantic_settings import BaseSettings, SettingsConfigDict

from warden.config import REPO_ROOT


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WARDEN_SANDBOX_", extra="ignore")

    # Image definitions and segment profiles, as data.
    definitions_dir: Path = REPO_ROOT / "sandboxes"
    # Gateway sockets live here, one folder per sandbox (kept short: a socket path must fit
    # in 107 bytes).
    run_dir: Path = Path(tempfile.gettempdir()) / f"warden-sbx-{os.getuid()}"
    # Wheelhouses downloaded on the host for the image builds.
    cache_dir: Path = user_cache_path("warden") / "images"
    # The Debian mirror for debootstrap; read from the machine's apt sources when unset.
    mirror: str | None = None
    # How long `stop` waits for a container to exit before killing it.
    stop_grace_s: float = 3.0
    # Each process refreshes its sandboxes' heartbeat this often; a sandbox whose owner has
    # been silent for orphan_after_s is reaped by any other process (checked that often).
    heartbeat_s: float = 5.0
    orphan_after_s: float = 30.0
    # Logs kept per sandbox once its container is gone.
    max_saved_log_bytes: int = 8 << 20

    @property
    def profiles_path(self) -> Path:
        return self.definitions_dir / "profiles.toml"

    @property
    def images_path(self) -> Path:
        return self.definitions_dir / "images.toml"


@lru_cache(maxsize=1)
def get_sandbox_settings() -> SandboxSettings:
    return SandboxSettings()


def instance_label(database_url: str) -> str:
    """Which Warden installation labelled a container: one per database."""
    return hashlib.sha256(database_url.encode()).hexdigest()[:16]
