"""`warden sandbox forward`: a port of your running app-dev sandbox on this machine's loopback,
carried over a WebSocket to the API with your token (no Docker socket here)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect


def ws_url(api_url: str, sandbox_id: str, port: int) -> str:
    base = api_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}/v1/sandboxes/{sandbox_id}/forward/{port}"


def serve(
    listener: socket.socket,
    url: str,
    token: str,
    stop: threading.Event,
    report: Callable[[str], None],
) -> None:
    """Accept local connections until `stop`; each gets its own WebSocket to the sandbox."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        threading.Thread(target=_carry, args=(conn, url, token, report), daemon=True).start()


def _carry(conn: socket.socket, url: str, token: str, report: Callable[[str], None]) -> None:
    headers = {"authorization": f"Bearer {token}"}
    try:
        with connect(url, additional_headers=headers) as ws:
            threading.Thread(target=_up, args=(conn, ws), daemon=True).start()
            try:
                for message in ws:
                    conn.sendall(message if isinstance(message, bytes) else message.encode())
            except (ConnectionClosed, OSError):
                pass
    except (WebSocketException, OSError) as exc:
        report(f"refused: {exc}")
    finally:
        conn.close()


def _up(conn: socket.socket, ws: ClientConnection) -> None:
    try:
        while data := conn.recv(1 << 16):
            ws.send(data)
    except (ConnectionClosed, OSError):
        pass
    finally:
        ws.close()
