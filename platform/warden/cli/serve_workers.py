"""`warden serve --workers N`: uvicorn's supervisor, with a listening socket per worker.

uvicorn's own supervisor binds one socket and hands it to every worker; the first worker to
wake then accepts a whole burst of connections, and keep-alive clients that connect together
stay on one process while the others idle (measured: 5 of 14 load runs had all 16 clients on
one of two workers). Here each worker gets its own socket on the same port with SO_REUSEPORT,
so the kernel spreads connections across the listening workers by a hash of the connection's
addresses. A worker that dies takes the connections waiting in its own queue with it (they are
reset, not served by another); uvicorn starts a replacement as before.
"""

from __future__ import annotations

import socket

from uvicorn import Config
from uvicorn.supervisors import Multiprocess


def reuse_port_socket(host: str, port: int, backlog: int | None = None) -> socket.socket:
    """A socket bound to (host, port) that other SO_REUSEPORT sockets may share; listening
    when `backlog` is given (bound only, it takes no connections: its worker's server listens
    on it once started)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if backlog is not None:
        sock.listen(backlog)
    return sock


def claim_port(host: str, port: int) -> int:
    """The port to serve on (a free one for 0), refused when anything already listens on it.

    A plain bind, without SO_REUSEPORT: the kernel would otherwise let a second `warden serve`
    of the same user share the port and quietly take half of the first one's connections.
    """
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])
    finally:
        probe.close()


class PortSharingWorkers(Multiprocess):
    """Each worker uvicorn starts (at start-up, after a crash, on SIGHUP) gets a new socket.

    uvicorn creates every worker with `Process(config, self.sockets)` and starts it at once; so
    `sockets` answers each read with a fresh socket, and the parent closes its copies as soon as
    the workers are started (spawned children hold their own descriptor of each).

    The first workers' sockets listen before the workers start: connections made while some
    are still starting wait in their queues (bound only, the clients that connected while the
    first worker was up all went to it: half the throughput with two workers). A replacement
    (after a crash, on SIGHUP) gets a socket that is only bound, which its server listens on
    once it is ready, so the workers already serving take every connection meanwhile. The
    supervisor holds one more bound socket for its whole life, so the port stays this
    deployment's while workers come and go.
    """

    def __init__(self, config: Config) -> None:
        config.port = claim_port(config.host, config.port)
        self._port = reuse_port_socket(config.host, config.port)
        self._handed: list[socket.socket] = []
        self._starting = True
        super().__init__(config, sockets=[])

    @property  # type: ignore[override]
    def sockets(self) -> list[socket.socket]:
        backlog = self.config.backlog if self._starting else None
        sock = reuse_port_socket(self.config.host, self.config.port, backlog)
        self._handed.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, value: list[socket.socket]) -> None:
        """uvicorn's constructor sets the shared sockets; there are none here."""

    def _close_handed(self) -> None:
        while self._handed:
            self._handed.pop().close()

    def init_processes(self) -> None:
        super().init_processes()
        self._close_handed()
        self._starting = False

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._port.close()

    def restart_all(self) -> None:
        super().restart_all()
        self._close_handed()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._close_handed()
