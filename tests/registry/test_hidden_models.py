"""The registry answers a model the caller may not use exactly as a missing one, word for
word (found by a red-team review, round 13).

Found: `GET /v1/models/{ref}` (and `/lineage`, `/reports/...`) answered 404 for both, but a
hidden model's message added "you may read (it was built from data you may not)": the
message was the oracle the status hid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.experiments.helpers import register_artifact


def test_the_registry_answers_a_hidden_model_exactly_like_a_missing_one(
    warden: Any, tmp_path: Path
) -> None:
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    register_artifact(warden, "latent-fit", source, read=("pins", "latent_users"))
    for path in ("{}", "{}/lineage", "{}/reports/report.json"):
        answers = []
        for ref in ("latent-fit@1", "nosuch@1", "latent-fit", "nosuch"):
            got = warden.http.get("/v1/models/" + path.format(ref), headers=warden.as_("mallory"))
            answers.append((got.status_code, got.json()["detail"].replace(ref, "REF")))
        assert len(set(answers)) == 1 and answers[0][0] == 404, answers
