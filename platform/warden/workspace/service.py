"""What callers may do with workspaces; one place decides (Casbin), every step is audited.

Using workspaces is the app-dev launch right (`sandbox:app-dev`, `manage`) in the caller's
tenant: they exist to be mounted there. A workspace is its owner's; the owner may share it with
the tenant (teammates with that right may then pull and mount it, as `OWNER/NAME`); admins
(`sys:sandboxes`) see and delete everyone's. Only the owner uploads, shares and unshares.

Files live in `<data dir>/workspaces/<id>/tree` (0700, owned by the app-dev user, who writes
them). An upload is extracted into a fresh folder next to it, checked, and swapped in only when
every check passed; a refusal leaves the tree as it was and is audited.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warden.audit.outcomes import by, refusals_audited
from warden.audit.service import append, record
from warden.core.filesystem import ensure_private_dir
from warden.core.platform import Platform
from warden.db.session import unit_of_work
from warden.errors import Conflict, Forbidden, NotFound, Unprocessable
from warden.identity.service import Caller, get_tenant
from warden.policy.authz import allowed, require
from warden.workspace import archive
from warden.workspace import repository as repo
from warden.workspace.models import Workspace

RIGHT_OBJECT = "sandbox:app-dev"
ADMIN_OBJECT = "sys:sandboxes"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def root_dir(state: Platform) -> Path:
    return Path(state.settings.data_dir) / "workspaces"


def tree_dir(state: Platform, workspace: Workspace) -> Path:
    return root_dir(state) / workspace.id / "tree"


def _owner(state: Platform) -> archive.Owner | None:
    return archive.Owner.parse(state.settings.workspace.user)


def _may_use(state: Platform, caller: Caller) -> None:
    if caller.kind == "job":
        raise Forbidden("jobs cannot use workspaces")
    require(
        state,
        caller,
        RIGHT_OBJECT,
        "manage",
        f"{caller.name} may not use workspaces (they belong to the app-dev segment)",
    )


def _details(ref: str, **extra: object) -> dict[str, object]:
    return {"details": {"workspace": ref[:140], **extra}}


def _find(db: Session, state: Platform, caller: Caller, ref: str, act: str) -> Workspace:
    """`NAME` (the caller's) or `OWNER/NAME` (shared, or any for admins); else NotFound."""
    owner, _, name = ref.rpartition("/")
    owner = owner or caller.name
    row = repo.find(db, caller.tenant, owner, name)
    if row is None or not (
        row.owner == caller.name
        or (row.shared and act == "read")
        or allowed(state, caller, ADMIN_OBJECT, act)
    ):
        raise NotFound(f"no workspace {ref[:140]!r}")
    return row


def _own_only(row: Workspace, caller: Caller, what: str) -> None:
    if row.owner != caller.name:
        raise Forbidden(f"only {row.owner} may {what} workspace {row.name!r}")


def create(state: Platform, caller: Caller, name: str) -> Workspace:
    with refusals_audited(state.sessions, caller, "workspace.create", **_details(name)):
        _may_use(state, caller)
        if not NAME_RE.fullmatch(name):
            raise Unprocessable(
                f"workspace name {name[:64]!r}: lowercase letters, digits, '.', '_' and '-'"
            )
        try:
            with unit_of_work(state.sessions) as db:
                tenant = get_tenant(db, caller.tenant)
                if repo.find(db, caller.tenant, caller.name, name) is not None:
                    raise Conflict(f"you already have a workspace {name!r}")
                row = Workspace(
                    tenant_id=tenant.id,
                    tenant=caller.tenant,
                    owner_id=caller.principal_id,
                    owner=caller.name,
                    name=name,
                    shared=False,
                    file_count=0,
                    byte_size=0,
                )
                db.add(row)
                db.flush()
                _make_tree(state, row)
                append(db, by(caller, "workspace.create", "allow", **_details(name, id=row.id)))
        except IntegrityError:
            raise Conflict(f"you already have a workspace {name!r}") from None
        return row


def _make_tree(state: Platform, row: Workspace) -> None:
    ensure_private_dir(root_dir(state))
    folder = root_dir(state) / row.id
    folder.mkdir(mode=0o700)
    tree = folder / "tree"
    tree.mkdir(mode=0o700)
    owner = _owner(state)
    if owner is not None:
        os.chown(tree, owner.uid, owner.gid)


def list_workspaces(state: Platform, caller: Caller, *, everyone: bool) -> list[Workspace]:
    _may_use(state, caller)
    if everyone and not allowed(state, caller, ADMIN_OBJECT, "read"):
        raise Forbidden(f"{caller.name} may not list other people's workspaces")
    with unit_of_work(state.sessions) as db:
        return repo.visible(db, caller.tenant, caller.name, everyone)


def get(state: Platform, caller: Caller, ref: str) -> Workspace:
    _may_use(state, caller)
    with unit_of_work(state.sessions) as db:
        return _find(db, state, caller, ref, "read")


@contextmanager
def _locked(state: Platform, row: Workspace) -> Iterator[None]:
    """One change at a time per workspace, across processes."""
    path = root_dir(state) / row.id / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def upload(state: Platform, caller: Caller, ref: str, source: IO[bytes]) -> Workspace:
    """Replace the workspace's tree with the tar stream `source`, or refuse and change nothing."""
    settings = state.settings.workspace
    with refusals_audited(state.sessions, caller, "workspace.upload", **_details(ref)):
        _may_use(state, caller)
        with unit_of_work(state.sessions) as db:
            row = _find(db, state, caller, ref, "read")
        _own_only(row, caller, "upload to")
        _not_mounted(state, row)
        folder = root_dir(state) / row.id
        staging = folder / f"incoming-{secrets.token_hex(4)}"
        with _locked(state, row):
            try:
                done = archive.extract(
                    source,
                    staging,
                    max_bytes=settings.quota_bytes,
                    max_files=settings.max_files,
                    owner=_owner(state),
                )
                _refuse_tables(
                    sorted(done.tables.items()),
                    "never enters a workspace (read it through the gateway where you need it)",
                )
                with unit_of_work(state.sessions) as db:
                    governed = repo.governed_digests(db, done.digests)
                    if governed:
                        files = sorted(done.digests[d] for d in governed)
                        raise Forbidden(
                            f"{', '.join(files[:5])}: a catalog dataset's file; governed data "
                            "never enters a workspace"
                        )
                    current = db.get(Workspace, row.id)
                    if current is None:
                        raise NotFound(f"no workspace {ref[:140]!r}")
                    current.file_count, current.byte_size = done.files, done.bytes
                    current.updated_at = datetime.now(UTC)
                    append(
                        db,
                        by(
                            caller,
                            "workspace.upload",
                            "allow",
                            bytes=done.bytes,
                            **_details(ref, id=row.id, files=done.files),
                        ),
                    )
                    _swap(folder, staging)
                    row = current
            finally:
                archive.remove_tree(staging)
        return row


def _not_mounted(state: Platform, row: Workspace, db: Session | None = None) -> None:
    """A running sandbox works in the tree: replacing or deleting it under it would pull its
    files away mid-session."""
    with unit_of_work(state.sessions) if db is None else nullcontext(db) as session:
        live = repo.mounted_in(session, row.tenant, str(tree_dir(state, row)))
    if live:
        raise Conflict(
            f"workspace {row.name!r} is in use by running sandbox {', '.join(live)}; stop it first"
        )


def _swap(folder: Path, staging: Path) -> None:
    """The checked tree in place of the old one (renames: the old is gone only after)."""
    tree = folder / "tree"
    old = folder / f"old-{secrets.token_hex(4)}"
    tree.rename(old)
    staging.rename(tree)
    archive.remove_tree(old)


def download(state: Platform, caller: Caller, ref: str) -> tuple[Workspace, Iterator[bytes]]:
    """The tree as a tar stream; audited before the first byte."""
    with refusals_audited(state.sessions, caller, "workspace.download", **_details(ref)):
        _may_use(state, caller)
        with unit_of_work(state.sessions) as db:
            row = _find(db, state, caller, ref, "read")
        tree = tree_dir(state, row)
        if not tree.is_dir():
            raise NotFound(f"workspace {ref[:140]!r} has no files on this machine")
        _refuse_table_files(tree)
    record(state.sessions, by(caller, "workspace.download", "allow", **_details(ref, id=row.id)))
    return row, archive.pack(tree, leave_out_tables=True)


def _refuse_table_files(tree: Path) -> None:
    """A tree holding a table never leaves (uploads refuse them, but a sandbox of the owner's
    writes into its tree directly): downloaded or mounted by a teammate, it would hand them
    data the policy may hide from them."""
    _refuse_tables(
        archive.table_files(tree),
        "never leaves a workspace (its owner can remove it from a sandbox)",
    )


def _refuse_tables(found: list[tuple[str, str]], why: str) -> None:
    """Forbidden when `found` (path, table format) names any file."""
    if found:
        shown = ", ".join(f"{path} ({kind})" for path, kind in found[:5])
        raise Forbidden(f"{shown}: table data; governed data {why}")


def share(state: Platform, caller: Caller, ref: str, shared: bool) -> Workspace:
    action = "workspace.share" if shared else "workspace.unshare"
    with refusals_audited(state.sessions, caller, action, **_details(ref)):
        _may_use(state, caller)
        with unit_of_work(state.sessions) as db:
            row = _find(db, state, caller, ref, "read")
            _own_only(row, caller, "share")
            row.shared = shared
            append(db, by(caller, action, "allow", **_details(ref, id=row.id)))
        return row


def delete(state: Platform, caller: Caller, ref: str) -> None:
    with refusals_audited(state.sessions, caller, "workspace.delete", **_details(ref)):
        _may_use(state, caller)
        with unit_of_work(state.sessions) as db:
            row = _find(db, state, caller, ref, "manage")
            _not_mounted(state, row, db)
            db.delete(row)
            append(db, by(caller, "workspace.delete", "allow", **_details(ref, id=row.id)))
    with _locked(state, row):
        archive.remove_tree(root_dir(state) / row.id / "tree")
    archive.remove_tree(root_dir(state) / row.id)


def mount_source(state: Platform, caller: Caller, ref: str) -> tuple[Workspace, Path]:
    """The workspace a sandbox of the caller's mounts, and its folder (the caller's checks are
    the sandbox launch's, which audits a refusal)."""
    with unit_of_work(state.sessions) as db:
        row = _find(db, state, caller, ref, "read")
    tree = tree_dir(state, row)
    if not tree.is_dir():
        raise NotFound(f"workspace {ref[:140]!r} has no files on this machine")
    if row.owner != caller.name:
        _refuse_table_files(tree)
    return row, tree
