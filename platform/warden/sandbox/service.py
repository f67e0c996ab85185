"""What callers may do with sandboxes: one place decides (Casbin), every launch is audited.

Launching in segment S is the Casbin permission (`sandbox:S`, `manage`) in the caller's
tenant; naming datasets also needs the launcher's own read rights on each, for the purpose.
People see and stop their own sandboxes; `sys:sandboxes` (admins) sees and stops all of
their tenant's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from warden.audit.outcomes import by, refusals_audited
from warden.audit.service import record
from warden.catalog.service import PURPOSES, load_view
from warden.db.sealed import check
from warden.db.session import unit_of_work
from warden.errors import Forbidden, NotFound
from warden.identity.service import Caller, get_tenant
from warden.policy.authz import allowed, require, sees_launched
from warden.policy.reads import authorize_read, may_use
from warden.registry.repository import reads_by
from warden.registry.service import seen_in_reads
from warden.sandbox import repository as repo
from warden.sandbox.models import Sandbox
from warden.sandbox.profiles import LaunchRequest, resolve
from warden.sandbox.runtime import SandboxRuntime
from warden.sandbox.sessions import summaries
from warden.workspace import service as workspaces

ADMIN_OBJECT = "sys:sandboxes"


def segment_object(segment: str) -> str:
    return f"sandbox:{segment}"


def launch(
    runtime: SandboxRuntime,
    caller: Caller,
    request: LaunchRequest,
    prepare: Callable[[Path], None] | None = None,
) -> Sandbox:
    """Check everything, then launch; a refusal is audited with its reason. `prepare` fills
    the output mount before the container starts (see SandboxRuntime.launch)."""
    refused = {
        "purpose": request.purpose,
        "details": {
            "segment": request.segment,
            "command": list(request.command),
            "datasets": list(request.datasets),
            "workspace": request.workspace,
        },
    }
    state = runtime.state
    with refusals_audited(state.sessions, caller, "sandbox.launch", **refused):
        _refuse_jobs(caller)
        resolved = resolve(runtime.profiles(), request, PURPOSES)
        require(
            state,
            caller,
            segment_object(request.segment),
            "manage",
            f"{caller.name} may not launch sandboxes in the {request.segment!r} segment",
        )
        with unit_of_work(state.sessions) as db:
            tenant_id = get_tenant(db, caller.tenant).id
            views = [
                load_view(db, state.settings.datasets_dir, caller.tenant, name)
                for name in resolved.datasets
            ]
        for view in views:
            assert resolved.purpose is not None
            authorize_read(state, caller, view, resolved.purpose)
        workspace = None
        if resolved.workspace is not None:
            row, tree = workspaces.mount_source(state, caller, resolved.workspace)
            workspace = (resolved.workspace, tree, row.owner == caller.name)
        return runtime.launch(
            caller,
            tenant_id,
            resolved,
            list(request.command),
            interactive=request.interactive,
            prepare=prepare,
            workspace=workspace,
        )


def _refuse_jobs(caller: Caller) -> None:
    if caller.kind == "job":
        raise Forbidden("jobs cannot manage sandboxes")


def _is_admin(runtime: SandboxRuntime, caller: Caller, act: str) -> bool:
    return allowed(runtime.state, caller, ADMIN_OBJECT, act)


def get_visible(
    runtime: SandboxRuntime, caller: Caller, sandbox_id: str, act: str = "read"
) -> Sandbox:
    """The sandbox if the caller launched it or administers sandboxes; else NotFound."""
    _refuse_jobs(caller)
    with unit_of_work(runtime.state.sessions) as db:
        row = db.get(Sandbox, sandbox_id[:12])
        if row is not None:
            check(db, row)  # whose it is decides who may exec into it (db/sealed.py)
    if row is None or row.tenant != caller.tenant:
        raise NotFound(f"no sandbox {sandbox_id[:12]!r}")
    if not sees_launched(runtime.state, caller, row.launcher, ADMIN_OBJECT, act):
        raise NotFound(f"no sandbox {sandbox_id[:12]!r}")
    return row


def list_sandboxes(
    runtime: SandboxRuntime, caller: Caller, *, everyone: bool, status: str | None, limit: int
) -> list[Sandbox]:
    _refuse_jobs(caller)
    if everyone and not _is_admin(runtime, caller, "read"):
        raise Forbidden(f"{caller.name} may not list other people's sandboxes")
    with unit_of_work(runtime.state.sessions) as db:
        launcher = None if everyone else caller.name
        rows = repo.tenant_sandboxes(db, caller.tenant, launcher, status, limit)
        return [check(db, row) for row in rows]


def sessions(
    runtime: SandboxRuntime,
    caller: Caller,
    *,
    sandbox_id: str | None,
    everyone: bool,
    limit: int,
) -> list[dict[str, Any]]:
    """Session records per sandbox and person: the caller's own; everyone's on a sandbox the
    caller may see; everyone's in the tenant for admins."""
    _refuse_jobs(caller)
    if everyone and not _is_admin(runtime, caller, "read"):
        raise Forbidden(f"{caller.name} may not list other people's sessions")
    person = None if everyone else caller.name
    if sandbox_id is not None:
        sandbox_id = get_visible(runtime, caller, sandbox_id).id
        person = None
    with unit_of_work(runtime.state.sessions) as db:
        rows = summaries(db, caller.tenant, person, sandbox_id, limit)
    return [row.as_dict() for row in rows]


def stop(runtime: SandboxRuntime, caller: Caller, sandbox_id: str) -> Sandbox:
    row = get_visible(runtime, caller, sandbox_id, act="manage")
    return runtime.stop(row.id, caller, f"stopped by {caller.name}")


def _still_covers(runtime: SandboxRuntime, caller: Caller, row: Sandbox) -> bool:
    """Whether the launcher's rights now cover what the sandbox's audited reads showed (the
    chain's own events; a right that ended since takes its log back, as a job's)."""
    if not row.datasets:
        return True
    state = runtime.state
    with unit_of_work(state.sessions) as db:
        reads = reads_by(db, f"job-{row.id}")
        seen = seen_in_reads([e for e in reads if e.decision == "allow"])  # a refusal showed none
        views = [load_view(db, state.settings.datasets_dir, row.tenant, n) for n in row.datasets]
    return all(may_use(state, caller, v, built_by=row.launcher, built_with=seen) for v in views)


def logs(runtime: SandboxRuntime, caller: Caller, sandbox_id: str, follow: bool) -> Iterator[bytes]:
    """Its output for `caller`; the refusal or the view audited (`sandbox.logs`) before the
    first byte: it may carry rows of the data the sandbox read."""
    fields: dict[str, Any] = {"details": {"sandbox": sandbox_id[:12]}}
    with refusals_audited(runtime.state.sessions, caller, "sandbox.logs", **fields):
        row = get_visible(runtime, caller, sandbox_id)
        if not may_see_output(runtime, caller, row):
            raise Forbidden(
                f"{caller.name} may see sandbox {row.id} but not its log: a data sandbox's log"
                " is its launcher's (a job's: GET /v1/jobs/{id}/logs)"
            )
    shown = {
        "sandbox": row.id,
        "segment": row.segment,
        "launcher": row.launcher,
        "datasets": row.datasets,
    }
    record(
        runtime.state.sessions,
        by(caller, "sandbox.logs", "allow", purpose=row.purpose, details=shown),
    )
    return runtime.logs(row.id, follow=follow)


def may_see_output(runtime: SandboxRuntime, caller: Caller, row: Sandbox) -> bool:
    """Whether `caller` may see what the sandbox's workload printed: its launcher, while their
    rights cover what it read (`_still_covers`); for a
    segment that reads no data, whoever may see the sandbox. A data segment's log may carry
    rows of what it read and of its job's parent models' data, so nobody else reads it here:
    a job's log is `/v1/jobs/{id}/logs`, held to the sealed job row (which job a sandbox ran,
    `job.sandbox_id`, is the worker's note, not sealed: it decides nothing)."""
    if caller.name == row.launcher:
        return _still_covers(runtime, caller, row)
    profile = runtime.profiles().get(row.segment)
    return profile is not None and not profile.data_access and not row.datasets
