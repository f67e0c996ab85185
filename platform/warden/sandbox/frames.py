"""The body of an exec's answer: frames of (kind, length, data), so output and the exit code
travel in one streamed response. Kind b"o" is output (stdout and stderr as they came), b"x"
the end: JSON with the exit code (null when unknown) and the error that ended it, if any."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

MEDIA_TYPE = "application/vnd.warden.exec-frames"
_HEADER = struct.Struct(">cI")
OUTPUT, END = b"o", b"x"


def frame(kind: bytes, data: bytes) -> bytes:
    return _HEADER.pack(kind, len(data)) + data


def end_frame(exit_code: int | None, error: str | None = None) -> bytes:
    return frame(END, json.dumps({"exit_code": exit_code, "error": error}).encode())


def read_frames(chunks: Iterator[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """(kind, data) from a stream of arbitrary byte chunks."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        while len(pending) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(pending)
            if len(pending) < _HEADER.size + size:
                break
            yield kind, pending[_HEADER.size : _HEADER.size + size]
            pending = pending[_HEADER.size + size :]


def parse_end(data: bytes) -> dict[str, Any]:
    return dict(json.loads(data))
