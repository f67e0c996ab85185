"""A grant of a job's output to someone who reads its source's identifiers masked is refused:
the output may hold the raw ids in any column (found by red-team round 14, medium).

Attack (rita reads `engagements` raw for evaluation and runs ML jobs; mia reads all of it
with `user_id` masked): rita's infer job writes `user_id` as read (raw) and the same ids in
columns no schema check calls identifiers: `ref` (Float64), `ref_plus` (ids + 0.5), `refs` (a
list). `policy.reads.covers_sources` forgave a masked identifier on the source ("identifiers
come masked out of every copy too"), so mia could be granted the copy and read raw ids beside
the pseudonyms, re-linking every masked `user_id` of the tenant. Now a grant or break-glass
on the output needs every source read whole, identifiers too; whoever reads the sources raw
is still granted it. A rule that gives a masked reader the output anyway (a reviewed change)
shows its `user_id` under a key of its own: its pseudonyms link to no other dataset.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.conftest import WardenHarness
from tests.jobs.conftest import submit
from tests.jobs.test_job_outputs import _frame, _people
from tests.jobs.test_output_pseudonyms_join_nothing_else import as_int_tokens
from warden.catalog.service import load_view
from warden.db.session import unit_of_work
from warden.errors import Forbidden
from warden.identity.service import Caller
from warden.jobs.worker import record_result
from warden.policy.reads import covers_sources


def test_an_output_holding_raw_ids_is_refused_to_a_reader_of_masked_ids(
    ml_warden: WardenHarness,
) -> None:
    w = ml_warden
    _people(
        w,
        [
            ("p", ("rita", "acme", "sandbox:ml", "*", "*", "manage", "allow", "", "")),
            ("p", ("rita", "acme", "engagements", "*", "evaluation", "read", "allow", "", "")),
            ("p", ("rita", "acme", "sys:break_glass", "*", "*", "manage", "allow", "", "")),
            ("p", ("rita", "acme", "*", "*", "*", "browse", "allow", "", "")),
        ],
        ["rita"],
    )
    raw = _frame(w.read("rita", "engagements", purpose="evaluation", columns=["user_id"]))
    r = submit(w, "rita", kind="infer", purpose="evaluation",
               datasets={"engagements": "engagements"})  # fmt: skip
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    copy = raw.unique().with_columns(
        pl.col("user_id").cast(pl.Float64).alias("ref"),
        (pl.col("user_id") + 0.5).alias("ref_plus"),
        pl.concat_list("user_id").alias("refs"),
    )
    target = Path(w.state.settings.data_dir) / "jobs" / job_id / "artifacts"
    target.mkdir(parents=True, exist_ok=True)
    copy.write_parquet(target / "copy.parquet")
    artifact = {"name": "copy.parquet",
                "path": str((target / "copy.parquet").relative_to(w.state.settings.data_dir)),
                "bytes": (target / "copy.parquet").stat().st_size, "sha256": "0" * 64}  # fmt: skip
    _, [out] = record_result(w.state, job_id, None, {}, [artifact])
    name = out["dataset"]
    with unit_of_work(w.state.sessions) as db:
        view = load_view(db, w.state.settings.datasets_dir, "acme", name)
        source = load_view(db, w.state.settings.datasets_dir, "acme", "engagements")
    assert view.identifier_columns == ("user_id",)  # ref, ref_plus, refs: plain

    # mia reads all of engagements for evaluation, user_id masked; she may break glass and
    # browse the catalog
    plain = [c for c in source.column_names if c != "user_id"]
    _people(
        w,
        [("p", ("mia", "acme", "engagements", "user_id", "evaluation", "mask", "allow", "", "")),
         ("p", ("mia", "acme", "sys:break_glass", "*", "*", "manage", "allow", "", "")),
         ("p", ("mia", "acme", "*", "*", "*", "browse", "allow", "", ""))]
        + [("p", ("mia", "acme", "engagements", c, "evaluation", "read", "allow", "", ""))
           for c in plain],
        ["mia"],
    )  # fmt: skip
    with pytest.raises(Forbidden, match="engagements"):
        covers_sources(w.state, Caller("mia", "person", "acme", ""), [source], "evaluation")
    body = {"dataset": name, "purpose": "evaluation", "reason": "debug"}
    refused = w.http.post("/v1/access/break-glass", headers=w.as_("mia"), json=body)
    assert refused.status_code == 403, refused.text
    assert w.read("mia", name, purpose="evaluation").status_code in (403, 404)
    # rita reads engagements whole: the copy is hers to have (its user_id masked)
    granted = w.http.post("/v1/access/break-glass", headers=w.as_("rita"), json=body)
    assert granted.status_code == 201, granted.text
    assert granted.json()["masked_columns"] == ["user_id"]

    # given to mia anyway by a rule: its user_id pseudonyms are its own, linking nothing
    _people(w, [("p", ("mia", "acme", name, c, "evaluation",
                      "mask" if c == "user_id" else "read", "allow", "", ""))
               for c in view.column_names])  # fmt: skip
    got = _frame(w.read("mia", name, purpose="evaluation"))
    masked = _frame(w.read("mia", "engagements", purpose="evaluation", columns=["user_id"]))
    mine = as_int_tokens(got["user_id"].to_list())
    assert len(mine) == copy.height
    assert not mine & as_int_tokens(masked["user_id"].to_list()), (
        f"mia re-linked engagements.user_id pseudonyms through {name}.user_id"
    )
