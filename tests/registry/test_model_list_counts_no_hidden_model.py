"""A model listing's `limit` counts only models the caller may use.

Red team 22b (an ML engineer's token, no database write): `GET /v1/models?limit=N` took the
tenant's N newest models and then dropped those the caller may not use, so the answer's
length against `limit` said how many hidden models stood among the newest: with `limit=1`
and the newest model hidden, the answer was empty; raising `limit` one by one placed each
hidden model between the visible ones (how many, and when they were registered). A hidden
model must answer as a missing one, in a listing as on its own page."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no job runs here (no Docker)
from tests.experiments.helpers import reads_pins, register_artifact


def test_a_listing_limit_is_filled_with_usable_models_only(
    warden: WardenHarness, tmp_path: Path
) -> None:
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    seen = register_artifact(warden, "pins-fit", source, read=("pins",))
    for name in ("latent-a", "latent-b", "latent-c"):  # newer, and hidden from mallory
        register_artifact(warden, name, source, read=("pins", "latent_users"))
    reads_pins(warden, "mallory")

    answers = {}
    for limit in (1, 2, 3, 4, 1000):
        got = warden.http.get(f"/v1/models?limit={limit}", headers=warden.as_("mallory"))
        assert got.status_code == 200, got.text
        answers[limit] = [m["ref"] for m in got.json()["models"]]
    assert set(map(tuple, answers.values())) == {(seen,)}, (
        f"the listing's length counts models mallory may not use: {answers}"
    )
    mine = warden.http.get("/v1/models?limit=1000", headers=warden.as_("alice")).json()
    assert len(mine["models"]) == 4  # alice may use all four: nothing is hidden from her


def test_a_usable_model_behind_more_than_a_page_of_hidden_ones_is_listed(
    warden: WardenHarness, tmp_path: Path
) -> None:
    """The listing pages through hidden models (100 a page) until its limit is filled."""
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    seen = [register_artifact(warden, f"pins-{i}", source, read=("pins",)) for i in range(2)]
    for i in range(101):
        register_artifact(warden, f"latent-{i}", source, read=("pins", "latent_users"))
    reads_pins(warden, "mallory")
    for limit in (1, 2, 50):
        got = warden.http.get(f"/v1/models?limit={limit}", headers=warden.as_("mallory"))
        refs = [m["ref"] for m in got.json()["models"]]
        assert len(refs) == min(limit, 2) and set(refs) <= set(seen), (limit, refs)
