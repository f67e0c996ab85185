"""`/v1/recommend` answers a hidden experiment or model exactly as a missing one: the same
status and the same words (found by a red-team review, round 13).

Found: the route looked the experiment up with `experiments.service.get` (no visibility
check), not `get_visible`, so mallory (no role; `GET /v1/experiments/lat` answers her 404)
learned from `{"experiment": "lat"}` that it exists, whether it runs (409 "is stopped") and
its arms' model refs (404 "no model 'latent-a@1' you may use", for the user she named); and a
hidden model answered "no model 'REF' you may use" where a missing one says "no model 'REF'".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.experiments.helpers import hidden_models, pin_ids
from tests.experiments.test_online import GUARDS


def _ask(warden: Any, name: str, user: str = "u-1") -> Any:
    body = {"experiment": name, "user": user, "history": pin_ids(warden)[:3], "k": 3}
    return warden.http.post("/v1/recommend", json=body, headers=warden.as_("mallory"))


def test_recommend_through_a_hidden_experiment_answers_like_a_missing_one(
    warden: Any, tmp_path: Path
) -> None:
    a, b = hidden_models(warden, tmp_path)
    body = {"name": "lat", "control": a, "challenger": b, "mde": 0.1, "guardrails": GUARDS}
    started = warden.http.post("/v1/experiments", json=body, headers=warden.as_("alice"))
    assert started.status_code == 201, started.text
    assert warden.http.get("/v1/experiments/lat", headers=warden.as_("mallory")).status_code == 404
    missing = _ask(warden, "nosuch")
    assert missing.status_code == 404
    running = [_ask(warden, "lat", f"u-{i}") for i in range(6)]  # users of both arms
    named = {ref for r in running for ref in (a, b) if ref in r.text}
    assert not named, f"hidden arm models named to mallory: {sorted(named)}"
    for got in running:  # the same words as for an experiment that does not exist
        assert (got.status_code, got.json()["detail"].replace("lat", "NAME")) == (
            404,
            missing.json()["detail"].replace("nosuch", "NAME"),
        ), got.text
    stopped = warden.http.post("/v1/experiments/lat/stop", headers=warden.as_("alice"))
    assert stopped.status_code == 200, stopped.text
    after = _ask(warden, "lat")
    assert (after.status_code, after.json()["error"]) == (404, "NotFound"), after.text
    # alice, who may use both arms, is still served, and told of the stop
    mine = warden.http.post(
        "/v1/recommend",
        json={"experiment": "lat", "user": "u-1", "history": pin_ids(warden)[:3], "k": 3},
        headers=warden.as_("alice"),
    )
    assert mine.status_code == 409, mine.text


def test_recommend_with_a_hidden_model_reads_exactly_like_a_missing_one(
    warden: Any, tmp_path: Path
) -> None:
    """Same oracle by message: a hidden model answered "no model 'REF' you may use", a missing
    one "no model 'REF'" (both 404), so the status-only check of the earlier fix passed. The
    version a bare NAME resolves to is not named either."""
    a, _ = hidden_models(warden, tmp_path)
    answers = {}
    for ref in (a, a.partition("@")[0], "nosuch@1", "nosuch"):
        body = {"model": ref, "user": "u-1", "history": pin_ids(warden)[:3], "k": 3}
        got = warden.http.post("/v1/recommend", json=body, headers=warden.as_("mallory"))
        assert got.status_code == 404, got.text
        answers[ref] = got.json()["detail"].replace(ref, "REF")
    assert len(set(answers.values())) == 1, answers
