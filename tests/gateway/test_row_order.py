"""Where a row stands never says whose it is: a version whose order follows an identifier is
stored shuffled, so neither row numbers, `limit` nor a shard's position turn a pseudonym back
into the raw id (found by a red-team review: `users` was stored sorted by `user_id`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from warden.catalog.columns import ColumnInfo
from warden.catalog.order import follows_identifier, scrubbed


def frame(response: Any) -> pl.DataFrame:
    assert response.status_code == 200, response.text
    return pl.read_ipc_stream(io.BytesIO(response.content))


def _raw_ids(warden: Any, dataset: str) -> list[int]:
    """The raw ids in the order the catalog's current version stores them."""
    from warden.catalog.service import load_view
    from warden.db.session import unit_of_work

    with unit_of_work(warden.state.sessions) as db:
        view = load_view(db, warden.state.settings.datasets_dir, "acme", dataset)
    return pl.read_parquet(view.path)["user_id"].to_list()


@pytest.mark.parametrize("dictionary", ["users", "latent_users"])
def test_row_numbers_of_a_masked_read_do_not_give_raw_ids(warden: Any, dictionary: str) -> None:
    purpose = "evaluation"
    tokens = frame(warden.read("alice", dictionary, purpose=purpose, columns=["user_id"]))
    guess = {t: k + 1 for k, t in enumerate(tokens["user_id"].to_list())}  # "row k is user k+1"
    raw = _raw_ids(warden, dictionary)
    hits = sum(guess[t] == u for t, u in zip(tokens["user_id"].to_list(), raw, strict=True))
    assert hits / len(raw) < 0.01, f"{hits} of {len(raw)} pseudonyms re-identified by row number"


def test_neither_limit_nor_a_shard_singles_out_a_raw_id(warden: Any) -> None:
    n = len(_raw_ids(warden, "users"))
    everything = frame(warden.read("alice", "users", purpose="training", columns=["user_id"]))
    first = frame(warden.read("alice", "users", purpose="training", columns=["user_id"], limit=1))
    shard = frame(
        warden.read(
            "alice", "users", purpose="training", columns=["user_id"],
            shard={"rank": 41, "world": n},
        )
    )  # fmt: skip
    raw = _raw_ids(warden, "users")
    assert first["user_id"][0] == everything["user_id"][0]  # limit takes the stored order,
    assert shard.height == 1 and shard["user_id"][0] == everything["user_id"][41]  # a shard too,
    assert sum(r == i + 1 for i, r in enumerate(raw)) < n // 100  # and it is not the ids' order


def test_an_order_that_follows_an_identifier_is_found_and_not_kept(tmp_path: Path) -> None:
    n = 100_000  # a random order of this many rows stays under the threshold (z > 6)
    ids = pl.Series("user_id", range(1, n + 1), dtype=pl.Int64)
    sorted_file = tmp_path / "sorted.parquet"
    pl.DataFrame({"user_id": ids, "x": range(n)}).write_parquet(sorted_file)
    assert follows_identifier(sorted_file, ["user_id"]) == "user_id"
    descending = tmp_path / "descending.parquet"
    pl.DataFrame({"user_id": ids.reverse()}).write_parquet(descending)
    assert follows_identifier(descending, ["user_id"]) == "user_id"
    assert follows_identifier(sorted_file, []) is None
    columns = [ColumnInfo("user_id", "Int64", "pii", "user"), ColumnInfo("x", "Int64", "public")]
    mixed = scrubbed(sorted_file, tmp_path / "mixed.parquet", columns, ["user_id"])
    assert follows_identifier(mixed, ["user_id"]) is None
    back = pl.read_parquet(mixed)
    assert sorted(back["user_id"].to_list()) == ids.to_list()  # the same rows
    assert back.sort("user_id")["x"].to_list() == list(range(n))  # each row whole


# --- an earlier version, ordered before an identifier was declared (red team 14, finding 2) --
# A version of `users` registered (reviewed) while `user_id` was not an identifier kept the
# raw-id order; read as of that version under today's masks, row k would be the (k+1)-th
# smallest raw id. Today's identifiers decide, whatever version is read: refused (409).


def register_users(warden: Any, source: Path, identifiers: list[str], **kw: Any) -> Any:
    from warden.catalog.columns import ColumnInfo
    from warden.catalog.service import load_view, register
    from warden.db.session import unit_of_work
    from warden.identity.service import get_principal, get_tenant

    store = kw.pop("store", warden.state.settings.datasets_dir)
    with unit_of_work(warden.state.sessions) as db:
        view = load_view(db, warden.state.settings.datasets_dir, "acme", "users")
        _, version = register(
            db,
            datasets_dir=store,
            tenant=get_tenant(db, "acme"),
            owner=get_principal(db, view.owner),
            name="users",
            source=source,
            columns=[ColumnInfo(c.name, c.dtype, c.classification, c.entity) for c in view.columns],
            identifier_columns=identifiers,
            allowed_purposes=list(view.allowed_purposes),
            derived_from=list(view.derived_from),
            **kw,
        )
        return version.digest, version.snapshot_id


def earlier_and_today(
    warden: Any, *, sort: bool = True, **kw: Any
) -> tuple[str, int, pl.DataFrame]:
    """An earlier version (user_id not yet an identifier; sorted by it unless `sort` is
    false), then today's terms again with newer content; the earlier digest and snapshot."""
    from warden.catalog.service import load_view
    from warden.catalog.tables import table_file
    from warden.db.session import unit_of_work

    with unit_of_work(warden.state.sessions) as db:
        today = load_view(db, warden.state.settings.datasets_dir, "acme", "users")
    raw = table_file(warden.state.settings, today).scan().collect()
    assert "user_id" in today.identifier_columns
    data_dir = Path(warden.state.settings.data_dir)
    earlier = data_dir / "users-earlier.parquet"
    (raw.sort("user_id") if sort else raw).write_parquet(earlier)
    digest, snapshot = register_users(
        warden, earlier, [], reviewed_change="rc-before-user-id-was-an-identifier", **kw
    )
    newer = data_dir / "users-newer.parquet"
    raw.with_columns(pl.col("region").reverse()).write_parquet(newer)
    register_users(warden, newer, ["user_id"], **kw)
    return digest, snapshot, raw


def test_an_earlier_version_in_the_order_of_todays_identifier_is_refused(warden: Any) -> None:
    old, snapshot, raw = earlier_and_today(warden)
    for body in (
        {"version": old},
        {"version": str(snapshot)},  # as of its Iceberg snapshot
        {"version": old, "shard": {"rank": 0, "world": 4}},
        {"version": old, "limit": 1},
        {"version": old, "columns": ["region"]},  # its order would still link the rows
    ):
        body = {"purpose": "training", "columns": ["user_id"], **body}
        r = warden.read("alice", "users", **body)
        assert r.status_code == 409, (body, r.text)
        assert "'user_id', which is an identifier column now" in r.json()["detail"]
    denied = warden.audit_events(action="dataset.read", decision="deny")
    assert "OrderFollowsIdentifier" in denied[0]["reason"]
    assert frame(warden.read("alice", "users", purpose="training", columns=["user_id"])).height


def test_an_earlier_version_in_a_random_order_still_reads(warden: Any) -> None:
    old, _, raw = earlier_and_today(warden, sort=False)
    r = warden.read("alice", "users", purpose="training", columns=["user_id"], version=old)
    tokens = frame(r)["user_id"]
    assert tokens.n_unique() == raw.height and not set(tokens) & set(raw["user_id"])


def test_an_earlier_parquet_only_version_is_checked_too(warden: Any) -> None:
    """A version registered before datasets were Iceberg tables reads its Parquet file."""
    from sqlalchemy import select

    from warden.catalog.models import Dataset, DatasetVersion
    from warden.catalog.service import reseal
    from warden.db.session import unit_of_work

    old, _, _ = earlier_and_today(warden)
    with unit_of_work(warden.state.sessions) as db:
        version = db.scalars(select(DatasetVersion).where(DatasetVersion.digest == old)).one()
        version.snapshot_id, version.table_metadata = None, None
        reseal(db, db.get_one(Dataset, version.dataset_id), every_version=True)
    r = warden.read("alice", "users", purpose="training", columns=["user_id"], version=old)
    assert r.status_code == 409, r.text


def test_an_identifier_a_version_lacks_orders_nothing_in_it(tmp_path: Path) -> None:
    from warden.catalog.order import OrderFollowsIdentifier, check_served_order
    from warden.catalog.storage import DataFile

    n = 100_000
    source = tmp_path / "v.parquet"
    pl.DataFrame({"user_id": range(n)}).sample(fraction=1.0, shuffle=True, seed=3).write_parquet(
        source
    )
    check_served_order(DataFile(str(source)), ("user_id", "pin_id"), "users", "sha256:x")
    ordered = tmp_path / "o.parquet"
    pl.DataFrame({"user_id": range(n)}).write_parquet(ordered)
    with pytest.raises(OrderFollowsIdentifier):
        check_served_order(DataFile(str(ordered)), ("pin_id", "user_id"), "users", "sha256:y")


def test_a_small_random_order_is_never_refused_and_a_small_sorted_one_always(
    tmp_path: Path,
) -> None:
    """A needless shuffle is free, a needless refusal is not: reads ask for significance."""
    from warden.catalog.order import OrderFollowsIdentifier, check_served_order
    from warden.catalog.storage import DataFile

    for seed in range(40):  # 1,500 rows: a random order crosses FOLLOWS about half the time
        path = tmp_path / f"r{seed}.parquet"
        ids = pl.DataFrame({"user_id": range(1500)})
        ids.sample(fraction=1.0, shuffle=True, seed=seed).write_parquet(path)
        check_served_order(DataFile(str(path)), ("user_id",), "users", f"sha256:{seed}")
    for n in (30, 1500):
        path = tmp_path / f"s{n}.parquet"
        pl.DataFrame({"user_id": range(n)}).reverse().write_parquet(path)
        with pytest.raises(OrderFollowsIdentifier):
            check_served_order(DataFile(str(path)), ("user_id",), "users", "sha256:s")
