"""Refuse oversized request bodies before anything reads them.

The refusal is flagged in the ASGI scope, so the edge (api/edge.py) audits it like any other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The key api/edge.py reads; spelled here too so this module imports nothing of the API's.
SCOPE_REFUSAL = "warden.edge.refusal"


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, wider: Sequence[tuple[str, int]] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # (path pattern, cap) for the few routes that take archives; they check their own cap
        self.wider = [(re.compile(pattern), cap) for pattern, cap in wider]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = next(
            (cap for pattern, cap in self.wider if pattern.fullmatch(scope["path"])),
            self.max_bytes,
        )
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(scope, send, limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(scope, send, limit)


class _TooLarge(Exception):
    pass


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    detail = f"request body over {limit} bytes"
    scope[SCOPE_REFUSAL] = ("PayloadTooLarge", detail)
    body = json.dumps({"error": "PayloadTooLarge", "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
