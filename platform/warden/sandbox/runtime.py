"""The sandboxes one API process runs: launch, watch, stop, reap; every step audited.
(Kept over 500 lines: launch, watch, stop and reap share one lock and one table of live
sandboxes.)

A sandbox's gateway socket and its watcher (wall-clock timeout, exit, OOM) live in the
process that launched it, which keeps its heartbeat fresh. At start-up and then every
`orphan_after_s`, containers this installation labelled whose owner is gone (liveness.py)
are stopped and recorded (`reconcile`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from warden.audit.outcomes import WARDEN, by, by_caller_or_warden
from warden.audit.service import AuditRecord, append
from warden.audit.witness import witnessed
from warden.core.platform import Platform
from warden.db.session import unit_of_work
from warden.errors import Unavailable
from warden.identity.service import Caller
from warden.sandbox import images
from warden.sandbox import repository as repo
from warden.sandbox.driver import ContainerSpec, ExitInfo, Mount, SandboxDriver, SandboxError
from warden.sandbox.egress import Attribution, Destination, EgressProxy, Hit
from warden.sandbox.gateway_socket import MOUNT_DIR, SOCKET_PATH_IN_SANDBOX, ASGIApp, GatewaySocket
from warden.sandbox.liveness import new_owner, owner_alive
from warden.sandbox.models import LIVE_STATUSES, Sandbox
from warden.sandbox.profiles import Resolved, SegmentProfile, load_profiles
from warden.sandbox.sessions import CpuMeter, close_sessions, open_session
from warden.sandbox.tokens import issue_job_token

log = logging.getLogger("warden.sandbox")

LABEL_MANAGED = "warden.managed"
LABEL_INSTANCE = "warden.instance"
LABEL_SANDBOX = "warden.sandbox"
LABEL_SEGMENT = "warden.segment"
SYSTEM_ACTOR = WARDEN


@dataclass
class _Live:
    container_id: str
    socket: GatewaySocket | None
    watcher: threading.Thread | None = None
    stopped_by: str | None = None


def default_driver() -> SandboxDriver:
    # Imported here: the API serves reads on machines without docker-py or an engine.
    try:
        from warden.sandbox.docker_driver import DockerDriver
    except ImportError as exc:
        return _NoDriver(f"docker-py is not installed ({exc})")
    return DockerDriver()


class _NoDriver:
    """Stands in when no backend can be loaded: every use says why."""

    name = "none"

    def __init__(self, why: str) -> None:
        self.why = why

    def __getattr__(self, attr: str) -> Any:
        raise SandboxError(f"sandboxes are unavailable here: {self.why}")


class SandboxRuntime:
    def __init__(
        self,
        state: Platform,
        socket_app: ASGIApp,
        *,
        driver: SandboxDriver | None = None,
    ) -> None:
        self.state = state
        # Serves each ML sandbox's gateway socket: the API app, or the worker's gateway-only app.
        self.socket_app = socket_app
        self.settings = state.settings.sandbox
        self.driver: SandboxDriver = driver or default_driver()
        self.instance = state.settings.instance
        self.work_dir = Path(state.settings.data_dir) / "sandboxes"
        self._lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._closed = False
        self.owner = new_owner()
        self._heartbeat: threading.Thread | None = None
        self._stopping = threading.Event()
        self.cpu = CpuMeter(self._cpu_sample)
        self._egress: dict[str, EgressProxy] = {}  # per segment, started on first use
        self.egress_clients: Attribution[Sandbox] = Attribution()  # whose is a proxy client
        self._egress_rows: dict[str, Sandbox] = {}  # sandboxes behind a proxy, by id
        self._destinations: dict[str, set[str]] = {}  # sandbox id → host:port asked for

    # --- data ----------------------------------------------------------------------------------

    def profiles(self) -> dict[str, SegmentProfile]:
        return load_profiles(self.settings.profiles_path)

    def image_for(self, profile: SegmentProfile) -> tuple[str, str]:
        """(tag, content id) of the segment's image as the current inputs define it."""
        try:
            tag = images.image_tag(images.load_defs(self.settings), profile.image)
            return tag, self.driver.image_id(tag)
        except SandboxError as exc:
            raise Unavailable(str(exc)) from exc

    def output_dir(self, sandbox_id: str) -> Path:
        return self.work_dir / sandbox_id / "out"

    def log_file(self, sandbox_id: str) -> Path:
        return self.work_dir / sandbox_id / "logs.txt"

    # --- launch --------------------------------------------------------------------------------

    def launch(
        self,
        caller: Caller,
        tenant_id: str,
        resolved: Resolved,
        command: list[str],
        interactive: bool = False,
        prepare: Callable[[Path], None] | None = None,
        workspace: tuple[str, Path, bool] | None = None,
    ) -> Sandbox:
        """Row and launch event (one transaction), then socket, container, start, watcher.

        `prepare(output_dir)`, when given, fills the output mount before the container starts
        (a job's spec and input models). `workspace` (its name, folder and whether the launcher
        owns it) is mounted at the profile's workspace mount, the working directory: read-write
        for its owner, read-only for a teammate it is shared with."""
        if self._closed:
            raise Unavailable("the platform is shutting down")
        profile = resolved.profile
        tag, digest = self.image_for(profile)
        egress_port = self._egress_port(profile)
        with unit_of_work(self.state.sessions) as db:
            sandbox = Sandbox(
                tenant_id=tenant_id,
                tenant=caller.tenant,
                launcher_id=caller.principal_id,
                launcher=caller.name,
                segment=profile.name,
                status="starting",
                image=tag,
                image_digest=digest,
                command=list(command),
                datasets=list(resolved.datasets),
                purpose=resolved.purpose,
                network=profile.network,
                limits=resolved.limits.as_dict(),
                interactive=interactive,
                instance=self.instance,
                owner=self.owner,
                heartbeat_at=datetime.now(UTC),
            )
            db.add(sandbox)
            db.flush()
            token = issue_job_token(db, sandbox) if profile.gateway_socket else None
            spec = self._spec(sandbox, profile, resolved, token, workspace, egress_port)
            sandbox.mounts = [
                {"source": m.source, "target": m.target, "read_only": m.read_only}
                for m in spec.mounts
            ] + [{"tmpfs": path, "options": opts} for path, opts in spec.tmpfs.items()]
            append(db, _launch_event(sandbox, caller, spec, workspace))
            open_session(db, sandbox, caller.name, "shell" if interactive else "run")
        try:
            self._prepare_dirs(sandbox, profile)
            if workspace is not None and workspace[2]:
                _own_tree(workspace[1], profile.user)
            if prepare is not None:
                prepare(self.output_dir(sandbox.id))
            socket = None
            if token is not None:
                socket = GatewaySocket(
                    self.socket_app, self._socket_dir(sandbox.id), sandbox.id, token
                )
                socket.start()
            live = _Live(container_id="", socket=socket)
            with self._lock:
                self._live[sandbox.id] = live
                if egress_port is not None:
                    self._egress_rows[sandbox.id] = sandbox
                self._start_heartbeat()
            live.container_id = self.driver.create(spec)
            self._set(sandbox.id, container_id=live.container_id)
            if egress_port is not None:  # before it runs: its first request may be its last
                self._note_client(sandbox, live.container_id)
            started = time.monotonic()
            self.driver.start(live.container_id)
            self.cpu.watch(sandbox.id, live.container_id)
        except (SandboxError, OSError) as exc:
            self._abort(sandbox, caller, str(exc))
            raise Unavailable(f"the sandbox could not start: {exc}") from exc
        self._set(sandbox.id, status="running", started_at=datetime.now(UTC))
        live.watcher = threading.Thread(
            target=self._watch,
            args=(sandbox.id, started, resolved.limits.timeout),
            name=f"sandbox-watch-{sandbox.id}",
            daemon=True,
        )
        live.watcher.start()
        return self.get(sandbox.id)

    def _spec(
        self,
        sandbox: Sandbox,
        profile: SegmentProfile,
        resolved: Resolved,
        token: str | None,
        workspace: tuple[str, Path, bool] | None = None,
        egress_port: int | None = None,
    ) -> ContainerSpec:
        env = dict(resolved.env)
        env["WARDEN_SANDBOX_ID"] = sandbox.id
        env["WARDEN_SEGMENT"] = profile.name
        mounts = [Mount(str(self.output_dir(sandbox.id)), profile.output_mount, read_only=False)]
        if token is not None:
            env["WARDEN_TOKEN"] = token
            env["WARDEN_SOCKET"] = SOCKET_PATH_IN_SANDBOX
            mounts.append(Mount(str(self._socket_dir(sandbox.id)), MOUNT_DIR, read_only=True))
        workdir = "/tmp"  # noqa: S108 - inside the sandbox: its own tmpfs
        if workspace is not None:
            # Only a segment that declares a workspace mount gets here (profiles.resolve).
            assert profile.workspace_mount is not None and not profile.data_access
            # Another's shared workspace is mounted read-only: a teammate reads it, and never
            # writes into the owner's tree (their next `make` would run it).
            mounts.append(
                Mount(str(workspace[1]), profile.workspace_mount, read_only=not workspace[2])
            )
            workdir = profile.workspace_mount
        labels = {
            LABEL_MANAGED: "1",
            LABEL_INSTANCE: self.instance,
            LABEL_SANDBOX: sandbox.id,
            LABEL_SEGMENT: profile.name,
        }
        return ContainerSpec(
            name=f"warden-{sandbox.id}",
            image=sandbox.image,
            command=sandbox.command,
            user=profile.user,
            env=env,
            labels=labels,
            network=profile.network,
            mounts=mounts,
            tmpfs=dict(profile.tmpfs),
            read_only_root=profile.read_only_root,
            cap_drop=profile.cap_drop,
            no_new_privileges=profile.no_new_privileges,
            pids_limit=resolved.limits.pids,
            memory_bytes=resolved.limits.memory,
            cpus=resolved.limits.cpus,
            workdir=workdir,
            interactive=sandbox.interactive,
            egress_port=egress_port,
        )

    # --- egress --------------------------------------------------------------------------------

    def _egress_port(self, profile: SegmentProfile) -> int | None:
        """The port of the segment's egress proxy (started on first use); None: no egress."""
        if not profile.egress_allow:
            return None
        with self._lock:
            proxy = self._egress.get(profile.name)
            if proxy is None:
                api_port = urlsplit(self.state.settings.url).port
                proxy = EgressProxy(
                    # Its own folder: Squid's user must reach it, and not the run dir.
                    Path(tempfile.mkdtemp(prefix=f"warden-egress-{profile.name}-")),
                    [Destination.parse(e) for e in profile.egress_allow],
                    [api_port] if api_port else [],
                    self._audit_egress,
                )
                try:
                    proxy.start()
                except (SandboxError, OSError) as exc:
                    raise Unavailable(str(exc)) from exc
                self._egress[profile.name] = proxy
            return proxy.port

    def _note_client(self, sandbox: Sandbox, container_id: str) -> None:
        subnet = getattr(self.driver, "subnet", lambda _: None)(container_id)
        if subnet:
            self.egress_clients.note(subnet, sandbox.id, sandbox)

    def _audit_egress(self, hit: Hit) -> None:
        row = self.egress_clients.owner(hit.client)
        if row is None:  # its launch could not note it (Docker failed): look again
            with self._lock:
                waiting = [
                    (r, self._live[i].container_id)
                    for i, r in self._egress_rows.items()
                    if i in self._live and self._live[i].container_id
                ]
            for sandbox, container_id in waiting:
                if not self.egress_clients.noted(sandbox.id):
                    self._note_client(sandbox, container_id)
            row = self.egress_clients.owner(hit.client)
        details = {
            "destination": hit.destination,
            "method": hit.method,
            "status": hit.status,
            "client": hit.client,
        }
        if row is None:
            event = by_caller_or_warden(
                None, "sandbox.egress", "allow" if hit.allowed else "deny", details=details
            )
        else:
            with self._lock:
                self._destinations.setdefault(row.id, set()).add(_host_port(hit.destination))
            event = AuditRecord(
                action="sandbox.egress",
                decision="allow" if hit.allowed else "deny",
                actor=row.actor_name,
                actor_kind="job",
                on_behalf_of=row.launcher,
                tenant=row.tenant,
                reason=None if hit.allowed else "not in the segment's egress allowlist",
                details={"sandbox": row.id, "person": row.launcher, **details},
            )
        with unit_of_work(self.state.sessions) as db:
            append(db, event)

    def _socket_dir(self, sandbox_id: str) -> Path:
        return self.settings.run_dir / sandbox_id

    def _prepare_dirs(self, sandbox: Sandbox, profile: SegmentProfile) -> None:
        out = self.output_dir(sandbox.id)
        out.mkdir(parents=True, exist_ok=True)
        uid, _, gid = profile.user.partition(":")
        if os.geteuid() == 0 and uid.isdigit():
            os.chown(out, int(uid), int(gid or uid))
        else:
            out.chmod(0o777)  # noqa: S103 - the sandbox user must write its own output folder
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)

    def _abort(self, sandbox: Sandbox, caller: Caller, reason: str) -> None:
        live = self._forget(sandbox.id)
        if live is not None:
            self._teardown(live)
        with unit_of_work(self.state.sessions) as db:
            row = db.get(Sandbox, sandbox.id)
            assert row is not None
            row.status, row.reason, row.ended_at = "failed", reason[:1000], datetime.now(UTC)
            append(db, _exit_event(row, "error", reason=f"did not start: {reason}"[:1000]))
            close_sessions(db, sandbox.id, ("run", "shell"), 0.0, self.cpu.done(sandbox.id))

    # --- watching ------------------------------------------------------------------------------

    def _watch(self, sandbox_id: str, started: float, timeout: int) -> None:
        live = self._live.get(sandbox_id)
        if live is None:
            return
        try:
            remaining = timeout - (time.monotonic() - started)
            info = self.driver.wait(live.container_id, remaining)
        except SandboxError as exc:
            info = ExitInfo(exit_code=-1, oom_killed=False, timed_out=False)
            log.warning("sandbox %s: wait failed: %s", sandbox_id, exc)
        duration = time.monotonic() - started
        self._finish(sandbox_id, live, info, duration)

    def _finish(self, sandbox_id: str, live: _Live, info: ExitInfo, duration: float) -> None:
        # The token dies first: nothing may read on the job's behalf once it has ended.
        cpu = self.cpu.done(sandbox_id)
        if sandbox_id in self._egress_rows:
            for proxy in list(self._egress.values()):
                # Its last requests, read from the log, are audited before it is forgotten, and
                # before this transaction opens: each hit is a database write, and on SQLite
                # this transaction would hold the one writer lock the follower needs.
                proxy.caught_up(timeout=30.0)
        with unit_of_work(self.state.sessions) as db:
            row = db.get(Sandbox, sandbox_id)
            assert row is not None
            row.exit_code = info.exit_code
            row.oom_killed = info.oom_killed
            row.timed_out = info.timed_out
            row.ended_at = datetime.now(UTC)
            if row.status in LIVE_STATUSES:
                row.status, row.reason = _outcome(info, row.limits)
            append(db, exit_record(self.state, row, duration))
            with self._lock:
                asked = self._destinations.pop(sandbox_id, set())
            close_sessions(db, sandbox_id, ("run", "shell"), duration, cpu, sorted(asked))
        self._save_logs(sandbox_id, live.container_id)
        self._forget(sandbox_id)
        self._teardown(live)

    def _save_logs(self, sandbox_id: str, container_id: str) -> None:
        path = self.log_file(sandbox_id)
        try:
            data = b"".join(self.driver.logs(container_id))
            path.parent.mkdir(parents=True, exist_ok=True)
            limit = self.settings.max_saved_log_bytes
            path.write_bytes(data[-limit:] if len(data) > limit else data)
        except (SandboxError, OSError):
            log.warning("sandbox %s: could not keep its logs", sandbox_id, exc_info=True)

    def _teardown(self, live: _Live) -> None:
        if live.socket is not None:
            live.socket.stop()
        if live.container_id:
            try:
                self.driver.remove(live.container_id)
            except SandboxError:
                log.warning("could not remove container %s", live.container_id[:12], exc_info=True)

    def _forget(self, sandbox_id: str) -> _Live | None:
        with self._lock:
            self.egress_clients.end(sandbox_id)  # its subnet may be the next sandbox's
            self._egress_rows.pop(sandbox_id, None)
            return self._live.pop(sandbox_id, None)

    # --- stopping, logs ------------------------------------------------------------------------

    def stop(self, sandbox_id: str, by: Caller | None, reason: str) -> Sandbox:
        """Mark it stopped (its token dies now), record who stopped it, then stop the container."""
        with unit_of_work(self.state.sessions) as db:
            row = db.get(Sandbox, sandbox_id)
            assert row is not None
            if row.status in LIVE_STATUSES:
                row.status, row.reason = "stopped", reason[:1000]
                append(db, _stop_event(row, by, reason))
        live = self._live.get(sandbox_id)
        if live is not None and live.container_id:
            try:
                self.driver.stop(live.container_id, self.settings.stop_grace_s)
            except SandboxError as exc:
                raise Unavailable(str(exc)) from exc
            if live.watcher is not None:
                live.watcher.join(timeout=self.settings.stop_grace_s + 30)
        return self.get(sandbox_id)

    def logs(self, sandbox_id: str, *, follow: bool) -> Iterator[bytes]:
        live = self._live.get(sandbox_id)
        if live is not None and live.container_id:
            sent = False
            try:
                for chunk in self.driver.logs(live.container_id, follow=follow):
                    sent = True
                    yield chunk
            except SandboxError:
                pass  # the container went away meanwhile: its kept copy follows
            if sent and not follow:
                return
            # A followed stream ends when the container exits; the kept copy is complete once
            # the watcher is done with it.
            if live.watcher is not None:
                live.watcher.join(timeout=60)
            if sent:
                return
        path = self.log_file(sandbox_id)
        if path.exists():
            yield path.read_bytes()

    def get(self, sandbox_id: str) -> Sandbox:
        with unit_of_work(self.state.sessions) as db:
            row = db.get(Sandbox, sandbox_id)
            assert row is not None
            return row

    def _set(self, sandbox_id: str, **values: Any) -> None:
        with unit_of_work(self.state.sessions) as db:
            row = db.get(Sandbox, sandbox_id)
            assert row is not None
            for key, value in values.items():
                setattr(row, key, value)

    def _cpu_sample(self, container_id: str) -> float | None:
        sample = getattr(self.driver, "cpu_seconds", None)  # a backend may not say
        return None if sample is None else sample(container_id)  # type: ignore[no-any-return]

    def is_live_here(self, sandbox_id: str) -> bool:
        return sandbox_id in self._live

    def _watched(self, row: Sandbox | None) -> bool:
        """Ours (our watcher or launch deals with it), or its owner still answers for it."""
        if row is None:
            return False
        if row.owner == self.owner:
            return True
        stale = timedelta(seconds=self.settings.orphan_after_s)
        return owner_alive(row.owner, row.heartbeat_at, datetime.now(UTC), stale)

    # --- heartbeat -----------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        """Called under the lock; one thread per runtime, from its first launch on."""
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(
                target=self._beat, name="sandbox-heartbeat", daemon=True
            )
            self._heartbeat.start()

    def _beat(self) -> None:
        last_reconcile = time.monotonic()
        while not self._stopping.wait(self.settings.heartbeat_s):
            try:
                live = list(self._live)
                if live:
                    with unit_of_work(self.state.sessions) as db:
                        repo.heartbeat(db, live, self.owner, datetime.now(UTC))
                if time.monotonic() - last_reconcile >= self.settings.orphan_after_s:
                    last_reconcile = time.monotonic()
                    self.reconcile()
            except Exception:  # a missed beat is retried; the thread must not die
                log.warning("sandbox heartbeat failed", exc_info=True)

    # --- start-up and shut-down ----------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Stop containers this installation labelled whose sandbox no process watches any more,
        and close rows whose container is gone; each one recorded. Returns the sandbox ids."""
        handled: list[str] = []
        containers = self.driver.list({LABEL_MANAGED: "1", LABEL_INSTANCE: self.instance})
        seen: set[str] = set()
        kept = set(self._live)
        for container in containers:
            sandbox_id = container.labels.get(LABEL_SANDBOX, "")
            seen.add(sandbox_id)
            if self.is_live_here(sandbox_id):
                continue
            # The row first: its token dies before the container goes.
            with unit_of_work(self.state.sessions) as db:
                row = db.get(Sandbox, sandbox_id)
                if self._watched(row):
                    kept.add(sandbox_id)
                    continue
                reason = "orphaned: the platform process watching it is gone"
                if row is not None and row.status in LIVE_STATUSES:
                    row.status, row.reason, row.ended_at = "stopped", reason, datetime.now(UTC)
                    append(db, _stop_event(row, None, reason, container=container.id))
                elif row is None:
                    append(db, _orphan_event(sandbox_id, container.id))
            try:
                self.driver.remove(container.id)
            except SandboxError:
                log.warning("could not reap container %s", container.id[:12], exc_info=True)
                continue
            shutil.rmtree(self._socket_dir(sandbox_id), ignore_errors=True)
            handled.append(sandbox_id)
        with unit_of_work(self.state.sessions) as db:
            rows = repo.live_rows(db, self.instance)
            for row in rows:
                if row.id in seen or self.is_live_here(row.id):
                    continue
                if self._watched(row):  # e.g. still starting in its own process
                    kept.add(row.id)
                    continue
                row.status, row.ended_at = "lost", datetime.now(UTC)
                row.reason = "no container found for it"
                append(db, _exit_event(row, "error", reason=row.reason))
                handled.append(row.id)
        reap_networks = getattr(self.driver, "reap_networks", None)
        if reap_networks is not None:
            reap_networks({LABEL_MANAGED: "1", LABEL_INSTANCE: self.instance}, kept)
        return handled

    def shutdown(self) -> None:
        """Stop every sandbox this process runs (recorded as stopped by the platform)."""
        self._closed = True
        self._stopping.set()
        self.cpu.stop()
        for sandbox_id in list(self._live):
            try:
                self.stop(sandbox_id, None, "the platform shut down")
            except Exception:
                log.exception("could not stop sandbox %s at shut-down", sandbox_id)
        for proxy in list(self._egress.values()):
            proxy.stop()
        self._egress.clear()


def _outcome(info: ExitInfo, limits: dict[str, Any]) -> tuple[str, str | None]:
    if info.timed_out:
        return "timed_out", f"killed after its {limits.get('timeout_s')}s wall-clock limit"
    if info.oom_killed:
        return "failed", f"OOM: killed at its {limits.get('memory_bytes')}-byte memory limit"
    if info.exit_code == 0:
        return "succeeded", None
    return "failed", None


def _host_port(destination: str) -> str:
    """host:port of a proxied URL (http://h:p/…) or tunnel (h:p)."""
    try:
        parts = urlsplit(destination if "://" in destination else f"//{destination}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return destination[:200]
    return f"{parts.hostname or '?'}:{port}"[:200]


def _own_tree(tree: Path, user: str) -> None:
    """The workspace writable by the sandbox's user (uploads already leave it so; a tree made
    under another uid setting is handed over once)."""
    uid, _, gid = user.partition(":")
    if os.geteuid() != 0 or not uid.isdigit() or tree.stat().st_uid == int(uid):
        return
    owner = (int(uid), int(gid or uid))
    for here, dirs, files in os.walk(tree):
        os.lchown(here, *owner)
        for name in dirs + files:
            os.lchown(os.path.join(here, name), *owner)


def _launch_event(
    sandbox: Sandbox,
    caller: Caller,
    spec: ContainerSpec,
    workspace: tuple[str, Path, bool] | None = None,
) -> AuditRecord:
    return by(
        caller,
        "sandbox.launch",
        "allow",
        purpose=sandbox.purpose,
        details={
            "sandbox": sandbox.id,
            "job": sandbox.actor_name,
            "segment": sandbox.segment,
            "image": sandbox.image,
            "image_digest": sandbox.image_digest,
            "command": list(sandbox.command),
            "datasets": list(sandbox.datasets),
            "network": sandbox.network,
            "mounts": sandbox.mounts,
            "limits": sandbox.limits,
            "user": spec.user,
            "read_only_root": spec.read_only_root,
            "cap_drop": list(spec.cap_drop),
            "no_new_privileges": spec.no_new_privileges,
            "seccomp": "default",
            "gateway_socket": "WARDEN_SOCKET" in spec.env,
            "interactive": sandbox.interactive,
            "workspace": workspace[0] if workspace else None,
            "workspace_read_only": (not workspace[2]) if workspace else None,
        },
    )


def exit_record(state: Platform, row: Sandbox, duration: float) -> AuditRecord:
    """A sandbox's end as its process saw it, naming the reads its job made there (what its
    model's lineage is held to: audit/witness.py)."""
    reads = witnessed(state.job_reads.take(row.actor_name))
    return _exit_event(row, "allow", duration_s=round(duration, 3), **reads)


def _exit_event(
    row: Sandbox, decision: str, reason: str | None = None, **extra: Any
) -> AuditRecord:
    return AuditRecord(
        action="sandbox.exit",
        decision=decision,  # type: ignore[arg-type]
        actor=row.actor_name,
        actor_kind="job",
        on_behalf_of=row.launcher,
        tenant=row.tenant,
        purpose=row.purpose,
        reason=reason or row.reason,
        details={
            "sandbox": row.id,
            "segment": row.segment,
            "status": row.status,
            "exit_code": row.exit_code,
            "oom_killed": row.oom_killed,
            "timed_out": row.timed_out,
            **extra,
        },
    )


def _stop_event(
    row: Sandbox, by: Caller | None, reason: str, container: str | None = None
) -> AuditRecord:
    return by_caller_or_warden(
        by,
        "sandbox.stop",
        "allow",
        tenant=row.tenant,
        reason=reason,
        details={
            "sandbox": row.id,
            "job": row.actor_name,
            "launcher": row.launcher,
            "segment": row.segment,
            "container": container or row.container_id or "",
        },
    )


def _orphan_event(sandbox_id: str, container_id: str) -> AuditRecord:
    return by_caller_or_warden(
        None,
        "sandbox.stop",
        "allow",
        reason="a container labelled by this installation with no sandbox row; removed",
        details={"sandbox": sandbox_id, "container": container_id},
    )
