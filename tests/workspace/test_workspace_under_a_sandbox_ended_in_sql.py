"""Red team 16b: a workspace a running sandbox mounts is not replaced because its sandbox's
row was written past Warden.

The attack (low: its owner's own tree, a database writer): "a workspace a live sandbox mounts
is neither replaced nor deleted" was decided on the sandbox row's `status`, which is not
sealed (it moves as the sandbox runs). Set to an ended status in SQL (or the row deleted, or
moved to another tenant), the owner's tree was swapped or deleted under the running
sandbox. Now the log decides as well: each launch names the folders it mounts and each end
its sandbox (identity/revocations.py); a sandbox the log saw launched with the tree and never
end holds it, whatever its row says, and a row that disagrees is refused (503).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.conftest import WardenHarness
from tests.sandbox.conftest import DEVELOPER, grant_sandbox_roles
from tests.sealed_rows import rolled_back, sql
from tests.workspace.test_workspaces import GOOD, make_tar, put
from warden.audit.service import append
from warden.db.session import unit_of_work
from warden.identity.service import Caller, get_principal
from warden.sandbox.models import Sandbox
from warden.sandbox.runtime import _exit_event, _launch_event
from warden.workspace.models import Workspace
from warden.workspace.service import tree_dir


@pytest.fixture
def ws(warden: WardenHarness) -> WardenHarness:
    grant_sandbox_roles(warden)
    return warden


def _running_in(w: WardenHarness, name: str) -> str:
    """dave's app-dev sandbox, launched (row and event, as the runtime writes them) with his
    workspace `name` mounted read-write."""
    with unit_of_work(w.state.sessions) as db:
        dave = get_principal(db, DEVELOPER)
        space = db.query(Workspace).filter_by(owner=DEVELOPER, name=name).one()
        tree = str(tree_dir(w.state, space))
        row = Sandbox(
            tenant_id=dave.tenant_id, tenant="acme", launcher_id=dave.id, launcher=DEVELOPER,
            segment="app-dev", status="running", image="warden-dev",
            image_digest="sha256:" + "0" * 64, command=["sleep", "600"], datasets=[],
            purpose=None, network="none", limits={}, instance="test",
            mounts=[{"source": tree, "target": "/workspace", "read_only": False}],
        )  # fmt: skip
        db.add(row)
        db.flush()
        caller = Caller(DEVELOPER, "person", "acme", dave.id)
        spec = SimpleNamespace(
            user="1000", read_only_root=True, cap_drop=["ALL"], no_new_privileges=True, env={}
        )
        append(db, _launch_event(row, caller, spec, (f"{DEVELOPER}/{name}", tree, True)))  # type: ignore[arg-type]
        return row.id


@pytest.mark.parametrize(
    "written",
    [
        "UPDATE sandbox SET status='succeeded' WHERE id=:i",
        "UPDATE sandbox SET status='stopped', tenant='other' WHERE id=:i",
        "DELETE FROM sandbox WHERE id=:i",
    ],
)
def test_a_sandbox_ended_in_sql_still_holds_its_workspace(ws: WardenHarness, written: str) -> None:
    assert ws.http.post("/v1/workspaces", json={"name": "app"}, headers=ws.as_(DEVELOPER))
    assert put(ws, DEVELOPER, "app", make_tar(GOOD)).status_code == 200  # type: ignore[attr-defined]
    sid = _running_in(ws, "app")
    held = put(ws, DEVELOPER, "app", make_tar(GOOD[:1]))
    assert held.status_code == 409, held.text  # type: ignore[attr-defined]
    sql(ws, written, i=sid)
    replaced = put(ws, DEVELOPER, "app", make_tar(GOOD[:1]))
    assert replaced.status_code == 503, replaced.text  # type: ignore[attr-defined]
    assert sid in replaced.json()["detail"]  # type: ignore[attr-defined]
    deleted = ws.http.delete("/v1/workspaces/app", headers=ws.as_(DEVELOPER))
    assert deleted.status_code == 503, deleted.text
    assert any(sid in f["detail"] for f in rolled_back(ws))  # and `audit verify` says so


@pytest.mark.parametrize("decision", ["allow", "error"])
def test_a_sandbox_that_ended_lets_its_workspace_go(ws: WardenHarness, decision: str) -> None:
    assert ws.http.post("/v1/workspaces", json={"name": "app"}, headers=ws.as_(DEVELOPER))
    sid = _running_in(ws, "app")
    assert put(ws, DEVELOPER, "app", make_tar(GOOD)).status_code == 409  # type: ignore[attr-defined]
    with unit_of_work(ws.state.sessions) as db:  # as the runtime ends it (a failure: "error")
        row = db.get_one(Sandbox, sid)
        row.status = "succeeded" if decision == "allow" else "lost"
        append(db, _exit_event(row, decision))
    assert put(ws, DEVELOPER, "app", make_tar(GOOD)).status_code == 200  # type: ignore[attr-defined]
