"""A model's lineage is all its ancestors', always: a parent deleted in SQL, or more parents
than the walk used to follow, leaves none of their datasets out (red team 15b, high).

The attack (someone who may not read `latent_users`, with write access to the database): a
model built on top of a model trained on `latent_users` is hidden from them (who may use a
model is decided on every dataset over its ancestors, `registry.lineage_datasets`). Deleting
the parent's row made the walk skip it (`parents_of` dropped ids it could not find), so the
child's lineage was only its own datasets: its metrics, reports, lineage and recommendations
were theirs, and a job's log and outputs (`inputs_of`: a parent id not found was skipped the
same way) were held to fewer datasets than they came from. Warden never deletes a model, so
a parent that is not there was written past Warden: refused (503).

The variant needs no database: the walk stopped once it had seen 32 models, before reading
the datasets of the level that passed it. A job may take up to 16 x 32 parent models, so
alice's job on 32 harmless models and one built from `latent_users` registered a model whose
lineage was `pins` alone: usable by anyone who reads `pins`. Now every ancestor is walked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no job runs here (no Docker)
from tests.experiments.helpers import reads_pins, register_artifact
from tests.sealed_rows import finished_job
from warden.db.sealed import RowTampered
from warden.db.session import unit_of_work
from warden.identity.service import get_tenant
from warden.registry import service as registry
from warden.registry.models import Model


def _child_of(w: WardenHarness, *parent_ids: str, name: str = "child") -> str:
    """alice's model built on `parent_ids` from pins alone (as an infer or fine-tune job)."""
    with unit_of_work(w.state.sessions) as db:
        job = finished_job(
            db, kind="train", step="swap", name=name, datasets=["pins"], purpose="training"
        )
        parents = [{"id": p, "ref": f"{p}@1", "job": None} for p in parent_ids]
        model = Model(
            tenant_id=get_tenant(db, "acme").id, tenant="acme", name=name, version=1,
            job_id=job.id, launcher="alice", kind="train", step="swap", metrics={"m": 0.5},
            artifacts=[], reports=[],
            lineage={"datasets": [{"name": "pins", "versions": []}], "parents": parents},
        )  # fmt: skip
        db.add(model)
        db.flush()
        return model.id


@pytest.fixture
def erin_reads_pins(warden: WardenHarness) -> None:
    """erin may read pins (whole, for each of its purposes) and nothing of latent_users."""
    reads_pins(warden, "erin")
    assert warden.read("erin", "pins", purpose="training").status_code == 200
    assert warden.read("erin", "latent_users", purpose="evaluation").status_code in (403, 404)


@pytest.fixture
def family(warden: WardenHarness, tmp_path: Path) -> tuple[str, str]:
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    register_artifact(warden, "latent-fit", source, read=("pins", "latent_users"))
    with unit_of_work(warden.state.sessions) as db:
        parent = db.scalar(select(Model.id).where(Model.name == "latent-fit"))
    assert parent is not None
    return parent, _child_of(warden, parent)


def _delete(w: WardenHarness, model_id: str) -> None:
    with w.state.engine.begin() as conn:
        conn.execute(delete(Model).where(Model.id == model_id))


def test_a_parent_model_deleted_in_sql_is_refused(
    warden: WardenHarness, family: tuple[str, str], erin_reads_pins: None
) -> None:
    parent, child = family
    plain = _child_of(warden, name="plain")  # pins alone: erin's to use
    assert warden.http.get(f"/v1/models/{plain}", headers=warden.as_("erin")).status_code == 200
    assert warden.http.get(f"/v1/models/{child}", headers=warden.as_("alice")).status_code == 200
    hidden = warden.http.get(f"/v1/models/{child}", headers=warden.as_("erin"))
    assert hidden.status_code == 404, hidden.text
    _delete(warden, parent)
    for who in ("erin", "alice"):
        shown = warden.http.get(f"/v1/models/{child}", headers=warden.as_(who))
        assert shown.status_code in (404, 503), (who, shown.text[:300])
        assert "0.5" not in shown.text


def test_a_jobs_inputs_with_a_parent_deleted_in_sql_are_refused(
    warden: WardenHarness, family: tuple[str, str]
) -> None:
    """A job's log and outputs are held to its parents' lineage (`inputs_of`)."""
    parent, child = family
    _delete(warden, parent)
    with unit_of_work(warden.state.sessions) as db, pytest.raises(RowTampered):
        registry.inputs_of(db, get_tenant(db, "acme").id, ["pins"], [child])
    with unit_of_work(warden.state.sessions) as db, pytest.raises(RowTampered):
        registry.inputs_of(db, get_tenant(db, "acme").id, ["pins"], [parent])


def test_models_whose_parents_are_there_are_unchanged(
    warden: WardenHarness, family: tuple[str, str]
) -> None:
    _, child = family
    with unit_of_work(warden.state.sessions) as db:
        names: Any = registry.inputs_of(db, get_tenant(db, "acme").id, ["pins"], [child])
    assert names == ["pins", "latent_users"]


def test_a_model_with_more_parents_than_the_walk_followed_is_refused(
    warden: WardenHarness, family: tuple[str, str], erin_reads_pins: None
) -> None:
    parent, _ = family
    harmless = [_child_of(warden, name=f"plain-{i}") for i in range(32)]
    wide = _child_of(warden, *harmless, parent, name="wide")
    assert warden.http.get(f"/v1/models/{wide}", headers=warden.as_("alice")).status_code == 200
    shown = warden.http.get(f"/v1/models/{wide}", headers=warden.as_("erin"))
    assert shown.status_code == 404, shown.text[:300]
    with unit_of_work(warden.state.sessions) as db:
        assert "latent_users" in registry.lineage_datasets(db, db.get(Model, wide))


def test_a_model_deeper_than_the_walk_followed_is_refused(
    warden: WardenHarness, family: tuple[str, str], erin_reads_pins: None
) -> None:
    top, _ = family
    for i in range(34):
        top = _child_of(warden, top, name=f"gen-{i}")
    shown = warden.http.get(f"/v1/models/{top}", headers=warden.as_("erin"))
    assert shown.status_code == 404, shown.text[:300]
