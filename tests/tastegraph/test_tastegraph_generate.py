"""The synthetic taste graph: determinism, schemas, counts, gold hygiene, image signal."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from warden.tastegraph import (
    EPOCH,
    SCALES,
    WINDOW_DAYS,
    DatasetSpec,
    dataset_classes,
    described_specs,
    generate,
    load_digit_images,
    to_polars_dtype,
)

NAMES = ("users", "pins", "engagements", "pin_pairs", "gold", "latent_users", "latent_pins")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DatasetSpec], list[str]]:
    out = tmp_path_factory.mktemp("tastegraph_small")
    messages: list[str] = []
    specs = generate(out, scale="small", seed=0, progress=messages.append)
    return out, specs, messages


@pytest.fixture(scope="module")
def frames(small: tuple[Path, list[DatasetSpec], list[str]]) -> dict[str, pl.DataFrame]:
    _, specs, _ = small
    return {s.name: pl.read_parquet(s.path) for s in specs}


def _digests(out: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.parquet"))
    }


def _pair_keys(a: pl.Series, b: pl.Series) -> set[tuple[int, int]]:
    lo = np.minimum(a.to_numpy(), b.to_numpy())
    hi = np.maximum(a.to_numpy(), b.to_numpy())
    return set(zip(lo.tolist(), hi.tolist(), strict=True))


# --------------------------------------------------------------------------- API


def test_unknown_scale_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        generate(tmp_path, scale="huge")
    for name in ("small", "medium", "large"):
        assert name in str(err.value)
    assert not list(tmp_path.iterdir())


def test_returns_one_spec_per_file(small: tuple[Path, list[DatasetSpec], list[str]]) -> None:
    out, specs, _ = small
    assert [s.name for s in specs] == list(NAMES)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.parquet" for n in NAMES)
    for spec in specs:
        assert spec.path == out / f"{spec.name}.parquet"
        assert "real" in spec.description and "ynthetic" in spec.description


def test_progress_reports_row_counts(small: tuple[Path, list[DatasetSpec], list[str]]) -> None:
    _, _, messages = small
    assert "pins: 5,000 rows" in "\n".join(messages)
    for name in NAMES:
        assert any(m.startswith(f"{name}: ") for m in messages)


# --------------------------------------------------------------------------- determinism


def test_same_scale_and_seed_give_identical_bytes(
    small: tuple[Path, list[DatasetSpec], list[str]], tmp_path: Path
) -> None:
    first, _, _ = small
    generate(tmp_path, scale="small", seed=0)
    assert _digests(tmp_path) == _digests(first)
    generate(tmp_path, scale="small", seed=0)  # overwrite in place
    assert _digests(tmp_path) == _digests(first)


def test_another_seed_gives_another_graph(
    small: tuple[Path, list[DatasetSpec], list[str]], tmp_path: Path
) -> None:
    first, _, _ = small
    generate(tmp_path, scale="small", seed=1)
    other = _digests(tmp_path)
    assert all(other[name] != digest for name, digest in _digests(first).items())


# --------------------------------------------------------------------------- schemas


def test_files_match_specs(
    small: tuple[Path, list[DatasetSpec], list[str]], frames: dict[str, pl.DataFrame]
) -> None:
    _, specs, _ = small
    for spec in specs:
        df = frames[spec.name]
        assert df.columns == [c.name for c in spec.columns], spec.name
        for col in spec.columns:
            assert df.schema[col.name] == to_polars_dtype(col.dtype), (spec.name, col.name)
            assert col.classification in ("public", "internal", "pii")
        assert df.height == spec.row_count > 0
        assert df.null_count().sum_horizontal().item() == 0, spec.name


def test_classes_identifiers_and_purposes(small: tuple[Path, list[DatasetSpec], list[str]]) -> None:
    _, specs, _ = small
    by_name = {s.name: s for s in specs}
    everything = ("training", "evaluation", "inference", "analytics")
    for spec in specs:
        classes = {c.name: c.classification for c in spec.columns}
        assert set(spec.allowed_purposes) <= set(everything)
        # user_id is THE pii identifier wherever it appears, and the only one.
        pii = {name for name, cls in classes.items() if cls == "pii"}
        assert pii == ({"user_id"} if "user_id" in classes else set())
        assert spec.identifier_columns == (("user_id",) if "user_id" in classes else ())
    assert by_name["users"].allowed_purposes == ("training", "evaluation", "analytics")
    assert by_name["engagements"].allowed_purposes == ("training", "evaluation", "analytics")
    assert by_name["pins"].allowed_purposes == everything
    assert by_name["pin_pairs"].allowed_purposes == everything
    assert by_name["gold"].allowed_purposes == ("evaluation",)
    # the generator's latent model feeds the oracle only: evaluation, never training
    assert by_name["latent_users"].allowed_purposes == ("evaluation",)
    assert by_name["latent_pins"].allowed_purposes == ("evaluation",)
    eng = {c.name: c for c in by_name["engagements"].columns}
    assert len(eng) >= 8
    assert eng["region"].classification == "internal"
    assert eng["dwell_ms"].classification == "internal"
    assert by_name["gold"].classification == "pii"
    # pin_pairs' own columns are public, but it is built from users' engagements (pii)
    assert by_name["pin_pairs"].classification == "public"
    assert by_name["pin_pairs"].derived_from == ("engagements",)
    assert by_name["gold"].derived_from == ("engagements",)
    assert dataset_classes(specs) == {
        "users": "pii",
        "pins": "internal",
        "engagements": "pii",
        "pin_pairs": "pii",
        "gold": "pii",
        "latent_users": "pii",
        "latent_pins": "internal",
    }


def test_identifier_columns_declare_their_entity(
    small: tuple[Path, list[DatasetSpec], list[str]],
) -> None:
    _, specs, _ = small
    entities = {(s.name, c.name): c.entity for s in specs for c in s.columns if c.entity}
    assert entities == {
        ("users", "user_id"): "user",
        ("pins", "pin_id"): "pin",
        ("pins", "board_id"): "board",
        ("engagements", "engagement_id"): "engagement",
        ("engagements", "user_id"): "user",
        ("engagements", "pin_id"): "pin",
        ("engagements", "board_id"): "board",
        ("pin_pairs", "pin_a"): "pin",
        ("pin_pairs", "pin_b"): "pin",
        ("gold", "user_id"): "user",
        ("gold", "query_pin_id"): "pin",
        ("gold", "target_pin_id"): "pin",
        ("latent_users", "user_id"): "user",
        ("latent_pins", "pin_id"): "pin",
    }
    # every masked identifier names its entity; described_specs agrees without generating
    for spec in specs:
        cols = {c.name: c for c in spec.columns}
        assert all(cols[i].entity for i in spec.identifier_columns)
    described = {s.name: s for s in described_specs()}
    for spec in specs:
        assert described[spec.name].columns == spec.columns
        assert described[spec.name].derived_from == spec.derived_from


def test_to_polars_dtype_rejects_unknown() -> None:
    assert to_polars_dtype("Datetime(us)") == pl.Datetime("us")
    assert to_polars_dtype("Utf8") == pl.String
    with pytest.raises(ValueError):
        to_polars_dtype("Datetime(s)")


# --------------------------------------------------------------------------- sizes


def test_small_counts_match_config(frames: dict[str, pl.DataFrame]) -> None:
    cfg = SCALES["small"]
    assert frames["users"].height == cfg.n_users
    assert frames["pins"].height == cfg.n_pins
    assert frames["engagements"].height == cfg.n_engagements
    assert 1_000 <= cfg.n_users <= 2_000
    assert 2_000 <= cfg.n_pins <= 9_999
    assert 50_000 <= cfg.n_engagements <= 100_000


def test_scale_configs_reach_their_engagement_targets() -> None:
    assert set(SCALES) == {"small", "medium", "large"}
    assert SCALES["medium"].n_engagements >= 1_000_000
    assert SCALES["large"].n_engagements >= 10_000_000
    for cfg in SCALES.values():
        # Exactly n_engagements are written: enough spare events are drawn to cover the
        # hold-out, and there are enough boards for one per taste slot (at most 3/user).
        assert cfg.generated_events == cfg.n_engagements + cfg.holdout_rows
        assert cfg.holdout_rows > 0
        assert cfg.n_boards >= cfg.n_users
        assert cfg.n_pins * cfg.n_pins < 2**63  # pair keys fit in int64
        assert cfg.n_users * cfg.n_pins < 2**63
        assert cfg.walks_per_pin >= 1 and cfg.walk_length >= 1


# --------------------------------------------------------------------------- content


def test_ids_and_references(frames: dict[str, pl.DataFrame]) -> None:
    users, pins, eng = frames["users"], frames["pins"], frames["engagements"]
    assert users["user_id"].to_list() == list(range(1, users.height + 1))
    assert pins["pin_id"].to_list() == list(range(1, pins.height + 1))
    assert eng["engagement_id"].is_unique().all()
    assert eng["user_id"].is_in(users["user_id"].implode()).all()
    assert eng["pin_id"].is_in(pins["pin_id"].implode()).all()
    # region in engagements is the engaging user's region.
    joined = eng.join(users, on="user_id", suffix="_u")
    assert (joined["region"] == joined["region_u"]).all()
    assert set(users["region"].unique()) == {"NA", "EU", "APAC", "LATAM"}


def test_engagement_columns(frames: dict[str, pl.DataFrame]) -> None:
    eng = frames["engagements"]
    assert set(eng["action"].unique()) == {"save", "click", "closeup"}
    assert set(eng["surface"].unique()) == {"home", "search", "related"}
    assert eng["ts"].is_sorted()
    assert (eng["ts"] >= EPOCH).all()
    assert (eng["ts"] < EPOCH + timedelta(days=WINDOW_DAYS)).all()
    assert (eng["dwell_ms"] > 0).all()
    # click/closeup carry the pin's home board; saves go to one of the user's boards.
    home = eng.join(frames["pins"].select("pin_id", pl.col("board_id").alias("home")), on="pin_id")
    browse = home.filter(pl.col("action") != "save")
    assert (browse["board_id"] == browse["home"]).all()


def test_images_are_the_real_digits(frames: dict[str, pl.DataFrame]) -> None:
    pixels, labels = load_digit_images()
    assert pixels.shape == (1797, 64) and pixels.max() == 16
    real = {bytes(row): int(label) for row, label in zip(pixels, labels, strict=True)}
    pins = frames["pins"]
    assert (pins["image"].bin.size() == 64).all()
    for image, digit in zip(pins["image"].to_list(), pins["digit"].to_list(), strict=True):
        assert real[image] == digit
    assert pins["digit"].n_unique() == 10


def test_the_digits_are_scikit_learns_own_without_importing_it() -> None:
    pixels, labels = load_digit_images()
    from sklearn.datasets import load_digits

    digits = load_digits()
    assert np.array_equal(pixels, np.asarray(digits.data).round().astype(np.uint8))
    assert np.array_equal(labels, digits.target) and labels.dtype == np.int64
    done = subprocess.run(  # noqa: S603 - a fresh interpreter: nothing imported it before
        [sys.executable, "-c", FRESH_LOAD],
        env={**os.environ, "PYTHONPATH": str(PLATFORM)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.split() == ["1797", "False"], done.stderr


PLATFORM = Path(__file__).resolve().parents[2] / "platform"
FRESH_LOAD = (
    "import sys; from warden.tastegraph import load_digit_images;"
    "print(len(load_digit_images()[0]), 'sklearn' in sys.modules)"
)

# --------------------------------------------------------------------------- graph and gold


def test_pin_pairs_shape(frames: dict[str, pl.DataFrame]) -> None:
    pairs = frames["pin_pairs"]
    assert (pairs["pin_a"] < pairs["pin_b"]).all()
    assert pairs.select("pin_a", "pin_b").is_unique().all()
    assert (pairs["weight"] > 0).all() and (pairs["weight"] <= 1).all()
    assert pairs.sort("pin_a", "pin_b").equals(pairs)


def test_pin_pairs_come_from_training_pins_only(frames: dict[str, pl.DataFrame]) -> None:
    trained = set(frames["engagements"]["pin_id"].to_list())
    pairs = frames["pin_pairs"]
    assert set(pairs["pin_a"].to_list()) | set(pairs["pin_b"].to_list()) <= trained


def test_gold_has_all_slices(frames: dict[str, pl.DataFrame]) -> None:
    gold = frames["gold"]
    counts = dict(gold["slice"].value_counts().iter_rows())
    assert set(counts) == {"heldout_edge", "cold_start", "next_pin"}
    assert counts["cold_start"] == round(SCALES["small"].n_pins * 0.02)
    assert min(counts.values()) >= 50
    assert (gold["query_pin_id"] != gold["target_pin_id"]).all()


def test_gold_pairs_are_not_in_pin_pairs(frames: dict[str, pl.DataFrame]) -> None:
    pairs = _pair_keys(frames["pin_pairs"]["pin_a"], frames["pin_pairs"]["pin_b"])
    gold = _pair_keys(frames["gold"]["query_pin_id"], frames["gold"]["target_pin_id"])
    assert gold
    assert not gold & pairs


def test_held_out_edges_are_not_in_training(frames: dict[str, pl.DataFrame]) -> None:
    eng = frames["engagements"]
    edges = frames["gold"].filter(pl.col("slice") != "cold_start")
    leaked = edges.join(
        eng.select("user_id", pl.col("pin_id").alias("target_pin_id")).unique(),
        on=["user_id", "target_pin_id"],
    )
    assert leaked.height == 0
    # Each query is a pin the same user engaged with in training.
    seen = edges.join(
        eng.select("user_id", pl.col("pin_id").alias("query_pin_id")).unique(),
        on=["user_id", "query_pin_id"],
    )
    assert seen.height == edges.height


def test_next_pin_is_the_users_last_event(frames: dict[str, pl.DataFrame]) -> None:
    eng = frames["engagements"]
    nxt = frames["gold"].filter(pl.col("slice") == "next_pin")
    assert nxt["user_id"].is_unique().all()
    last_train = eng.group_by("user_id").agg(pl.col("ts").max().alias("last_ts"))
    joined = nxt.join(last_train, on="user_id")
    assert joined.height == nxt.height
    assert (joined["ts"] >= joined["last_ts"]).all()


def test_cold_start_pins_never_reach_training(frames: dict[str, pl.DataFrame]) -> None:
    cold = frames["gold"].filter(pl.col("slice") == "cold_start")["query_pin_id"]
    assert cold.is_unique().all()
    cold_ids = set(cold.to_list())
    assert not cold_ids & set(frames["engagements"]["pin_id"].to_list())
    pairs = frames["pin_pairs"]
    assert not cold_ids & (set(pairs["pin_a"].to_list()) | set(pairs["pin_b"].to_list()))
    # Cold pins are created late in the window, after the bulk of the catalogue.
    pins = frames["pins"].filter(pl.col("pin_id").is_in(cold.implode()))
    assert (pins["created_at"] >= EPOCH + timedelta(days=WINDOW_DAYS - 14)).all()
    targets = frames["gold"].filter(pl.col("slice") == "cold_start")["target_pin_id"]
    assert targets.is_in(frames["engagements"]["pin_id"].implode()).all()


def test_pin_pairs_share_digit_classes_far_above_chance(frames: dict[str, pl.DataFrame]) -> None:
    digit = np.concatenate([[-1], frames["pins"]["digit"].to_numpy()])  # index by pin_id
    pairs = frames["pin_pairs"]
    a = digit[pairs["pin_a"].to_numpy()]
    b = digit[pairs["pin_b"].to_numpy()]
    weight = pairs["weight"].to_numpy()
    share = np.bincount(digit[1:], minlength=10) / (digit.shape[0] - 1)
    chance = float((share**2).sum())
    assert (a == b).mean() > 3 * chance
    assert (weight * (a == b)).sum() / weight.sum() > 3 * chance


def test_gold_targets_share_digit_with_query_above_chance(
    frames: dict[str, pl.DataFrame],
) -> None:
    digit = np.concatenate([[-1], frames["pins"]["digit"].to_numpy()])
    gold = frames["gold"]
    same = digit[gold["query_pin_id"].to_numpy()] == digit[gold["target_pin_id"].to_numpy()]
    assert same.mean() > 0.2  # chance is about 0.1


def test_the_latent_model_is_the_one_the_events_were_drawn_from(
    frames: dict[str, pl.DataFrame],
) -> None:
    users, pins, eng = frames["latent_users"], frames["latent_pins"], frames["engagements"]
    assert users["n_tastes"].is_between(1, 3).all()
    assert pins["event_noise"].unique().to_list() == [0.10]
    # cold-start pins (popularity 0) are never engaged; every engaged pin has a weight
    engaged = set(eng["pin_id"].unique().to_list())
    cold = set(pins.filter(pl.col("popularity") == 0)["pin_id"].to_list())
    assert cold and not cold & engaged
    # about 90% of engagements (noise 10%, plus noise pins that hit a taste by chance) fall
    # on a pin whose taste is one of the user's active slots
    joined = eng.join(users, on="user_id").join(pins.select("pin_id", "taste"), on="pin_id")
    slots = [
        pl.col(f"taste_{j}").eq(pl.col("taste")) & (pl.col("n_tastes") >= j) for j in (1, 2, 3)
    ]
    on_taste = joined.select(pl.any_horizontal(slots).mean()).item()
    assert 0.88 < on_taste < 0.97
