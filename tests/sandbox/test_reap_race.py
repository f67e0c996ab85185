"""Reaping another process's stale firewall rules never drops a live sandbox's (found while
measuring the suite: two processes share a host in compose, the API's and the worker's).

`reap_networks` listed the Docker networks, then the host's firewall rules, and removed the
rules of every bridge the first list lacked. A sandbox launched by another process between
the two lists (its network made after the first, its rules before the second) lost its
firewall: it could reach every service listening on the host. Now the rules are listed
first: a rule is added only after its network exists, so a rule whose network the later
list lacks is stale.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from typing import Any

import pytest

from warden.sandbox.docker_driver import (
    DockerDriver,
    bridge_name,
    firewall_bridge,
    unfirewall_bridge,
)

pytestmark = pytest.mark.docker


def _rules() -> str:
    iptables = shutil.which("iptables")
    assert iptables is not None
    return subprocess.run(
        [iptables, "-w", "-S", "INPUT"], capture_output=True, text=True, check=True
    ).stdout


class _Networks:
    """The engine's networks; the first unfiltered listing lets another process launch a
    sandbox just after it answers (its network, then its firewall rules)."""

    def __init__(self, real: Any, launch: Any) -> None:
        self.real, self.launch = real, launch

    def list(self, *args: Any, **kwargs: Any) -> Any:
        answer = self.real.list(*args, **kwargs)
        if not kwargs.get("filters") and self.launch is not None:
            launch, self.launch = self.launch, None
            launch()
        return answer


class _Client:
    def __init__(self, real: Any, launch: Any) -> None:
        self.networks = _Networks(real.networks, launch)


def test_a_sandbox_launched_by_another_process_while_one_reaps_keeps_its_firewall(
    docker_engine: Any,
) -> None:
    name = f"warden-race{uuid.uuid4().hex[:8]}"
    bridge = bridge_name(name)

    def other_process_launches() -> None:
        docker_engine.networks.create(
            name,
            driver="bridge",
            internal=True,
            options={"com.docker.network.bridge.name": bridge},
        )
        firewall_bridge(bridge)

    reaper = DockerDriver(client=_Client(docker_engine, other_process_launches))  # type: ignore[arg-type]
    try:
        reaper.reap_networks({"warden.test": f"reap-race-{uuid.uuid4().hex}"}, live=set())
        assert bridge in _rules(), "a live sandbox's firewall rules were reaped"
        # and once its network is gone, its rules are stale and go on the next reap
        docker_engine.networks.get(name).remove()
        DockerDriver(client=docker_engine).reap_networks({"warden.test": "none"}, live=set())
        assert bridge not in _rules()
    finally:
        unfirewall_bridge(bridge)
        for network in docker_engine.networks.list(names=[name]):
            network.remove()
