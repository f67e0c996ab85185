"""Serve an app from a thread on a free loopback port (the demo and the tests use it)."""

from __future__ import annotations

import socket
import threading
import time
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


def serve_in_thread(
    app: FastAPI, *, timeout: float = 30.0, port: int | None = None
) -> BackgroundServer:
    """Start uvicorn in a daemon thread (on `port`, else a free one) and wait until /healthz
    answers."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", http=HttpProtocol
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return BackgroundServer(server, thread, url)
        except httpx.HTTPError:
            time.sleep(0.05)
    server.should_exit = True
    raise Unavailable(f"the API did not start within {timeout:.0f} s")
