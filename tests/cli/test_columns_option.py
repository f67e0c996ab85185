"""`--columns` means one thing in every command that takes it (`cli.options.column_names`):
names split at commas, spaces around each dropped; an empty name is a usage error (exit 2)
before anything is sent. `access` used to drop empty names and `policy check` and `read` to
send them, so `a,,b` asked for two columns in one command and for an unknown one in another.

The CLI is pointed at a socket that records what reaches it: a refused command sends nothing.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from warden.cli.main import app
from warden.config import get_settings

COMMANDS = {
    "access request": [
        "access", "request", "pins", "--purpose", "analytics", "--duration", "7d",
        "--justification", "dashboards",
    ],
    "access break-glass": [
        "access", "break-glass", "pins", "--purpose", "analytics", "--reason", "outage", "--yes",
    ],
    "policy check": ["policy", "check", "alice", "pins", "--purpose", "training"],
    "read": ["read", "pins", "--purpose", "training", "--format", "csv"],
}  # fmt: skip


class Listener:
    """A local socket that answers every request 503 and keeps what each one sent."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n")
                     if h.lower().startswith(b"content-length:")), 0,
                )  # fmt: skip
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(body)
                answer = b'{"error":"Unavailable","detail":"listening only"}'
                conn.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(answer), answer)
                )


@pytest.fixture
def listener() -> Iterator[Listener]:
    here = Listener()
    yield here
    here.sock.close()


def _run(listener: Listener, args: list[str]) -> Any:
    get_settings.cache_clear()
    env = {"WARDEN_URL": listener.url, "WARDEN_TOKEN": "wdn_test", "COLUMNS": "200"}
    try:
        return CliRunner().invoke(app, args, env=env)
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize("columns", ["pin_id,,title", "pin_id,", ",pin_id", "", " "])
def test_an_empty_column_name_is_a_usage_error_and_sends_nothing(
    listener: Listener, command: list[str], columns: str
) -> None:
    result = _run(listener, [*command, "--columns", columns])
    assert result.exit_code == 2, result.output
    assert "empty column" in result.output, result.output
    assert listener.requests == []


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_column_names_are_sent_as_named_without_spaces(
    listener: Listener, command: list[str]
) -> None:
    result = _run(listener, [*command, "--columns", " pin_id , title"])
    assert "listening only" in result.output, result.output  # sent, and refused by the socket
    assert [json.loads(body)["columns"] for body in listener.requests] == [["pin_id", "title"]]


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_no_columns_option_sends_none(listener: Listener, command: list[str]) -> None:
    _run(listener, command)
    assert [json.loads(body).get("columns") for body in listener.requests] == [None]
