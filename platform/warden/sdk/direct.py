"""A streamed read's answer received by the standard library's `http.client`, not httpx.

httpx parses a body in Python (h11) and copies each piece twice on the way to Arrow; here
`http.client` undoes the chunked framing and reads the socket straight into the buffer Arrow
asks to fill, so the bytes are copied once, by the kernel (10M rows, 720 MB from SeaweedFS:
client CPU 0.28-0.31 -> 0.15-0.16 s). Used only where it reaches the same server httpx
would: a unix socket, or plain `http://` to a host no proxy setting covers; anything else
keeps httpx.
Transport failures raise httpx's exceptions, so callers catch what they caught before.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx


def reachable_directly(url: str, unix_socket: str | None) -> bool:
    """Whether http.client reaches the API as httpx would (httpx honours proxy settings)."""
    if unix_socket:
        return True
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    return not ({"http", "all"} & proxies.keys()) or bool(
        urllib.request.proxy_bypass(parts.hostname)
    )


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("warden", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Answer:
    """A response's status, headers (lower-case names) and body (a readable binary file)."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        self.body = io.BufferedReader(_Body(response), buffer_size=1 << 20)


class _Body(io.RawIOBase):
    """The body as a raw file: `readinto` fills the caller's buffer from the socket."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self._response = response

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        try:
            return self._response.readinto(target)
        except (http.client.HTTPException, OSError) as exc:
            raise httpx.ReadError(f"the answer's body broke off: {exc!r}") from exc


@contextmanager
def post(
    url: str,
    unix_socket: str | None,
    path: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    timeout: float,
) -> Iterator[Answer]:
    """POST `body` as JSON to `path`; the connection is closed when the block ends, so a
    caller that stops early hangs up (the server records its stream incomplete)."""
    parts = urlsplit(url)
    connection = (
        _UnixConnection(unix_socket, timeout)
        if unix_socket
        else http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    )
    prefix = "" if unix_socket else parts.path.rstrip("/")
    try:
        try:
            connection.request(
                "POST",
                prefix + path,
                body=json.dumps(body).encode(),
                headers={**headers, "content-type": "application/json"},
            )
            response = connection.getresponse()
        except (http.client.HTTPException, OSError) as exc:
            raise httpx.ConnectError(f"cannot reach {url}: {exc!r}") from exc
        yield Answer(response)
    finally:
        connection.close()
