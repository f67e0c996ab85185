"""A throwaway PostgreSQL cluster: initdb in a folder of its own under /tmp, a unix socket
only (no TCP), started and stopped with pg_ctl. Never the machine's own cluster, whose
benchmarks and data must stay durable.

`scripts/test.sh` runs the suite on one (`python -m tests.pg_cluster start|stop`): each test's
database is a CREATE DATABASE … TEMPLATE copy and is dropped after it, and on a durable
server those wait on fsync (WAL, checkpoints) that a test's data never needs. Settings that
only trade crash safety of the machine (fsync=off, full_page_writes=off) are made there; a
commit is still a commit to every other process, and a killed client or a stopped server
behaves as on any PostgreSQL. Tests that stop and start a server use one of their own.

Standard library only: `scripts/test.sh` runs it before the suite.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

# What no test's data needs: surviving a crash of the machine (the cluster is thrown away).
SUITE_SETTINGS = {"fsync": "off", "full_page_writes": "off"}


class NoPostgres(Exception):
    """No PostgreSQL binaries here, or no way to run them as a non-root user."""


def _bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise NoPostgres("no PostgreSQL binaries under /usr/lib/postgresql")
    return found[-1].parent


def _as_owner(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    if os.geteuid() != 0:
        return args
    runuser = shutil.which("runuser")
    if runuser is None:
        raise NoPostgres("running as root without runuser: cannot start a PostgreSQL of our own")
    return [runuser, "-u", "postgres", "--", *args]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    bin: Path
    root: Path  # holds data/, the socket folder s/ and pg.log
    port: int  # names the socket file only: the cluster listens on no TCP address
    settings: dict[str, str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "s"

    @property
    def url(self) -> str:
        """As the superuser named after whoever runs the tests (the role libpq defaults to)."""
        return f"postgresql+psycopg:///postgres?host={self.sockets}&port={self.port}"

    def ctl(self, *args: str) -> None:
        cmd = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args]
        subprocess.run(_as_owner(cmd), check=True, capture_output=True)  # noqa: S603

    def start(self) -> None:
        opts = [f"-k {self.sockets}", f"-p {self.port}", "-c listen_addresses=''"]
        opts += [f"-c {name}={value}" for name, value in self.settings.items()]
        self.ctl("-o", " ".join(opts), "-l", str(self.root / "pg.log"), "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")


def create(settings: dict[str, str] | None = None) -> Cluster:
    """A new cluster, initialised and started; `remove` it after."""
    bin_dir = _bin()
    root = Path(f"/tmp/wpg-{os.getpid()}-{_free_port()}")  # short: socket paths are limited
    root.mkdir(mode=0o700)
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        cluster = Cluster(bin_dir, root, _free_port(), dict(settings or {}))
        for d in (cluster.data, cluster.sockets):
            subprocess.run(_as_owner(["mkdir", "-m", "700", str(d)]), check=True)  # noqa: S603
        user = pwd.getpwuid(os.geteuid()).pw_name  # the role libpq connects as by default
        init = [str(bin_dir / "initdb"), "-D", str(cluster.data), "-A", "trust", "-U", user]
        init += ["--no-sync"]  # thrown away with the cluster
        subprocess.run(_as_owner(init), check=True, capture_output=True)  # noqa: S603
        cluster.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


def remove(root: Path) -> None:
    """Stop the cluster under `root` (if it runs) and delete it."""
    data = root / "data"
    if (data / "postmaster.pid").exists():
        cmd = [str(_bin() / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-m", "fast", "stop"]
        subprocess.run(_as_owner(cmd), check=False, capture_output=True)  # noqa: S603
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running(settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    cluster = create(settings)
    try:
        yield cluster
    finally:
        with suppress(subprocess.CalledProcessError):
            cluster.stop()
        remove(cluster.root)


def main(argv: list[str]) -> int:
    """`start`: a cluster for the suite; prints `export` lines for its URL and folder.
    `stop FOLDER`: stops it and deletes the folder."""
    if argv[:1] == ["start"]:
        try:
            cluster = create(SUITE_SETTINGS)
        except NoPostgres as exc:
            print(f"note: {exc}", file=sys.stderr)
            return 1
        print(f"export WARDEN_TEST_POSTGRES_URL='{cluster.url}'")
        print(f"export WARDEN_TEST_POSTGRES_DIR='{cluster.root}'")
        return 0
    if argv[:1] == ["stop"] and len(argv) == 2:
        remove(Path(argv[1]))
        return 0
    print("usage: python -m tests.pg_cluster start | stop FOLDER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
