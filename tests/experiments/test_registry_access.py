"""A model, its metrics, reports and lineage are read only by people who may use it: the
same decision as serving it, on every dataset of its lineage. Found by a red-team review:
anyone in the tenant downloaded a report built from `latent_users`, which they could not
read, and a model's lineage named datasets hidden from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.experiments.helpers import register_with_report


@pytest.fixture
def latent_model(warden: Any, tmp_path: Path) -> str:
    text = "user_id,taste_1\n1,3\n"
    return register_with_report(
        warden, tmp_path, "latent-report", ("latent_users",), "report.csv", text
    )


def test_a_model_built_from_data_you_may_not_read_is_not_yours_to_read(
    warden: Any, latent_model: str
) -> None:
    assert warden.read("mallory", "latent_users", purpose="evaluation").status_code == 404
    for path in ("", "/lineage", "/reports/report.csv"):
        got = warden.http.get(f"/v1/models/{latent_model}{path}", headers=warden.as_("mallory"))
        assert got.status_code == 404, (path, got.text)
        assert "latent_users" not in got.text  # the refusal names no hidden dataset
    listed = warden.http.get("/v1/models", headers=warden.as_("mallory")).json()["models"]
    assert latent_model not in [m["ref"] for m in listed]
    # alice may read latent_users for evaluation: the model, its lineage and report are hers
    for path in ("", "/lineage", "/reports/report.csv"):
        got = warden.http.get(f"/v1/models/{latent_model}{path}", headers=warden.as_("alice"))
        assert got.status_code == 200, (path, got.text)
