"""Workspaces through the API, on SQLite and PostgreSQL: upload and download as tar, every
unsafe entry refused as a whole (nothing changed, audited), governed data refused by digest,
sharing, and who may do what (Casbin's app-dev right)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.conftest import WardenHarness
from tests.sandbox.conftest import DEVELOPER, grant_sandbox_roles

Entry = tuple[str, bytes | None, str]  # (name, data, kind: file|dir|sym:TARGET|lnk:TARGET|chr|fifo)


def make_tar(entries: list[Entry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data or b"")
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data or b""))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind.startswith("sym:"):
                info.type, info.linkname = tarfile.SYMTYPE, kind[4:]
            elif kind.startswith("lnk:"):
                info.type, info.linkname = tarfile.LNKTYPE, kind[4:]
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info)
    return buffer.getvalue()


def read_tar(data: bytes) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                out[member.name] = handle.read()
            elif member.issym():
                out[member.name] = "->" + member.linkname
    return out


@pytest.fixture
def ws(warden: WardenHarness) -> WardenHarness:
    grant_sandbox_roles(warden)
    return warden


def give_role(warden: WardenHarness, who: str, role: str, reason: str) -> None:
    """A role link applied by the admin (as an approved change would be), policy reloaded."""
    from warden.db.session import unit_of_work
    from warden.identity.service import Caller, get_principal
    from warden.policy.changes import apply_change

    with unit_of_work(warden.state.sessions) as db:
        admin = get_principal(db, "admin")
        apply_change(
            db,
            Caller("admin", "person", "acme", admin.id),
            add=[("g", (who, f"role:{role}", "acme"))],
            reason=reason,
        )
    warden.state.policy.reload()


def put(warden: WardenHarness, who: str, name: str, data: bytes, **params: str) -> object:
    return warden.http.put(
        f"/v1/workspaces/{name}/archive",
        content=data,
        params=params,
        headers={**warden.as_(who), "content-type": "application/x-tar"},
    )


def get_tree(warden: WardenHarness, who: str, name: str, **params: str) -> dict[str, bytes | str]:
    got = warden.http.get(f"/v1/workspaces/{name}/archive", params=params, headers=warden.as_(who))
    assert got.status_code == 200, got.text
    return read_tar(got.content)


GOOD = [
    ("Makefile", b"check:\n\techo ok\n", "file"),
    ("src", None, "dir"),
    ("src/app.py", b"print('hi')\n", "file"),
    ("src/link.py", None, "sym:app.py"),
]


def test_upload_then_download_gives_the_same_tree_and_is_audited(ws: WardenHarness) -> None:
    created = ws.http.post("/v1/workspaces", json={"name": "myapp"}, headers=ws.as_(DEVELOPER))
    assert created.status_code == 201, created.text
    again = ws.http.post("/v1/workspaces", json={"name": "myapp"}, headers=ws.as_(DEVELOPER))
    assert again.status_code == 409 and again.json()["error"] == "Conflict"
    done = put(ws, DEVELOPER, "myapp", make_tar(GOOD))
    assert done.status_code == 200, done.text  # type: ignore[attr-defined]
    assert done.json()["file_count"] == 2  # type: ignore[attr-defined]
    tree = get_tree(ws, DEVELOPER, "myapp")
    assert tree == {
        "Makefile": b"check:\n\techo ok\n",
        "src/app.py": b"print('hi')\n",
        "src/link.py": "->app.py",
    }
    actions = [e["action"] for e in ws.audit_events(actor=DEVELOPER)]
    for action in ("workspace.create", "workspace.upload", "workspace.download"):
        assert action in actions
    # stored privately, one folder per workspace
    root = Path(ws.settings.data_dir) / "workspaces"  # type: ignore[attr-defined]
    (folder,) = [p for p in root.iterdir() if p.is_dir()]
    assert (folder / "tree").stat().st_mode & 0o077 == 0
    assert (folder / "tree" / "src" / "app.py").stat().st_mode & 0o077 == 0


UNSAFE = {
    "dotdot": [("../escape.txt", b"x", "file")],
    "dotdot-inner": [("src/../../escape.txt", b"x", "file")],
    "absolute": [("/tmp/escape.txt", b"x", "file")],
    "device": [("null", None, "chr")],
    "fifo": [("pipe", None, "fifo")],
    "hardlink": [("a.txt", b"x", "file"), ("b.txt", None, "lnk:a.txt")],
    "symlink-out": [("out", None, "sym:../../etc")],
    "symlink-absolute": [("passwd", None, "sym:/etc/passwd")],
    # lexically inside, really outside: sub/d is sub itself, so sub/d/../.. is the tree's parent
    "symlink-chain": [
        ("sub", None, "dir"),
        ("sub/d", None, "sym:."),
        ("a", None, "sym:sub/d/../.."),
    ],
    "through-symlink": [("src", None, "sym:."), ("src/x.txt", b"x", "file")],
    "duplicate": [("a.txt", b"x", "file"), ("a.txt", b"y", "file")],
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_an_unsafe_entry_refuses_the_whole_upload_and_changes_nothing(
    ws: WardenHarness, case: str
) -> None:
    ws.http.post("/v1/workspaces", json={"name": "myapp"}, headers=ws.as_(DEVELOPER))
    assert put(ws, DEVELOPER, "myapp", make_tar(GOOD)).status_code == 200  # type: ignore[attr-defined]
    before = get_tree(ws, DEVELOPER, "myapp")
    entries = [("new.txt", b"new", "file"), *UNSAFE[case]]
    refused = put(ws, DEVELOPER, "myapp", make_tar(entries))
    assert refused.status_code == 422, refused.text  # type: ignore[attr-defined]
    assert refused.json()["error"] == "UnsafeEntry"  # type: ignore[attr-defined]
    assert get_tree(ws, DEVELOPER, "myapp") == before
    denied = ws.audit_events(action="workspace.upload", decision="deny")
    assert len(denied) == 1 and denied[0]["actor"] == DEVELOPER
    root = Path(ws.settings.data_dir) / "workspaces"  # type: ignore[attr-defined]
    leftovers = [p.name for p in root.glob("*/*") if p.name not in ("tree", "lock")]
    assert leftovers == []
    assert not Path("/tmp/escape.txt").exists()  # noqa: S108 - the path a bad entry names


def test_oversize_and_garbage_are_refused(ws: WardenHarness) -> None:
    ws.state.settings.workspace.quota_mb = 1
    ws.http.post("/v1/workspaces", json={"name": "big"}, headers=ws.as_(DEVELOPER))
    big = put(ws, DEVELOPER, "big", make_tar([("blob", b"\0" * (2 << 20), "file")]))
    assert big.status_code == 413 and big.json()["error"] == "PayloadTooLarge"  # type: ignore[attr-defined]
    garbage = put(ws, DEVELOPER, "big", b"this is not a tar archive" * 100)
    assert garbage.status_code == 422  # type: ignore[attr-defined]
    assert get_tree(ws, DEVELOPER, "big") == {}
    assert len(ws.audit_events(action="workspace.upload", decision="deny")) == 2


def test_a_catalog_dataset_file_never_enters_a_workspace(ws: WardenHarness) -> None:
    datasets = Path(ws.settings.data_dir) / "datasets"  # type: ignore[attr-defined]
    governed = next(datasets.rglob("*.parquet")).read_bytes()
    ws.http.post("/v1/workspaces", json={"name": "myapp"}, headers=ws.as_(DEVELOPER))
    refused = put(ws, DEVELOPER, "myapp", make_tar([*GOOD, ("data/copy.bin", governed, "file")]))
    assert refused.status_code == 403, refused.text  # type: ignore[attr-defined]
    assert "data/copy.bin" in refused.json()["detail"]  # type: ignore[attr-defined]
    assert get_tree(ws, DEVELOPER, "myapp") == {}
    (denied,) = ws.audit_events(action="workspace.upload", decision="deny")
    assert "governed data" in denied["reason"]


def test_workspaces_are_their_owners_until_shared_with_the_tenant(ws: WardenHarness) -> None:
    give_role(ws, "erin", "developer", "a second developer")
    ws.http.post("/v1/workspaces", json={"name": "myapp"}, headers=ws.as_(DEVELOPER))
    put(ws, DEVELOPER, "myapp", make_tar(GOOD))
    hidden = ws.http.get(
        "/v1/workspaces/myapp/archive", params={"owner": DEVELOPER}, headers=ws.as_("erin")
    )
    assert hidden.status_code == 404
    # mallory has no app-dev right at all: refused, and audited
    nobody = ws.http.post("/v1/workspaces", json={"name": "x"}, headers=ws.as_("mallory"))
    assert nobody.status_code == 403
    assert ws.audit_events(action="workspace.create", decision="deny")[0]["actor"] == "mallory"
    shared = ws.http.post(
        "/v1/workspaces/myapp/share", json={"shared": True}, headers=ws.as_(DEVELOPER)
    )
    assert shared.status_code == 200 and shared.json()["shared"] is True
    assert "Makefile" in get_tree(ws, "erin", "myapp", owner=DEVELOPER)
    listed = ws.http.get("/v1/workspaces", headers=ws.as_("erin")).json()["workspaces"]
    assert [w["ref"] for w in listed] == [f"{DEVELOPER}/myapp"]
    # a teammate may read a shared workspace, not replace or delete it
    assert put(ws, "erin", "myapp", make_tar(GOOD), owner=DEVELOPER).status_code in (403, 404)  # type: ignore[attr-defined]
    gone = ws.http.delete(
        "/v1/workspaces/myapp", params={"owner": DEVELOPER}, headers=ws.as_("erin")
    )
    assert gone.status_code == 404
    deleted = ws.http.delete("/v1/workspaces/myapp", headers=ws.as_(DEVELOPER))
    assert deleted.status_code == 204
    assert ws.http.get("/v1/workspaces", headers=ws.as_("erin")).json()["workspaces"] == []


def test_a_workspace_shared_or_reowned_in_sql_is_refused(ws: WardenHarness) -> None:
    """Found by a red-team round: a workspace row re-owned or shared in SQL let another
    person read (and upload into) someone's app-dev tree. The row is sealed now."""
    from sqlalchemy import text

    ws.http.post("/v1/workspaces", json={"name": "myapp"}, headers=ws.as_(DEVELOPER))
    put(ws, DEVELOPER, "myapp", make_tar(GOOD))
    with ws.state.engine.begin() as conn:
        conn.execute(text("UPDATE workspace SET shared = TRUE WHERE name = 'myapp'"))
    refused = ws.http.get(
        "/v1/workspaces/myapp/archive", params={"owner": DEVELOPER}, headers=ws.as_(DEVELOPER)
    )
    assert refused.status_code == 503 and refused.json()["error"] == "RowTampered", refused.text
    listed = ws.http.get("/v1/workspaces", headers=ws.as_(DEVELOPER))
    assert listed.status_code == 503
