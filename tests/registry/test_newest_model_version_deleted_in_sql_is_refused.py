"""A model's newest version deleted in SQL does not make its name mean the version before
(red team 15, finding 5, low).

Attack (an ML engineer with write access to the database): `stack@2` replaced `stack@1`
(say @1 was found to recommend badly); `DELETE FROM model WHERE ...version=2` and every
request naming the model by its bare name (`"model": "stack"`, `warden models show stack`)
gets @1 again, and the next registration takes the number 2 again: two models, one ref, in
the audit log.

Now each registration (`model.register`) names its version in the log, held like a
revocation: a bare name whose newest row is not the version the log names last is refused
(503), and so is the next registration under that name.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no job runs here (no Docker)
from tests.sealed_rows import finished_job
from warden.db.sealed import RowTampered
from warden.db.session import unit_of_work
from warden.jobs.worker import record_result
from warden.registry.models import Model


def _registered(w: WardenHarness, name: str) -> str:
    with unit_of_work(w.state.sessions) as db:
        job = finished_job(
            db, kind="train", step="swap", name=name, datasets=["pins"], purpose="training"
        )
        job_id = job.id
    model, _ = record_result(w.state, job_id, None, {"loss": 1.0}, [])
    return model.ref


def test_the_newest_model_version_deleted_in_sql_is_refused(warden: WardenHarness) -> None:
    assert _registered(warden, "stack") == "stack@1"
    assert _registered(warden, "stack") == "stack@2"
    shown = warden.http.get("/v1/models/stack", headers=warden.as_("alice"))
    assert shown.status_code == 200 and shown.json()["ref"] == "stack@2", shown.text
    with warden.state.engine.begin() as conn:
        conn.execute(delete(Model).where(Model.name == "stack", Model.version == 2))
    shown = warden.http.get("/v1/models/stack", headers=warden.as_("alice"))
    assert shown.status_code == 503, shown.text
    assert warden.http.get("/v1/models/stack@1", headers=warden.as_("alice")).status_code == 200
    with pytest.raises(RowTampered):  # and number 2 is never given to another model
        _registered(warden, "stack")
