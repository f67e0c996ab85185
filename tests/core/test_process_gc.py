"""A running Warden process keeps what its start-up built out of the garbage collector's
sight: full collections walked it under load and were most of the small reads' p99 (see
tests/benchmarks/bench_small_reads.py). Stopped, the process hands it back, so a process
stopped inside a longer-lived one leaves nothing uncollectable; a program that froze its own
objects before (the test run, tests/conftest.py) keeps its freeze."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import WardenHarness


@contextmanager
def nothing_frozen() -> Iterator[None]:
    """As in a program that froze nothing (the test run froze what collection built)."""
    gc.unfreeze()
    try:
        yield
    finally:
        gc.freeze()


def test_a_running_process_keeps_its_start_up_objects_out_of_the_collector(
    warden: WardenHarness,
) -> None:
    process = warden.process
    process.stop()  # whatever the harness left running
    with nothing_frozen():
        assert gc.get_freeze_count() == 0
        process.start()
        try:
            assert gc.get_freeze_count() > 0
        finally:
            process.stop()
        assert gc.get_freeze_count() == 0


def test_a_process_leaves_a_freeze_made_before_it_alone(warden: WardenHarness) -> None:
    process = warden.process
    process.stop()
    with nothing_frozen():
        gc.freeze()
        process.start()
        process.stop()
        # still frozen (a few of its objects may have been freed meanwhile)
        assert gc.get_freeze_count() > 0
