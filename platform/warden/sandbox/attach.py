"""`exec` into a running sandbox through the API: a command run by `docker exec` on the
platform's side, its output streamed back to the caller (who needs no Docker socket).

Only the sandbox's launcher, or an administrator of its tenant (`sys:sandboxes` manage, the
same visibility rule as stop), may exec; never into a segment with data (an ML sandbox holds a
job token). Each exec is an audited session: `sandbox.exec` (allow) is recorded before the
command starts, `sandbox.exec.end` when it ends, with the exit code, bytes out and wall time.
The command's arguments are not recorded, only its program's name and how many arguments.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterator, Sequence
from typing import Any

from warden.audit.outcomes import by, refusals_audited
from warden.audit.service import append
from warden.db.base import new_id
from warden.db.session import unit_of_work
from warden.errors import Conflict, Forbidden, Unprocessable
from warden.identity.service import Caller
from warden.sandbox import frames
from warden.sandbox.driver import SandboxError
from warden.sandbox.models import Sandbox
from warden.sandbox.runtime import SandboxRuntime
from warden.sandbox.service import get_visible
from warden.sandbox.sessions import close_session, open_session

MAX_ARGS = 256


def exec_session(
    runtime: SandboxRuntime, caller: Caller, sandbox_id: str, command: Sequence[str]
) -> Iterator[bytes]:
    """Check, audit the start, start the command; returns its framed output (frames.py),
    whose end is audited however it ends (the caller going away included)."""
    session = new_id()
    shape = _shape(command)
    fields: dict[str, Any] = {"details": {"sandbox": sandbox_id[:12], "session": session, **shape}}
    with refusals_audited(runtime.state.sessions, caller, "sandbox.exec", **fields):
        row = get_visible(runtime, caller, sandbox_id, act="manage")
        _check(runtime, row, command)
        assert row.container_id is not None
        with unit_of_work(runtime.state.sessions) as db:
            append(db, by(caller, "sandbox.exec", "allow", **fields))
            open_session(db, row, caller.name, "exec", session)
    try:
        exec_id, output = runtime.driver.exec(row.container_id, list(command))
    except SandboxError as exc:
        _end(runtime, caller, row, session, shape, None, 0, 0.0, str(exc))
        raise Conflict(f"the command could not start: {exc}") from exc
    return _stream(runtime, caller, row, session, shape, exec_id, output)


def _shape(command: Sequence[str]) -> dict[str, Any]:
    program = posixpath.basename(command[0])[:64] if command else ""
    return {"program": program, "args": max(len(command) - 1, 0)}


def _check(runtime: SandboxRuntime, row: Sandbox, command: Sequence[str]) -> None:
    profile = runtime.profiles().get(row.segment)
    if profile is None or profile.gateway_socket or profile.data_access:
        raise Forbidden(f"no exec into {row.segment!r} sandboxes: they run jobs with data")
    if not command or len(command) > MAX_ARGS or sum(len(a) for a in command) > 64 * 1024:
        raise Unprocessable(f"a command of 1 to {MAX_ARGS} arguments is required")
    if any("\x00" in a for a in command):
        raise Unprocessable("command arguments cannot hold NUL bytes")
    if row.status != "running" or not row.container_id:
        raise Conflict(f"sandbox {row.id} is {row.status}, not running")


def _stream(
    runtime: SandboxRuntime,
    caller: Caller,
    row: Sandbox,
    session: str,
    shape: dict[str, Any],
    exec_id: str,
    output: Iterator[bytes],
) -> Iterator[bytes]:
    started = time.monotonic()
    sent, error, code = 0, None, None
    try:
        for chunk in output:
            sent += len(chunk)
            yield frames.frame(frames.OUTPUT, chunk)
        code = runtime.driver.exec_exit_code(exec_id)
    except SandboxError as exc:
        error = str(exc)
    finally:
        # Runs on a normal end, an error, and when the caller goes away (GeneratorExit).
        _end(runtime, caller, row, session, shape, code, sent, time.monotonic() - started, error)
    yield frames.end_frame(code, error)


def _end(
    runtime: SandboxRuntime,
    caller: Caller,
    row: Sandbox,
    session: str,
    shape: dict[str, Any],
    code: int | None,
    sent: int,
    seconds: float,
    error: str | None,
) -> None:
    details = {"sandbox": row.id, "session": session, "segment": row.segment,
               "launcher": row.launcher, "exit_code": code, **shape}  # fmt: skip
    _close(runtime, caller, "sandbox.exec.end", session, details, 0, sent, seconds, error)


def _close(
    runtime: SandboxRuntime,
    caller: Caller,
    action: str,
    session: str,
    details: dict[str, Any],
    received: int,
    sent: int,
    seconds: float,
    error: str | None,
) -> None:
    """End an attach session (exec or forward): its record closed and its audit event, with
    the bytes each way and the wall time, in one transaction."""
    with unit_of_work(runtime.state.sessions) as db:
        close_session(db, session, seconds)
        append(
            db,
            by(
                caller,
                action,
                "allow" if error is None else "error",
                bytes=sent + received,
                reason=error,
                details={
                    **details,
                    "bytes_in": received,
                    "bytes_out": sent,
                    "wall_s": round(seconds, 3),
                },
            ),
        )


def forward_session(
    runtime: SandboxRuntime, caller: Caller, sandbox_id: str, port: int
) -> tuple[str, str]:
    """Check a port forward into a running app-dev sandbox and audit its start: (the
    sandbox's address, the session id). The caller pumps the bytes and calls `forward_end`."""
    session = new_id()
    fields: dict[str, Any] = {"details": {"sandbox": sandbox_id[:12], "session": session}}
    fields["details"]["port"] = port
    with refusals_audited(runtime.state.sessions, caller, "sandbox.forward", **fields):
        row = get_visible(runtime, caller, sandbox_id, act="manage")
        _check(runtime, row, ["forward"])
        if not 0 < port < 65536:
            raise Unprocessable(f"port {port} is not a TCP port")
        assert row.container_id is not None
        address = getattr(runtime.driver, "address", lambda _: None)(row.container_id)
        if not address:
            raise Conflict(f"sandbox {row.id} has no network address to forward to")
        with unit_of_work(runtime.state.sessions) as db:
            append(db, by(caller, "sandbox.forward", "allow", **fields))
            open_session(db, row, caller.name, "forward", session)
    return address, session


def forward_end(
    runtime: SandboxRuntime,
    caller: Caller,
    sandbox_id: str,
    session: str,
    port: int,
    sent: int,
    received: int,
    seconds: float,
    error: str | None,
) -> None:
    details = {"sandbox": sandbox_id, "session": session, "port": port}
    _close(runtime, caller, "sandbox.forward.end", session, details, received, sent, seconds, error)
