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


def reuse_port_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket on (host, port) that other SO_REUSEPORT sockets may share.

    It listens before its worker starts: connections the kernel gives it wait in its queue
    until the worker is ready. Bound but not listening, it would take none, and clients that
    connected while the first worker was up and the others still starting all went to it
    (measured: half the throughput with two workers).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
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
    """

    def __init__(self, config: Config) -> None:
        config.port = claim_port(config.host, config.port)
        self._handed: list[socket.socket] = []
        super().__init__(config, sockets=[])

    @property  # type: ignore[override]
    def sockets(self) -> list[socket.socket]:
        sock = reuse_port_socket(self.config.host, self.config.port, self.config.backlog)
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

    def restart_all(self) -> None:
        super().restart_all()
        self._close_handed()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._close_handed()
