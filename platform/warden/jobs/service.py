"""What callers may do with jobs; one place decides, every decision is audited.

Creating a job is a policy decision made before anything exists: the launcher may run ML
sandboxes in the tenant (Casbin `sandbox:ml`, `manage`, asked first), their rights cover
every dataset for the job's purpose, and they may see the data behind every parent model (one
they may not answers as a missing one). A refusal leaves no row and no container, only its
audit event. People see and cancel their own jobs; `sys:jobs` (admins) sees and cancels all
of their tenant's. Showing a job's log is audited (`job.logs`) before its first byte.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from warden.audit.outcomes import by_caller_or_warden, refusals_audited
from warden.audit.service import AuditRecord, append, record
from warden.catalog.service import DATASET_NAME_RE, PURPOSES, load_view
from warden.core.platform import Platform
from warden.db.sealed import RowTampered, check
from warden.db.session import unit_of_work
from warden.errors import Forbidden, NotFound, Unprocessable
from warden.identity.service import Caller, check_name, get_tenant
from warden.jobs import repository as repo
from warden.jobs.models import END_STATES, Job
from warden.jobs.schemas import JobCreate
from warden.policy.authz import allowed, require, sees_launched
from warden.policy.reads import authorize_read, may_use, seen_at_launch
from warden.registry import service as registry
from warden.registry import serving
from warden.registry.models import Model
from warden.sandbox.models import Sandbox

ADMIN_OBJECT = "sys:jobs"
ML_OBJECT = "sandbox:ml"
STEPS = {
    "train": ("train-generic", "train-domain", "swap"),
    "infer": ("infer",),
    "eval": ("eval",),
}
DEFAULT_STEP = {"train": "train-domain", "infer": "infer", "eval": "eval"}
DEFAULT_PURPOSE = {"train": "training", "infer": "inference", "eval": "evaluation"}
DEFAULT_NAME = {
    "train-generic": "generic-tower",
    "train-domain": "domain-tower",
    "swap": "swapped-stack",
    "infer": "inference",
    "eval": "eval-report",
}
SPEC_IN_SANDBOX = "/out/spec.json"


def jobs_dir(state: Platform) -> Path:
    return Path(state.settings.data_dir) / "jobs"


def log_path(state: Platform, job_id: str) -> Path:
    return jobs_dir(state) / job_id / "logs.txt"


# The steps whose training loop is data-parallel (warden_ml.dist): `nproc` > 1 allowed.
DISTRIBUTED_STEPS = ("train-domain",)


DIST_ENV = {"GLOO_SOCKET_IFNAME": "lo"}


def default_command(step: str, nproc: int = 1) -> list[str]:
    workload = ["-m", "warden_ml", step, "--spec", SPEC_IN_SANDBOX, "--out", "/out"]
    if nproc <= 1:
        return ["python3", *workload]
    # A network-less sandbox has loopback only and cannot resolve its own host name, so the
    # rendezvous is static on 127.0.0.1 (not --standalone) and gloo binds `lo` (DIST_ENV).
    launcher = [
        *("-m", "torch.distributed.run", "--nnodes=1", "--node-rank=0"),
        *("--master-addr=127.0.0.1", "--master-port=29500", f"--nproc-per-node={nproc}"),
    ]
    return ["python3", *launcher, *workload]


@dataclass(frozen=True)
class _Plan:
    step: str
    name: str
    purpose: str
    datasets: list[str]
    spec: dict[str, Any]
    parents: list[Model]


def create(state: Platform, caller: Caller, body: JobCreate) -> Job:
    """Decide, then queue, in one transaction; a refusal is audited and changes nothing."""
    refused = {
        "purpose": body.purpose or DEFAULT_PURPOSE.get(body.kind),
        "details": {"kind": body.kind, "step": body.step, "datasets": list(body.datasets.values())},
    }
    with refusals_audited(state.sessions, caller, "job.create", **refused):
        _refuse_jobs(caller)
        # before any model reference is resolved: its answer says whether the model exists
        require(
            state,
            caller,
            ML_OBJECT,
            "manage",
            f"{caller.name} may not run ML jobs in {caller.tenant!r}",
        )
        with unit_of_work(state.sessions) as db:
            plan = _plan(db, state, caller, body)
            decisions = _decide(db, state, caller, plan)
            tenant = get_tenant(db, caller.tenant)
            job = Job(
                tenant_id=tenant.id,
                tenant=caller.tenant,
                launcher_id=caller.principal_id,
                launcher=caller.name,
                kind=body.kind,
                step=plan.step,
                name=plan.name,
                spec=plan.spec,
                datasets=plan.datasets,
                purpose=plan.purpose,
                model_in=[p.id for p in plan.parents],
                timeout_s=body.timeout,
                memory=body.memory,
                cpus=body.cpus,
                decisions=decisions,
                state="queued",
            )
            db.add(job)
            db.flush()
            append(db, _event(job, "job.create", "allow", caller=caller))
        return job


def _plan(db: Session, state: Platform, caller: Caller, body: JobCreate) -> _Plan:
    step = body.step or DEFAULT_STEP[body.kind]
    if step not in STEPS[body.kind]:
        raise Unprocessable(
            f"a {body.kind} job runs one of {', '.join(STEPS[body.kind])}, not {step!r}"
        )
    purpose = body.purpose or DEFAULT_PURPOSE[body.kind]
    if purpose not in PURPOSES:
        raise Unprocessable(f"unknown purpose {purpose[:32]!r}; known: {list(PURPOSES)}")
    if body.kind == "train" and purpose != "training":
        # evaluation-only data (gold, the generator's latent model) must never reach training
        raise Unprocessable(f"a train job runs for 'training' only, not {purpose[:32]!r}")
    name = check_name(body.name or DEFAULT_NAME[step], "model name")
    for role, dataset in body.datasets.items():
        if not DATASET_NAME_RE.fullmatch(role) or not DATASET_NAME_RE.fullmatch(dataset):
            raise Unprocessable(f"invalid dataset role or name {role[:64]!r}={dataset[:64]!r}")
    datasets = list(dict.fromkeys(body.datasets.values()))
    if not datasets and body.command is None:
        raise Unprocessable("a job needs at least one dataset (role=name)")
    model_in, parents = _resolve_model_in(db, state, caller, body.model_in)
    if body.kind == "train" and (other := sorted({p.kind for p in parents} - {"train"})):
        # an eval or infer job's output may hold what training may not read
        raise Forbidden(f"a train job builds only on trained models, not on {other} outputs")
    spec: dict[str, Any] = {
        "seed": body.seed,
        "datasets": dict(body.datasets),
        "params": dict(body.params),
        "model_in": model_in,
        "purpose": purpose,
    }
    if body.command is not None:
        if not body.command or any(len(a) > 4096 for a in body.command):
            raise Unprocessable("command must be 1-64 arguments of at most 4096 characters")
        spec["command"] = list(body.command)
    if body.nproc > 1:
        if body.command is not None or step not in DISTRIBUTED_STEPS:
            raise Unprocessable(
                f"--nproc runs the data-parallel steps ({', '.join(DISTRIBUTED_STEPS)}), "
                f"not {'a custom command' if body.command is not None else step}"
            )
        spec["nproc"] = body.nproc
    return _Plan(step, name, purpose, datasets, spec, parents)


def _resolve_model_in(
    db: Session, state: Platform, caller: Caller, value: Any
) -> tuple[Any, list[Model]]:
    """Pin every reference to a model id (so "latest" cannot move under a queued job), once
    the caller may use the model (`_usable`)."""
    parents: dict[str, Model] = {}

    def pin(ref: Any, role: str | None) -> str:
        if not isinstance(ref, str):
            raise Unprocessable("model_in holds model references (strings)")
        model = _usable(db, state, caller, ref)
        _, wanted = registry.parse_ref(ref)
        artifact = registry.pick_artifact(model, wanted, role)
        parents[model.id] = model
        return f"{model.id}:{artifact['name']}"

    def walk(node: Any, role: str | None) -> Any:
        if node is None:
            return None
        if isinstance(node, list):
            return [pin(r, role) for r in node[:32]]
        if isinstance(node, dict):
            return {str(k)[:32]: walk(v, str(k)) for k, v in list(node.items())[:16]}
        return pin(node, role)

    return walk(value, None), list(parents.values())


def _usable(db: Session, state: Platform, caller: Caller, ref: str) -> Model:
    """The model `ref` names, if the caller may use it (`serving.authorize`: a model's
    artifacts carry its data), decided before its files are looked at (their names are no
    more the caller's to learn than the model's)."""
    model = registry.resolve(db, caller.tenant, ref)
    serving.authorize(state, db, caller, model, ref)
    return model


def _decide(db: Session, state: Platform, caller: Caller, plan: _Plan) -> dict[str, Any]:
    snapshot = state.policy.ensure_fresh()
    decided: dict[str, Any] = {}
    views = [load_view(db, state.settings.datasets_dir, caller.tenant, n) for n in plan.datasets]
    version = None
    for view in views:
        decision = authorize_read(state, caller, view, plan.purpose).decision
        version = decision.policy_version
        decided[view.name] = {
            "version": view.version,
            "snapshot": view.snapshot_id,
            "classification": view.classification,
            "grant_ids": list(decision.grant_ids),
            "rule": decision.deciding_rule,
            "seen": seen_at_launch(decision),  # who may use what it builds: no less than this
        }
    return {"policy_version": version or snapshot.version, "datasets": decided}


def _refuse_jobs(caller: Caller) -> None:
    if caller.kind == "job":
        raise Forbidden("jobs cannot launch jobs")


def _is_admin(state: Platform, caller: Caller, act: str) -> bool:
    return allowed(state, caller, ADMIN_OBJECT, act)


def get_visible(state: Platform, caller: Caller, job_id: str, act: str = "read") -> Job:
    """The job if the caller launched it or administers jobs; else NotFound."""
    _refuse_jobs(caller)
    with unit_of_work(state.sessions) as db:
        row = db.get(Job, job_id[:12])
        if row is not None:
            check(db, row)  # whose it is decides who sees it (db/sealed.py)
    if row is None or row.tenant != caller.tenant:
        raise NotFound(f"no job {job_id[:12]!r}")
    if not sees_launched(state, caller, row.launcher, ADMIN_OBJECT, act):
        raise NotFound(f"no job {job_id[:12]!r}")
    return row


def may_see_output(state: Platform, caller: Caller, job: Job) -> bool:
    """Whether `caller` may see what the job's workload printed (its log): someone, its
    launcher included, who may read every dataset it read and every dataset its parent models
    were built from, for some purpose each allows, and no less than the launcher saw (a right
    that ended since takes the log back); administering jobs alone is not enough."""
    with unit_of_work(state.sessions) as db:
        names = registry.inputs_of(db, job.tenant_id, job.datasets, job.model_in)
        views = [load_view(db, state.settings.datasets_dir, job.tenant, n) for n in names]
        launch = registry.job_built_with(db, job)  # its own launch's, and its parents'
    return all(may_use(state, caller, v, built_by=job.launcher, built_with=launch) for v in views)


def open_log(state: Platform, caller: Caller, job_id: str, follow: bool) -> Iterator[bytes]:
    """The job's log for `caller` (`get_log_visible`); the refusal or the view audited
    (`job.logs`) before its first byte."""
    with refusals_audited(state.sessions, caller, LOG_ACTION, details={"job": job_id[:12]}):
        job = get_log_visible(state, caller, job_id)
    log_shown(state, caller, job)
    return follow_logs(state, job.id, follow)


LOG_ACTION = "job.logs"


def log_shown(state: Platform, caller: Caller, job: Job) -> None:
    """Audit that `caller` is shown the job's log (it may carry rows of the data the job
    read): durably, before its first byte; AuditUnavailable (503) if it cannot be."""
    record(state.sessions, _event(job, LOG_ACTION, "allow", caller=caller))


def get_log_visible(state: Platform, caller: Caller, job_id: str) -> Job:
    """The job, if the caller may also read what it printed; Forbidden if they may see the
    job but not its output (an admin without rights on its data)."""
    job = get_visible(state, caller, job_id)
    if not may_see_output(state, caller, job):
        raise Forbidden(
            f"{caller.name} may see job {job.id} but not its log: it may carry data of"
            " datasets they may not read"
        )
    return job


def list_jobs(
    state: Platform,
    caller: Caller,
    *,
    everyone: bool,
    job_state: str | None,
    kind: str | None,
    limit: int,
) -> list[Job]:
    _refuse_jobs(caller)
    if everyone and not _is_admin(state, caller, "read"):
        raise Forbidden(f"{caller.name} may not list other people's jobs")
    with unit_of_work(state.sessions) as db:
        rows = repo.list_jobs(
            db, caller.tenant, None if everyone else caller.name, job_state, kind, limit
        )
        return [check(db, row) for row in rows]


def cancel(state: Platform, caller: Caller, job_id: str, runtime: Any | None) -> Job:
    """Queued: cancelled at once. Running: cancelled now, and its sandbox stopped by whoever
    runs it (this process at once, another worker at its next heartbeat)."""
    row = get_visible(state, caller, job_id, act="manage")
    reason = f"cancelled by {caller.name}"
    with unit_of_work(state.sessions) as db:
        job = db.get(Job, row.id, with_for_update=True)
        assert job is not None
        if job.state in END_STATES:
            return job
        job.state, job.reason, job.ended_at = "cancelled", reason, datetime.now(UTC)
        append(db, _event(job, "job.cancel", "allow", caller=caller, reason=reason))
    sandbox_id = job.sandbox_id
    if runtime is not None and sandbox_id and runtime.is_live_here(sandbox_id):  # noqa: SIM102
        if _launched_for(state, job, sandbox_id):
            runtime.stop(sandbox_id, caller, reason)
    return job


def _launched_for(state: Platform, job: Job, sandbox_id: str) -> bool:
    """Whether the sandbox's sealed row is a launch of this job's launcher in its tenant:
    `job.sandbox_id` is the worker's note, not sealed, and pointed in SQL at someone else's
    sandbox a cancel would stop theirs (the job's own worker stops its own at its next
    heartbeat in any case)."""
    with unit_of_work(state.sessions) as db:
        sandbox = db.get(Sandbox, sandbox_id)
        try:
            return sandbox is not None and (
                check(db, sandbox).launcher_id,
                sandbox.tenant_id,
                sandbox.segment,
            ) == (job.launcher_id, job.tenant_id, "ml")
        except RowTampered:
            return False


def follow_logs(state: Platform, job_id: str, follow: bool, poll_s: float = 0.2) -> Iterator[bytes]:
    """The job's log (its worker's notes and the workload's output); following ends when the
    job has ended and everything it wrote has been sent."""
    path = log_path(state, job_id)
    offset = 0
    while True:
        chunk = b""
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        if chunk:
            offset += len(chunk)
            yield chunk
            continue
        if not follow or _ended(state, job_id):
            if path.exists() and path.stat().st_size > offset:
                continue
            return
        time.sleep(poll_s)


def _ended(state: Platform, job_id: str) -> bool:
    with unit_of_work(state.sessions) as db:
        job = db.get(Job, job_id)
        return job is None or job.state in END_STATES


def _event(
    job: Job,
    action: str,
    decision: str,
    *,
    caller: Caller | None = None,
    reason: str | None = None,
    **details: Any,
) -> AuditRecord:
    return by_caller_or_warden(
        caller,
        action,
        decision,  # type: ignore[arg-type]
        tenant=job.tenant,
        purpose=job.purpose,
        reason=reason,
        details={
            "job": job.id,
            "kind": job.kind,
            "step": job.step,
            "launcher": job.launcher,
            "datasets": list(job.datasets),
            "state": job.state,
            **details,
        },
    )


job_event = _event
