"""Found by a red-team review: an inference job's output dataset, fetched as a model "report".

An inference job's parquet becomes a catalog dataset that nobody reads without rights on it
(a new name: no rule covers it; its owner is the strictest input's owner). But the workload
also decides which of its files are "reports" (`metrics.json` "plots", or a name starting with
`report`), and a model's reports go to anyone who may *use* the model. So the same rows leave
through `/v1/models/{ref}/reports/{name}` to someone the gateway refuses them to.
No Docker: the job's end is played by the worker's own `record_result` (as test_job_outputs).
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from tests.conftest import WardenHarness
from tests.jobs.test_job_outputs import _frame, _people, _queue
from warden.catalog.service import file_digest
from warden.jobs.worker import record_result


def test_an_output_dataset_never_leaves_as_a_report_to_someone_it_refuses(
    ml_warden: WardenHarness,
) -> None:
    w = ml_warden
    _people(w, [("g", ("bob", "role:ml_engineer", "acme"))], ["bob"])
    pins = _frame(w.read("alice", "pins", purpose="inference"))
    job = _queue(w, "alice", kind="infer", datasets={"pins": "pins"})
    data_dir = Path(w.state.settings.data_dir)
    target = data_dir / "jobs" / job / "artifacts"
    target.mkdir(parents=True, exist_ok=True)
    dest = target / "scores.parquet"
    pins.head(100).write_parquet(dest)
    artifact = {
        "name": "scores.parquet",
        "path": str(dest.relative_to(data_dir)),
        "bytes": dest.stat().st_size,
        "sha256": file_digest(dest).removeprefix("sha256:"),
    }
    model, [out] = record_result(w.state, job, None, {"plots": ["scores.parquet"]}, [artifact])

    # the output is a governed dataset bob has no rights on
    refused = w.read("bob", out["dataset"], purpose="inference")
    assert refused.status_code in (403, 404), refused.text
    # bob may use the model (he reads pins), so he sees its reports
    assert w.http.get(f"/v1/models/{model.id}", headers=w.as_("bob")).status_code == 200
    got = w.http.get(f"/v1/models/{model.id}/reports/scores.parquet", headers=w.as_("bob"))
    if got.status_code == 200:
        frame = pl.read_parquet(io.BytesIO(got.content))
        raise AssertionError(
            f"bob, refused {out['dataset']} by the gateway, got its rows as a report: {frame.shape}"
        )
