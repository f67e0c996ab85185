"""Settings in one place: environment variables prefixed `WARDEN_`, embedded defaults."""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from platformdirs import user_cache_path, user_config_path, user_data_path
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICIES_DIR = REPO_ROOT / "policies"


class SandboxSettings(BaseSettings):
    """The sandbox section (environment prefix WARDEN_SANDBOX_)."""

    model_config = SettingsConfigDict(env_prefix="WARDEN_SANDBOX_", extra="ignore")

    # Image definitions and segment profiles, as data.
    definitions_dir: Path = REPO_ROOT / "sandboxes"
    # Gateway sockets live here, one folder per sandbox (kept short: a socket path must fit
    # in 107 bytes).
    run_dir: Path = Path(tempfile.gettempdir()) / f"warden-sbx-{os.getuid()}"
    # Wheelhouses downloaded on the host for the image builds.
    cache_dir: Path = Field(default_factory=lambda: user_cache_path("warden") / "images")
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


class JobSettings(BaseSettings):
    """The jobs section (environment prefix WARDEN_JOBS_)."""

    model_config = SettingsConfigDict(env_prefix="WARDEN_JOBS_", extra="ignore")

    # `warden serve` runs a worker in the API process unless this is false.
    worker: bool = True
    # Jobs one worker runs at once (each in its own sandbox, one CPU each unless asked).
    slots: int = Field(default=1, ge=1, le=64)
    poll_s: float = 1.0
    heartbeat_s: float = 5.0
    # A running job not heard from for this long is failed (its worker is gone).
    stale_after_s: float = 120.0


class WorkspaceSettings(BaseSettings):
    """The workspace section (environment prefix WARDEN_WORKSPACE_)."""

    model_config = SettingsConfigDict(env_prefix="WARDEN_WORKSPACE_", extra="ignore")

    # Largest tree one workspace may hold (its files' sizes), and how many entries.
    quota_mb: int = Field(default=512, ge=1)
    max_files: int = Field(default=100_000, ge=1)
    # The uid:gid that owns workspace files: the app-dev sandboxes' user, who writes them.
    user: str = "10001:10001"

    @property
    def quota_bytes(self) -> int:
        return self.quota_mb << 20

    @property
    def max_archive_bytes(self) -> int:
        """An upload's cap: the quota plus tar's headers and padding (up to 1 KiB a file)."""
        return self.quota_bytes + self.max_files * 1024 + (1 << 20)


class Settings(BaseSettings):
    """Every setting of a Warden process; sections read their own environment prefixes."""

    model_config = SettingsConfigDict(env_prefix="WARDEN_", extra="ignore")

    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)

    data_dir: Path = Field(default_factory=lambda: user_data_path("warden"))
    config_dir: Path = Field(default_factory=lambda: user_config_path("warden"))
    database_url: str | None = None
    # The Casbin model (model.conf, read once at start-up) and the seed rules `init` loads.
    policies_dir: Path = DEFAULT_POLICIES_DIR
    url: str = "http://127.0.0.1:8765"
    token: str | None = None
    # Key for the masking hash of identifiers; generated into the data dir when unset.
    mask_key: str | None = None
    # Where dataset files live: unset, `data_dir/datasets`; `s3://bucket/prefix`, an
    # S3-compatible bucket reached with the s3_* settings (only the platform holds them).
    storage_url: str | None = None
    s3_endpoint_url: str | None = None  # e.g. http://127.0.0.1:8333 (SeaweedFS, MinIO)
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"
    s3_connect_timeout_s: float = Field(default=5.0, gt=0)
    s3_request_timeout_s: float = Field(default=60.0, gt=0)
    max_read_rows: int = 50_000_000
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
    # Identity: every API token expires. Lifetimes in days per principal kind (a request above
    # the maximum is refused), and how many live (unexpired, unrevoked) tokens one principal
    # may hold at once.
    token_person_default_days: int = Field(default=30, ge=1)
    token_person_max_days: int = Field(default=90, ge=1)
    token_service_default_days: int = Field(default=7, ge=1)
    token_service_max_days: int = Field(default=30, ge=1)
    token_max_live_per_principal: int = Field(default=10, ge=1)

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
    # Small reads: what a client is told to wait (Retry-After) when the database is out; how
    # long a SQLite connection waits for the write lock before giving up (bounded, so a stuck
    # writer becomes a clean 503, not a pile of waiting requests); and whether this process may
    # run the background loops (job and access workers, sandbox reconciling). `warden serve
    # --workers N` elects one worker per data folder on top of this (a lock file).
    unavailable_retry_after_s: int = Field(default=2, ge=1, le=3600)
    sqlite_busy_timeout_s: float = Field(default=5.0, gt=0, le=600)
    primary: bool = True

    @model_validator(mode="after")
    def _token_defaults_within_max(self) -> Settings:
        for kind in ("person", "service"):
            default = getattr(self, f"token_{kind}_default_days")
            ceiling = getattr(self, f"token_{kind}_max_days")
            if default > ceiling:
                raise ValueError(
                    f"WARDEN_TOKEN_{kind.upper()}_DEFAULT_DAYS ({default}) is above "
                    f"WARDEN_TOKEN_{kind.upper()}_MAX_DAYS ({ceiling})"
                )
        return self

    # Audit: the chain key (HMAC) and the checkpoint signing key live outside the database, in
    # audit_keys_dir (default: config_dir/keys); WARDEN_AUDIT_CHAIN_KEY gives chain keys
    # instead (comma-separated secrets, the last one current). Signed checkpoints of the chain
    # head go to audit_checkpoint_dir (default: data_dir/audit-checkpoints) every
    # audit_checkpoint_interval_s seconds (0: only on demand).
    audit_chain_key: str | None = None
    audit_keys_dir: Path | None = None
    audit_checkpoint_dir: Path | None = None
    audit_checkpoint_interval_s: float = Field(default=60.0, ge=0)
    # The browser console (/console): a session ends after this long unused, and after this
    # long whatever happens (WARDEN_CONSOLE_IDLE_TIMEOUT_S, WARDEN_CONSOLE_ABSOLUTE_TIMEOUT_S).
    console_idle_timeout_s: float = Field(default=30 * 60, gt=0)
    console_absolute_timeout_s: float = Field(default=12 * 3600, gt=0)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'warden.db'}"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def model_path(self) -> Path:
        return self.policies_dir / "model.conf"

    @property
    def instance(self) -> str:
        """Which installation labelled a container: one per database."""
        return hashlib.sha256(self.resolved_database_url.encode()).hexdigest()[:16]

    @property
    def resolved_audit_keys_dir(self) -> Path:
        return self.audit_keys_dir or self.config_dir / "keys"

    @property
    def resolved_audit_checkpoint_dir(self) -> Path:
        return self.audit_checkpoint_dir or self.data_dir / "audit-checkpoints"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def safe_url(url: str) -> str:
    """A database URL fit to print: its password, if any, replaced by ***."""
    from sqlalchemy.engine import make_url  # here: the CLI starts without SQLAlchemy
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a database URL that does not parse)"
