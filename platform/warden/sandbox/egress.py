"""Egress for app-dev sandboxes: an allowlisting proxy (Squid, from Debian's packages) started
and configured by the platform; no direct route out ever.

One Squid per runtime listens on the host; a sandbox whose profile lists `egress_allow`
(`host:port` pairs) gets HTTP(S)_PROXY pointing at its own network's gateway, and its bridge's
firewall lets exactly that port through to the host (everything else stays refused). Squid
allows only the listed destinations, never the platform's own API port, and writes one log line
per request or tunnel; a thread follows the log and audits each one (`sandbox.egress`, allow or
deny) with the sandbox and the person, found by the subnet of the sandbox's own network
(`Attribution`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from warden.sandbox.driver import SandboxError

log = logging.getLogger("warden.sandbox")
SQUID_USER = "proxy"
# Docker's default address pools: the only clients Squid answers.
SANDBOX_NETS = ("172.16.0.0/12", "192.168.0.0/16", "10.0.0.0/8")
# Where a name in an allowlist must never lead (an address entry may still name one).
LINK_LOCAL = ("169.254.0.0/16", "fe80::/10")
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
RETRY_AFTER_STOP_S = 30.0  # how long a stopping proxy still tries to audit its last hits


@dataclass(frozen=True)
class Destination:
    host: str
    port: int

    @classmethod
    def parse(cls, entry: str) -> Destination:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"egress_allow entry {entry!r}: use host:port")
        if any(c.isspace() for c in host) or "/" in host:
            raise ValueError(f"egress_allow entry {entry!r}: a bad host")
        return cls(host.lower(), int(port))


@dataclass(frozen=True)
class Hit:
    client: str
    allowed: bool
    method: str
    destination: str
    status: str


def squid_config(
    folder: Path, port: int, allow: Sequence[Destination], refuse_ports: Sequence[int]
) -> str:
    """A Squid configuration that allows only `allow` and logs every request."""
    lines = [
        f"http_port 0.0.0.0:{port}",
        f"pid_filename {folder / 'squid.pid'}",
        f"coredump_dir {folder}",
        f"cache_effective_user {SQUID_USER}",
        "cache deny all",
        "shutdown_lifetime 0 seconds",
        f"acl sandboxes src {' '.join(SANDBOX_NETS)}",
        "acl CONNECT method CONNECT",
        "logformat warden %ts %>a %Ss/%>Hs %rm %ru",
        f"access_log stdio:{folder / 'access.log'} warden",
        f"cache_log {folder / 'cache.log'}",
        "logfile_rotate 0",
        "http_access deny !sandboxes",
    ]
    for number in refuse_ports:
        lines += [f"acl platform_{number} port {number}", f"http_access deny platform_{number}"]
    # An entry that names an address is the operator's explicit choice; a name is not: it can
    # resolve (its DNS being the sandbox user's, or rebound) to this host's own loopback
    # services (SeaweedFS's filer checks no credentials), link-local metadata or the private
    # networks, so names are allowed only after those are refused.
    by_address = [(i, d) for i, d in enumerate(allow) if _is_address(d.host)]
    by_name = [(i, d) for i, d in enumerate(allow) if not _is_address(d.host)]
    for i, dest in by_address:
        lines += _allow_lines(i, "dst", dest)
    lines += [
        f"acl to_linklocal dst {' '.join(LINK_LOCAL)}",
        f"acl to_private dst {' '.join(PRIVATE)}",
        "http_access deny to_localhost",  # Squid's own: 127.0.0.0/8, 0.0.0.0/32, ::1
        "http_access deny to_linklocal",
        "http_access deny to_private",
    ]
    for i, dest in by_name:
        lines += _allow_lines(i, "dstdomain", dest)
    lines.append("http_access deny all")
    return "\n".join(line for line in lines if line) + "\n"


def _allow_lines(i: int, kind: str, dest: Destination) -> list[str]:
    return [
        f"acl allow{i}_host {kind} {dest.host}",
        f"acl allow{i}_port port {dest.port}",
        f"http_access allow sandboxes allow{i}_host allow{i}_port",
    ]


def _is_address(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.strip("[]"))
    except OSError:
        return False
    return True


def parse_line(line: str) -> Hit | None:
    """`%ts %>a %Ss/%>Hs %rm %ru` → a Hit; None for anything else."""
    parts = line.split()
    if len(parts) < 5:
        return None
    status = parts[2]
    if parts[4] == "error:transaction-end-before-headers":
        return None  # a connection that asked for nothing (the readiness check, a scan)
    return Hit(
        client=parts[1],
        allowed="DENIED" not in status,
        method=parts[3],
        destination=parts[4][:512],
        status=status[:64],
    )


R = TypeVar("R")
Subnet = ipaddress.IPv4Network | ipaddress.IPv6Network


class Attribution(Generic[R]):
    """Which sandbox a proxy client is. Each sandbox behind the proxy has a network of its own,
    so that network's subnet, known from its creation on whether the container still runs or
    not, names the sandbox (a container that exits fast has no address left to look up). An
    ended sandbox's subnet keeps naming it for lines Squid logs just after it died, until
    another sandbox's network has that subnet (the newest `kept` are remembered)."""

    def __init__(self, kept: int = 256) -> None:
        self._live: dict[Subnet, tuple[str, R]] = {}  # subnet → (sandbox id, its row)
        self._ended: OrderedDict[Subnet, tuple[str, R]] = OrderedDict()
        self._kept = kept
        self._lock = threading.Lock()

    def note(self, subnet: str, sandbox_id: str, row: R) -> None:
        network = ipaddress.ip_network(subnet)
        with self._lock:
            self._live[network] = (sandbox_id, row)
            self._ended.pop(network, None)

    def noted(self, sandbox_id: str) -> bool:
        with self._lock:
            return any(i == sandbox_id for i, _ in self._live.values())

    def end(self, sandbox_id: str) -> None:
        with self._lock:
            for network in [n for n, (i, _) in self._live.items() if i == sandbox_id]:
                self._ended[network] = self._live.pop(network)
                self._ended.move_to_end(network)
            while len(self._ended) > self._kept:
                self._ended.popitem(last=False)

    def owner(self, client: str) -> R | None:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return None
        with self._lock:
            for table in (self._live, self._ended):
                for network, (_, row) in table.items():
                    if address in network:
                        return row
        return None


class EgressProxy:
    """The one Squid of a runtime: started on first use, followed, stopped at shut-down."""

    def __init__(
        self,
        folder: Path,
        allow: Sequence[Destination],
        refuse_ports: Sequence[int],
        on_hit: Callable[[Hit], None],
    ) -> None:
        self.folder = folder
        self.allow = tuple(allow)
        self.refuse_ports = tuple(refuse_ports)
        self.on_hit = on_hit
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._read = 0  # bytes of the log handled so far

    def start(self) -> None:
        squid = shutil.which("squid") or "/usr/sbin/squid"
        if not Path(squid).exists():
            raise SandboxError(
                "egress needs Squid: `apt-get install -y squid` (or empty the profile's "
                "egress_allow)"
            )
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        account = pwd.getpwnam(SQUID_USER) if os.geteuid() == 0 else None
        if account is not None:
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.port = _free_port()
        config = self.folder / "squid.conf"
        config.write_text(squid_config(self.folder, self.port, self.allow, self.refuse_ports))
        access = self.folder / "access.log"
        access.touch()
        if account is not None:
            for path in (config, access):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._process = subprocess.Popen(  # noqa: S603 - our own configuration
            [squid, "-N", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not _answers(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                cache = self.folder / "cache.log"
                why = cache.read_text()[-500:] if cache.exists() else "no log"
                raise SandboxError(f"the egress proxy did not start: {why}")
            time.sleep(0.1)
        self._follower = threading.Thread(
            target=self._follow, args=(access,), name="sandbox-egress", daemon=True
        )
        self._follower.start()

    def _follow(self, path: Path) -> None:
        with path.open("r", encoding="utf-8", errors="replace") as lines:
            pending = ""
            while True:
                chunk = lines.readline()
                if not chunk:
                    if self._stop.is_set():
                        return
                    time.sleep(0.05)
                    continue
                pending += chunk
                if not pending.endswith("\n"):
                    continue
                hit, done, pending = parse_line(pending), len(pending.encode()), ""
                if hit is not None:
                    self._audit(hit)
                self._read += done

    def _audit(self, hit: Hit) -> None:
        """Hand one hit to `on_hit` until it is taken: a busy database (SQLite's writer queue on
        a loaded host) delays an egress event, never drops it. Gives up only once the proxy is
        stopping and the write has kept failing for a while."""
        pause, failed_since = 0.05, None
        while True:
            try:
                self.on_hit(hit)
                return
            except Exception:
                now = time.monotonic()
                failed_since = failed_since or now
                if self._stop.is_set() and now - failed_since > RETRY_AFTER_STOP_S:
                    log.exception("gave up auditing egress %s", hit)
                    return
                log.warning("could not audit egress %s yet; trying again", hit, exc_info=True)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def caught_up(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until every line Squid has written so far is handled."""
        deadline = time.monotonic() + timeout
        path = self.folder / "access.log"
        while time.monotonic() < deadline:
            try:
                if self._read >= path.stat().st_size:
                    return True
            except OSError:
                return False
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
        # The follower drains what Squid wrote before it went.
        time.sleep(0.2)
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 - Squid listens for the sandbox bridges
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
