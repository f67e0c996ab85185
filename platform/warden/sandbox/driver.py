"""The sandbox driver interface. Callers speak only this; Docker is the first backend.

A Kubernetes backend maps the same `ContainerSpec` to a Job (network "none" → a default-deny
NetworkPolicy, the hardening → the restricted pod security profile) without touching callers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Mount:
    source: str  # a host path
    target: str  # the path inside the sandbox
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a backend needs to run one sandbox, already checked against its profile."""

    name: str
    image: str
    command: Sequence[str]
    user: str
    env: Mapping[str, str]
    labels: Mapping[str, str]
    network: str  # "none" | "internal" (a network of its own, no route out) | "bridge"
    mounts: Sequence[Mount] = ()
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    read_only_root: bool = True
    cap_drop: Sequence[str] = ("ALL",)
    no_new_privileges: bool = True
    pids_limit: int = 256
    memory_bytes: int = 1 << 30
    cpus: float = 1.0
    workdir: str = "/tmp"  # noqa: S108 - a path inside the sandbox
    interactive: bool = False  # stdin open and a TTY (app-dev shells)
    # The egress proxy's port on the host: its own network's gateway, the one way out.
    egress_port: int | None = None


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    status: str  # created | running | exited | ...
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    oom_killed: bool
    timed_out: bool
    started_at: str | None = None
    finished_at: str | None = None


class SandboxError(RuntimeError):
    """The backend failed (engine down, image missing, ...); the message says what to do."""


class SandboxDriver(Protocol):
    """Create, run and observe sandboxes on one backend."""

    name: str

    def ping(self) -> None:
        """Raise SandboxError when the backend does not answer."""

    def image_id(self, image: str) -> str:
        """The content id of a local image (sha256:…); SandboxError when it is missing."""

    def create(self, spec: ContainerSpec) -> str:
        """Create (not start) the sandbox; returns the backend's id for it."""

    def start(self, container_id: str) -> None: ...

    def wait(self, container_id: str, timeout: float) -> ExitInfo:
        """Block until it exits or `timeout` seconds pass; on timeout kill it and say so."""

    def logs(self, container_id: str, *, follow: bool = False) -> Iterator[bytes]:
        """stdout and stderr as they were written; with follow, until the sandbox exits."""

    def stop(self, container_id: str, grace: float) -> None:
        """Ask it to stop, kill it after `grace` seconds; no error if it is already gone."""

    def remove(self, container_id: str) -> None:
        """Remove the sandbox and whatever the backend made for it (its network)."""

    def list(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Sandboxes carrying all of these labels, running or not."""

    def exec(self, container_id: str, command: Sequence[str]) -> tuple[str, Iterator[bytes]]:
        """Run `command` in the running sandbox as its own user, in its working directory:
        (an id for `exec_exit_code`, its stdout and stderr as they come)."""

    def exec_exit_code(self, exec_id: str) -> int | None:
        """The exit code of a finished `exec`; None while it runs or when unknown."""
