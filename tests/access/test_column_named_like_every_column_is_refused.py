"""A column is named by policy rules exactly as the catalog names it: a column named `*` (or
one no rule can name: a comma, surrounding spaces, an invisible character) is refused when a
dataset is registered, and a request or grant for such a column (a dataset registered before
this check) is refused, changing nothing.

Red team 16a: a job's output (its columns are the parquet's, as the job wrote them) could hold
a column named `*`. Reviewers were shown a request for one column, `*`; its grant rule named
column `*`, which the policy reads as every column, so the grant read the dataset's other
columns too (`email`, raw)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.access.conftest import Access, allow_browse
from tests.serving import register_as_admin
from warden.catalog import columns as catalog_columns
from warden.catalog.service import ColumnInfo
from warden.errors import Unprocessable


def _register(
    warden: Any, name: str, columns: dict[str, list[Any]], classes: dict[str, str]
) -> None:
    source = Path(warden.state.settings.data_dir) / f"src-{name}.parquet"
    frame = pl.DataFrame(columns)
    frame.write_parquet(source)
    columns = [ColumnInfo(c, str(t), classes[c], None) for c, t in frame.schema.items()]
    register_as_admin(warden, name, source, columns)


@pytest.mark.parametrize("column", ["*", "a,b", " email", "email ", "e\u200bmail", "(x)"])
def test_a_column_no_rule_can_name_exactly_is_refused_at_registration(
    warden: Any, column: str
) -> None:
    with pytest.raises(Unprocessable, match="column"):
        _register(warden, "odd", {column: [1.0, 2.0], "score": [0.5, 0.7]},
                  {column: "public", "score": "public"})  # fmt: skip


def test_a_request_for_a_column_named_star_grants_nothing_else(
    warden: Any, access: Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A dataset registered before the check (or a job's output): a `*` column beside `email`.
    monkeypatch.setattr(catalog_columns, "column_name_problem", lambda name: None)
    _register(
        warden,
        "wide",
        {"*": [0.1, 0.2], "email": ["a@x.io", "b@x.io"]},
        {"*": "public", "email": "pii"},
    )
    monkeypatch.undo()
    allow_browse(warden, "mallory")
    before = access.fingerprint()
    r = access.request("mallory", dataset="wide", columns=["*"], purpose="training",
                       duration="1d")  # fmt: skip
    if r.status_code == 201:  # the hole: reviewers approve "one column", the grant reads all
        req = r.json()
        access.approve("sam", req["id"])
        access.approve("tess", req["id"])
        read = access.read("mallory", "wide", purpose="training", columns=["email"])
        pytest.fail(f"a request for column '*' was taken; its grant read email: {read.status_code}")
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "Unprocessable"
    assert access.fingerprint() == before
