"""A read's answer never enters a workspace, where sharing would hand it to teammates the
policy hides the dataset from (red team, round 13).

The attack: alice (`role:ml_engineer`, reads `engagements` masked, and `role:developer`)
uploads the gateway's Arrow IPC answer into her workspace and shares it; dave (a developer
who gets 404 for `engagements`) downloads every row, with no grant, no review and no read
in his name. Catalog files were refused by digest, but a read's answer is never one. Now
table formats are refused by their first bytes (workspace/tables.py), compressed or not.
Re-encoded bytes (base64, a cipher) still pass: that is said in the module, not hidden."""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.sandbox.conftest import DEVELOPER, grant_sandbox_roles
from warden.errors import Forbidden


@pytest.fixture
def ws(warden: Any) -> Any:
    grant_sandbox_roles(warden)
    from warden.db.session import unit_of_work
    from warden.identity.service import Caller, get_principal
    from warden.policy.changes import apply_change

    with unit_of_work(warden.state.sessions) as db:
        admin = get_principal(db, "admin")
        apply_change(
            db,
            Caller("admin", "person", "acme", admin.id),
            add=[("g", ("alice", "role:developer", "acme"))],
            reason="alice also builds the app",
        )
    warden.state.policy.reload()
    return warden


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_governed_read_answer_never_enters_a_shared_workspace(ws: Any) -> None:
    assert ws.read(DEVELOPER, "engagements", purpose="training").status_code == 404
    answer = ws.read("alice", "engagements", purpose="training")
    assert answer.status_code == 200, answer.text
    rows = pl.read_ipc_stream(io.BytesIO(answer.content)).height
    assert rows > 1000

    created = ws.http.post("/v1/workspaces", json={"name": "feat"}, headers=ws.as_("alice"))
    assert created.status_code == 201, created.text
    upload = ws.http.put(
        "/v1/workspaces/feat/archive",
        content=_tar({"data/engagements.arrow": answer.content, "app.py": b"print(1)\n"}),
        headers={**ws.as_("alice"), "content-type": "application/x-tar"},
    )
    if upload.status_code == 200:
        shared = ws.http.post(
            "/v1/workspaces/feat/share", json={"shared": True}, headers=ws.as_("alice")
        )
        assert shared.status_code == 200, shared.text
        got = ws.http.get(
            "/v1/workspaces/feat/archive", params={"owner": "alice"}, headers=ws.as_(DEVELOPER)
        )
        assert got.status_code == 200, got.text
        with tarfile.open(fileobj=io.BytesIO(got.content)) as tar:
            member = tar.extractfile("data/engagements.arrow")
            assert member is not None
            leaked = pl.read_ipc_stream(io.BytesIO(member.read()))
        assert leaked.height != rows, (
            f"dave, who may not see engagements, got all {leaked.height} rows of alice's read "
            f"(columns {leaked.columns}) from her shared workspace"
        )
    # secure: a governed read's answer is governed data; it never enters a workspace
    assert upload.status_code == 403, upload.text
    assert "data/engagements.arrow (Arrow IPC stream)" in upload.json()["detail"]
    (denied,) = ws.audit_events(action="workspace.upload", decision="deny")
    assert "governed data never enters a workspace" in denied["reason"]


@pytest.mark.parametrize("shape", ["parquet", "feather", "gzip-stream", "xz-parquet"])
def test_table_files_are_refused_in_every_usual_shape(ws: Any, shape: str) -> None:
    frame = pl.DataFrame({"user_id": ["u1", "u2"], "dwell_ms": [10, 20]})
    buffer = io.BytesIO()
    if shape in ("parquet", "xz-parquet"):
        frame.write_parquet(buffer)
    elif shape == "feather":
        frame.write_ipc(buffer)
    else:
        frame.write_ipc_stream(buffer)
    data = buffer.getvalue()
    if shape == "gzip-stream":
        data = gzip.compress(data)
    elif shape == "xz-parquet":
        data = lzma.compress(data)
    ws.http.post("/v1/workspaces", json={"name": "feat"}, headers=ws.as_("alice"))
    upload = ws.http.put(
        "/v1/workspaces/feat/archive",
        content=_tar({"data/t.bin": data}),
        headers={**ws.as_("alice"), "content-type": "application/x-tar"},
    )
    assert upload.status_code == 403, upload.text


def test_code_and_text_that_start_like_a_table_still_enter(ws: Any) -> None:
    ws.http.post("/v1/workspaces", json={"name": "feat"}, headers=ws.as_("alice"))
    files = {
        "notes.txt": b"PAR is not a table\n",
        "blob.bin": b"\xff\xff\xff\xffnot a stream at all",
        "app.py.gz": gzip.compress(b"print('hello')\n"),
        "data.csv": b"a,b\n1,2\n",
    }
    upload = ws.http.put(
        "/v1/workspaces/feat/archive",
        content=_tar(files),
        headers={**ws.as_("alice"), "content-type": "application/x-tar"},
    )
    assert upload.status_code == 200, upload.text


def test_a_table_written_into_the_tree_by_a_sandbox_never_leaves_it(ws: Any) -> None:
    """The owner's app-dev sandbox writes into the tree directly (no upload to check): the
    tree is refused to a download and to a teammate's mount, and a table written between
    that check and the stream is left out of it."""
    from warden.db.session import unit_of_work
    from warden.identity.service import Caller, get_principal
    from warden.workspace import archive, service

    ws.http.post("/v1/workspaces", json={"name": "feat"}, headers=ws.as_("alice"))
    ws.http.put(
        "/v1/workspaces/feat/archive",
        content=_tar({"app.py": b"print(1)\n"}),
        headers={**ws.as_("alice"), "content-type": "application/x-tar"},
    )
    ws.http.post("/v1/workspaces/feat/share", json={"shared": True}, headers=ws.as_("alice"))
    (tree,) = (Path(ws.settings.data_dir) / "workspaces").glob("*/tree")
    answer = ws.read("alice", "engagements", purpose="training").content
    (tree / "rows.arrow").write_bytes(answer)  # as her sandbox would
    for who in ("alice", DEVELOPER):
        got = ws.http.get(
            "/v1/workspaces/feat/archive", params={"owner": "alice"}, headers=ws.as_(who)
        )
        assert got.status_code == 403 and "rows.arrow" in got.json()["detail"], got.text
    with unit_of_work(ws.state.sessions) as db:
        dave = get_principal(db, DEVELOPER)
        caller = Caller(DEVELOPER, "person", "acme", dave.id)
    with pytest.raises(Forbidden):
        service.mount_source(ws.state, caller, "alice/feat")
    streamed = b"".join(
        archive.pack(tree, leave_out_tables=True)
    )  # written after the check: left out
    with tarfile.open(fileobj=io.BytesIO(streamed)) as tar:
        assert tar.getnames() == ["app.py"]
