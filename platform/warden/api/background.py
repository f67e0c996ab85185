"""Serve an app from a thread on a free loopback port (the demo and the tests use it)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import suppress
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from warden.core.http_protocol import HttpProtocol
from warden.errors import Unavailable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BackgroundServer:
    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class _Server(uvicorn.Server):
    """A uvicorn server that says when it listens (its lifespan started, its socket bound)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()

    def run_in_thread(self) -> None:
        with suppress(SystemExit):  # uvicorn exits when it cannot listen: serve_in_thread says so
            self.run()


def serve_in_thread(
    app: FastAPI, *, timeout: float = 30.0, port: int | None = None
) -> BackgroundServer:
    """Start uvicorn in a daemon thread (on `port`, else a free one) and wait until /healthz
    answers."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", http=HttpProtocol
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run_in_thread, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    # Woken when it listens, not by polling: each poll paid for a new HTTP client's TLS setup.
    while not server.listening.wait(0.05) and thread.is_alive():
        if time.monotonic() > deadline:
            break
    if server.listening.is_set():
        wait = max(1.0, deadline - time.monotonic())
        with httpx.Client(base_url=url, timeout=wait) as http, suppress(httpx.HTTPError):
            if http.get("/healthz").status_code == 200:
                return BackgroundServer(server, thread, url)
    server.should_exit = True
    if not thread.is_alive():  # uvicorn gave up (it logged why): say so now, not at the timeout
        raise Unavailable(f"the API's server stopped before it listened on port {port}")
    raise Unavailable(f"the API did not start within {timeout:.0f} s")
