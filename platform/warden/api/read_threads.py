"""The governed read's worker threads: its one hop off the event loop and back, kept cheap.

asyncio's `run_in_executor` goes through `concurrent.futures`: a Future with a Condition of its
own, a work item, two locks and a semaphore per submit, then `wrap_future` chaining that Future
to the loop's with callbacks both ways, and `set_result` notifying the Condition in the worker.
Here a job is a tuple on a SimpleQueue and the answer goes straight to the loop's own future
(`call_soon_threadsafe`, as asyncio's chaining did). The job runs in the caller's context (its
spans), as `run_in_threadpool` did. Threads start as jobs find none idle, up to `limit`, and
stay (daemons: uvicorn lets the requests in flight finish before the process exits).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

from warden.core.threads import name_this_thread

T = TypeVar("T")
_Job = tuple[
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
]


class ReadThreads:
    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self.name = name
        self.jobs: SimpleQueue[_Job] = SimpleQueue()
        self.lock = threading.Lock()  # guards the two counts
        self.idle = 0  # threads waiting for a job that no job has claimed yet
        self.threads = 0

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in one of the threads, in the caller's context; its result or error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.jobs.put((loop, future, contextvars.copy_context(), fn, args))
        with self.lock:
            start = self.idle == 0 and self.threads < self.limit
            if start:
                self.threads += 1
            elif self.idle:
                self.idle -= 1  # this job's thread; otherwise it waits for the first one free
        if start:
            threading.Thread(
                target=self._work, name=f"{self.name}_{self.threads}", daemon=True
            ).start()
        return await future

    def _work(self) -> None:
        name_this_thread(self.name)
        while True:
            loop, future, context, fn, args = self.jobs.get()
            try:
                outcome: tuple[Any, BaseException | None] = (context.run(fn, *args), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, *outcome)
            del loop, future, context, fn, args, outcome  # hold nothing while idle
            with self.lock:
                self.idle += 1


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
