"""The worker: claim a queued job → ML sandbox → stream its log → collect metrics and
artifacts from the output mount → register the result with lineage → end it, saying why.

A worker drives sandboxes through the sandbox service and the process's sandbox runtime (whose
gateway sockets serve the governed read path), so each sandbox it launches is re-checked by
policy and audited as any launch is. Many workers may share one database: claiming is in repository.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warden.audit.service import append
from warden.catalog.service import (
    file_digest,
)
from warden.core.filesystem import open_below
from warden.core.loop import BackgroundLoop
from warden.core.platform import Platform
from warden.db.sealed import RowTampered, check
from warden.db.session import unit_of_work
from warden.errors import WardenError
from warden.identity.models import Principal, Tenant
from warden.identity.revocations import revocations_for
from warden.identity.service import Caller
from warden.jobs import repository as repo
from warden.jobs.models import Job
from warden.jobs.outputs import register_outputs
from warden.jobs.service import DIST_ENV, default_command, job_event, jobs_dir, log_path
from warden.registry import service as registry
from warden.registry.models import Model
from warden.sandbox import service as sandbox_service
from warden.sandbox.models import LIVE_STATUSES, Sandbox
from warden.sandbox.profiles import LaunchRequest
from warden.sandbox.runtime import SandboxRuntime

log = logging.getLogger("warden.jobs")
SKIPPED = {"spec.json", "inputs"}
MAX_ARTIFACT_BYTES = 2 << 30


class JobWorker(BackgroundLoop):
    """Claims queued jobs and runs each in an ML sandbox of `sandboxes`, one per slot thread."""

    name = "warden-jobs"

    def __init__(
        self,
        state: Platform,
        sandboxes: SandboxRuntime,
        *,
        worker_id: str | None = None,
        slots: int | None = None,
        poll_s: float | None = None,
    ) -> None:
        self.settings = state.settings.jobs
        super().__init__(
            poll_s=poll_s or self.settings.poll_s, threads=slots or self.settings.slots
        )
        self.state = state
        self.sandboxes = sandboxes
        self.worker_id = (
            worker_id or f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self._last_sweep = 0.0

    def run_once(self) -> str | None:
        """Claim and run one job to its end; its id, or None when the queue is empty."""
        self._sweep()
        job = self.claim()
        if job is None:
            return None
        self.execute(job)
        return job.id

    def claim(self) -> Job | None:
        with unit_of_work(self.state.sessions) as db:
            job = repo.claim(db, self.worker_id, datetime.now(UTC))
            if job is not None:
                append(db, job_event(job, "job.start", "allow", worker=self.worker_id))
            return job

    def _sweep(self) -> None:
        if time.monotonic() - self._last_sweep < self.settings.stale_after_s / 4:
            return
        self._last_sweep = time.monotonic()
        with unit_of_work(self.state.sessions) as db:
            for job in repo.stale(db, datetime.now(UTC), self.settings.stale_after_s):
                reason = f"its worker ({job.worker_id}) stopped answering; not retried"
                if repo.finish(
                    db, job.id, job.worker_id or "", "failed", reason, ended_at=datetime.now(UTC)
                ):
                    job.state, job.reason = "failed", reason
                    append(db, job_event(job, "job.end", "error", reason=reason))

    # --- one job -------------------------------------------------------------------------------

    def execute(self, job: Job) -> None:
        path = log_path(self.state, job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as out:
            note = _Notes(out)
            note(f"job {job.id} ({job.kind} {job.step}) claimed by worker {self.worker_id}")
            try:
                state, reason, values = self._run(job, note)
            except Exception as exc:  # a bug here must still end the job, saying why
                log.exception("job %s failed in its worker", job.id)
                state, reason, values = "failed", f"worker error: {type(exc).__name__}: {exc}", {}
            with unit_of_work(self.state.sessions) as db:
                ended = repo.finish(
                    db, job.id, self.worker_id, state, reason, ended_at=datetime.now(UTC), **values
                )
                final = db.get(Job, job.id, populate_existing=True)
                assert final is not None
                if ended:
                    decision = "allow" if state == "succeeded" else "error"
                    append(db, job_event(final, "job.end", decision, reason=reason))
            note(f"job {job.id} {final.state}" + (f": {final.reason}" if final.reason else ""))

    def _run(self, job: Job, note: _Notes) -> tuple[str, str | None, dict[str, Any]]:
        try:
            caller = self._launcher(job)
        except RowTampered as exc:
            return "failed", f"refused: {exc.detail}", {}
        if caller is None:
            return "failed", f"its launcher {job.launcher!r} is disabled or gone", {}
        nproc = int(job.spec.get("nproc", 1))
        command = list(job.spec.get("command") or default_command(job.step, nproc))
        request = LaunchRequest(
            segment="ml",
            command=command,
            datasets=list(job.datasets),
            purpose=job.purpose if job.datasets else None,
            timeout=job.timeout_s,
            memory=job.memory,
            # one CPU per process unless asked otherwise (the profile caps it)
            cpus=job.cpus or (float(nproc) if nproc > 1 else None),
            env={"WARDEN_RUN_NAME": f"job-{job.id}", **_thread_env(job.cpus, nproc)},
        )
        runtime = self.sandboxes
        try:
            sandbox = sandbox_service.launch(
                runtime, caller, request, prepare=lambda out: self._prepare(job, out)
            )
        except WardenError as exc:
            return "failed", f"refused at launch: {type(exc).__name__}: {exc.detail}", {}
        with unit_of_work(self.state.sessions) as db:
            repo.heartbeat(db, job.id, self.worker_id, datetime.now(UTC), sandbox_id=sandbox.id)
        note(f"sandbox {sandbox.id} ({sandbox.image}) runs as {sandbox.actor_name}")
        note(f"$ {' '.join(command)}")
        streamer = threading.Thread(
            target=self._stream, args=(runtime, sandbox.id, note), daemon=True
        )
        streamer.start()
        cancelled = self._wait(runtime, job, sandbox.id, caller)
        streamer.join(timeout=60)
        with unit_of_work(self.state.sessions) as db:
            ended = db.get(Sandbox, sandbox.id)
            assert ended is not None
        out = runtime.output_dir(sandbox.id)
        if cancelled:
            return "cancelled", None, {}
        artifacts = self._collect(job, out)
        return self._outcome(job, ended, out, artifacts, note)

    def _launcher(self, job: Job) -> Caller | None:
        """Whom the job runs as; None if they are disabled or gone. RowTampered if the job,
        its launcher or tenant was written past Warden (db/sealed.py): a queued job's launcher
        or command edited in SQL runs nothing."""
        with unit_of_work(self.state.sessions) as db:
            principal = db.get(Principal, job.launcher_id)
            tenant = db.get(Tenant, job.tenant_id)
            if principal is None or tenant is None or principal.disabled:
                return None
            if principal.name in revocations_for(db).refresh(db).disabled:
                return None  # disabled, whatever its row says now (identity/revocations.py)
            for row in (job, principal, tenant):
                check(db, row)
        if principal.name != job.launcher:
            raise RowTampered(f"job {job.id!r} names {job.launcher!r} but runs as another")
        return Caller(principal.name, principal.kind, tenant.name, principal.id)

    def _prepare(self, job: Job, out: Path) -> None:
        """spec.json with model references turned into files under /out/inputs."""
        spec = {k: v for k, v in job.spec.items() if k not in ("command", "nproc")}
        with unit_of_work(self.state.sessions) as db:
            spec["model_in"] = _materialise(
                db, job.spec.get("model_in"), job.tenant_id, self._data_dir, out
            )
        (out / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True))
        (out / "spec.json").chmod(0o644)

    @property
    def _data_dir(self) -> Path:
        return Path(self.state.settings.data_dir)

    def _stream(self, runtime: Any, sandbox_id: str, note: _Notes) -> None:
        try:
            for chunk in runtime.logs(sandbox_id, follow=True):
                note.raw(chunk)
        except Exception:
            log.warning("job log stream for sandbox %s broke", sandbox_id, exc_info=True)

    def _wait(self, runtime: Any, job: Job, sandbox_id: str, caller: Caller) -> bool:
        """Until the sandbox ends; True when the job was cancelled (its sandbox stopped)."""
        beat = 0.0
        while True:
            with unit_of_work(self.state.sessions) as db:
                status = repo.sandbox_status(db, sandbox_id)
                state = "running"
                if time.monotonic() - beat >= self.settings.heartbeat_s:
                    beat = time.monotonic()
                    state = repo.heartbeat(db, job.id, self.worker_id, datetime.now(UTC))
                else:
                    state = repo.job_state(db, job.id)
            if state == "cancelled":
                if status in LIVE_STATUSES:
                    runtime.stop(sandbox_id, caller, "its job was cancelled")
                return True
            if self.stopping and status in LIVE_STATUSES:
                runtime.stop(sandbox_id, None, "its worker shut down")
                continue
            if status not in LIVE_STATUSES:
                return False
            time.sleep(0.2)

    def _collect(self, job: Job, out: Path) -> list[dict[str, Any]]:
        """Copy what the workload wrote (not its spec or inputs) into jobs/<id>/artifacts."""
        target = jobs_dir(self.state) / job.id / "artifacts"
        target.mkdir(parents=True, exist_ok=True)
        found: list[dict[str, Any]] = []
        if not out.is_dir():
            return found
        for path in sorted(out.rglob("*")):
            relative = path.relative_to(out)
            if relative.parts[0] in SKIPPED or not path.is_file() or path.is_symlink():
                continue
            dest = target / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            size = _copy_regular(out, relative, dest)
            if size is None:
                continue
            found.append(
                {
                    "name": str(relative),
                    "path": str(dest.relative_to(self._data_dir)),
                    "bytes": size,
                    "sha256": file_digest(dest).removeprefix("sha256:"),
                }
            )
        return found

    def _outcome(
        self,
        job: Job,
        sandbox: Sandbox,
        out: Path,
        artifacts: list[dict[str, Any]],
        note: _Notes,
    ) -> tuple[str, str | None, dict[str, Any]]:
        if sandbox.status == "timed_out":
            return "timed_out", sandbox.reason, {}
        if sandbox.status != "succeeded":
            return "failed", _why(sandbox), {"last_line": _last_error(log_path(self.state, job.id))}
        # The exit status decides; metrics are optional (a custom command need not write any).
        # read from Warden's own copy: what the workload left in `out` may be a link to
        # anywhere on the host (_collect copies regular files only)
        metrics = _metrics(jobs_dir(self.state) / job.id / "artifacts" / "metrics.json", note)
        model, outputs = record_result(self.state, job.id, sandbox, metrics, artifacts)
        note(f"registered {model.ref} ({model.id})")
        for o in outputs:
            note(f"registered dataset {o['dataset']} ({o['classification']})")
        return "succeeded", None, {"model_id": model.id, "outputs": [o["dataset"] for o in outputs]}


REGISTER_ATTEMPTS = 5
REPORT_TYPES = (".md", ".json", ".png")


def record_result(
    state: Platform,
    job_id: str,
    sandbox: Sandbox | None,
    metrics: dict[str, Any],
    artifacts: list[dict[str, Any]],
) -> tuple[Model, list[dict[str, Any]]]:
    """Register a succeeded job's model (and an inference job's datasets) with its lineage and
    audit it, in one transaction. Versions are taken in turns (registry.next_version); should a
    unique version still be broken (a registration outside that rule), the whole transaction
    is tried again."""

    def register(db: Session) -> tuple[Model, list[dict[str, Any]]]:
        row = check(db, db.get_one(Job, job_id))  # what it ran, as whom: as Warden wrote it
        parents = [
            m
            for m in (registry.get_model(db, i, row.tenant_id) for i in row.model_in)
            if m is not None
        ]
        if sandbox is not None:  # its reads as its exit named them, none cut from the log
            registry.witnessed_reads(db, sandbox)
        lineage = registry.lineage_for(db, row, sandbox, parents)
        outputs: list[dict[str, Any]] = []
        if row.kind == "infer":
            outputs = register_outputs(state, db, row, artifacts, lineage)
            lineage["outputs"] = outputs
        lineage["provenance"] = metrics.get("provenance")
        # Reports are documents about the model, never data: an output dataset (or weights, or
        # any other file type) named as a report would leave past the gateway, to whoever may use
        # the model.
        reports = [
            name
            for name in [a["name"] for a in artifacts if Path(a["name"]).stem.startswith("report")]
            + [str(p) for p in metrics.get("plots", []) if isinstance(p, str)]
            if Path(name).suffix.lower() in REPORT_TYPES
        ]
        model = registry.register(
            db,
            row,
            metrics=metrics,
            artifacts=artifacts,
            reports=list(dict.fromkeys(reports)),
            lineage=lineage,
        )
        event = job_event(
            row,
            "model.register",
            "allow",
            model=model.id,
            ref=model.ref,
            outputs=[o["dataset"] for o in outputs],
        )
        append(db, event)
        return model, outputs

    for attempt in range(1, REGISTER_ATTEMPTS + 1):
        try:
            with unit_of_work(state.sessions) as db:
                return register(db)
        except IntegrityError:
            if attempt == REGISTER_ATTEMPTS:
                raise
            log.info("job %s: model version taken by a concurrent job; retrying", job_id)
    raise AssertionError("unreachable")


class _Notes:
    """Appends to the job's log file: the worker's own lines, and the workload's output."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        self.raw(f"[warden {stamp}] {line}\n".encode())

    def raw(self, data: bytes) -> None:
        with self.lock:
            self.out.write(data)
            self.out.flush()


def _materialise(db: Any, node: Any, tenant_id: str, data_dir: Path, out: Path) -> Any:
    """Pinned references ("ID:FILE") → copies under out/inputs, named as the sandbox sees them."""
    if node is None:
        return None
    if isinstance(node, list):
        return [_materialise(db, n, tenant_id, data_dir, out) for n in node]
    if isinstance(node, dict):
        return {k: _materialise(db, v, tenant_id, data_dir, out) for k, v in node.items()}
    model_id, _, name = str(node).partition(":")
    model = registry.get_model(db, model_id, tenant_id)  # RowTampered if edited past Warden
    if model is None:
        raise FileNotFoundError(f"model {model_id} is gone")
    artifact = next(a for a in model.artifacts if a["name"] == name)
    dest = out / "inputs" / model_id / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(registry.artifact_file(model, artifact, data_dir), dest)
    for folder in (dest.parent, dest.parent.parent):
        folder.chmod(0o755)
    dest.chmod(0o644)
    return f"/out/inputs/{model_id}/{name}"


def _copy_regular(out: Path, relative: Path, dest: Path) -> int | None:
    """Copy `out/relative` if it is a plain file of at most MAX_ARTIFACT_BYTES, opened below
    `out` without following any link (core/filesystem.open_below); its size, or None."""
    fd = open_below(out, relative)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        if size > MAX_ARTIFACT_BYTES:
            return None
        with dest.open("wb") as copy:
            shutil.copyfileobj(handle, copy)
    return size


def _metrics(path: Path, note: _Notes) -> dict[str, Any]:
    """The workload's metrics.json, or {} (noted in the job's log) when it wrote none usable."""
    if not path.is_file():
        note("the workload wrote no metrics.json; none recorded")
        return {}
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        note(f"metrics.json is not valid JSON ({exc}); none recorded")
        return {}
    if not isinstance(metrics, dict):
        note("metrics.json is not a JSON object; none recorded")
        return {}
    return metrics


def _why(sandbox: Sandbox) -> str:
    """A failed sandbox's reason, in Warden's words (the workload's last line is kept apart:
    see `Job.last_line`)."""
    base = sandbox.reason or f"the workload exited with code {sandbox.exit_code}"
    if sandbox.status == "stopped":
        base = f"its sandbox was stopped: {sandbox.reason}"
    elif sandbox.status == "lost":
        base = f"its sandbox was lost: {sandbox.reason}"
    return base


def _last_error(logs: Path) -> str | None:
    try:
        lines = logs.read_bytes()[-64_000:].decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("[warden ")]
    flagged = [ln for ln in lines if ln.startswith("error:")]
    if flagged:
        return flagged[-1][:500]
    return lines[-1][:500] if lines else None


def _thread_env(cpus: float | None, nproc: int) -> dict[str, str]:
    """As many compute threads as the sandbox has CPUs: more only fight over its CPU quota."""
    if nproc > 1:
        return dict(DIST_ENV)  # torchrun gives each rank one thread
    return {"OMP_NUM_THREADS": str(max(1, int(cpus or 1)))}
