"""Data at rest is the platform's alone: a private umask, and a refusal to start on a data folder
(or SQLite file) that other accounts on the host can read or write.

Every Warden process (API, worker, the CLI's local commands) calls `restrict_umask()` first, so
everything it creates (datasets, the SQLite database and its journal, keys, job artifacts, logs)
is 0600 in 0700 folders without each writer having to remember. Writes that chmod explicitly
(job inputs a sandbox's own user must read) keep their modes; the 0700 data folder above them
still keeps other host accounts out.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from warden.config import Settings
from warden.errors import WardenError

PRIVATE_UMASK = 0o077
SHARED_UMASK = 0o022


class UnsafeDataDir(WardenError):
    """The data folder or database file is open to group/others; the process refuses to start."""


def restrict_umask() -> int:
    """Set the process umask to 0o077; returns the previous one."""
    return os.umask(PRIVATE_UMASK)


@contextmanager
def shared_umask() -> Iterator[None]:
    """For building sandbox images only: their files (the SDK the image's non-root user
    imports, the debootstrapped root) must be world-readable, and are no Warden data."""
    previous = os.umask(SHARED_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) if missing; the folder itself ends up 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def sqlite_path(url: str) -> Path | None:
    """The file behind a sqlite:/// URL; None for other databases and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def check_data_at_rest(settings: Settings) -> None:
    """Refuse (UnsafeDataDir) when the data folder, or the SQLite database and its journal
    files, can be read, written or entered by group or others. A missing data folder is
    created 0700. Only the top folder is checked: nothing below a 0700 folder is reachable by
    other accounts, and walking every dataset file would make start-up scale with the data."""
    data_dir = Path(settings.data_dir)
    if not data_dir.exists():
        ensure_private_dir(data_dir)
    exposed: list[tuple[Path, int]] = []
    _check(data_dir, exposed)
    db_file = sqlite_path(settings.resolved_database_url)
    if db_file is not None:
        for path in (db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm")):
            _check(path, exposed)
    if exposed:
        listed = "; ".join(f"{p} is mode {stat.S_IMODE(m):04o}" for p, m in exposed)
        dirs = [p for p, _ in exposed if p.is_dir()]
        targets = [p for p, _ in exposed if p in dirs or not any(d in p.parents for d in dirs)]
        fixes = " && ".join(f"chmod {'-R ' if p.is_dir() else ''}go-rwx {p}" for p in targets)
        raise UnsafeDataDir(
            f"refusing to start: other accounts on this host can reach Warden's data ({listed})."
            f" Fix it with: {fixes}"
        )


def _check(path: Path, exposed: list[tuple[Path, int]]) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if mode & 0o077:
        exposed.append((path, mode))


def append_durably(path: Path, line: bytes) -> None:
    """Append one line and fsync it (and its folder, when the file is new: its name must
    survive a crash as well as the line)."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def open_below(root: Path, rel: str | Path) -> int | None:
    """A read-only descriptor for the plain file `root/rel`, opened one component at a time
    from `root` and never through a link, so a folder swapped for a link after a walk listed
    it (by a sandbox still working in the tree) leads nowhere outside it. None when that is
    what happened, or the file is gone or not a plain file (judged on what was opened)."""
    parts = Path(rel).parts
    if not parts:
        return None
    try:
        at = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=at)
            os.close(at)
            at = below
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=at)
    except OSError:
        return None
    finally:
        os.close(at)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd
