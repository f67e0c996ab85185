"""Sandbox fixtures: a real Docker Engine, the images built (cached by input hash), and a
Warden whose API launches sandboxes. Runs on SQLite only: what is tested here is Docker's
isolation, not the database.

Without an engine these tests skip with the reason, unless WARDEN_REQUIRE_DOCKER is set (CI),
when they fail.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WardenHarness

REQUIRE = bool(os.environ.get("WARDEN_REQUIRE_DOCKER"))
DEVELOPER = "dave"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: needs a Docker Engine (WARDEN_REQUIRE_DOCKER)")


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite only for the sandbox suite (the shared fixture's copy of a migrated template)."""
    import shutil

    template = request.getfixturevalue("sqlite_template")
    path = tmp_path / "warden.db"
    shutil.copyfile(template, path)
    yield f"sqlite:///{path}"


@pytest.fixture(scope="session")
def docker_engine() -> Any:
    try:
        import docker

        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:
        if REQUIRE:
            pytest.fail(f"WARDEN_REQUIRE_DOCKER is set but no Docker Engine answers: {exc}")
        pytest.skip(f"no Docker Engine answers ({exc}); run `bash scripts/docker-up.sh`")
    return client


@pytest.fixture(scope="session")
def sandbox_images(docker_engine: Any) -> dict[str, str]:
    """Build (or find) the ml and app-dev images; the first build takes a few minutes."""
    from warden.config import get_settings
    from warden.sandbox.images import build_all

    started = time.monotonic()
    built = build_all(docker_engine, get_settings().sandbox, ["ml", "app-dev"], lambda _: None)
    took = time.monotonic() - started
    if any(b.built for b in built):
        print(f"\nbuilt sandbox images in {took:.0f}s: {[b.tag for b in built if b.built]}")
    return {b.name: b.tag for b in built}


class Sandboxes:
    """Launch through the API as a person, wait, read logs; cleans up after itself."""

    def __init__(self, warden: WardenHarness) -> None:
        self.warden = warden
        self.runtime = warden.process.sandboxes

    def launch(self, who: str, command: list[str], **body: Any) -> Any:
        return self.warden.http.post(
            "/v1/sandboxes", json={"command": command, **body}, headers=self.warden.as_(who)
        )

    def start(self, who: str, command: list[str], **body: Any) -> dict[str, Any]:
        response = self.launch(who, command, **body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def show(self, sandbox_id: str, who: str = "admin") -> dict[str, Any]:
        response = self.warden.http.get(f"/v1/sandboxes/{sandbox_id}", headers=self.warden.as_(who))
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, sandbox_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.show(sandbox_id)
            if row["status"] not in ("starting", "running"):
                return row
            time.sleep(0.05)
        raise AssertionError(f"sandbox {sandbox_id} still running after {timeout}s")

    def logs(self, sandbox_id: str, who: str = "admin") -> str:
        response = self.warden.http.get(
            f"/v1/sandboxes/{sandbox_id}/logs", headers=self.warden.as_(who)
        )
        assert response.status_code == 200, response.text
        return str(response.text)

    def run(self, who: str, command: list[str], **body: Any) -> tuple[dict[str, Any], str]:
        """Launch, wait for the end, return (final row, output as its launcher reads it: a
        data sandbox's log is not an admin's to read without rights on its data)."""
        started = self.start(who, command, **body)
        row = self.wait(started["id"], timeout=float(body.get("timeout") or 60) + 30)
        return row, self.logs(started["id"], who)

    def py(self, who: str, code: str, **body: Any) -> tuple[dict[str, Any], str]:
        return self.run(who, ["python3", "-c", code], **body)


@pytest.fixture
def sandboxes(warden: WardenHarness, sandbox_images: dict[str, str]) -> Iterator[Sandboxes]:
    grant_sandbox_roles(warden)
    harness = Sandboxes(warden)
    before = set(threading.enumerate())
    yield harness
    harness.runtime.shutdown()
    harness.runtime.reconcile()
    # A test that plays a dead process (`_live.clear()`) leaves its watcher waiting on the
    # container: the reconcile above ends it, and it must write its exit before this test's
    # database is deleted (else it fails a later test with "unable to open database file").
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("sandbox-watch-"):
            thread.join(timeout=60)
            assert not thread.is_alive(), f"{thread.name} outlived its test"


def grant_sandbox_roles(warden: WardenHarness) -> None:
    """policies/sandbox.csv (stored rules are skipped) and a developer, dave."""
    from warden.config import REPO_ROOT
    from warden.db.session import unit_of_work
    from warden.identity.service import (
        Caller,
        create_principal,
        get_principal,
        get_tenant,
        issue_token,
    )
    from warden.policy.changes import apply_change
    from warden.policy.rules import read_csv

    state = warden.state
    rules = read_csv([REPO_ROOT / "policies" / "sandbox.csv"])
    with unit_of_work(state.sessions) as db:
        admin = get_principal(db, "admin")
        actor = Caller("admin", "person", "acme", admin.id)
        dave = create_principal(db, DEVELOPER, "person", get_tenant(db, "acme"))
        warden.tokens[DEVELOPER] = issue_token(db, dave)
        apply_change(
            db,
            actor,
            add=[*rules, ("g", (DEVELOPER, "role:developer", "acme"))],
            reason="sandbox test roles",
        )
    state.policy.reload()


@pytest.fixture(scope="session")
def _compose(
    docker_engine: Any, sandbox_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from tests.sandbox.deployment import Shared, compose_up

    shared = Shared(lambda: compose_up(docker_engine, REQUIRE, tmp_path_factory.mktemp("compose")))
    _SHARED.append(shared)
    yield shared
    shared.close()


@pytest.fixture
def compose_deployment(_compose: Any) -> Any:
    """docker-compose.yml up (seeded, with people and tokens), shared by the tests that follow
    one another (test_compose.py, test_compose_multihost.py) and taken down after the last of
    them, not at the end of the session (tests/sandbox/deployment.py)."""
    return _compose.get()


_SHARED: list[Any] = []


@pytest.hookimpl(trylast=True)  # after the test's own fixtures (a second host) are gone
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or "compose_deployment" not in getattr(nextitem, "fixturenames", ()):
        for shared in _SHARED:
            shared.close()
