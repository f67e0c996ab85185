"""A job output's identifier columns are masked with keys of their own, so an output is never
an oracle of the tenant's pseudonyms (found by red-team round 14, high).

Attack (alice, `role:ml_engineer`: `user_id` masked everywhere, `sys:break_glass` as in
policies/access.csv): her infer job on `latent_users` writes `user_id` = 1..N (raw ids are
compact: guessable) beside copies of the same numbers; the output's `user_id` came masked with
the tenant's `user` key, so reading it (alone, under break-glass) gave raw id -> pseudonym for
every user, and every masked `engagements.user_id` re-linked. Now: break-glass on the output is
refused (she reads its source's `user_id` masked: `policy.reads.covers_sources`), and a masked
read of it, however given, shows pseudonyms no other dataset has (`jobs.outputs.output_entity`),
whatever the job wrote them as: integers, text ("41"), a second output of the same job.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl

from tests.conftest import WardenHarness
from tests.jobs.conftest import submit
from warden.catalog.service import load_view
from warden.db.session import unit_of_work
from warden.identity.service import Caller, get_principal
from warden.jobs.worker import record_result
from warden.policy.changes import apply_change
from warden.policy.rules import Rule


def _frame(response: Any) -> pl.DataFrame:
    assert response.status_code == 200, response.text
    return pl.read_ipc_stream(io.BytesIO(response.content))


def _finish(w: WardenHarness, job_id: str, files: dict[str, pl.DataFrame]) -> Any:
    """What the worker does after a job's sandbox succeeded (as tests/jobs/test_job_outputs)."""
    data_dir = Path(w.state.settings.data_dir)
    target = data_dir / "jobs" / job_id / "artifacts"
    target.mkdir(parents=True, exist_ok=True)
    artifacts = []
    for name, frame in files.items():
        frame.write_parquet(target / name)
        artifacts.append({"name": name, "path": str((target / name).relative_to(data_dir)),
                          "bytes": (target / name).stat().st_size, "sha256": "0" * 64})  # fmt: skip
    return record_result(w.state, job_id, None, {}, artifacts)


def _bootstrap(w: WardenHarness, rules: list[Rule]) -> None:
    with unit_of_work(w.state.sessions) as db:
        actor = Caller("admin", "person", "acme", get_principal(db, "admin").id)
        apply_change(db, actor, add=rules, reason="test setup", action="policy.bootstrap")
    w.state.policy.reload()


def as_int_tokens(values: list[Any]) -> set[int]:
    """Pseudonyms as the integers they share (a text token is the same digest in hex)."""
    found = set()
    for v in values:
        if isinstance(v, str) and v.startswith("h_"):
            found.add(int.from_bytes(bytes.fromhex(v[2:]), "big", signed=True))
        elif isinstance(v, int):
            found.add(v)
    return found


def test_a_job_output_is_no_oracle_of_the_tenants_pseudonyms_break_glass_is_refused(
    ml_warden: WardenHarness,
) -> None:
    w = ml_warden
    with unit_of_work(w.state.sessions) as db:
        source = load_view(db, w.state.settings.datasets_dir, "acme", "engagements")
    raw = pl.read_parquet(source.path)
    _bootstrap(w, [("p", ("role:ml_engineer", "acme", "sys:break_glass", "*", "*", "manage",
                          "allow", "", ""))])  # fmt: skip
    ids = list(range(1, int(raw["user_id"].max()) + 1))  # type: ignore[arg-type]
    guesses = pl.DataFrame({"user_id": ids}).with_columns(
        pl.col("user_id").cast(pl.Float64).alias("guess"),
        (pl.col("user_id") + 0.5).alias("shifted"),
        pl.col("user_id").cast(pl.String).alias("as_text"),
        pl.concat_list("user_id").alias("in_list"),
    )
    # a second output of the same job: the same ids, written as text in an identifier column
    second = pl.DataFrame({"user_id": [str(i) for i in ids], "score": [0.5] * len(ids)})
    r = submit(w, "alice", kind="infer", purpose="evaluation",
               datasets={"latent_users": "latent_users"})  # fmt: skip
    assert r.status_code == 201, r.text
    _, outs = _finish(w, r.json()["id"], {"guesses.parquet": guesses, "second.parquet": second})
    names = [o["dataset"] for o in outs]
    with unit_of_work(w.state.sessions) as db:
        views = [load_view(db, w.state.settings.datasets_dir, "acme", n) for n in names]
    entities = {v.entity_of(c) for v in views for c in v.identifier_columns}
    assert "user" not in entities and len(entities) == 3, entities  # user_id, as_text, user_id

    # alone, under break-glass: refused, she reads latent_users.user_id masked
    body = {"dataset": names[0], "purpose": "evaluation", "reason": "debug"}
    bg = w.http.post("/v1/access/break-glass", headers=w.as_("alice"), json=body)
    assert bg.status_code == 403, bg.text

    # a masked read of both outputs however given (a rule here): no pseudonym links
    _bootstrap(w, [("p", ("alice", "acme", v.name, c, "evaluation",
                          "mask" if c in v.identifier_columns else "read", "allow", "", ""))
                   for v in views for c in v.column_names])  # fmt: skip
    tokens = [
        as_int_tokens(_frame(w.read("alice", v.name, purpose="evaluation"))[c].to_list())
        for v in views
        for c in v.identifier_columns
    ]
    masked = _frame(w.read("alice", "engagements", purpose="evaluation", columns=["user_id"]))
    theirs = as_int_tokens(masked["user_id"].to_list())
    assert all(len(t) == len(ids) for t in tokens)  # masked, one pseudonym per id
    linked = [len(t & theirs) for t in tokens] + [len(tokens[0] & tokens[2])]
    assert linked == [0, 0, 0, 0], (
        f"pseudonyms of {names} shared with engagements.user_id (and between the outputs): {linked}"
    )
