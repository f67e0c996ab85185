"""A dataset's access terms and versions are sealed (warden/catalog/seal.py): someone with
database write access but not the deployment's key files changes what a read is decided on,
and every read of that dataset is refused (503, audited) until an operator reseals it.

Each variant is one SQL write an insider could make to get raw or wider data: a lower class,
an identifier column dropped (raw ids to every masked grant), a column's class or entity
changed, a column added, dropped or reordered, another purpose, a source forgotten, another
owner, a version pointed at another dataset's file, and a seal copied or erased.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import delete, insert, select, update

from tests.sandbox.conftest import grant_sandbox_roles
from tests.serving import register_as_admin
from warden.catalog.models import Dataset, DatasetColumn, DatasetVersion
from warden.catalog.seal import CatalogTampered
from warden.catalog.service import ColumnInfo, load_view, pin_version
from warden.identity.models import Principal


def _read(w: Any, dataset: str = "engagements", **body: Any) -> Any:
    body = {"purpose": "training", "columns": ["user_id", "pin_id"], "limit": 5, **body}
    return w.read("alice", dataset, **body)


def _rows(w: Any, table: Any, where: Any) -> list[dict[str, Any]]:
    with w.state.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).where(where))]


def _write(w: Any, *statements: Any) -> None:
    with w.state.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def _tampers(ids: dict[str, Any]) -> dict[str, list[Any]]:
    ds, col = Dataset.id == ids["dataset"], DatasetColumn.dataset_id == ids["dataset"]
    user_id = col & (DatasetColumn.name == "user_id")
    version = DatasetVersion.dataset_id == ids["dataset"]
    return {
        "class lowered": [update(Dataset).where(ds).values(classification="public")],
        "identifier dropped": [update(Dataset).where(ds).values(identifier_columns=[])],
        "purpose added": [update(Dataset).where(ds).values(allowed_purposes=["analytics"])],
        "source forgotten": [update(Dataset).where(ds).values(derived_from=["users"])],
        "owner moved": [update(Dataset).where(ds).values(owner_id=ids["mallory"])],
        "seal erased": [update(Dataset).where(ds).values(seal=None)],
        "seal copied": [update(Dataset).where(ds).values(seal=ids["users_seal"])],
        "column class lowered": [
            update(DatasetColumn).where(user_id).values(classification="public")
        ],
        "column entity changed": [update(DatasetColumn).where(user_id).values(entity="board")],
        "column entity erased": [update(DatasetColumn).where(user_id).values(entity=None)],
        "column dtype changed": [update(DatasetColumn).where(user_id).values(dtype="String")],
        "column renamed": [update(DatasetColumn).where(user_id).values(name="uid")],
        "column dropped": [delete(DatasetColumn).where(user_id)],
        "column added": [
            insert(DatasetColumn).values(
                id="x" * 32, dataset_id=ids["dataset"], name="extra", dtype="Int64",
                classification="public", position=99, entity=None,
            )
        ],
        "columns reordered": [update(DatasetColumn).where(user_id).values(position=98)],
        "version points at users' file": [
            update(DatasetVersion).where(version).values(path=ids["users_path"])
        ],
        "version metadata swapped": [
            update(DatasetVersion).where(version).values(table_metadata=ids["users_metadata"])
        ],
        "version seal copied": [
            update(DatasetVersion).where(version).values(seal=ids["users_version_seal"])
        ],
        "version seal erased": [update(DatasetVersion).where(version).values(seal=None)],
    }  # fmt: skip


def _ids(w: Any) -> dict[str, Any]:
    with w.state.engine.connect() as conn:

        def one(query: Any) -> Any:
            return conn.execute(query).one()

        dataset = one(select(Dataset.id).where(Dataset.name == "engagements"))[0]
        users_id, users_seal = one(select(Dataset.id, Dataset.seal).where(Dataset.name == "users"))
        users_version = one(
            select(DatasetVersion.path, DatasetVersion.table_metadata, DatasetVersion.seal)
            .join(Dataset, Dataset.current_version == DatasetVersion.digest)
            .where(DatasetVersion.dataset_id == users_id)
        )
        mallory = one(select(Principal.id).where(Principal.name == "mallory"))[0]
    return {
        "dataset": dataset,
        "mallory": mallory,
        "users_seal": users_seal,
        "users_path": users_version.path,
        "users_metadata": users_version.table_metadata,
        "users_version_seal": users_version.seal,
    }


def test_every_write_past_warden_to_what_a_read_is_decided_on_refuses_the_read(warden: Any) -> None:
    ids = _ids(warden)
    assert _read(warden).status_code == 200
    saved = {
        t: _rows(warden, t, c)
        for t, c in [
            (Dataset, Dataset.id == ids["dataset"]),
            (DatasetColumn, DatasetColumn.dataset_id == ids["dataset"]),
            (DatasetVersion, DatasetVersion.dataset_id == ids["dataset"]),
        ]
    }
    served = []
    for name, statements in _tampers(ids).items():
        _write(warden, *statements)
        answer = _read(warden)
        if answer.status_code != 503 or answer.json()["error"] != "CatalogTampered":
            served.append((name, answer.status_code, answer.text[:200]))
        else:
            newest = warden.audit_events(actor="alice", dataset="engagements")[0]
            assert newest["decision"] == "deny", (name, newest)  # audited, as every refusal
        # put back exactly what was there: the next variant starts from the sealed rows
        _write(
            warden,
            delete(DatasetColumn).where(DatasetColumn.dataset_id == ids["dataset"]),
            *(insert(DatasetColumn).values(**row) for row in saved[DatasetColumn]),
            update(Dataset).where(Dataset.id == ids["dataset"]).values(**saved[Dataset][0]),
            *(
                update(DatasetVersion).where(DatasetVersion.id == row["id"]).values(**row)
                for row in saved[DatasetVersion]
            ),
        )
        assert _read(warden).status_code == 200, f"{name}: not restored"
    assert not served, served


def test_an_unsealed_dataset_is_shown_then_sealed_by_an_operator_and_audited(
    warden: Any, operator_cli: Callable[..., Any]
) -> None:
    ids = _ids(warden)
    _write(
        warden,
        update(Dataset).where(Dataset.id == ids["dataset"]).values(allowed_purposes=["training"]),
    )
    listed = operator_cli("data", "seal", "--check")
    assert listed.exit_code == 1 and "dataset" in listed.output and "engagements" in listed.output
    assert 'allowed_purposes: ["training"]' in listed.output  # what it would bless, shown
    assert _read(warden).status_code == 503  # --check changed nothing
    refused = operator_cli("data", "seal")
    assert refused.exit_code != 0 and "--accept DIGEST" in refused.output
    (digest,) = re.findall(r"digest: ([0-9a-f]{32})", listed.output)
    sealed = operator_cli(
        "data", "seal", "--accept", digest, "--actor", "ops", "--reason", "checked by hand"
    )
    assert sealed.exit_code == 0 and "sealed 1 dataset" in sealed.output, sealed.output
    (event,) = warden.audit_events(action="rows.sealed")
    assert (event["actor"], event["details"]["rows"]) == ("ops", {"dataset": [ids["dataset"]]})
    assert _read(warden).status_code == 200
    again = operator_cli("data", "seal", "--check")
    assert again.exit_code == 0 and "every sealed row matches its seal" in again.output


def _register(w: Any, name: str, frame: pl.DataFrame, **kw: Any) -> str:
    source = Path(w.state.settings.data_dir) / f"src-{name}-{len(frame)}.parquet"
    frame.write_parquet(source)
    columns = kw.pop("columns", [ColumnInfo(c, "Int64", "internal") for c in frame.columns])
    return register_as_admin(w, name, source, columns, **kw)


def test_warden_never_seals_a_change_it_did_not_make_in_passing(warden: Any) -> None:
    """Re-registering a tampered dataset, re-registering the same content over a tampered
    version row, or raising a tampered child's class from its source: each refuses instead
    of sealing the insider's change along with Warden's own."""
    frame = pl.DataFrame({"a": [1, 2, 3]})
    _register(warden, "src", frame)
    _register(warden, "kid", frame, derived_from=["src"])
    kid = Dataset.name == "kid"
    _write(warden, update(Dataset).where(kid).values(allowed_purposes=["training", "analytics"]))
    pii = [ColumnInfo("a", "Int64", "pii")]
    with pytest.raises(CatalogTampered, match="'kid'"):
        _register(warden, "src", frame, columns=pii)  # would raise kid to pii and reseal it
    with pytest.raises(CatalogTampered, match="'kid'"):
        _register(warden, "kid", frame, derived_from=["src"])
    (row,) = _rows(warden, Dataset, kid)
    assert row["allowed_purposes"] == ["training", "analytics"]  # nothing changed, still broken
    # the same content registered again over a version row pointed elsewhere
    src = _rows(warden, Dataset, Dataset.name == "src")[0]
    _write(
        warden,
        update(DatasetVersion)
        .where(DatasetVersion.dataset_id == src["id"])
        .values(path="kid/elsewhere.parquet"),
    )
    with pytest.raises(CatalogTampered, match="version"):
        _register(warden, "src", frame)


def test_a_pinned_older_version_is_checked_too(warden: Any) -> None:
    first = _register(warden, "history", pl.DataFrame({"a": [1, 2, 3]}))
    _register(warden, "history", pl.DataFrame({"a": [4, 5, 6, 7]}))
    with warden.state.sessions() as db:
        view = load_view(db, warden.state.settings.datasets_dir, "acme", "history")
        assert pin_version(db, warden.state.settings.datasets_dir, view, first).row_count == 3
    _write(
        warden,
        update(DatasetVersion)
        .where(DatasetVersion.digest == first)
        .values(path=_ids(warden)["users_path"]),
    )
    with warden.state.sessions() as db:
        view = load_view(db, warden.state.settings.datasets_dir, "acme", "history")  # current: fine
        with pytest.raises(CatalogTampered, match="version"):
            pin_version(db, warden.state.settings.datasets_dir, view, first)


def test_a_tampered_dataset_stops_jobs_and_shows_as_tampered(warden: Any) -> None:
    ids = _ids(warden)
    _write(warden, update(Dataset).where(Dataset.id == ids["dataset"]).values(seal=None))
    shown = warden.http.get("/v1/datasets/engagements", headers=warden.as_("alice"))
    assert (shown.status_code, shown.json()["error"]) == (503, "CatalogTampered")
    grant_sandbox_roles(warden)
    body = {"kind": "train", "datasets": {"events": "engagements"}}
    launched = warden.http.post("/v1/jobs", json=body, headers=warden.as_("alice"))
    assert (launched.status_code, launched.json()["error"]) == (503, "CatalogTampered")
