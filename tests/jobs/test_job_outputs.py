"""A job's outputs keep what their inputs were: an inference output is as strict as the data
the job read *and* the data its parent models were built from, usable only for what all of
those allow, and owned by the strictest input's owner, so no reader of a dataset can hand a
copy of it to someone else by approving their request themselves (found by a red-team
review). No Docker: jobs are queued through the API (the real launch decision), then their
end is played by the worker's own `record_result` with files where `_collect` puts them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl

from tests.conftest import WardenHarness
from tests.jobs.conftest import submit
from warden.catalog.service import load_view
from warden.db.session import unit_of_work
from warden.jobs.worker import record_result


def _frame(response: Any) -> pl.DataFrame:
    assert response.status_code == 200, response.text
    return pl.read_ipc_stream(io.BytesIO(response.content))


def _queue(w: WardenHarness, who: str, **body: Any) -> str:
    r = submit(w, who, **body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _finish(w: WardenHarness, job_id: str, files: dict[str, Any], metrics: dict | None = None):
    """What the worker does after a job's sandbox succeeded: its files copied into
    jobs/<id>/artifacts (as `_collect` does), then `record_result`."""
    data_dir = Path(w.state.settings.data_dir)
    target = data_dir / "jobs" / job_id / "artifacts"
    target.mkdir(parents=True, exist_ok=True)
    artifacts = []
    for name, content in files.items():
        dest = target / name
        if isinstance(content, pl.DataFrame):
            content.write_parquet(dest)
        else:
            dest.write_bytes(content)
        artifacts.append(
            {
                "name": name,
                "path": str(dest.relative_to(data_dir)),
                "bytes": dest.stat().st_size,
                "sha256": "0" * 64,
            }  # fmt: skip
        )
    return record_result(w.state, job_id, None, metrics or {}, artifacts)


def test_inference_output_keeps_the_class_and_purposes_of_its_parent_models_data(
    ml_warden: WardenHarness,
) -> None:
    """The latent model (evaluation only, pii) through an eval model into an infer job that
    reads only pins: the output must not come out internal, usable for training."""
    w = ml_warden
    latent = _frame(w.read("alice", "latent_users", purpose="evaluation"))
    job = _queue(w, "alice", kind="eval", datasets={"pins": "pins", "latent_users": "latent_users"})
    _finish(w, job, {"latent.parquet": latent})
    # an infer job may run for any purpose; only train is bound to training
    infer = _queue(w, "alice", kind="infer", purpose="training", datasets={"pins": "pins"},
                   model_in={"x": "eval-report:latent.parquet"})  # fmt: skip
    _, outputs = _finish(w, infer, {"tastes.parquet": latent.rename({"user_id": "member"})})
    [out] = outputs
    with w.state.sessions() as db:
        view = load_view(db, w.state.settings.datasets_dir, "acme", out["dataset"])
    problems = []
    if view.classification != "pii":
        problems.append(f"class {view.classification} (latent_users is pii)")
    if "training" in view.allowed_purposes:
        problems.append(f"purposes {view.allowed_purposes} (latent_users: evaluation only)")
    if "latent_users" not in view.derived_from:
        problems.append(f"derived_from {view.derived_from}")
    if "member" not in view.identifier_columns:  # user_id, renamed: still masked on read
        problems.append(f"identifier columns {view.identifier_columns}")
    assert not problems, (out["dataset"], problems)


def test_an_output_column_is_an_identifier_unless_an_input_says_it_is_plain() -> None:
    """Fail closed on renames: only a column an input has as plain, with the same type, or
    one that holds no integers or text, is read unmasked."""
    from warden.catalog.columns import ColumnInfo
    from warden.catalog.view import DatasetView
    from warden.jobs.outputs import output_identifiers

    columns = (
        ColumnInfo("user_id", "Int64", "pii", "user"),
        ColumnInfo("action", "String", "internal"),
        ColumnInfo("dwell", "Int64", "internal"),
    )
    view = DatasetView(
        id="d", name="engagements", tenant="acme", owner="admin", classification="pii",
        allowed_purposes=("training",), identifier_columns=("user_id",), version="sha256:0",
        path=Path("x"), row_count=0, columns=columns,
    )  # fmt: skip
    schema = pl.Schema(
        {
            "uid": pl.Int64, "who": pl.String, "rank": pl.Int32, "user_id": pl.Int64,
            "pin_id": pl.Int64, "action": pl.String, "dwell": pl.Int64, "dwell_s": pl.Float64,
            "score": pl.Float32, "embedding": pl.List(pl.Float32), "seen": pl.Boolean,
            "action2": pl.Categorical(), "dwell_as_text": pl.String,
        }
    )  # fmt: skip
    assert output_identifiers(schema, [view]) == [
        "uid", "who", "rank", "user_id", "pin_id", "action2", "dwell_as_text",
    ]  # fmt: skip


def test_a_reader_cannot_hand_a_dataset_to_someone_else_by_copying_it_through_a_job(
    ml_warden: WardenHarness,
) -> None:
    w = ml_warden
    # erin (analyst_eu) may not read latent_pins; alice reads it (evaluation) but reviews nothing
    assert w.read("erin", "latent_pins", purpose="evaluation").status_code == 403
    direct = w.http.post("/v1/access/requests", headers=w.as_("erin"),
                         json={"dataset": "latent_pins", "purpose": "evaluation",
                               "duration": "1d", "justification": "x"})  # fmt: skip
    assert direct.status_code == 201, direct.text
    refused = w.http.post(f"/v1/access/requests/{direct.json()['id']}/review",
                          json={"decision": "approve"}, headers=w.as_("alice"))  # fmt: skip
    assert refused.status_code in (403, 404), refused.text  # alice cannot approve the source

    rows = _frame(w.read("alice", "latent_pins", purpose="evaluation"))
    job = _queue(w, "alice", kind="infer", purpose="evaluation",
                 datasets={"latent_pins": "latent_pins"})  # fmt: skip
    # pin_id renamed: a column ending in _id would be granted masked, and erin reads
    # engagements.pin_id raw, so the grant would be refused as mixed exposure (that held)
    _, [out] = _finish(w, job, {"copy.parquet": rows.rename({"pin_id": "pin"})})
    name = out["dataset"]
    ask = w.http.post("/v1/access/requests", headers=w.as_("erin"),
                      json={"dataset": name, "purpose": "evaluation", "duration": "1d",
                            "justification": "x"})  # fmt: skip
    assert ask.status_code == 201, ask.text
    review = w.http.post(f"/v1/access/requests/{ask.json()['id']}/review",
                         json={"decision": "approve"}, headers=w.as_("alice"))  # fmt: skip
    got = w.read("erin", name, purpose="evaluation")
    if got.status_code == 200:
        frame = _frame(got)
        raise AssertionError(
            f"alice alone approved erin on {name} (review {review.status_code}, request "
            f"{review.json().get('state')}); erin read {frame.shape} of latent_pins: "
            f"{frame.head(2).to_dicts()}"
        )


def _people(w: WardenHarness, links: list[tuple], names: list[str] = ()) -> None:  # type: ignore[assignment]
    """Principals and rules the way the harness seeds them (bootstrap, no review)."""
    from warden.identity.service import (
        Caller,
        create_principal,
        get_principal,
        get_tenant,
        issue_token,
    )
    from warden.policy.changes import apply_change

    with unit_of_work(w.state.sessions) as db:
        admin = get_principal(db, "admin")
        for name in names:
            p = create_principal(db, name, "person", get_tenant(db, "acme"))
            w.tokens[name] = issue_token(db, p)
        actor = Caller("admin", "person", "acme", admin.id)
        apply_change(db, actor, add=links, reason="rt2 setup", action="policy.bootstrap")
    w.state.policy.reload()


def test_a_person_denied_a_dataset_cannot_take_a_model_built_on_it_into_their_job(
    ml_warden: WardenHarness,
) -> None:
    w = ml_warden
    # bob: an ML engineer explicitly denied every column of latent_users (browse stays: role)
    _people(
        w,
        [
            ("g", ("bob", "role:ml_engineer", "acme")),
            ("p", ("bob", "acme", "latent_users", "*", "*", "read", "deny", "", "")),
        ],  # fmt: skip
        ["bob"],
    )
    assert w.read("bob", "latent_users", purpose="evaluation").status_code == 403
    latent = _frame(w.read("alice", "latent_users", purpose="evaluation"))
    job = _queue(w, "alice", kind="eval", datasets={"pins": "pins", "latent_users": "latent_users"})
    _finish(w, job, {"latent.parquet": latent})

    # any artifact by name, not only weights: the whole copy goes into bob's sandbox
    r = submit(w, "bob", kind="infer", datasets={"pins": "pins"},
               model_in={"x": "eval-report:latent.parquet"})  # fmt: skip
    # (it was 201: the copy went into bob's sandbox); refused as a missing model, as the
    # registry answers him (it was 403: an oracle on hidden models, red-team round 13)
    assert (r.status_code, r.json()["detail"]) == (404, "no model 'eval-report:latent.parquet'")
    assert "latent_users" not in r.text  # the refusal names no dataset


def test_job_logs_do_not_carry_data_to_an_admin_without_rights_on_it(
    ml_warden: WardenHarness,
) -> None:
    """What a workload prints is the job's data: an admin who administers jobs but may not
    read latent_users sees the job, not its log (found by a red-team review)."""
    from warden.jobs.service import log_path

    w = ml_warden
    assert w.read("admin", "latent_users", purpose="evaluation").status_code in (403, 404)
    latent = _frame(w.read("alice", "latent_users", purpose="evaluation"))
    job = _queue(w, "alice", kind="eval", datasets={"pins": "pins", "latent_users": "latent_users"})
    path = log_path(w.state, job)  # what the worker's _stream appends: the workload's stdout
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(latent.head(50).write_csv())
    assert w.http.get(f"/v1/jobs/{job}", headers=w.as_("admin")).status_code == 200
    logs = w.http.get(f"/v1/jobs/{job}/logs", headers=w.as_("admin"))
    assert logs.status_code == 403 and "taste_1" not in logs.text, logs.text[:300]
    mine = w.http.get(f"/v1/jobs/{job}/logs", headers=w.as_("alice"))
    assert mine.status_code == 200 and "taste_1" in mine.text
