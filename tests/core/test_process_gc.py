"""A running Warden process keeps what its start-up built out of the garbage collector's
sight: full collections walked it under load and were most of the small reads' p99 (see
tests/benchmarks/bench_small_reads.py). Stopped, the process hands it back, so a process
stopped inside a longer-lived one (a test run) leaves nothing uncollectable."""

from __future__ import annotations

import gc

from tests.conftest import WardenHarness


def test_a_running_process_keeps_its_start_up_objects_out_of_the_collector(
    warden: WardenHarness,
) -> None:
    process = warden.process
    process.stop()  # whatever the harness left running
    assert gc.get_freeze_count() == 0
    process.start()
    try:
        assert gc.get_freeze_count() > 0
    finally:
        process.stop()
    assert gc.get_freeze_count() == 0
