"""A grant on a derived dataset (an inference job's output) keeps its sources' row filters
and column denies: a requester held to less of a source is refused the copy.

Found by red-team round 13 (medium), now refused. Attack (erin, `role:analyst_eu`:
engagements for analytics only where region = EU, and `dwell_ms` denied outright; alice,
an ML engineer who reads all of engagements):

1. alice's inference job reads engagements and writes `preds.parquet`: per pin and region,
   the mean dwell time (what an inference or scoring job does). `jobs.outputs.
   register_outputs` registers it as `preds_<job>`: pii (the strictest input), derived from
   engagements, owned by engagements' owner. Its class follows the source; the source's
   row filter (EU only, for erin) and column deny (dwell_ms, for erin) do not.
2. erin asks for `preds_<job>` for analytics (a pii request: two stewards approve; the
   request shows a pii dataset "derived from engagements", nothing about erin's limits).
3. erin reads every region's rows (the output's `region` comes masked, four pseudonyms
   for four regions, which she tells apart by their counts) and, in plain, the dwell times
   she is denied on the source.

Leak: rows and a column the policy denies erin, through a derived copy; the model registry
refuses exactly this (`policy.reads.authorize_use(built_by=...)`: no row filter or denied
column the builder was not under), the catalog does not. Severity: medium (needs two
approvals, but nothing tells the reviewers, and no rule ever said erin may see non-EU rows).

Fix (`access.service._grant` through `policy.reads.covers_sources`): a grant (request,
public-at-once or break-glass) on a dataset with `derived_from` is refused (403) unless its
requester may read every source for the purpose whole: no row filter, no column denied,
nothing masked (identifiers too, since round 14). Who built a catalog dataset is not recorded, so
this fails closed as if its builder read each source whole (as `authorize_use(built_by=...)`
would with such a builder). Checked when the grant is made, so the request itself still
opens (reviewers see it) but no quorum can issue it.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from tests.access.conftest import Access
from tests.sealed_rows import finished_job
from warden.catalog.service import load_view
from warden.db.session import unit_of_work
from warden.jobs.outputs import register_outputs


def _inference_output(access: Access, source: str = "engagements") -> str:
    w = access.w
    raw = pl.read_parquet(w.settings.datasets_dir / source / "*.parquet")
    if source == "engagements":
        preds = raw.group_by("pin_id", "region").agg(pl.col("dwell_ms").mean().alias("dwell_ms"))
    else:
        preds = raw.select("category", "digit").head(50)  # no identifier: nothing masked
    with unit_of_work(w.state.sessions) as db:
        job = finished_job(
            db, kind="infer", step="infer", name="inference", datasets=[source],
            purpose="analytics",
        )  # fmt: skip
        rel = f"jobs/{job.id}/out/preds.parquet"
        path = Path(w.settings.data_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        preds.write_parquet(path)
        (out,) = register_outputs(
            w.state, db, job, [{"name": "preds.parquet", "path": rel}], {"parents": []}
        )
        view = load_view(db, w.settings.datasets_dir, "acme", out["dataset"])
        assert source in view.derived_from
    w.state.policy.ensure_fresh()
    return str(out["dataset"])


def test_a_derived_output_keeps_its_sources_row_filter_and_deny(access: Access) -> None:
    source = access.read("erin", "engagements", purpose="analytics", columns=["region"])
    assert set(access.frame(source)["region"].unique()) == {"EU"}
    denied = access.read("erin", "engagements", purpose="analytics", columns=["dwell_ms"])
    assert denied.status_code == 403

    name = _inference_output(access)
    asked = access.request("erin", dataset=name, purpose="analytics", duration="1d")
    assert asked.status_code == 201, asked.text  # asking is allowed: reviewers see it
    rid = asked.json()["id"]
    assert access.review("sam", rid, "approve", "ok").status_code == 200
    before = access.fingerprint()
    last = access.review("tess", rid, "approve", "ok")
    assert last.status_code == 403, last.text  # the quorum cannot issue it
    assert "engagements" in last.json()["detail"]
    assert access.fingerprint() == before  # refused: nothing written, still pending
    assert access.show("erin", rid)["state"] == "pending"
    got = access.read("erin", name, purpose="analytics")
    if got.status_code == 200:
        frame = pl.read_ipc_stream(io.BytesIO(got.content))
        regions = set(frame["region"].unique()) if "region" in frame.columns else set()
        raise AssertionError(
            f"erin read regions {sorted(regions)} and columns {frame.columns} of "
            f"{name}, a copy of engagements built without her row filter and deny"
        )


def test_a_requester_who_reads_the_source_whole_is_granted_its_copy(access: Access) -> None:
    """ML engineers read every column of pins, unfiltered: a copy of it may be granted them;
    erin, who reads no column of pins, is refused the same copy."""
    name = _inference_output(access, "pins")
    access.add_person("bob", ["ml_engineer"])
    for who, status in (("erin", 403), ("bob", 200)):
        asked = access.request(who, dataset=name, purpose="training", duration="1d")
        assert asked.status_code in (201, 404), asked.text
        if asked.status_code == 404:  # erin may not even know it exists: refused all the same
            continue
        done = access.review("sam", asked.json()["id"], "approve", "ok")
        assert done.status_code == status, (who, done.text)
    assert access.read("bob", name, purpose="training").status_code == 200
    assert access.read("erin", name, purpose="training").status_code in (403, 404)
