"""Found by a red-team review: a workspace is downloaded while an app-dev sandbox works in it.

`archive.pack` says it never follows a symlink, and it does not for the last part of a path
(`gettarinfo` lstat's it); but it opens `root / "d/name"` by path, after the walk listed `d`.
A sandbox mounting the tree read-write (the download is not refused while one does) swaps the
folder `d` for a symlink between the listing and the open, and the API process then reads a
host file of the same name, with its own rights, into the tar: here the audit chain key.
The swap is done below by the test, exactly as the sandbox's own process does it through its
mount (`mv d d.real && ln -s /abs/host/folder d`); the sandbox's user owns the tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import WardenHarness
from tests.sandbox.conftest import DEVELOPER
from tests.workspace.test_workspaces import make_tar, put, read_tar, ws

__all__ = ["ws"]


def test_a_folder_swapped_for_a_symlink_mid_download_never_reads_the_host(
    ws: WardenHarness,
) -> None:
    from warden.audit.keys import CHAIN_KEY_DIR, load_chain_keyring
    from warden.db.session import unit_of_work
    from warden.identity.service import Caller, get_principal
    from warden.workspace import service as workspaces

    settings = ws.state.settings
    load_chain_keyring(settings)  # the key file exists (it signs this database's chain)
    key_folder = Path(settings.resolved_audit_keys_dir) / CHAIN_KEY_DIR
    secret = (key_folder / "1.key").read_bytes()

    made = ws.http.post("/v1/workspaces", json={"name": "myapp"}, headers=ws.as_(DEVELOPER))
    assert made.status_code == 201, made.text
    decoy = b"0" * len(secret)
    tree = [("d/0.bin", b"x" * (2 << 20), "file"), ("d/1.key", decoy, "file")]
    assert put(ws, DEVELOPER, "myapp", make_tar(tree)).status_code == 200  # type: ignore[attr-defined]

    with unit_of_work(ws.state.sessions) as db:
        dave = get_principal(db, DEVELOPER)
        caller = Caller(DEVELOPER, "person", "acme", dave.id)
    row, stream = workspaces.download(ws.state, caller, "myapp")
    first = next(stream)  # d listed, d/0.bin packed: the client reads it slowly
    folder = workspaces.tree_dir(ws.state, row)
    os.rename(folder / "d", folder / "d.real")  # what the sandbox does in /workspace
    os.symlink(str(key_folder), folder / "d")
    data = first + b"".join(stream)

    assert read_tar(data).get("d/1.key") != secret, "the audit chain key left in a download"
