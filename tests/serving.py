"""`warden serve` in a process of its own, over a test harness's database and data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from warden.api.background import free_port

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def warden_serve(
    settings: Any, database_url: str, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start it, wait until /healthz answers, yield (process, url); terminate it after."""
    port = free_port()
    environment = {
        **os.environ,
        "WARDEN_DATABASE_URL": database_url,
        "WARDEN_DATA_DIR": str(settings.data_dir),
        "WARDEN_CONFIG_DIR": str(settings.config_dir),
        "WARDEN_MASK_KEY": "test-mask-key",
        "PYTHONPATH": str(REPO / "platform"),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    cmd = [sys.executable, "-m", "warden.cli.main", "serve", "--port", str(port)]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=environment, cwd=REPO, stdout=subprocess.DEVNULL)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "warden serve exited"
            assert time.monotonic() < deadline, "warden serve did not start"
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)
