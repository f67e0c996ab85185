"""Segment profiles as data (sandboxes/profiles.toml), and what one launch is allowed.

`resolve()` turns a launch request into the exact limits, mounts and network of a sandbox,
or refuses it (Forbidden / Unprocessable) before anything is created.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from warden.errors import Forbidden, NotFound, Unprocessable
from warden.sandbox.egress import Destination

NETWORKS = ("none", "internal", "bridge")
SEGMENT_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
_SIZE_RE = re.compile(r"^([0-9]+)([kmg]?)$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MIN_MEMORY = 16 << 20


def parse_size(value: str | int) -> int:
    """Bytes from 512m / 4g / 1048576."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.fullmatch(value.strip().lower())
    if match is None:
        raise Unprocessable(f"size {value!r} is not like 512m or 4g")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class SegmentProfile:
    name: str
    description: str
    image: str
    network: str
    gateway_socket: bool
    data_access: bool
    user: str
    read_only_root: bool
    tmpfs: Mapping[str, str]
    output_mount: str
    cap_drop: tuple[str, ...]
    no_new_privileges: bool
    seccomp: str
    pids_limit: int
    memory: int
    memory_max: int
    cpus: float
    cpus_max: float
    timeout: int
    timeout_max: int
    max_datasets: int
    env_allowed: frozenset[str] = field(default_factory=frozenset)
    # Where a workspace is mounted read-write (app-dev); None: this segment never gets one.
    workspace_mount: str | None = None
    # host:port pairs reachable through the egress proxy (sandbox/egress.py); empty: none.
    egress_allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    pids: int
    memory: int
    cpus: float
    timeout: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "pids": self.pids,
            "memory_bytes": self.memory,
            "cpus": self.cpus,
            "timeout_s": self.timeout,
        }


@dataclass(frozen=True)
class LaunchRequest:
    """What a caller asks for; anything left None takes the profile's default."""

    segment: str
    command: Sequence[str]
    datasets: Sequence[str] = ()
    purpose: str | None = None
    timeout: int | None = None
    memory: str | int | None = None
    cpus: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    interactive: bool = False
    workspace: str | None = None  # NAME or OWNER/NAME


@dataclass(frozen=True)
class Resolved:
    profile: SegmentProfile
    limits: Limits
    datasets: tuple[str, ...]
    purpose: str | None
    env: Mapping[str, str]
    workspace: str | None = None


# The fields every segment states, each with how its TOML value is read.
_REQUIRED: dict[str, Callable[[Any], Any]] = {
    "image": str,
    "network": str,
    "gateway_socket": bool,
    "data_access": bool,
    "user": str,
    "read_only_root": bool,
    "output_mount": str,
    "cap_drop": lambda value: tuple(str(c) for c in value),
    "no_new_privileges": bool,
    "seccomp": str,
    "pids_limit": int,
    "memory": parse_size,
    "memory_max": parse_size,
    "cpus": float,
    "cpus_max": float,
    "timeout": int,
    "timeout_max": int,
    "max_datasets": int,
}


def load_profiles(path: Path) -> dict[str, SegmentProfile]:
    """Read and check every segment; a broken file is an error naming the segment and field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise Unprocessable(f"cannot read segment profiles {path}: {exc}") from exc
    segments = raw.get("segments")
    if not isinstance(segments, dict) or not segments:
        raise Unprocessable(f"{path}: no [segments.NAME] tables")
    return {name: _profile(path, name, body) for name, body in segments.items()}


def _profile(path: Path, name: str, body: Any) -> SegmentProfile:
    def bad(what: str) -> Unprocessable:
        return Unprocessable(f"{path}: segment {name!r}: {what}")

    if not SEGMENT_RE.fullmatch(name) or not isinstance(body, dict):
        raise bad("segment names are lowercase words; each is a table")
    try:
        profile = SegmentProfile(
            name=name,
            description=str(body.get("description", "")),
            **{key: read(body[key]) for key, read in _REQUIRED.items()},
            tmpfs={str(k): str(v) for k, v in dict(body.get("tmpfs", {})).items()},
            env_allowed=frozenset(str(e) for e in body.get("env_allowed", [])),
            workspace_mount=str(body["workspace_mount"]) if "workspace_mount" in body else None,
            egress_allow=tuple(str(e) for e in body.get("egress_allow", [])),
        )
        for entry in profile.egress_allow:
            Destination.parse(entry)
    except KeyError as exc:
        raise bad(f"missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise bad(str(exc)) from None
    if profile.network not in NETWORKS:
        raise bad(f"network must be one of {', '.join(NETWORKS)}")
    if profile.gateway_socket and profile.network != "none":
        # The one promise of a data segment: its socket is its only way out.
        raise bad("a segment with a gateway socket must have network 'none'")
    if profile.workspace_mount is not None and (profile.data_access or profile.gateway_socket):
        # Code from a person's folder meets governed data nowhere.
        raise bad("a segment with data access never mounts workspaces")
    if profile.workspace_mount is not None and not profile.workspace_mount.startswith("/"):
        raise bad("workspace_mount must be an absolute path")
    if profile.egress_allow and profile.network != "internal":
        raise bad("egress_allow needs network 'internal' (the proxy is its only way out)")
    if profile.data_access and not profile.gateway_socket:
        raise bad("data_access needs gateway_socket")
    if profile.seccomp != "default":
        raise bad("seccomp must be 'default' (Docker's default profile)")
    if not profile.user or profile.user.split(":")[0] in ("0", "root"):
        raise bad("sandboxes never run as root")
    if "ALL" not in profile.cap_drop or not profile.no_new_privileges:
        raise bad("sandboxes drop ALL capabilities and set no-new-privileges")
    if not profile.read_only_root:
        raise bad("sandboxes have a read-only root filesystem")
    if profile.pids_limit < 8 or profile.memory < MIN_MEMORY or profile.cpus <= 0:
        raise bad("pids_limit, memory and cpus must be set and sane")
    if profile.memory > profile.memory_max or profile.cpus > profile.cpus_max:
        raise bad("defaults above their maximum")
    if not 0 < profile.timeout <= profile.timeout_max:
        raise bad("timeout must be positive and at most timeout_max")
    return profile


def resolve(
    profiles: Mapping[str, SegmentProfile], request: LaunchRequest, known_purposes: Sequence[str]
) -> Resolved:
    """The sandbox a request gets, or a refusal naming what lies outside the profile."""
    profile = profiles.get(request.segment)
    if profile is None:
        raise NotFound(f"no segment {request.segment!r}; known: {', '.join(sorted(profiles))}")
    if not request.command and not request.interactive:
        raise Unprocessable("a command is required")
    if len(request.command) > 256 or sum(len(a) for a in request.command) > 64 * 1024:
        raise Unprocessable("command too long")
    if any("\x00" in a for a in request.command):
        raise Unprocessable("command arguments cannot hold NUL bytes")

    datasets = tuple(dict.fromkeys(request.datasets))
    if datasets or request.purpose:
        if not profile.data_access:
            raise Forbidden(f"the {profile.name!r} segment never gets data")
        if not datasets or not request.purpose:
            raise Unprocessable("datasets and a purpose go together")
        if len(datasets) > profile.max_datasets:
            raise Forbidden(
                f"at most {profile.max_datasets} datasets in the {profile.name!r} segment"
            )
        if request.purpose not in known_purposes:
            raise Unprocessable(
                f"unknown purpose {request.purpose[:32]!r}; known: {', '.join(known_purposes)}"
            )
    if request.workspace is not None and profile.workspace_mount is None:
        raise Unprocessable(f"the {profile.name!r} segment never mounts a workspace")
    if request.interactive and profile.gateway_socket:
        raise Forbidden(f"interactive shells are for app-dev, not the {profile.name!r} segment")

    timeout = profile.timeout if request.timeout is None else request.timeout
    if not 1 <= timeout <= profile.timeout_max:
        raise Forbidden(
            f"timeout {timeout}s is outside the {profile.name!r} profile"
            f" (1..{profile.timeout_max}s)"
        )
    memory = profile.memory if request.memory is None else parse_size(request.memory)
    if not MIN_MEMORY <= memory <= profile.memory_max:
        raise Forbidden(
            f"memory {memory} bytes is outside the {profile.name!r} profile "
            f"({MIN_MEMORY}..{profile.memory_max})"
        )
    cpus = profile.cpus if request.cpus is None else float(request.cpus)
    if not 0.01 <= cpus <= profile.cpus_max:
        raise Forbidden(
            f"cpus {cpus} is outside the {profile.name!r} profile (..{profile.cpus_max})"
        )

    for name, value in request.env.items():
        if not ENV_NAME_RE.fullmatch(name) or name not in profile.env_allowed:
            raise Forbidden(
                f"environment variable {name[:64]!r} is not allowed in the {profile.name!r} "
                f"segment (allowed: {', '.join(sorted(profile.env_allowed)) or 'none'})"
            )
        if len(value) > 4096 or "\x00" in value:
            raise Unprocessable(f"environment variable {name!r} has a bad value")
    return Resolved(
        profile=profile,
        limits=Limits(pids=profile.pids_limit, memory=memory, cpus=cpus, timeout=timeout),
        datasets=datasets,
        purpose=request.purpose if datasets else None,
        env=dict(request.env),
        workspace=request.workspace,
    )
