"""The real workload through jobs: train both towers, swap, evaluate, infer; lineage complete.
Skipped, saying why, when platform/warden_ml is not there."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import WardenHarness
from tests.jobs.conftest import queue, show
from warden.config import REPO_ROOT
from warden.jobs.worker import JobWorker

pytestmark = pytest.mark.skipif(
    not (REPO_ROOT / "platform" / "warden_ml" / "__main__.py").exists(),
    reason="platform/warden_ml (the ML workload package) is not in this checkout yet",
)
TRAIN = {"pins": "pins", "pin_pairs": "pin_pairs", "engagements": "engagements"}
TINY = {
    "train-generic": {"steps": 3, "batch": 32, "stack_steps": 5, "stack_batch": 64,
                      "threads": 1, "dim": 32, "depth": 1, "mlp": 64},
    "train-domain": {"steps": 6, "batch": 32, "mine_every": 3, "threads": 1},
    "swap": {"align_steps": 3, "post_steps": 3, "batch": 64, "threads": 1},
    "eval": {"latency_requests": 20, "max_queries": 60, "threads": 1,
             "name_a": "domain", "name_b": "generic"},
    "infer": {"latency_requests": 10, "threads": 1},
}  # fmt: skip


def run(warden: WardenHarness, worker: JobWorker, **body: Any) -> dict[str, Any]:
    job = queue(warden, **body)
    assert worker.run_once() == job["id"]
    final = show(warden, job["id"])
    logs = warden.http.get(f"/v1/jobs/{job['id']}/logs", headers=warden.as_("alice")).text
    assert final["state"] == "succeeded", (final, logs[-3000:])
    return final


def test_train_swap_eval_infer_with_complete_lineage(
    ml_warden: WardenHarness, worker: JobWorker
) -> None:
    def step(kind: str, name: str, datasets: dict[str, str], **body: Any) -> dict[str, Any]:
        return run(ml_warden, worker, kind=kind, step=name, datasets=datasets,
                   params=TINY[name], seed=0, **body)  # fmt: skip

    step("train", "train-generic", TRAIN)
    step("train", "train-domain", TRAIN)
    step("train", "swap", TRAIN,
         model_in={"stack": "generic-tower:generic_stack.pt", "tower": "domain-tower"})  # fmt: skip
    # the generator's latent model: the oracle's input, for evaluation jobs only
    evaluation = {**TRAIN, "gold": "gold", "latent_users": "latent_users",
                  "latent_pins": "latent_pins"}  # fmt: skip
    step("eval", "eval", evaluation,
         model_in={"A": ["swapped-stack"], "B": ["generic-tower:generic_stack.pt"]})  # fmt: skip
    infer = step("infer", "infer", {"pins": "pins"}, model_in="swapped-stack")

    headers = ml_warden.as_("alice")
    body = ml_warden.http.get("/v1/models/eval-report/lineage", headers=headers).json()
    report = body["model"]
    assert {"report.json", "report.md"} <= set(report["reports"])
    assert report["metrics"]["provenance"].startswith("The taste graph")
    lineage = report["lineage"]
    read = {d["name"]: d for d in lineage["datasets"]}
    assert read["gold"]["reads"] >= 1 and read["gold"]["versions"][0].startswith("sha256:")
    assert read["latent_pins"]["reads"] >= 1 and read["latent_users"]["reads"] >= 1
    full = report["metrics"]["heldout_recall@10_full.oracle"]
    assert full > report["metrics"]["heldout_recall@10_full.random"]
    assert lineage["image_digest"] and lineage["code_version"]["files"] > 0
    assert lineage["policy_version"] is not None
    md = ml_warden.http.get("/v1/models/eval-report/reports/report.md", headers=headers)
    assert md.status_code == 200 and "A/B report" in md.text and "GENERATED" in md.text
    for hidden in ("swapped_stack.pt", "../../warden.db", "nope.md"):  # weights are not reports
        refused = ml_warden.http.get(f"/v1/models/swapped-stack/reports/{hidden}", headers=headers)
        assert refused.status_code == 404, (hidden, refused.text)
    ancestors = {a["ref"] for a in body["ancestors"]}
    assert ancestors == {"swapped-stack@1", "generic-tower@1", "domain-tower@1"}

    # inference output is a new dataset, as strict as its inputs (the datasets the job read
    # and those its model was built from), owned by the strictest input's owner
    outputs = sorted(infer["outputs"])
    assert [o.rsplit("_", 1)[0] for o in outputs] == ["pin_embeddings", "related_pins"]
    output = outputs[0]
    from warden.catalog.service import load_view
    from warden.db.session import unit_of_work

    with unit_of_work(ml_warden.state.sessions) as db:
        folder = ml_warden.settings.datasets_dir  # type: ignore[attr-defined]
        view = load_view(db, folder, "acme", output)
        engagements = load_view(db, folder, "acme", "engagements")  # the towers' training data
    assert view.classification == engagements.classification == "pii"
    assert {"pins", "engagements"} <= set(view.derived_from) and view.owner != "alice"
    assert "pins@" in view.description and infer["id"] in view.description


def test_train_domain_runs_data_parallel_under_torchrun(
    ml_warden: WardenHarness, worker: JobWorker
) -> None:
    job = run(ml_warden, worker, kind="train", step="train-domain", datasets=TRAIN,
              params=TINY["train-domain"], seed=0, nproc=2)  # fmt: skip
    assert job["spec"]["nproc"] == 2
    model = ml_warden.http.get("/v1/models/domain-tower", headers=ml_warden.as_("alice")).json()
    assert model["metrics"]["world_size"] == 2
    logs = ml_warden.http.get(f"/v1/jobs/{job['id']}/logs", headers=ml_warden.as_("alice")).text
    assert "torch.distributed.run" in logs and "world size 2" in logs
    # each rank read its own shard of the pairs (one version), the audit log says which
    reads = [e for e in ml_warden.audit_events(dataset="pin_pairs", limit="500")
             if e["decision"] == "allow" and "shard" in (e["details"] or {})]  # fmt: skip
    assert sorted(e["details"]["shard"]["rank"] for e in reads) == [0, 1]
    assert {e["details"]["shard"]["world"] for e in reads} == {2}
    assert len({e["dataset_version"] for e in reads}) == 1
    assert sum(e["rows"] for e in reads) == model["metrics"]["pairs"]
