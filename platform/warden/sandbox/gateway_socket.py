"""One unix socket per ML sandbox, served by the same API app (the governed read path).

The socket answers only the read path (and /v1/me, /healthz), and only for the job token of
the sandbox it belongs to: a token from another job is refused here even before the gateway
refuses it. The socket folder is bind-mounted into that one sandbox at /run/warden.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from warden.core.http_protocol import HttpProtocol
from warden.identity.caller import SOCKET_SCOPE, plain_digest

log = logging.getLogger("warden.sandbox")

SOCKET_NAME = "gateway.sock"
MOUNT_DIR = "/run/warden"
SOCKET_PATH_IN_SANDBOX = f"{MOUNT_DIR}/{SOCKET_NAME}"
_ALLOWED = (
    ("POST", re.compile(r"^/v1/datasets/[^?#]+/read$")),
    ("GET", re.compile(r"^/v1/me$")),
    ("GET", re.compile(r"^/healthz$")),
)

ASGIApp = Any


class SocketGate:
    """ASGI wrapper: this socket's routes, this sandbox's token, nothing else."""

    def __init__(self, app: ASGIApp, sandbox_id: str, token_hash: str) -> None:
        self.app = app
        self.sandbox_id = sandbox_id
        self.token_hash = token_hash

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        method, path = scope.get("method", ""), scope.get("path", "")
        if not any(m == method and p.fullmatch(path) for m, p in _ALLOWED):
            await _refuse(send, 404, "NotFound", "the gateway socket serves governed reads only")
            return
        if path != "/healthz":
            # Exactly one: the read path authenticates the first, so a second token sent
            # before this sandbox's would be checked here and another read there.
            sent = [v for k, v in scope.get("headers") or [] if k.lower() == b"authorization"]
            scheme, _, secret = (sent[0] if sent else b"").decode("latin-1").partition(" ")
            given = plain_digest(secret.strip()) if scheme.lower() == "bearer" else ""
            if len(sent) != 1 or not hmac.compare_digest(given, self.token_hash):
                await _refuse(
                    send, 403, "Forbidden", "this socket serves only its own sandbox's job token"
                )
                return
        # Only here may a job token speak (identity.service.authenticate): TCP never sets it.
        scope = {**scope, SOCKET_SCOPE: self.sandbox_id}
        await self.app(scope, receive, send)


async def _refuse(send: Any, status: int, error: str, detail: str) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GatewaySocket:
    """A uvicorn server on a unix socket, in a thread of the API process."""

    def __init__(self, app: ASGIApp, folder: Path, sandbox_id: str, token: str) -> None:
        self.folder = folder
        self.path = folder / SOCKET_NAME
        self.sandbox_id = sandbox_id
        gate = SocketGate(app, sandbox_id, plain_digest(token))  # in memory only
        config = uvicorn.Config(
            gate,
            http=HttpProtocol,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        if len(str(self.path).encode()) > 107:
            raise OSError(f"socket path too long for a unix socket: {self.path}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.path.exists():
                self.path.unlink()
            sock.bind(str(self.path))
            # The sandbox user is not root: it needs write permission to connect. The token
            # check above keeps everyone else out.
            os.chmod(self.path, 0o666)  # noqa: S103
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name=f"gateway-socket-{self.sandbox_id}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise OSError(f"gateway socket for {self.sandbox_id} did not start")
            time.sleep(0.001)

    def _serve(self, sock: socket.socket) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[sock]))
        except Exception:
            log.exception("gateway socket for sandbox %s failed", self.sandbox_id)
        finally:
            sock.close()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)
