"""The read's worker threads (api/read_threads.py): answers and errors come back to the loop,
in the caller's context, on at most `limit` threads; a request that stopped waiting leaves
them working."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from warden.api.read_threads import ReadThreads

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_answers_errors_and_the_callers_context_come_back() -> None:
    threads = ReadThreads(4, "t")

    def whoami(suffix: str) -> tuple[str, str]:
        return WHO.get() + suffix, threading.current_thread().name

    def fail() -> None:
        raise KeyError("gone")

    async def main() -> None:
        WHO.set("alice")
        answer, name = await threads.run(whoami, "!")
        assert answer == "alice!" and name.startswith("t_")
        with pytest.raises(KeyError, match="gone"):
            await threads.run(fail)

    asyncio.run(main())


def test_at_most_limit_threads_and_every_job_answered() -> None:
    threads = ReadThreads(3, "t")
    running, most, lock = [0], [0], threading.Lock()
    gate = threading.Barrier(3, timeout=10)  # three jobs at once: they need three threads

    def job(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if i < 3:
            gate.wait()
        with lock:
            running[0] -= 1
        return i * i

    async def main() -> list[int]:
        return await asyncio.gather(*(threads.run(job, i) for i in range(40)))

    assert asyncio.run(main()) == [i * i for i in range(40)]
    assert threads.threads == 3 and most[0] == 3


def test_a_request_that_stopped_waiting_leaves_the_threads_working() -> None:
    threads = ReadThreads(1, "t")
    release = threading.Event()

    async def main() -> str:
        slow = asyncio.ensure_future(threads.run(release.wait, 10))
        await asyncio.sleep(0.05)
        slow.cancel()
        release.set()
        return await threads.run(lambda: "next")

    assert asyncio.run(main()) == "next"
