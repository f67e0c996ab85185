"""Masks: a keyed hash for identifiers (so joins still work), null or redact for the rest."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from pathlib import Path

import polars as pl

REDACTED = "[redacted]"
# Below this many rows a dict lookup beats building polars' hash table for replace_strict.
SMALL_FRAME = 20_000


def token(key: bytes, value: object) -> str:
    """HMAC-SHA256 of a value, truncated to 64 bits: the same key gives the same token."""
    return "h_" + hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()[:16]


@lru_cache(maxsize=64)
def token_table(
    path: Path, column: str, key: bytes
) -> tuple[pl.Series, pl.Series, dict[object, str]]:
    """Raw → token for every distinct value of one column of an immutable dataset file."""
    distinct = pl.scan_parquet(path).select(pl.col(column).unique().drop_nulls()).collect()[column]
    raw = distinct.to_list()
    tokens = [token(key, v) for v in raw]
    return distinct, pl.Series(tokens, dtype=pl.Utf8), dict(zip(raw, tokens, strict=True))


def keyed_hash_expr(column: str, path: Path, key: bytes) -> pl.Expr:
    raw, tokens, _ = token_table(path, column, key)
    return pl.col(column).replace_strict(raw, tokens, default=None, return_dtype=pl.Utf8)


def keyed_hash_frame(frame: pl.DataFrame, column: str, path: Path, key: bytes) -> pl.DataFrame:
    """Mask an already-collected frame; small frames go through the cached dict."""
    if frame.height > SMALL_FRAME:
        return frame.with_columns(keyed_hash_expr(column, path, key).alias(column))
    lookup = token_table(path, column, key)[2]
    values = [None if v is None else lookup.get(v) for v in frame[column].to_list()]
    return frame.with_columns(pl.Series(column, values, dtype=pl.Utf8))


def blank_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Utf8:
        return (
            pl.when(pl.col(column).is_null()).then(None).otherwise(pl.lit(REDACTED)).alias(column)
        )
    return pl.lit(None, dtype=dtype).alias(column)
