"""Registering a stack file as a model without running a job (tests and the online bench)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import polars as pl

from tests.conftest import WardenHarness
from tests.sealed_rows import finished_job
from warden.catalog.service import load_view
from warden.db.session import unit_of_work
from warden.identity.service import Caller, get_principal, get_tenant
from warden.policy.changes import apply_change
from warden.registry.models import Model


def register_artifact(
    warden: WardenHarness, name: str, source: Path, read: tuple[str, ...] = ("pins", "engagements")
) -> str:
    """Copy `source` under the data folder and register it as model NAME@1, as a swap job
    launched by alice would be: its lineage read `read` (pins and engagements)."""
    rel = f"jobs/registered-{name}/artifacts/stack.pt"  # where a job leaves its files
    path = Path(warden.settings.data_dir) / rel  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    datasets = [{"name": n, "versions": []} for n in read]
    with unit_of_work(warden.state.sessions) as db:
        job = finished_job(
            db, kind="train", step="swap", name=name, datasets=["pins", "engagements"],
            purpose="training",
        )  # fmt: skip
        tenant = get_tenant(db, "acme")
        artifact = {"name": "stack.pt", "path": rel, "bytes": path.stat().st_size, "sha256": sha}
        model = Model(
            tenant_id=tenant.id,
            tenant="acme",
            name=name,
            version=1,
            job_id=job.id,
            launcher="alice",
            kind="train",
            step="swap",
            metrics={},
            artifacts=[artifact],
            reports=[],
            lineage={"datasets": datasets, "parents": []},
        )
        db.add(model)
        db.flush()
        return model.ref


def hidden_models(warden: WardenHarness, tmp_path: Path) -> tuple[str, str]:
    """Two models built from `latent_users` (evaluation only: alice may, mallory may not)."""
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    a = register_artifact(warden, "latent-a", source, read=("pins", "latent_users"))
    b = register_artifact(warden, "latent-b", source, read=("pins", "latent_users"))
    return a, b


def register_with_report(
    warden: WardenHarness, tmp_path: Path, name: str, read: tuple[str, ...], report: str, text: str
) -> str:
    """A model registered as built from `read`, with one report file holding `text`."""
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    ref = register_artifact(warden, name, source, read=read)
    rel = f"jobs/registered-{name}/artifacts/{report}"
    path = Path(warden.settings.data_dir) / rel  # type: ignore[attr-defined]
    path.write_text(text)
    with unit_of_work(warden.state.sessions) as db:
        model = db.query(Model).filter(Model.name == name).one()
        model.reports = [report]
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        model.artifacts = [*model.artifacts, {"name": report, "path": rel, "sha256": sha}]
    return ref


def pins_file(warden: WardenHarness) -> Path:
    with unit_of_work(warden.state.sessions) as db:
        return load_view(db, warden.state.settings.datasets_dir, "acme", "pins").path


def pin_ids(warden: WardenHarness) -> list[int]:
    return list(pl.read_parquet(pins_file(warden), columns=["pin_id"])["pin_id"].to_list())


def started_lat(warden: WardenHarness, tmp_path: Path) -> tuple[str, str]:
    """alice's experiment `lat` between two hidden models (see hidden_models); their refs."""
    from tests.experiments.test_online import GUARDS

    a, b = hidden_models(warden, tmp_path)
    body = {"name": "lat", "control": a, "challenger": b, "mde": 0.1, "guardrails": GUARDS}
    started = warden.http.post("/v1/experiments", json=body, headers=warden.as_("alice"))
    assert started.status_code == 201, started.text
    return a, b


def reads_pins(warden: WardenHarness, who: str) -> None:
    """`who` may read pins whole, for each of its purposes (and nothing more is granted)."""
    rules = [
        ("p", (who, "acme", "pins", "*", purpose, "read", "allow", "", ""))
        for purpose in ("training", "evaluation", "inference")
    ]
    with unit_of_work(warden.state.sessions) as db:
        admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
        apply_change(db, admin, add=rules, reason="test setup", action="policy.bootstrap")
    warden.state.policy.reload()
