"""Datasets in an S3-compatible bucket (a real SeaweedFS): seeded there, read through the
gateway with every rule, mask, row filter and audit event unchanged; bad storage input fails
clearly and changes nothing; callers never see where the files are or how they are reached."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.fs as pa_fs
import pytest
from sqlalchemy import func, select

from tests.benchmarks.harness import free_port
from tests.conftest import WardenHarness, _seed_settings
from tests.serving import register_like
from warden.catalog.models import DatasetVersion
from warden.catalog.service import load_view
from warden.catalog.storage import S3, Storage, storage_for
from warden.db.session import unit_of_work
from warden.errors import StorageUnavailable


def s3_settings(seaweedfs: dict[str, str], **override: str) -> dict[str, Any]:
    values = {
        "storage_url": f"{seaweedfs['WARDEN_STORAGE_URL']}/t-{uuid.uuid4().hex[:10]}",
        "s3_endpoint_url": seaweedfs["WARDEN_S3_ENDPOINT_URL"],
        "s3_access_key_id": seaweedfs["WARDEN_S3_ACCESS_KEY_ID"],
        "s3_secret_access_key": seaweedfs["WARDEN_S3_SECRET_ACCESS_KEY"],
        "s3_connect_timeout_s": 2.0,
        "s3_request_timeout_s": 10.0,
    }
    return {**values, **override}


@pytest.fixture
def s3_warden(
    db_url: str, tmp_path: Path, taste_graph: list, seaweedfs: dict[str, str]
) -> Iterator[WardenHarness]:
    """A Warden whose datasets were seeded into the bucket (its own prefix per test)."""
    settings = _seed_settings(tmp_path, db_url).model_copy(update=s3_settings(seaweedfs))
    harness = WardenHarness.build(settings, taste_graph)
    yield harness
    harness.close()


def view(warden: WardenHarness, name: str = "engagements") -> Any:
    with unit_of_work(warden.state.sessions) as db:
        return load_view(db, warden.state.settings.datasets_dir, "acme", name)


def bucket_fs(warden: WardenHarness) -> pa_fs.S3FileSystem:
    return storage_for(warden.state.settings).filesystem()


def read_object(warden: WardenHarness, location: str, **kw: Any) -> pl.DataFrame:
    with bucket_fs(warden).open_input_file(location.removeprefix(S3)) as fh:
        return pl.read_parquet(io.BytesIO(fh.read()), **kw)


def frame(response: Any) -> pl.DataFrame:
    assert response.status_code == 200, response.text
    return pl.read_ipc_stream(io.BytesIO(response.content))


def versions(warden: WardenHarness) -> tuple[int, str]:
    with unit_of_work(warden.state.sessions) as db:
        count = db.scalar(select(func.count()).select_from(DatasetVersion))
    return int(count or 0), view(warden).version


def test_seeded_datasets_live_in_the_bucket_and_read_as_before(s3_warden: WardenHarness) -> None:
    eng = view(s3_warden)
    assert eng.location.startswith(s3_warden.state.settings.storage_url + "/engagements/")
    assert not (s3_warden.state.settings.datasets_dir / "engagements").exists()
    raw = read_object(s3_warden, eng.location)

    # masks: a keyed hash, never the raw id; the read is audited before data, as on disk
    r = s3_warden.read(
        "alice", "engagements", purpose="training", columns=["user_id", "pin_id"], limit=50
    )
    df = frame(r)
    assert df.height == 50 and df["user_id"].dtype == pl.Int64
    assert not set(df["user_id"]) & set(raw["user_id"])
    (event,) = [
        e
        for e in s3_warden.audit_events(actor="alice")
        if e["id"] == r.headers["x-warden-audit-event"]
    ]
    assert event["decision"] == "allow" and event["rows"] == 50
    assert event["masked_columns"] == ["user_id"] and event["dataset_version"] == eng.version

    # policy row filter and the caller's filter
    eu = frame(s3_warden.read("erin", "engagements", purpose="analytics", columns=["region"]))
    assert eu.height == raw.filter(pl.col("region") == "EU").height > 0
    saves = frame(
        s3_warden.read(
            "alice",
            "engagements",
            purpose="training",
            columns=["pin_id", "action"],
            where=[{"column": "action", "op": "eq", "value": "save"}],
        )
    )
    assert saves.height == raw.filter(pl.col("action") == "save").height

    # refusals are unchanged
    denied = s3_warden.read("erin", "engagements", purpose="analytics", columns=["dwell_ms"])
    assert denied.status_code == 403
    assert s3_warden.read("mallory", "engagements", purpose="training").status_code == 404


def test_callers_never_see_the_bucket_or_its_credentials(s3_warden: WardenHarness) -> None:
    settings = s3_warden.state.settings
    secrets = [settings.s3_secret_access_key, settings.s3_access_key_id, settings.storage_url]
    seen = s3_warden.http.get("/v1/datasets/engagements", headers=s3_warden.as_("alice")).text
    seen += str(s3_warden.read("alice", "engagements", purpose="training", limit=1).headers)
    seen += str(s3_warden.audit_events())
    assert not [s for s in secrets if s and s in seen]


def test_a_large_read_streams_from_the_bucket(s3_warden: WardenHarness, tmp_path: Path) -> None:
    big = pl.concat([read_object(s3_warden, view(s3_warden).location)] * 60)
    register_file(s3_warden, big, tmp_path, storage_for(s3_warden.state.settings))
    columns = ["pin_id", "action", "region", "dwell_ms"]
    with s3_warden.http.stream(
        "POST",
        "/v1/datasets/engagements/read",
        json={"purpose": "training", "columns": columns},
        headers=s3_warden.as_("alice"),
    ) as response:
        assert response.status_code == 200
        assert "x-warden-stream" in response.headers
        got = pl.read_ipc_stream(io.BytesIO(response.read()))
    stored = read_object(s3_warden, view(s3_warden).location)  # its rows, in a new order
    assert stored.sort(pl.all()).equals(big.sort(pl.all()))
    assert got.equals(stored.select(columns))


def register_file(
    warden: WardenHarness, data: pl.DataFrame, tmp_path: Path, store: Storage
) -> None:
    """A new version of engagements, same columns and classes, stored in `store`."""
    current = view(warden)
    source = tmp_path / f"engagements-{uuid.uuid4().hex[:6]}.parquet"
    data.write_parquet(source)
    with unit_of_work(warden.state.sessions) as db:
        register_like(db, store, current, source)


def bad_store(warden: WardenHarness, seaweedfs: dict[str, str], case: str) -> Storage:
    good = storage_for(warden.state.settings)
    if case == "unreachable endpoint":
        return Storage(**{**good.__dict__, "endpoint": f"http://127.0.0.1:{free_port()}"})
    if case == "wrong credentials":
        return Storage(**{**good.__dict__, "secret_key": "not-the-secret"})
    if case == "unknown access key":
        return Storage(**{**good.__dict__, "access_key": "nobody", "secret_key": "x" * 20})
    assert case == "missing bucket"
    return Storage(**{**good.__dict__, "root": f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}"})


BAD_STORES = ["unreachable endpoint", "wrong credentials", "unknown access key", "missing bucket"]


@pytest.mark.parametrize("case", BAD_STORES)
def test_registering_into_bad_storage_fails_clearly_and_changes_nothing(
    s3_warden: WardenHarness, seaweedfs: dict[str, str], tmp_path: Path, case: str
) -> None:
    before = versions(s3_warden)
    data = read_object(s3_warden, view(s3_warden).location).head(100)
    with pytest.raises(StorageUnavailable) as refused:
        register_file(s3_warden, data, tmp_path, bad_store(s3_warden, seaweedfs, case))
    detail = str(refused.value.detail)
    assert detail.startswith("dataset storage: ")
    assert "not-the-secret" not in detail and seaweedfs["WARDEN_S3_SECRET_ACCESS_KEY"] not in detail
    assert versions(s3_warden) == before
    assert frame(s3_warden.read("alice", "pins", purpose="training", limit=3)).height == 3


@pytest.mark.parametrize("case", ["unreachable endpoint", "wrong credentials"])
def test_a_gateway_that_cannot_reach_the_bucket_answers_503_and_audits_it(
    s3_warden: WardenHarness, seaweedfs: dict[str, str], case: str
) -> None:
    bad = bad_store(s3_warden, seaweedfs, case)
    s3_warden.state.settings = s3_warden.state.settings.model_copy(
        update={"s3_endpoint_url": bad.endpoint, "s3_secret_access_key": bad.secret_key}
    )
    from warden.gateway.planner import frames

    frames.clear()  # nothing decoded from before the change
    r = s3_warden.read("alice", "engagements", purpose="training", columns=["pin_id"], limit=5)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"] == "StorageUnavailable"
    assert "not-the-secret" not in body["detail"] and "127.0.0.1" not in body["detail"]
    assert "s3://" not in body["detail"]
    event = s3_warden.audit_events(actor="alice")[0]
    assert event["decision"] == "deny" and "StorageUnavailable" in event["reason"]


def test_a_corrupt_object_is_refused_and_audited(s3_warden: WardenHarness, tmp_path: Path) -> None:
    big = pl.concat([read_object(s3_warden, view(s3_warden, "pins").location)] * 2)
    location = view(s3_warden, "pins").location
    with bucket_fs(s3_warden).open_output_stream(location.removeprefix(S3)) as out:
        out.write(b"PAR1 this is not a parquet file PAR1" * 10)
    from warden.gateway.planner import frames

    frames.clear()
    r = s3_warden.read("alice", "pins", purpose="training", limit=5)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "StorageUnavailable" and "corrupt" in r.json()["detail"]
    assert s3_warden.audit_events(actor="alice")[0]["decision"] == "deny"
    assert big.height > 0


def test_an_earlier_version_in_the_bucket_ordered_by_todays_identifier_is_refused(
    s3_warden: WardenHarness,
) -> None:
    """Red team 14, finding 2, in a bucket: the earlier version's order is read from there."""
    from tests.gateway.test_row_order import earlier_and_today

    store = storage_for(s3_warden.state.settings)
    old, _, _ = earlier_and_today(s3_warden, store=store)
    r = s3_warden.read("alice", "users", purpose="training", columns=["user_id"], version=old)
    assert r.status_code == 409, r.text
    assert "identifier column now" in r.text and "s3://" not in r.text
    assert frame(s3_warden.read("alice", "users", purpose="training", columns=["user_id"])).height
