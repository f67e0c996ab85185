"""Tar archives in and out of a workspace, checked entry by entry.

`extract` reads a tar stream once (no seeking) into a fresh folder and refuses, with the entry
named, anything that could leave the tree or smuggle something in: absolute or `..` paths,
hard links, device files and fifos, symlinks that resolve outside the tree, writes through a
symlink, duplicates, and more files or bytes than the quota. The caller swaps the folder in only
when everything passed, so a refusal changes nothing. `pack` streams a tree out without ever
following a symlink.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from warden.core.filesystem import open_below
from warden.errors import PayloadTooLarge, Unprocessable
from warden.workspace.tables import HEAD, table_format

CHUNK = 1 << 20


class UnsafeEntry(Unprocessable):
    """An archive entry that may not enter a workspace."""


@dataclass
class Extracted:
    files: int = 0
    bytes: int = 0
    # sha256:<hex> of each regular file → its path in the tree (the first one with that digest)
    digests: dict[str, str] = field(default_factory=dict)
    # path → the columnar table format its content starts with (workspace/tables.py)
    tables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int

    @classmethod
    def parse(cls, spec: str) -> Owner | None:
        """Files are chowned to `uid:gid` when the process may (it runs as root); else None."""
        uid, _, gid = spec.partition(":")
        if os.geteuid() != 0 or not uid.isdigit():
            return None
        return cls(int(uid), int(gid) if gid.isdigit() else int(uid))


def safe_name(name: str) -> str | None:
    """The entry's path relative to the tree, or None for the tree itself; refuses the rest."""
    if "\x00" in name or not name:
        raise UnsafeEntry(f"entry {name[:200]!r}: an empty or NUL-holding name")
    if name.startswith("/"):
        raise UnsafeEntry(f"entry {name[:200]!r}: absolute paths are refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeEntry(f"entry {name[:200]!r}: '..' paths are refused")
    if not parts:
        return None
    if any(len(p.encode()) > 255 for p in parts) or len(name.encode()) > 4096:
        raise UnsafeEntry(f"entry {name[:200]!r}: name too long")
    return "/".join(parts)


def extract(
    source: IO[bytes],
    dest: Path,
    *,
    max_bytes: int,
    max_files: int,
    owner: Owner | None,
) -> Extracted:
    """Extract the tar stream `source` into the new folder `dest` (which must not exist). On any
    refusal the caller removes `dest`; nothing else was written."""
    dest.mkdir(mode=0o700)
    _own(dest, owner)
    done = Extracted()
    links: list[Path] = []
    seen: set[str] = set()
    folders = {""}  # real folders made here: nothing else writes into `dest` meanwhile
    try:
        tar = tarfile.open(fileobj=source, mode="r|*")  # noqa: SIM115 - closed below
    except tarfile.TarError as exc:
        raise Unprocessable(f"not a tar archive: {exc}") from exc
    try:
        for member in tar:
            rel = safe_name(member.name)
            if rel is None:
                continue
            if rel in seen:
                raise UnsafeEntry(f"entry {rel!r} appears twice")
            seen.add(rel)
            if len(seen) > max_files:
                raise PayloadTooLarge(f"more than {max_files} entries: over the workspace quota")
            target = _parent_ready(dest, rel, owner, folders)
            if member.isdir():
                if rel not in folders:  # else made already as a parent of an earlier entry
                    target.mkdir(mode=0o700)
                    folders.add(rel)
            elif member.isreg() and not member.issparse():
                done.bytes += member.size
                if done.bytes > max_bytes:
                    raise PayloadTooLarge(
                        f"the tree is over the workspace quota of {max_bytes >> 20} MiB"
                    )
                digest, found = _write(tar, member, target, owner)
                done.digests.setdefault(digest, rel)
                if found:
                    done.tables[rel] = found
                done.files += 1
                continue  # owned already
            elif member.issym():
                _check_link(rel, member.linkname)
                os.symlink(member.linkname, target)
                links.append(target)
            elif member.islnk():
                raise UnsafeEntry(f"entry {rel!r}: hard links are refused")
            elif member.ischr() or member.isblk() or member.isfifo():
                raise UnsafeEntry(f"entry {rel!r}: device files and fifos are refused")
            else:
                raise UnsafeEntry(f"entry {rel!r}: unsupported entry type {member.type!r}")
            _own(target, owner)
    except FileExistsError:
        raise UnsafeEntry(f"entry {rel!r} appears twice (as a folder and not)") from None
    except tarfile.TarError as exc:
        raise Unprocessable(f"a broken tar archive: {exc}") from exc
    finally:
        tar.close()
    # Each link is checked on its own when it arrives; chained ones only resolve once all exist.
    root = os.path.realpath(dest)
    for link in links:
        resolved = os.path.realpath(link)
        if resolved != root and not resolved.startswith(root + os.sep):
            raise UnsafeEntry(f"entry {link.relative_to(dest)}: a symlink out of the tree")
    return done


def _parent_ready(dest: Path, rel: str, owner: Owner | None, folders: set[str]) -> Path:
    """Make the entry's missing parent folders; refuse a parent that is not a folder made here
    (a symlink or a file: nothing is ever written through one)."""
    parent = rel.rpartition("/")[0]
    if parent not in folders:
        parts = parent.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in folders:
                continue
            here = dest / prefix
            try:
                here.mkdir(mode=0o700)
            except FileExistsError:
                raise UnsafeEntry(f"entry {rel!r}: a parent is not a folder") from None
            _own(here, owner)
            folders.add(prefix)
    return dest / rel


def _check_link(rel: str, linkname: str) -> None:
    if not linkname or "\x00" in linkname or linkname.startswith("/"):
        raise UnsafeEntry(f"entry {rel!r}: a symlink to an absolute path is refused")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), linkname))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeEntry(f"entry {rel!r}: a symlink out of the tree")


def _write(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, owner: Owner | None
) -> tuple[str, str | None]:
    """Write one file; its digest, and the table format it holds (None for anything else)."""
    mode = 0o700 if member.mode & 0o100 else 0o600
    sha = hashlib.sha256()
    head = b""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    if owner is not None:
        os.fchown(fd, owner.uid, owner.gid)
    with os.fdopen(fd, "wb") as out:
        data = tar.extractfile(member)
        assert data is not None
        while chunk := data.read(CHUNK):
            sha.update(chunk)
            out.write(chunk)
            if len(head) < HEAD:
                head += chunk[: HEAD - len(head)]
    return "sha256:" + sha.hexdigest(), table_format(head)


def _own(path: Path, owner: Owner | None) -> None:
    if owner is not None:
        os.lchown(path, owner.uid, owner.gid)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class _Buffer:
    """A write-only file for tarfile whose contents are taken as they fill."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def take(self) -> bytes:
        data, self.parts, self.size = b"".join(self.parts), [], 0
        return data


def pack(
    root: Path, entries: Iterator[str] | None = None, *, leave_out_tables: bool = False
) -> Iterator[bytes]:
    """A tar stream of `root` (or of its relative paths `entries`), symlinks kept as links,
    owners left out; with `leave_out_tables`, a file that starts a table (tables.py) too (a
    download refuses a tree holding one before its first byte: this is for one written
    meanwhile)."""
    buffer = _Buffer()
    tar = tarfile.open(fileobj=buffer, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]  # noqa: SIM115
    for rel in entries if entries is not None else walk(root):
        path = root / rel
        try:
            info = tar.gettarinfo(str(path), arcname=rel)
        except OSError:
            continue  # gone meanwhile
        if not (info.isreg() or info.isdir() or info.issym()):
            continue  # sockets, fifos, devices: nothing a workspace keeps
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = int(info.mtime)  # a fractional one costs a pax header per file
        if info.isreg():
            fd = open_below(root, rel)
            if fd is None:
                continue  # gone, or no longer a plain file below the root
            with os.fdopen(fd, "rb") as data:
                info.size = os.fstat(fd).st_size  # the file opened, not the one listed
                if leave_out_tables and table_format(data.read(HEAD)):
                    continue
                data.seek(0)
                tar.addfile(info, data)
        else:
            tar.addfile(info)
        if buffer.size >= CHUNK:
            yield buffer.take()
    tar.close()
    yield buffer.take()


def table_files(root: Path) -> list[tuple[str, str]]:
    """(path, format) of each file below `root` whose first bytes start a table."""
    found = []
    for rel in walk(root):
        fd = open_below(root, rel)
        if fd is None:
            continue  # a folder, a link, or gone
        with os.fdopen(fd, "rb") as data:
            kind = table_format(data.read(HEAD))
        if kind:
            found.append((rel, kind))
    return found


def walk(root: Path, skip: tuple[str, ...] = ()) -> Iterator[str]:
    """Relative paths under `root`, folders before their contents, never following a link."""
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        base = Path(here).relative_to(root)
        for name in [*dirs, *sorted(files)]:
            yield (base / name).as_posix() if str(base) != "." else name
