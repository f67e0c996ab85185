"""Installing a Debian package a test needs (as root on Debian), one install at a time.

The tests run in two xdist workers, and two of them (the browser's, the egress proxy's) may
install at once on a fresh machine; apt allows one at a time and the second failed at once
with "Could not get lock /var/lib/dpkg/lock-frontend". So installs take a lock of ours first,
and `apt-get install` also waits for dpkg's lock (another apt outside the tests) instead of
failing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

LOCK = Path("/tmp/warden-tests-apt.lock")
WAIT_S = 600


def can_install() -> bool:
    debian = Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None
    return os.geteuid() == 0 and debian


def apt_install(*packages: str) -> str | None:
    """Install `packages` (updating the lists once if the first try fails); None when done,
    else what apt said."""
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": path}  # proxies kept
    wait = ["-o", f"DPkg::Lock::Timeout={WAIT_S}"]
    install = ["apt-get", *wait, "install", "-y", "-q", *packages]
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        failed = None
        for commands in ([install], [["apt-get", *wait, "update", "-q"], install]):
            failed = None
            for command in commands:
                try:
                    done = subprocess.run(  # noqa: S603
                        command, env=env, capture_output=True, text=True, timeout=1800
                    )
                except subprocess.TimeoutExpired:
                    failed = f"{' '.join(command)} took over 30 minutes"
                    break
                if done.returncode != 0:
                    failed = f"{' '.join(command)} failed: {done.stderr[-500:]}"
                    break
            if failed is None:
                return None
        return failed
