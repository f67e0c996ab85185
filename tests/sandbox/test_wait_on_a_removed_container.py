"""A sandbox's watcher waits on its container; another process may reap that container as an
orphan and remove it between the end of the wait and the driver's look at its exit state
(`SandboxRuntime.reconcile`). The driver then says the container is gone (`SandboxError`, which
the watcher turns into an unknown exit and still ends the sandbox: token, socket), instead of
Docker's own `NotFound` escaping and killing the watcher thread with its sandbox never ended
in this process (seen in CI as an unhandled exception in `sandbox-watch-…`)."""

from __future__ import annotations

from typing import Any

import pytest

from warden.sandbox.docker_driver import DockerDriver
from warden.sandbox.driver import SandboxError

pytestmark = pytest.mark.docker


class _ReapedAfterTheWait(DockerDriver):
    """The real engine, with the reaper winning the race: the container is removed right after
    the driver's wait returns, before it reads the exit state."""

    def _container(self, container_id: str) -> Any:
        container = super()._container(container_id)
        wait = container.wait

        def wait_then_reaped(**kwargs: Any) -> Any:
            ended = wait(**kwargs)
            self.client.containers.get(container_id).remove(force=True)
            return ended

        container.wait = wait_then_reaped
        return container


def test_a_container_removed_after_its_wait_is_reported_gone(
    docker_engine: Any, sandbox_images: dict[str, str]
) -> None:
    quick = docker_engine.containers.run(
        sandbox_images["ml"], ["true"], detach=True, network_mode="none"
    )
    try:
        with pytest.raises(SandboxError, match="is gone"):
            _ReapedAfterTheWait(docker_engine).wait(quick.id, timeout=60)
    finally:
        if docker_engine.containers.list(all=True, filters={"id": quick.id}):
            quick.remove(force=True)
