"""Recognising columnar table files, which never enter a workspace.

Governed data leaves Warden only as a read's answer (Arrow IPC) to the reader it was decided
for. Uploaded into a workspace and shared, that answer would reach teammates the policy hides
the dataset from, with no grant and no read in their name. A catalog file is recognised by
its digest (repository.governed_digests); a read's answer is never that file, so table
formats are recognised by their first bytes: Arrow IPC (file, stream, Feather) and Parquet,
also inside a gzip, bzip2 or xz member. Someone who re-encodes the bytes gets past this, as
past any content check: it stops the plain copy, not a determined insider, whose read is
audited in any case.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Callable

HEAD = 1 << 16  # enough for any schema message a reader would accept
_MAGIC = {b"PAR1": "Parquet", b"ARROW1": "Arrow IPC", b"FEA1": "Feather"}
_STREAM = b"\xff\xff\xff\xff"  # an IPC stream's first message starts with this marker


def _gunzip(head: bytes) -> bytes:
    return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(head, HEAD)


def _bunzip(head: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(head, HEAD)


def _unxz(head: bytes) -> bytes:
    return lzma.LZMADecompressor().decompress(head, HEAD)


_COMPRESSED: dict[bytes, Callable[[bytes], bytes]] = {
    b"\x1f\x8b": _gunzip,
    b"BZh": _bunzip,
    b"\xfd7zXZ\x00": _unxz,
}


def table_format(head: bytes, *, depth: int = 0) -> str | None:
    """The table format `head` (a file's first bytes) starts, or None."""
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    if head.startswith(_STREAM) and _is_ipc_stream(head):
        return "Arrow IPC stream"
    for magic, unpack in _COMPRESSED.items():
        if head.startswith(magic) and depth == 0:
            try:
                inner = unpack(head)
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, gzip.BadGzipFile):
                return None
            found = table_format(inner, depth=1)
            return f"{found}, compressed" if found else None
    return None


def _is_ipc_stream(head: bytes) -> bool:
    import pyarrow as pa  # here: the CLI packs trees with this module and starts without it

    try:
        pa.ipc.open_stream(pa.BufferReader(head))
    except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError):
        return False
    return True


__all__ = ["HEAD", "table_format"]
