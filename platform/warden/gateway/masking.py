"""Masks: a keyed hash for identifiers (so joins still work), null or redact for the rest.

Identifier masks keep the column's type: an integer id becomes a 64-bit keyed hash (an
integer), a text id becomes "h_" + 16 hex digits. Same key, same token, so masked columns
still join across datasets; without the key, a token can't be turned back into an id.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from pathlib import Path

import polars as pl

REDACTED = "[redacted]"
SMALL_FRAME = 20_000


def token(key: bytes, value: object) -> int | str:
    digest = hmac.new(key, str(value).encode(), hashlib.sha256).digest()
    if isinstance(value, int):
        return int.from_bytes(digest[:8], "big", signed=True)
    return "h_" + digest[:8].hex()


@lru_cache(maxsize=64)
def token_table(
    path: Path, column: str, key: bytes
) -> tuple[pl.Series, pl.Series, dict[object, object]]:
    """Raw → token for every distinct value of one column of an immutable dataset file."""
    distinct = pl.scan_parquet(path).select(pl.col(column).unique().drop_nulls()).collect()[column]
    dtype = pl.Int64 if distinct.dtype.is_integer() else pl.Utf8
    raw = distinct.to_list()
    tokens = [token(key, v) for v in raw]
    return distinct, pl.Series(tokens, dtype=dtype), dict(zip(raw, tokens, strict=True))


def masked_dtype(dtype: str) -> str:
    """The type a masked identifier column has in a read's result."""
    return "Int64" if dtype.startswith(("Int", "UInt")) else "Utf8"


def keyed_hash_expr(column: str, path: Path, key: bytes) -> pl.Expr:
    raw, tokens, _ = token_table(path, column, key)
    return pl.col(column).replace_strict(raw, tokens, default=None, return_dtype=tokens.dtype)


def keyed_hash_frame(frame: pl.DataFrame, column: str, path: Path, key: bytes) -> pl.DataFrame:
    """Mask a collected frame. Few rows: look tokens up in the cached dict, which costs far
    less than building polars' hash table over every distinct id of a large dataset."""
    if frame.height > SMALL_FRAME:
        return frame.with_columns(keyed_hash_expr(column, path, key).alias(column))
    _, tokens, lookup = token_table(path, column, key)
    values = [None if v is None else lookup.get(v) for v in frame[column].to_list()]
    return frame.with_columns(pl.Series(column, values, dtype=tokens.dtype))


def blank_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Utf8:
        redacted = pl.when(pl.col(column).is_null()).then(None).otherwise(pl.lit(REDACTED))
        return redacted.alias(column)
    return pl.lit(None, dtype=dtype).alias(column)
