"""Masks and Arrow streams, without the API: every fast path gives the tokens and bytes of
the plain definitions (one HMAC per value; one IPC stream written in one go)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pytest

from warden.errors import Unprocessable
from warden.gateway import masking
from warden.gateway.arrow import IPC_OPTIONS, ONE_CALL_ROWS, ArrowStream, to_arrow
from warden.gateway.stream import HASH_BEHIND, LiveStream, Outcome

KEY = b"k" * 32


def _write(tmp_path: Path, name: str, frame: pl.DataFrame) -> Path:
    path = tmp_path / f"{name}.parquet"
    frame.write_parquet(path)
    return path


def _expected(values: list[object]) -> list[object]:
    return [None if v is None else masking.token(KEY, v) for v in values]


@pytest.mark.parametrize(
    ("name", "ids", "dense"),
    [
        ("compact", [5, 6, 7, 9, 5, None, 12, 6], True),
        ("negative", [-3, -1, 0, 2, -3], True),
        ("sparse", [1, 10**12, 7, 10**12, None], False),
        ("text", ["u1", "u2", None, "u1", "zz"], False),
    ],
)
@pytest.mark.parametrize("rows", [1, 30_000])  # the small-frame and the large-frame paths
def test_masks_equal_one_keyed_hash_per_value(
    tmp_path: Path, name: str, ids: list[object], dense: bool, rows: int
) -> None:
    repeated = (ids * (rows // len(ids) + 1))[: max(rows, len(ids))]
    frame = pl.DataFrame({"id": repeated, "n": range(len(repeated))})
    path = _write(tmp_path, name, frame)
    masking.forget_tables()
    assert (masking.token_table(path, "id", KEY).dense is not None) is dense
    expected = _expected(repeated)

    assert masking.keyed_hash_frame(frame, "id", path, KEY)["id"].to_list() == expected
    lazy = pl.scan_parquet(path).with_columns(masking.keyed_hash_expr("id", path, KEY).alias("id"))
    assert lazy.collect()["id"].to_list() == expected
    # A frame of many chunks keeps its order (and, on the dense path, its chunk layout).
    chunked = pl.concat([frame.slice(0, 3), frame.slice(3)], rechunk=False)
    masked = masking.keyed_hash_frame(chunked, "id", path, KEY)
    assert masked["id"].to_list() == expected
    if dense:
        assert masked["id"].n_chunks() == chunked["n"].n_chunks() == 2


def test_values_missing_from_the_file_mask_to_null(tmp_path: Path) -> None:
    path = _write(tmp_path, "ids", pl.DataFrame({"id": [10, 11, 12, 14]}))
    masking.forget_tables()
    other = pl.DataFrame({"id": [10, 13, 15, 9, -(2**63), 2**63 - 1, None]})
    masked = masking.keyed_hash_frame(other, "id", path, KEY)["id"].to_list()
    assert masked == [masking.token(KEY, 10), None, None, None, None, None, None]
    expr = other.with_columns(masking.keyed_hash_expr("id", path, KEY).alias("id"))
    assert expr["id"].to_list() == masked


@pytest.mark.parametrize(
    "ids", [[5, 6, None, 9, 5] * 6_000, ["u1", None, "u2", "u1", "zz"] * 6_000]
)
def test_a_stream_batch_masked_before_the_file_table_is_built_gets_the_same_tokens(
    tmp_path: Path, ids: list[object]
) -> None:
    frame = pl.DataFrame({"id": ids, "n": range(len(ids))})
    path = _write(tmp_path, "stream", frame)
    masking.forget_tables()
    masking._built.clear()
    # cold: masked with the batch's own tokens, and the file's table left unbuilt
    assert masking.keyed_hash_frame(frame, "id", path, KEY, wait=False)["id"].to_list() == (
        _expected(ids)
    )
    assert masking.built_table(path, "id", KEY) is None
    # a later batch builds it; from then on a first batch uses it
    assert masking.keyed_hash_frame(frame, "id", path, KEY)["id"].to_list() == _expected(ids)
    assert masking.built_table(path, "id", KEY) is masking.token_table(path, "id", KEY)
    batch = frame.slice(7, 20_001)
    assert masking.keyed_hash_frame(batch, "id", path, KEY, wait=False)["id"].to_list() == (
        _expected(batch["id"].to_list())
    )


def test_a_stream_batch_of_nested_ids_is_refused_without_waiting(tmp_path: Path) -> None:
    frame = pl.DataFrame({"id": [[1, 2], [3]]})
    path = _write(tmp_path, "nested", frame)
    masking.forget_tables()
    with pytest.raises(Unprocessable):
        masking.keyed_hash_frame(frame, "id", path, KEY, wait=False)


def _reference(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa_ipc.new_stream(sink, table.schema, options=IPC_OPTIONS) as writer:
        for batch in table.to_batches(max_chunksize=128 * 1024):
            writer.write_batch(batch)
    return bytes(sink.getvalue())


def _frame(rows: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": range(rows),
            "short": [("save", "click", None)[i % 3] for i in range(rows)],
            "long": [f"a string well past twelve bytes {i}" for i in range(rows)],
            "x": [float(i) for i in range(rows)],
        }
    )


@pytest.mark.parametrize("rows", [0, 5, 300_000])
def test_stream_is_exactly_the_ipc_stream_and_its_size(rows: int) -> None:
    frame = _frame(rows)
    stream = ArrowStream(frame)
    body = b"".join(stream)
    assert len(body) == stream.size
    reference = _reference(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))
    if rows > ONE_CALL_ROWS:  # pyarrow's writer, over the table's own buffers
        assert body == reference
    # a small answer is written by polars in one call: the same schema and rows
    got, want = pa_ipc.open_stream(body).read_all(), pa_ipc.open_stream(reference).read_all()
    assert got.schema == want.schema and got.equals(want)


@pytest.mark.parametrize("views", [False, True])
@pytest.mark.parametrize("long_text", [False, True])
def test_a_small_answer_in_one_call_has_the_layout_of_the_other_path(
    views: bool, long_text: bool
) -> None:
    """Both writers give each column the same layout: view only for all-inline text (with
    a long text column in the view layout, the answer takes the other path)."""
    frame = _frame(50) if long_text else _frame(50).drop("long")
    one_call = pa_ipc.open_stream(b"".join(ArrowStream(frame, views=views))).read_all()
    other = pa_ipc.open_stream(_reference(to_arrow(frame, views=views))).read_all()
    assert one_call.schema == other.schema and one_call.equals(other)
    assert pl.DataFrame(pl.from_arrow(one_call)).equals(frame)


@pytest.mark.parametrize("rows", [5, 300_000])
def test_view_layout_only_for_inline_text_and_the_rows_are_the_same(rows: int) -> None:
    frame = pl.concat([_frame(rows), _frame(rows)], rechunk=False)
    stream = ArrowStream(frame, views=True)
    body = b"".join(stream)
    assert len(body) == stream.size
    table = pa_ipc.open_stream(body).read_all()
    assert table.schema.field("short").type == pa.string_view()
    assert table.schema.field("long").type == pa.large_string()  # never whole shared buffers
    assert table.schema.field("id").type == pa.int64()
    assert pl.DataFrame(pl.from_arrow(table)).equals(frame)


def _live(frames: list[pl.DataFrame], *, views: bool) -> tuple[bytes, list[Outcome]]:
    ended: list[Outcome] = []
    stream = LiveStream(frames[:1], iter(frames[1:]), ended.append, stream_id="s", views=views)
    sent = b""
    while (pieces := stream.next_pieces()) is not None:
        sent += b"".join(pieces)
    stream.finish(complete=True)
    return sent, ended


def test_a_live_stream_in_view_layout_keeps_its_first_batch_s_schema() -> None:
    """The first batch decides each text column's layout; a later batch whose strings in a
    view column are not all inline is compacted into fresh views (never the whole buffer a
    filtered batch still points into), and the rows are the ones sent in the classic layout."""
    wide = _frame(200_000).with_columns(pl.col("long").alias("short"))
    frames = [_frame(1_000), wide.filter(pl.col("id") < 10), _frame(300_000)]
    sent, (outcome,) = _live(frames, views=True)
    classic, _ = _live(frames, views=False)
    table = pa_ipc.open_stream(sent).read_all()
    assert table.schema.field("short").type == pa.string_view()
    assert table.schema.field("long").type == pa.large_string()
    expected = pl.concat(frames)
    assert pl.DataFrame(pl.from_arrow(table)).equals(expected)
    assert pl.DataFrame(pl.from_arrow(pa_ipc.open_stream(classic).read_all())).equals(expected)
    assert outcome.complete and outcome.rows == expected.height and outcome.bytes == len(sent)
    assert outcome.sha256 == hashlib.sha256(sent).hexdigest()
    # the ten-row batch sent its ten long strings, not the 200,000 its frame points into
    assert len(sent) < len(_live([frames[0], frames[2]], views=True)[0]) + 50_000


def test_a_live_stream_s_digest_is_of_every_chunk_handed_in_order_while_hashing_lags() -> None:
    """The hashing runs in the stream's own thread, behind the sending: the completion waits
    for it and names the digest of exactly the bytes handed over, in order; and the making
    of a next chunk waits while more than HASH_BEHIND handed chunks are not hashed yet (made
    from frames already in memory, chunks come far faster than they are hashed)."""
    frames = [pl.DataFrame({"x": range(i, i + 1_000_000)}) for i in range(16)]  # no copy to Arrow
    ended: list[Outcome] = []
    stream = LiveStream(frames[:1], iter(frames[1:]), ended.append, stream_id="s")
    sent, lags = bytearray(), []
    while (chunk := stream.next_chunk()) is not None:
        lags.append(stream.unhashed)
        stream.handed(chunk)
        sent += b"".join(chunk.pieces)
    stream.finish(complete=True)
    (outcome,) = ended
    assert max(lags) <= HASH_BEHIND
    assert outcome.complete and outcome.bytes == len(sent) and outcome.rows == 16_000_000
    assert outcome.sha256 == hashlib.sha256(sent).hexdigest()
    got = pl.DataFrame(pl.from_arrow(pa_ipc.open_stream(bytes(sent)).read_all()))
    assert got.equals(pl.concat(frames))


def test_a_sliced_frame_never_sends_the_strings_it_left_out() -> None:
    frame = _frame(200_000)
    small = frame.head(10)
    assert ArrowStream(small, views=True).size < 10_000
    assert ArrowStream(frame.filter(pl.col("id") < 10), views=True).size < 10_000


def test_a_live_stream_counts_what_was_handed_over_not_what_was_made_ahead() -> None:
    """The transport makes the next chunk while one is sent: a client that goes away then
    leaves a completion that counts only the chunks handed to the transport."""
    frames = [_frame(1_000), _frame(2_000), _frame(3_000)]
    ended: list[Outcome] = []
    stream = LiveStream(frames[:1], iter(frames[1:]), ended.append, stream_id="s")
    first, ahead = stream.next_chunk(), stream.next_chunk()
    assert first is not None and ahead is not None and not first.last
    stream.handed(first)
    stream.finish(complete=False, reason="the client went away")
    (outcome,) = ended
    sent = b"".join(first.pieces)
    assert not outcome.complete and outcome.rows == 1_000 and outcome.bytes == len(sent)
    assert outcome.sha256 == hashlib.sha256(sent).hexdigest()
