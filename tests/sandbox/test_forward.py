"""`warden sandbox forward`: a dev server in an app-dev sandbox reached on the caller's own
loopback through the API (WebSocket, the caller's token), only by its launcher; audited."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import pytest

from tests.conftest import WardenHarness
from tests.sandbox.conftest import DEVELOPER, Sandboxes

pytestmark = pytest.mark.docker


def _wait(check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("not within the time allowed")


def test_a_forwarded_dev_server_reaches_the_launcher_only(
    sandboxes: Sandboxes, live_warden: WardenHarness
) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from warden.cli.forward import serve, ws_url

    server = ["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0"]
    sandbox = sandboxes.start(DEVELOPER, server, segment="app-dev")
    url = ws_url(str(live_warden.url), sandbox["id"], 8000)  # type: ignore[attr-defined]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()
    messages: list[str] = []
    thread = threading.Thread(
        target=serve,
        args=(listener, url, live_warden.tokens[DEVELOPER], stop, messages.append),
        daemon=True,
    )
    thread.start()
    here = f"http://127.0.0.1:{listener.getsockname()[1]}/"

    def fetch() -> httpx.Response | None:
        try:
            answer = httpx.get(here, timeout=10)
        except httpx.HTTPError:
            return None
        return answer if answer.status_code == 200 else None

    try:
        answer = _wait(fetch)
        assert "Directory listing" in answer.text
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()

    for who in ("mallory", "alice"):
        with pytest.raises(InvalidStatus):
            connect(url, additional_headers={"authorization": f"Bearer {live_warden.tokens[who]}"})
    denied = live_warden.audit_events(action="sandbox.forward", decision="deny")
    assert {e["actor"] for e in denied} == {"mallory", "alice"}
    started = live_warden.audit_events(action="sandbox.forward", decision="allow")
    assert started and all(e["actor"] == DEVELOPER for e in started)
    assert all(e["details"]["port"] == 8000 for e in started)
    ended = _wait(lambda: live_warden.audit_events(action="sandbox.forward.end"))
    assert any(e["details"]["bytes_out"] > 0 for e in ended)
    sandboxes.runtime.stop(sandbox["id"], None, "test over")


def test_no_forward_into_an_ml_sandbox(sandboxes: Sandboxes, live_warden: WardenHarness) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from warden.cli.forward import ws_url

    sandbox = sandboxes.start("alice", ["sleep", "300"], segment="ml")
    url = ws_url(str(live_warden.url), sandbox["id"], 8000)  # type: ignore[attr-defined]
    with pytest.raises(InvalidStatus):
        connect(url, additional_headers={"authorization": f"Bearer {live_warden.tokens['alice']}"})
    (denied,) = live_warden.audit_events(action="sandbox.forward", decision="deny")
    assert "run jobs with data" in denied["reason"]
