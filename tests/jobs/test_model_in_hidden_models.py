"""`POST /v1/jobs` answers a model reference (`model_in`) the caller may not use exactly as
one that does not exist, and looks at no model's files before (found by a red-team review,
round 13).

Found: `jobs.service._plan` resolved `model_in` (`registry.resolve`, `pick_artifact`) before
`_decide` asked whether the caller may run ML jobs (`sandbox:ml`) or use the model. mallory (no
role; the registry answers her 404 for the model) got 403 for a model that exists and 404 "no
model 'NAME'" for one that does not; `NAME@1:FILE` answered 404 "has no artifact 'FILE'" for a
wrong file and 403 for the right one: which models, versions and artifact files exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.access.conftest import bootstrap_people
from tests.experiments.helpers import register_artifact
from warden.db.session import unit_of_work
from warden.identity.service import Caller, get_principal
from warden.policy.changes import apply_change


def _job(warden: Any, who: str, ref: str) -> Any:
    body = {"kind": "infer", "datasets": {"pins": "pins"}, "model_in": ref}
    return warden.http.post("/v1/jobs", json=body, headers=warden.as_(who))


def _hidden_model(warden: Any, tmp_path: Path) -> str:
    """latent-fit@1 (stack.pt), built from latent_users: alice may use it, others may not."""
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    return register_artifact(warden, "latent-fit", source, read=("pins", "latent_users"))


def _answers_like_a_missing_model(warden: Any, who: str, ref: str) -> None:
    missing = _job(warden, who, "no-such-model")
    for probe in ("latent-fit", "latent-fit@1", ref):
        hidden = _job(warden, who, probe)
        # the same answer as for a model that does not exist
        assert (hidden.status_code, hidden.json()["error"]) == (
            missing.status_code,
            missing.json()["error"],
        ), (who, probe, hidden.text, missing.text)
    right = _job(warden, who, "latent-fit@1:stack.pt")
    wrong = _job(warden, who, "latent-fit@1:guess.pt")
    assert right.status_code == wrong.status_code, (right.text, wrong.text)
    assert "guess.pt" not in wrong.text or "no model" in wrong.text, wrong.text


def test_a_job_refusal_does_not_say_whether_a_hidden_model_exists(
    warden: Any, tmp_path: Path
) -> None:
    """Without `sandbox:ml`, every job is refused before any model is looked up."""
    ref = _hidden_model(warden, tmp_path)
    assert warden.http.get(f"/v1/models/{ref}", headers=warden.as_("mallory")).status_code == 404
    for who in ("mallory", "erin"):
        _answers_like_a_missing_model(warden, who, ref)
        assert _job(warden, who, "no-such-model").status_code == 403


def test_a_model_you_may_not_use_is_missing_to_a_job_launcher(
    ml_warden: Any, tmp_path: Path
) -> None:
    """carl may run ML jobs but read none of the model's data: the model (its versions, its
    files) answers him word for word as a missing one, before its artifacts are looked at."""
    w = ml_warden
    ref = _hidden_model(w, tmp_path)
    rule = ("p", ("role:ml_runner", "acme", "sandbox:ml", "*", "*", "manage", "allow", "", ""))
    with unit_of_work(w.state.sessions) as db:
        admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
        apply_change(db, admin, add=[rule], reason="test setup", action="policy.bootstrap")
    bootstrap_people(w, {"carl": ["ml_runner"]})
    _answers_like_a_missing_model(w, "carl", ref)
    for probe in ("latent-fit", "latent-fit@1:stack.pt", "latent-fit@1:guess.pt"):
        got = _job(w, "carl", probe)
        assert (got.status_code, got.json()["detail"]) == (404, f"no model {probe!r}"), got.text
    # alice may use it: her wrong file name is hers to be told
    wrong = _job(w, "alice", "latent-fit@1:guess.pt")
    assert wrong.status_code == 404 and "has no artifact 'guess.pt'" in wrong.text, wrong.text
