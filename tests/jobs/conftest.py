"""Job fixtures: no in-process worker (tests run workers themselves), and helpers to queue
jobs through the API and drive a worker. Docker fixtures come from tests/sandbox."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WardenHarness
from tests.sandbox.conftest import docker_engine, grant_sandbox_roles, sandbox_images
from warden.jobs.worker import JobWorker

__all__ = ["docker_engine", "sandbox_images"]


@pytest.fixture(autouse=True)
def _no_in_process_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_JOBS_WORKER", "false")


@pytest.fixture(params=["sqlite"])
def sqlite_only(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Docker tests test Docker, not the database: `db_url = sqlite_only` in their module."""
    template = request.getfixturevalue("sqlite_template")
    path = tmp_path / "warden.db"
    shutil.copyfile(template, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def worker(ml_warden: WardenHarness, sandbox_images: dict[str, str]) -> Iterator[JobWorker]:
    """A job worker on the test's app (run it with run_once); stops its sandboxes after."""
    runtime = ml_warden.process.sandboxes
    runner = JobWorker(ml_warden.state, runtime, worker_id="test-worker")
    yield runner
    runtime.shutdown()
    runtime.reconcile()


@pytest.fixture
def ml_warden(warden: WardenHarness) -> WardenHarness:
    """The Warden of tests/conftest.py, with policies/sandbox.csv: alice may run ML jobs."""
    grant_sandbox_roles(warden)
    return warden


def submit(warden: WardenHarness, who: str, **body: Any) -> Any:
    return warden.http.post("/v1/jobs", json=body, headers=warden.as_(who))


def queue(warden: WardenHarness, who: str = "alice", **body: Any) -> dict[str, Any]:
    body.setdefault("kind", "train")
    body.setdefault("datasets", {"pins": "pins"})
    response = submit(warden, who, **body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def show(warden: WardenHarness, job_id: str, who: str = "admin") -> dict[str, Any]:
    response = warden.http.get(f"/v1/jobs/{job_id}", headers=warden.as_(who))
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for(predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
