"""The README's demo command runs end to end (`warden demo --no-ml` as a real process; the
sandboxed ML part is covered by tests/registry, which runs the same jobs through a worker),
and with `--keep-serving` prints the console's address and leaves the server up: a steward
signs in there with a printed token and finds the request the demo left; Ctrl-C (SIGINT)
stops it. One run of the demo serves both (it is the suite's slowest story)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.console.conftest import csrf_in

pytestmark = pytest.mark.slow


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The process's output, line by line, read on a thread (None once it closes)."""
    assert proc.stdout is not None
    stream = proc.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str | None], marker: str, timeout: float) -> str:
    """Everything printed until a line holds `marker` (the process keeps running)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"no {marker!r} within {timeout} s:\n" + "".join(seen)[-4000:])


def test_the_demo_keeps_serving_the_console_when_asked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    env |= {"COLUMNS": "200", "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "warden.cli.main", "demo", "--no-ml", "--keep-serving",
         "--directory", str(tmp_path / "demo")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out = _read_until(_lines(proc), "Ctrl-C stops", timeout=600)
        assert "demo complete" in out and "generated" in out
        assert "user_id (masked)" in out  # the allowed read masks the identifier
        assert "grant" in out and "revoked" in out.lower()
        assert "intact" in out.lower()  # audit verify
        assert "ML jobs" not in out  # --no-ml: skipped without the Docker notice
        url = re.search(r"Open (http://127\.0\.0\.1:\d+)/console", out)
        sam = re.search(r"^\W*sam\s+steward\s+(wdn_\S+)", out, re.MULTILINE)
        assert url and sam, out[-3000:]
        with httpx.Client(base_url=url.group(1), timeout=60) as browser:
            form = browser.get("/console/sign-in")
            signed = browser.post(
                "/console/sign-in",
                data={
                    "csrf": csrf_in(form.text),
                    "token": sam.group(1),
                    "next": "/console/reviews",
                },
            )
            assert signed.status_code == 303, signed.text
            reviews = browser.get("/console/reviews")
            assert reviews.status_code == 200
            assert "erin" in reviews.text and "category mix of the EU board feed" in reviews.text
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) in (0, 1, -signal.SIGINT, 130)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
