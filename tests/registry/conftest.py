"""Registry tests run real jobs: the job fixtures, on SQLite only."""

from tests.jobs.conftest import (
    _no_in_process_worker,
    docker_engine,
    ml_warden,
    sandbox_images,
    sqlite_only,
    worker,
)

db_url = sqlite_only

__all__ = [
    "_no_in_process_worker",
    "db_url",
    "docker_engine",
    "ml_warden",
    "sandbox_images",
    "sqlite_only",
    "worker",
]
