"""Warden's threads carry kernel names of their own."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import polars as pl
import pytest

from warden.api.read_threads import ReadThreads
from warden.core import http_protocol
from warden.core.threads import name_this_thread
from warden.gateway.stream import LiveStream

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux only")


def _kernel_name(tid: int) -> str:
    return Path(f"/proc/self/task/{tid}/comm").read_text().strip()


def test_a_thread_names_itself_for_the_kernel_and_no_other() -> None:
    seen: dict[str, str] = {}

    def named() -> None:
        name_this_thread("warden-probe-named-long")
        seen["self"] = _kernel_name(threading.get_native_id())

    before = _kernel_name(threading.get_native_id())
    thread = threading.Thread(target=named)
    thread.start()
    thread.join()
    assert seen["self"] == "warden-probe-na"  # cut at the kernel's 15 bytes
    assert _kernel_name(threading.get_native_id()) == before


def test_the_read_send_and_hash_threads_are_named() -> None:
    names: set[str] = set()

    def collect() -> None:
        names.add(_kernel_name(threading.get_native_id()))

    asyncio.run(ReadThreads(1, "warden-read").run(collect))
    http_protocol._senders.submit(collect).result(timeout=10)
    assert names == {"warden-read", "warden-send"}

    stream = LiveStream([pl.DataFrame({"a": [1, 2]})], iter(()), lambda _: None, stream_id="t")
    stream.next_pieces()  # its hashing thread starts with the first chunk handed over
    with stream._hashed:
        stream._hashed.wait_for(lambda: stream.unhashed == 0, timeout=10)
    assert stream._hasher is not None and stream._hasher.native_id is not None
    assert _kernel_name(stream._hasher.native_id) == "warden-hash"
    stream.finish(complete=False)
