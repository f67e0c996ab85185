"""Steps end to end: determinism on local Parquet, and the whole path through a real API."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from warden_ml import PROVENANCE
from warden_ml.cli import main, run_step
from warden_ml.common import Spec

TINY_GENERIC = {"steps": 3, "eval_every": 2, "val_pins": 64, "batch": 32, "stack_steps": 5,
                "stack_batch": 64, "threads": 1, "dim": 32, "depth": 1, "mlp": 64}  # fmt: skip
TINY_DOMAIN = {"steps": 6, "batch": 32, "mine_every": 3, "threads": 1}
TINY_SWAP = {"align_steps": 3, "post_steps": 3, "batch": 64, "threads": 1}
TINY_EVAL = {"latency_requests": 20, "max_queries": 60, "threads": 1}


def test_same_seed_same_metrics(graph_reader, tmp_path: Path) -> None:
    runs = []
    for name in ("one", "two"):
        out = tmp_path / name
        m = run_step("train-domain", Spec(seed=3, params=TINY_DOMAIN), out, graph_reader)
        runs.append((m, torch.load(out / "domain_tower.pt", weights_only=True)))
    (m1, blob1), (m2, blob2) = runs
    drop = {"wall_s", "cpu_s", "tower_cpu_s"}
    assert {k: v for k, v in m1.items() if k not in drop} == {
        k: v for k, v in m2.items() if k not in drop
    }
    for key, value in blob1["tower"].items():
        assert torch.equal(value, blob2["tower"][key])
    other = run_step("train-domain", Spec(seed=4, params=TINY_DOMAIN), tmp_path / "x", graph_reader)
    assert other["loss_first"] != m1["loss_first"]


def test_cli_rejects_a_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"seed": 1, "bogus": True}))
    assert main(["eval", "--spec", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "unknown spec fields" in capsys.readouterr().err


def test_full_path_through_the_api(live_warden, tmp_path: Path) -> None:
    """train-generic -> train-domain -> swap -> eval -> infer as alice, through the SDK."""
    from warden.sdk import Client

    with Client(url=live_warden.url, token=live_warden.tokens["alice"]) as alice:
        g = run_step("train-generic", Spec(seed=0, params=TINY_GENERIC), tmp_path / "g", alice)
        d = run_step("train-domain", Spec(seed=0, params=TINY_DOMAIN), tmp_path / "d", alice)
        swap_spec = Spec(
            seed=0,
            params=TINY_SWAP,
            model_in={"stack": str(tmp_path / "g/generic_stack.pt"),
                      "tower": str(tmp_path / "d/domain_tower.pt")},
        )  # fmt: skip
        s = run_step("swap", swap_spec, tmp_path / "s", alice)
        eval_spec = Spec(
            seed=0,
            params={**TINY_EVAL, "name_a": "domain", "name_b": "generic"},
            datasets={n: n for n in ("pins", "engagements", "gold", "latent_users", "latent_pins")},
            model_in={"A": [str(tmp_path / "s/swapped_stack.pt")],
                      "B": [str(tmp_path / "g/generic_stack.pt")]},
        )  # fmt: skip
        e = run_step("eval", eval_spec, tmp_path / "e", alice)
        infer_spec = Spec(
            seed=0,
            params={"latency_requests": 10, "threads": 1},
            model_in=str(tmp_path / "s/swapped_stack.pt"),
            datasets={"pins": "pins",
                      "engagements": {"name": "engagements", "purpose": "evaluation"}},
        )  # fmt: skip
        i = run_step("infer", infer_spec, tmp_path / "i", alice)

    assert g["tower"] == "vit" and d["tower"] == "cnn"
    assert s["tower"] == "cnn" and e["step"] == "eval" and i["step"] == "infer"
    for step_dir in ("g", "d", "s", "e", "i"):
        metrics = json.loads((tmp_path / step_dir / "metrics.json").read_text())
        assert metrics["provenance"] == PROVENANCE
    report = json.loads((tmp_path / "e/report.json").read_text())
    assert report["provenance"] == PROVENANCE
    assert "GENERATED" in (tmp_path / "e/report.md").read_text()
    for arm in ("A", "B"):
        for sl in ("heldout_edge", "cold_start", "next_pin"):
            node = report["quality"][arm]["stack"][sl]["sampled"]
            assert 0.0 <= node["recall@10"]["mean"] <= 1.0
        assert report["serving"][arm]["tower_only"]["p50_ms"] > 0
    assert set(report["shadow"]) == {"heldout_edge", "cold_start", "next_pin"}
    # ceiling and floor on the same requests; every model metric also as a share of the gap
    full = report["headline"]["heldout_recall@10_full"]
    assert full["oracle"] > full["random"] and full["share_oracle"] == 1.0
    share = report["quality"]["A"]["stack"]["heldout_edge"]["full"]["share_of_gap"]["recall@10"]
    assert share["mean"] <= 1.0
    assert "share of oracle-random gap" in (tmp_path / "e/report.md").read_text()
    # both arms' training budgets and curves, from the artifacts' own records
    budget = report["headline"]["training_budget"]
    assert budget["steps"]["B_generic_tower"] == 3 and budget["steps"]["A_domain_path"] == 12
    assert [p["name"] for p in report["training"]["A"][0]["phases"]] == [
        "domain tower", "align", "post"]  # fmt: skip
    assert (tmp_path / "e/training.png").stat().st_size > 0
    assert (tmp_path / "e/recall.png").stat().st_size > 0
    recs = pl.read_parquet(tmp_path / "i/recommendations.parquet")
    assert recs.columns == ["user_id", "rank", "pin_id", "score"] and recs.height > 0
    emb = pl.read_parquet(tmp_path / "i/pin_embeddings.parquet")
    assert emb.height == 5000

    # every read went through the gateway as alice, for the step's purpose, user_id masked
    events = live_warden.audit_events(actor="alice", limit="500")
    seen = {(ev.get("dataset"), ev.get("purpose")) for ev in events}
    assert ("pin_pairs", "training") in seen and ("gold", "evaluation") in seen
    assert ("latent_pins", "evaluation") in seen and ("latent_pins", "training") not in seen
