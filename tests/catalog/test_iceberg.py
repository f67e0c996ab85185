"""Datasets as Apache Iceberg tables: each version is a snapshot of `<tenant>.<dataset>` in
pyiceberg's SQL catalog in Warden's own database (SQLite and PostgreSQL), on the local folder
and in a real SeaweedFS bucket. Reads, masks, filters and audit are unchanged; `version` /
`--as-of` takes a snapshot id; bad input fails clearly and changes nothing."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from sqlalchemy import func, select

from tests.catalog.test_object_storage import s3_warden as s3_warden  # noqa: F401 (fixture)
from tests.conftest import WardenHarness
from warden.catalog import tables
from warden.catalog.models import DatasetVersion, IcebergTable
from warden.catalog.service import ColumnInfo, load_view, register
from warden.catalog.storage import storage_for
from warden.db.session import unit_of_work
from warden.errors import Forbidden, Unprocessable
from warden.gateway.planner import frames
from warden.identity.service import get_principal, get_tenant


def view(warden: WardenHarness, name: str = "engagements") -> Any:
    with unit_of_work(warden.state.sessions) as db:
        return load_view(db, warden.state.settings.datasets_dir, "acme", name)


def frame(response: Any) -> pl.DataFrame:
    assert response.status_code == 200, response.text
    return pl.read_ipc_stream(io.BytesIO(response.content))


def catalog(warden: WardenHarness) -> SqlCatalog:
    """pyiceberg's own SQL catalog on Warden's database, as any Iceberg tool would open it."""
    settings = warden.state.settings
    props = tables.io_properties(storage_for(settings))
    return SqlCatalog(
        "warden", uri=settings.resolved_database_url, init_catalog_tables="false", **props
    )


def scan(warden: WardenHarness, table: Any, snapshot: int | None = None) -> pl.DataFrame:
    options = tables.io_properties(storage_for(warden.state.settings)) or None
    return pl.scan_iceberg(table, snapshot_id=snapshot, storage_options=options).collect()


def state(warden: WardenHarness) -> tuple[int, str, list[tuple[str, str | None]]]:
    """What a failed request must leave as it was: versions, the current one, the catalog."""
    with unit_of_work(warden.state.sessions) as db:
        count = db.scalar(select(func.count()).select_from(DatasetVersion))
        pointers = [
            (t.table_name, t.metadata_location)
            for t in db.scalars(select(IcebergTable).order_by(IcebergTable.table_name))
        ]
    return int(count or 0), view(warden).version, pointers


class Abandoned(Exception):
    """Raised inside a registration's transaction after `register` returned."""


def register_frame(
    warden: WardenHarness, data: pl.DataFrame | Path, tmp_path: Path, **kw: Any
) -> Any:
    """A new version of engagements (same columns and classes unless `kw` says otherwise).
    `abandon=True`: the transaction fails after `register` returned."""
    current = view(warden)
    source = tmp_path / f"engagements-{uuid.uuid4().hex[:6]}.parquet"
    if isinstance(data, Path):
        source.write_bytes(data.read_bytes())
    else:
        data.write_parquet(source)
    with unit_of_work(warden.state.sessions) as db:
        _, version = register(
            db,
            datasets_dir=storage_for(warden.state.settings),
            tenant=get_tenant(db, "acme"),
            owner=get_principal(db, current.owner),
            name="engagements",
            source=source,
            columns=kw.get("columns", list(current.columns)),
            identifier_columns=list(current.identifier_columns),
            allowed_purposes=list(current.allowed_purposes),
            description=current.description,
            derived_from=list(current.derived_from),
        )
        if kw.get("abandon"):
            raise Abandoned
        return version.snapshot_id


def check_versions_are_snapshots(warden: WardenHarness, tmp_path: Path) -> None:
    eng = view(warden)
    table = catalog(warden).load_table(("acme", "engagements"))
    assert table.current_snapshot().snapshot_id == eng.snapshot_id  # type: ignore[union-attr]
    assert eng.table_metadata == table.metadata_location
    old = scan(warden, table, eng.snapshot_id)

    # reads are unchanged: masks, the policy's row filter, the caller's filter, audit
    r = warden.read("alice", "engagements", purpose="training", columns=["user_id", "pin_id"])
    got = frame(r)
    assert got.height == old.height and not set(got["user_id"]) & set(old["user_id"])
    assert r.headers["x-warden-dataset-snapshot"] == str(eng.snapshot_id)
    eu = frame(warden.read("erin", "engagements", purpose="analytics", columns=["region"]))
    assert eu.height == old.filter(pl.col("region") == "EU").height > 0
    (event,) = [
        e
        for e in warden.audit_events(actor="alice")
        if e["id"] == r.headers["x-warden-audit-event"]
    ]
    assert event["details"]["snapshot"] == eng.snapshot_id and event["masked_columns"] == [
        "user_id"
    ]

    # a new version is a new snapshot; the old one reads by its id, decided on today's policy
    new = old.head(1000)
    snapshot = register_frame(warden, new, tmp_path)
    assert snapshot != eng.snapshot_id and view(warden).snapshot_id == snapshot
    cols = ["pin_id", "action"]
    assert (
        frame(warden.read("alice", "engagements", purpose="training", columns=cols)).height == 1000
    )
    pinned = warden.read(
        "alice", "engagements", purpose="training", columns=cols, version=str(eng.snapshot_id)
    )
    assert frame(pinned).equals(old.select(cols))
    assert pinned.headers["x-warden-dataset-version"] == eng.version
    event = warden.audit_events(actor="alice")[0]
    assert event["details"]["as_of"] == str(eng.snapshot_id)
    assert event["details"]["snapshot"] == eng.snapshot_id
    assert event["dataset_version"] == eng.version
    # its digest names the same version
    by_digest = warden.read(
        "alice", "engagements", purpose="training", columns=cols, version=eng.version
    )
    assert frame(by_digest).equals(old.select(cols))
    # Iceberg tools see the same history
    history = [
        s.snapshot_id for s in catalog(warden).load_table(("acme", "engagements")).snapshots()
    ]
    assert eng.snapshot_id in history and snapshot in history


def test_versions_are_iceberg_snapshots_on_the_local_folder(
    warden: WardenHarness, tmp_path: Path
) -> None:
    first = view(warden)
    assert first.table_metadata.startswith("file://")
    check_versions_are_snapshots(warden, tmp_path)
    # the same file registered again: its snapshot is current again (Iceberg's rollback)
    count = state(warden)[0]
    again = register_frame(warden, Path(first.location), tmp_path)
    assert again == first.snapshot_id == view(warden).snapshot_id
    table = catalog(warden).load_table(("acme", "engagements"))
    assert table.current_snapshot().snapshot_id == again  # type: ignore[union-attr]
    assert state(warden)[0] == count


def test_versions_are_iceberg_snapshots_in_the_bucket(
    s3_warden: WardenHarness,  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = s3_warden.state.settings
    assert view(s3_warden).table_metadata.startswith(settings.storage_url + "/iceberg/acme/")  # type: ignore[union-attr]
    check_versions_are_snapshots(s3_warden, tmp_path)
    secrets = [settings.s3_secret_access_key, settings.s3_access_key_id, settings.storage_url]
    seen = str(s3_warden.read("alice", "engagements", purpose="training", limit=1).headers)
    seen += str(s3_warden.audit_events())
    assert not [s for s in secrets if s and s in seen]

    # a corrupt metadata object (this test's own prefix): a clear 503, audited, nothing changed
    before = state(s3_warden)
    metadata = view(s3_warden).table_metadata.removeprefix("s3://")
    with storage_for(settings).filesystem().open_output_stream(metadata) as out:
        out.write(b'{"format-version": 2, "oops"')
    frames.clear()
    tables._snapshot_scan.cache_clear()
    r = s3_warden.read("alice", "engagements", purpose="training", columns=["pin_id"], limit=5)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "StorageUnavailable" and "corrupt" in r.json()["detail"]
    assert "s3://" not in r.json()["detail"]
    assert s3_warden.audit_events(actor="alice")[0]["decision"] == "deny"
    assert state(s3_warden) == before


def test_an_unknown_snapshot_is_a_404_once_visible_and_changes_nothing(
    warden: WardenHarness,
) -> None:
    before = state(warden)
    for missing in ("12345", "9" * 19):
        r = warden.read("alice", "engagements", purpose="training", version=missing)
        assert r.status_code == 404, r.text
        assert r.json() == {
            "error": "NotFound",
            "detail": f"dataset 'engagements' has no version {missing!r}",
        }
        assert warden.audit_events(actor="alice")[0]["decision"] == "deny"
    # someone who may not see the dataset learns nothing from a snapshot id either
    real = str(view(warden).snapshot_id)
    hidden = warden.read("mallory", "engagements", purpose="training", version=real)
    unknown = warden.read("mallory", "no_such_dataset", purpose="training", version=real)
    assert hidden.status_code == unknown.status_code == 404
    assert warden.read("alice", "engagements", purpose="training", version="-1").status_code == 422
    assert state(warden) == before


def test_a_refused_registration_leaves_the_table_where_it_was(
    warden: WardenHarness, tmp_path: Path
) -> None:
    before = state(warden)
    data = scan(warden, catalog(warden).load_table(("acme", "engagements"))).head(10)
    lowered = [
        ColumnInfo(c.name, c.dtype, "public", c.entity) if c.name == "user_id" else c
        for c in view(warden).columns
    ]
    with pytest.raises(Forbidden):
        register_frame(warden, data, tmp_path, columns=lowered)
    assert state(warden) == before
    # a column whose type changed is not a schema Iceberg evolves to: refused, clearly
    with pytest.raises(Unprocessable, match="cannot be this Iceberg table"):
        register_frame(warden, data.with_columns(pl.col("dwell_ms").cast(pl.Utf8)), tmp_path)
    assert state(warden) == before
    # the snapshot commit is part of the registration's transaction: it fails with it
    with pytest.raises(Abandoned):
        register_frame(warden, data, tmp_path, abandon=True)
    assert state(warden) == before
    table = catalog(warden).load_table(("acme", "engagements"))
    assert table.current_snapshot().snapshot_id == view(warden).snapshot_id  # type: ignore[union-attr]


def test_a_corrupt_metadata_file_is_refused_and_audited(
    warden: WardenHarness, tmp_path: Path
) -> None:
    # a metadata file of this test's own (the seeded tables' files are shared by the suite)
    register_frame(
        warden, scan(warden, catalog(warden).load_table(("acme", "engagements"))).head(9), tmp_path
    )
    eng = view(warden)
    before = state(warden)
    read = {"purpose": "training", "columns": ["pin_id"], "limit": 5}
    assert frame(warden.read("alice", "engagements", **read)).height == 5
    Path(eng.table_metadata.removeprefix("file://")).write_text('{"format-version": 2, "oops"')
    # a small snapshot is held decoded, keyed by its snapshot: a warm read never opens the
    # metadata (nor storage) again
    assert frame(warden.read("alice", "engagements", **read)).height == 5
    frames.clear()
    tables._snapshot_scan.cache_clear()
    r = warden.read("alice", "engagements", **read)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"] == "StorageUnavailable" and "corrupt" in body["detail"]
    assert "file://" not in body["detail"]
    assert warden.audit_events(actor="alice")[0]["decision"] == "deny"
    assert state(warden) == before


def test_an_existing_iceberg_table_registers_by_identifier_or_metadata(
    warden: WardenHarness, tmp_path: Path
) -> None:
    """A table written by another Iceberg tool, in Warden's catalog or anywhere the platform
    reaches: its current snapshot is copied in and registered like a file."""
    data = pl.DataFrame({"pin_id": list(range(500)), "score": [i / 7 for i in range(500)]})
    other = catalog(warden)
    other.create_namespace_if_not_exists("imports")
    made = other.create_table(
        ("imports", "scores"),
        schema=data.to_arrow().schema,
        location=(tmp_path / "scores").as_uri(),
    )
    made.append(data.to_arrow())
    made.append(data.head(10).to_arrow())  # two snapshots: the current one has 510 rows
    for n, source in enumerate(["imports.scores", made.metadata_location]):
        with unit_of_work(warden.state.sessions) as db:
            exported = tables.export_table(
                db, warden.state.settings, source, tmp_path / f"scores{n}.parquet"
            )
            tenant = get_tenant(db, "acme")
            _, version = register(
                db,
                datasets_dir=storage_for(warden.state.settings),
                tenant=tenant,
                owner=get_principal(db, "alice"),
                name=f"scores{n}",
                source=exported,
                columns=[
                    ColumnInfo("pin_id", "Int64", "internal", "pin"),
                    ColumnInfo("score", "Float64", "internal"),
                ],
                identifier_columns=[],
                allowed_purposes=["training"],
            )
        assert version.snapshot_id and version.row_count == 510
        copied = scan(warden, catalog(warden).load_table(("acme", f"scores{n}")))
        assert copied.sort("pin_id", "score").equals(
            pl.concat([data, data.head(10)]).sort("pin_id", "score")
        )
    with unit_of_work(warden.state.sessions) as db, pytest.raises(Exception) as missing:
        tables.export_table(db, warden.state.settings, "imports.nothing", tmp_path / "x.parquet")
    assert type(missing.value).__name__ == "NotFound"


def test_warden_data_register_takes_an_iceberg_table_or_a_parquet_file(
    warden: WardenHarness, operator_cli: Any, tmp_path: Path
) -> None:
    data = pl.DataFrame({"pin_id": [1, 2, 3], "score": [0.5, 0.25, 0.125]})
    catalog(warden).create_namespace_if_not_exists("imports")
    made = catalog(warden).create_table(
        ("imports", "cli_scores"), schema=data.to_arrow().schema, location=tmp_path.as_uri()
    )
    made.append(data.to_arrow())
    data.write_parquet(tmp_path / "scores.parquet")
    columns = ["--column", "pin_id=internal:pin", "--column", "score=internal"]
    for name, source in [
        ("cli_iceberg", ["--iceberg", "imports.cli_scores"]),
        ("cli_parquet", ["--parquet", str(tmp_path / "scores.parquet")]),
        ("cli_bad", ["--iceberg", "imports.no_such_table"]),
    ]:
        result = operator_cli("data", "register", name, *source, *columns, "--purpose", "training")
        if name == "cli_bad":
            assert result.exit_code != 0 and "no Iceberg table" in result.output
            continue
        assert result.exit_code == 0, result.output
        registered = view(warden, name)
        assert registered.snapshot_id and registered.row_count == 3
        (event,) = [
            e for e in warden.audit_events(action="dataset.register") if e["dataset"] == name
        ]
        assert event["details"]["snapshot"] == registered.snapshot_id
        assert event["details"]["source"] == source[0].removeprefix("--")
