"""What /proc says about a server's processes: its children, and whose TCP sockets are whose
(which worker listens, which worker holds each client's connection)."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

LISTEN, ESTABLISHED = "0A", "01"  # TCP states as /proc/net/tcp writes them


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.add(int(entry.name))
    return found


def tcp_sockets_of(pids: set[int], port: int, state: str) -> dict[int, set[str]]:
    """{pid: the inodes of its TCP sockets with local `port` in `state`}."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(fields[9])
    owners: dict[int, set[str]] = {}
    for pid in pids:
        with suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        owners.setdefault(pid, set()).add(link[8:-1])
    return owners
