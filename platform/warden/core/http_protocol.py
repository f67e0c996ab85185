"""uvicorn's HTTP/1.1 protocol (httptools), with a streamed body's large pieces framed in place.

A response without a length (a live governed stream) goes out in HTTP chunks; uvicorn frames
each piece by joining its size line, the piece and a CRLF into a new bytes object: a copy of
every byte sent (10M rows: 720 MB, about 5% of the API's CPU). Here a large piece goes to the
transport beside its framing (`writelines`: uvloop writes the three with one writev and keeps
a reference, not a copy, of what the socket has not taken yet). Everything else (the head,
small pieces, the last one, flow control's bookkeeping) is uvicorn's own code.
"""

from __future__ import annotations

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

# Below this, a copy costs less than a writev of three buffers.
FRAME_IN_PLACE_FROM = 64 * 1024


class _Cycle(RequestResponseCycle):
    async def send(self, message: ASGISendEvent) -> None:
        body = message.get("body", b"")
        if (
            message["type"] == "http.response.body"
            and message.get("more_body", False)
            and len(body) >= FRAME_IN_PLACE_FROM  # type: ignore[arg-type]
            and self.chunked_encoding
            and self.response_started
            and not self.response_complete
            and self.scope["method"] != "HEAD"
        ):
            # uvicorn's own order: wait while the transport is paused, drop once disconnected
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            if self.disconnected:
                return
            self.transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))  # type: ignore[arg-type]
            return
        await super().send(message)


class HttpProtocol(HttpToolsProtocol):
    """Pass as uvicorn's `http`: each request's cycle sends as `_Cycle` does."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:  # a request just parsed, not an upgrade
            self.cycle.__class__ = _Cycle
