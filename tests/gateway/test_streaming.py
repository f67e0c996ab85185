"""Streamed reads: an answer too large to hold goes out batch by batch, audited by an intent
committed before the first byte and a completion after the last (or when the client left)."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from httpcore._backends.sync import SyncStream
from sqlalchemy import text

from tests.gateway.big import BIG_ROWS, SEEDED_BIG, current_file, register_big
from warden.audit.checkpoints import CheckpointStore
from warden.audit.service import verify
from warden.catalog.service import load_view
from warden.db.session import unit_of_work
from warden.gateway import planner
from warden.sdk import Client, WardenAPIError
from warden.sdk import direct as direct_module
from warden.sdk.client import READ_AHEAD
from warden.sdk.direct import reachable_directly as direct_reachable

COLUMNS = ["pin_id", "action", "region", "dwell_ms"]
# Every test here starts with the large version registered (once per session: ~1.5 CPU-s a
# test); a test that wants another registers it.
pytestmark = pytest.mark.usefixtures("big_world")


def big_engagements(warden: Any, tmp_path: Path, rows: int = BIG_ROWS, salt: int = 0) -> Path:
    """The file of a large version of `engagements`: registered now, unless the test's seeded
    database already holds this very one (the `big_world` fixture)."""
    settings, sessions = warden.state.settings, warden.state.sessions
    if (rows, salt) == (BIG_ROWS, 0) and SEEDED_BIG in getattr(warden, "seeded_with", ()):
        return current_file(settings, sessions)
    return register_big(settings, sessions, tmp_path, rows, salt)


def events(warden: Any, **filters: str) -> list[dict[str, Any]]:
    return warden.audit_events(**filters)  # type: ignore[no-any-return]


def stream_events(warden: Any, stream_id: str) -> dict[str, dict[str, Any]]:
    found = {}
    for e in events(warden, actor="alice"):
        stream = (e.get("details") or {}).get("stream") or {}
        if stream.get("id") == stream_id:
            found[stream["phase"]] = e
    return found


def wait_for(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def post_stream(
    url: str, token: str, body: dict[str, Any], timeout: float = 120
) -> Iterator[httpx.Response]:
    with (
        httpx.Client(base_url=url, timeout=timeout) as http,
        http.stream(
            "POST",
            "/v1/datasets/engagements/read",
            json=body,
            headers={"authorization": f"Bearer {token}"},
        ) as response,
    ):
        yield response


def test_a_large_read_streams_between_an_intent_and_a_completion(
    live_warden: Any, tmp_path: Path
) -> None:
    path = big_engagements(live_warden, tmp_path)
    body = {"purpose": "training", "columns": ["user_id", *COLUMNS]}
    sha, received, chunks = hashlib.sha256(), bytearray(), 0
    for response in post_stream(live_warden.url, live_warden.tokens["alice"], body):
        assert response.status_code == 200, response.read()
        assert "content-length" not in response.headers
        stream_id = response.headers["x-warden-stream"]
        intent_id = response.headers["x-warden-audit-event"]
        for chunk in response.iter_raw():
            sha.update(chunk)
            received += chunk
            chunks += 1
    frame = pl.read_ipc_stream(io.BytesIO(received))
    raw = pl.read_parquet(path, columns=["user_id", *COLUMNS])
    assert frame.height == raw.height == BIG_ROWS
    assert frame.select(COLUMNS).equals(raw.select(COLUMNS))
    assert not set(frame["user_id"].head(1000)) & set(raw["user_id"])  # masked all the way
    assert chunks > 2  # it came in pieces, not as one collected answer

    found = wait_for(lambda: (f := stream_events(live_warden, stream_id)).get("completion") and f)
    intent, completion = found["intent"], found["completion"]
    assert intent["id"] == intent_id
    assert intent["action"] == "dataset.read" and intent["decision"] == "allow"
    assert intent["masked_columns"] == ["user_id"] and intent["rows"] is None
    assert completion["action"] == "dataset.read.completion"
    assert completion["decision"] == "allow"
    assert completion["seq"] > intent["seq"]
    assert completion["rows"] == BIG_ROWS
    assert completion["bytes"] == len(received)
    done = completion["details"]["stream"]
    assert done["status"] == "complete" and done["sha256"] == sha.hexdigest()
    assert done["intent_seq"] == intent["seq"]


def test_a_completion_cut_from_the_log_is_tampering_not_a_stream_still_open(
    live_warden: Any, tmp_path: Path
) -> None:
    """The completion is checkpointed before the stream's end is recorded as done (audit/
    anchor.py): deleting it and what followed, head reset, is a truncation `verify` reports,
    not an `open_intent` note that looks like a read still running."""
    big_engagements(live_warden, tmp_path)
    body = {"purpose": "training", "columns": COLUMNS}
    for response in post_stream(live_warden.url, live_warden.tokens["alice"], body):
        stream_id = response.headers["x-warden-stream"]
        for _ in response.iter_raw():
            pass
    found = wait_for(lambda: (f := stream_events(live_warden, stream_id)).get("completion") and f)
    completion = found["completion"]
    # checkpointed once the completion commits (audit/anchor.py): the event may show first
    store = CheckpointStore.for_settings(live_warden.settings)
    wait_for(lambda: (cp := store.last()) is not None and cp.seq >= completion["seq"])
    keep = completion["seq"] - 1
    # as someone with SQL would; the head first, so no append of the live server's lands
    # between the cut and the head's reset (and SQLite's write lock is taken before any read)
    with live_warden.state.engine.begin() as conn:
        kept = "(SELECT hash FROM audit_event WHERE seq = :s)"
        conn.execute(text(f"UPDATE audit_head SET seq = :s, hash = {kept}"), {"s": keep})
        conn.execute(text("DELETE FROM audit_event WHERE seq > :s"), {"s": keep})
    with live_warden.state.sessions() as db:
        result = verify(db, checkpoints=store.read())
    assert not result.ok, result
    assert {f.kind for f in result.findings} & {"truncation", "head"}, result.findings
    # and a process that sees the checkpoint the chain no longer reaches refuses (or, having
    # held it already, lets an admin's verify say the same)
    r = live_warden.http.post("/v1/audit/verify", headers=live_warden.as_("admin"))
    assert r.status_code == 503 or r.json()["ok"] is False, r.text


def test_a_small_answer_from_a_large_file_stays_one_measured_event(
    live_warden: Any, tmp_path: Path
) -> None:
    big_engagements(live_warden, tmp_path)
    with Client(url=live_warden.url, token=live_warden.tokens["alice"]) as client:
        frame, info = client.read_with_info(
            "engagements", purpose="training", columns=COLUMNS, limit=100
        )
    assert frame.height == 100
    assert info["x-warden-rows"] == "100" and "x-warden-stream" not in info
    (event,) = [
        e for e in events(live_warden, actor="alice") if e["id"] == info["x-warden-audit-event"]
    ]
    assert event["rows"] == 100 and "stream" not in (event["details"] or {})


def test_a_client_that_goes_away_mid_stream_leaves_an_incomplete_completion(
    live_warden: Any, tmp_path: Path
) -> None:
    big_engagements(live_warden, tmp_path)
    got = 0
    body = {"purpose": "training", "columns": COLUMNS}
    for response in post_stream(live_warden.url, live_warden.tokens["alice"], body):
        assert response.status_code == 200
        stream_id = response.headers["x-warden-stream"]
        for chunk in response.iter_raw():
            got += len(chunk)
            if got > 1 << 20:
                break  # leaving the block closes the connection mid-stream
    found = wait_for(lambda: (f := stream_events(live_warden, stream_id)).get("completion") and f)
    completion = found["completion"]
    assert completion["decision"] == "error"
    assert completion["details"]["stream"]["status"] == "incomplete"
    assert "went away" in completion["reason"]
    assert completion["bytes"] > 0 and completion["rows"] < BIG_ROWS

    verdict = live_warden.http.post("/v1/audit/verify", headers=live_warden.as_("admin")).json()
    assert verdict["ok"] is True
    assert not [f for f in verdict["findings"] if f["kind"] in ("open_intent", "orphan_completion")]


def test_a_stream_still_open_is_a_verify_note_not_corruption(
    live_warden: Any, tmp_path: Path
) -> None:
    big_engagements(live_warden, tmp_path)
    body = {"purpose": "training", "columns": COLUMNS}
    for response in post_stream(live_warden.url, live_warden.tokens["alice"], body):
        stream_id = response.headers["x-warden-stream"]
        chunks = response.iter_raw()  # kept: a dropped iterator closes the connection
        next(chunks)  # the stream is open: the server waits on back-pressure
        verdict = live_warden.http.post("/v1/audit/verify", headers=live_warden.as_("admin"))
        result = verdict.json()
        assert result["ok"] is True, result
        (note,) = [f for f in result["findings"] if f["kind"] == "open_intent"]
        assert note["severity"] == "note" and stream_id in note["detail"]
        assert not stream_events(live_warden, stream_id).get("completion")


def test_a_dataset_registered_again_while_a_read_streams_does_not_change_that_read(
    live_warden: Any, tmp_path: Path
) -> None:
    old = big_engagements(live_warden, tmp_path)
    body = {"purpose": "training", "columns": COLUMNS}
    received = bytearray()
    for response in post_stream(live_warden.url, live_warden.tokens["alice"], body):
        version = response.headers["x-warden-dataset-version"]
        snapshot = response.headers["x-warden-dataset-snapshot"]  # an Iceberg snapshot
        chunks = response.iter_raw()
        received += next(chunks)
        new = big_engagements(live_warden, tmp_path, rows=BIG_ROWS // 2, salt=7)
        assert new != old
        for chunk in chunks:
            received += chunk
    frame = pl.read_ipc_stream(io.BytesIO(received))
    assert frame.equals(pl.read_parquet(old, columns=COLUMNS))
    assert version.removeprefix("sha256:") in old.name
    with unit_of_work(live_warden.state.sessions) as db:
        current = load_view(db, live_warden.settings.datasets_dir, "acme", "engagements")
    assert current.snapshot_id is not None and str(current.snapshot_id) != snapshot
    after = Client(url=live_warden.url, token=live_warden.tokens["alice"])
    with after:
        assert after.read("engagements", purpose="training", columns=COLUMNS).height == (
            BIG_ROWS // 2
        )


def test_iter_batches_yields_the_answer_a_batch_at_a_time(live_warden: Any, tmp_path: Path) -> None:
    path = big_engagements(live_warden, tmp_path)
    info: dict[str, str] = {}
    with Client(url=live_warden.url, token=live_warden.tokens["alice"]) as client:
        sizes = [
            b.height
            for b in client.iter_batches(
                "engagements", purpose="training", columns=COLUMNS, info=info
            )
        ]
        assert len(sizes) > 3 and max(sizes) <= planner.BATCH_ROWS
        assert sum(sizes) == pl.scan_parquet(path).select(pl.len()).collect().item()
        assert "x-warden-stream" in info
        # an empty answer still yields its columns
        (empty,) = client.iter_batches(
            "engagements", purpose="training", columns=COLUMNS, where=[("pin_id", "lt", -1)]
        )
    assert empty.height == 0 and empty.columns == COLUMNS


def test_read_receives_a_large_answer_in_large_reads(
    live_warden: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through httpx, the SDK asks the socket for READ_AHEAD bytes per receive of a large
    answer (at httpcore's 64 KiB, each receive's pass through the HTTP stack cost more than its
    bytes), and only while it reads one: a small answer on the same connection reads as
    before. `iter_batches` does not go through httpx at all here (next test)."""
    big_engagements(live_warden, tmp_path)
    asked: list[int] = []
    read = SyncStream.read

    def recording(self: SyncStream, max_bytes: int, timeout: float | None = None) -> bytes:
        asked.append(max_bytes)
        return read(self, max_bytes, timeout)

    monkeypatch.setattr(SyncStream, "read", recording)
    with Client(url=live_warden.url, token=live_warden.tokens["alice"]) as client:
        rows = client.read("engagements", purpose="training", columns=COLUMNS).height
        assert rows == BIG_ROWS and max(asked) == READ_AHEAD
        during = len(asked)
        assert client.read("engagements", purpose="training", columns=COLUMNS, limit=5).height == 5
    assert asked[during:] and max(asked[during:]) < READ_AHEAD


def test_iter_batches_reads_past_httpx_unless_a_proxy_would_carry_it(
    live_warden: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A streamed read's body goes straight from the socket into Arrow's buffers
    (`sdk/direct.py`); the same frames either way, and with a proxy set for the host, httpx
    (which honours it) reads it as before."""
    big_engagements(live_warden, tmp_path)
    received: list[int] = []
    read = SyncStream.read

    def recording(self: SyncStream, max_bytes: int, timeout: float | None = None) -> bytes:
        data = read(self, max_bytes, timeout)
        received.append(len(data))
        return data

    monkeypatch.setattr(SyncStream, "read", recording)
    with Client(url=live_warden.url, token=live_warden.tokens["alice"]) as client:
        direct = pl.concat(client.iter_batches("engagements", purpose="training", columns=COLUMNS))
        assert direct.height == BIG_ROWS and sum(received) < 1 << 16  # no body through httpx
        # a proxy for every host but this one's: still direct
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        assert sum(b.height for b in client.iter_batches("engagements", purpose="training")) == (
            BIG_ROWS
        )
        assert sum(received) < 1 << 16
        monkeypatch.delenv("NO_PROXY")
        assert not direct_reachable(live_warden.url, None)
    monkeypatch.delenv("HTTP_PROXY")
    with Client(url=live_warden.url, token=live_warden.tokens["alice"]) as client:
        monkeypatch.setattr(direct_module, "reachable_directly", lambda url, sock: False)
        through_httpx = pl.concat(
            client.iter_batches("engagements", purpose="training", columns=COLUMNS)
        )
    assert sum(received) > 10 * (1 << 20)
    assert through_httpx.equals(direct)


def test_iter_batches_past_httpx_says_what_the_api_refused(live_warden: Any) -> None:
    client = Client(url=live_warden.url, token="wdn_not_a_token")
    with client, pytest.raises(WardenAPIError) as refused:
        next(client.iter_batches("engagements", purpose="training"))
    assert refused.value.status == 401
    nobody = Client(url="http://127.0.0.1:9", token="wdn_unused")  # nothing listens on 9
    with nobody, pytest.raises(httpx.ConnectError):
        next(nobody.iter_batches("engagements", purpose="training"))


def test_an_audit_store_that_fails_sends_no_byte_of_a_stream(
    live_warden: Any, tmp_path: Path
) -> None:
    big_engagements(live_warden, tmp_path)
    with live_warden.state.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_head"))
    response = httpx.post(
        f"{live_warden.url}/v1/datasets/engagements/read",
        json={"purpose": "training", "columns": COLUMNS},
        headers={"authorization": f"Bearer {live_warden.tokens['alice']}"},
        timeout=120,
    )
    assert response.status_code == 503
    assert response.json()["error"] == "AuditUnavailable"
    assert "x-warden-stream" not in response.headers


def test_a_job_socket_streams_the_same_way(warden: Any, tmp_path: Path) -> None:
    """The gateway a worker serves on each sandbox's unix socket takes the same path."""
    import tempfile

    from warden.api.gateway_app import create_gateway_app
    from warden.sandbox.gateway_socket import GatewaySocket

    path = big_engagements(warden, tmp_path)
    token = warden.tokens["alice"]
    folder = Path(tempfile.mkdtemp(prefix="wgs-", dir="/tmp"))
    sock = GatewaySocket(create_gateway_app(warden.state), folder, "sbx-test", token)
    sock.start()
    info: dict[str, str] = {}
    try:
        with Client(socket=str(sock.path), token=token) as client:
            rows = sum(
                b.height
                for b in client.iter_batches(
                    "engagements", purpose="training", columns=COLUMNS, info=info
                )
            )
    finally:
        sock.stop()
    assert rows == pl.scan_parquet(path).select(pl.len()).collect().item()
    found = wait_for(
        lambda: (f := stream_events(warden, info["x-warden-stream"])).get("completion") and f
    )
    assert found["completion"]["rows"] == rows
    assert found["completion"]["details"]["stream"]["status"] == "complete"


def test_a_stream_that_fails_midway_is_recorded_incomplete(
    live_warden: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    big_engagements(live_warden, tmp_path)
    real, calls = planner.keyed_hash_frame, []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("the scan broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(planner, "keyed_hash_frame", failing)
    body = {"purpose": "training", "columns": ["user_id", *COLUMNS]}
    got = 0
    # The connection is cut, never a clean end, nor held open until the client's timeout.
    with pytest.raises(httpx.RemoteProtocolError):
        for response in post_stream(live_warden.url, live_warden.tokens["alice"], body, 30):
            stream_id = response.headers["x-warden-stream"]
            for chunk in response.iter_raw():
                got += len(chunk)
    found = wait_for(lambda: (f := stream_events(live_warden, stream_id)).get("completion") and f)
    completion = found["completion"]
    assert completion["decision"] == "error"
    assert completion["reason"] == "the stream failed: RuntimeError"
    assert completion["details"]["stream"]["status"] == "incomplete"
    assert completion["bytes"] > 0 and completion["rows"] < BIG_ROWS
