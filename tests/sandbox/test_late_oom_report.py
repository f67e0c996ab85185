"""A sandbox killed at its memory limit reads as an OOM kill even when Docker's own flag
missed it (seen at load 17: the kernel's OOM report reached the engine after the exit, so
`OOMKilled` stayed false and the sandbox read as a plain failure). The driver then asks the
engine's event log, which records the late report; a plain SIGKILL is not taken for one.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox import probes
from warden.sandbox.docker_driver import SIGKILLED, DockerDriver

pytestmark = pytest.mark.docker


def _run(engine: Any, image: str, code: str, **limits: Any) -> Any:
    return engine.containers.run(
        image, ["python3", "-c", code], detach=True, network_mode="none", **limits
    )


def test_a_memory_kill_is_found_in_the_engines_events(
    docker_engine: Any, sandbox_images: dict[str, str]
) -> None:
    hog = _run(
        docker_engine, sandbox_images["ml"], probes.MEMORY_HOG, mem_limit="64m", memswap_limit="64m"
    )
    try:
        hog.wait(timeout=120)
        hog.reload()
        assert hog.attrs["State"]["ExitCode"] == SIGKILLED
        assert DockerDriver(docker_engine)._oom_reported(hog.id) is True
    finally:
        hog.remove(force=True)


def test_a_plain_kill_is_not_taken_for_a_memory_kill(
    docker_engine: Any, sandbox_images: dict[str, str]
) -> None:
    sleeper = _run(docker_engine, sandbox_images["ml"], "import time; time.sleep(120)")
    try:
        sleeper.kill()
        sleeper.wait(timeout=60)
        sleeper.reload()
        assert sleeper.attrs["State"]["ExitCode"] == SIGKILLED
        info = DockerDriver(docker_engine).wait(sleeper.id, timeout=5)
        assert info.exit_code == SIGKILLED and info.oom_killed is False
    finally:
        sleeper.remove(force=True)
