"""Masks: a keyed hash for identifiers (so joins still work), null or redact for the rest."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from pathlib import Path

import polars as pl

REDACTED = "[redacted]"


def token(key: bytes, value: object) -> str:
    """HMAC-SHA256 of a value, truncated to 64 bits: the same key gives the same token."""
    return "h_" + hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()[:16]


@lru_cache(maxsize=64)
def token_table(path: Path, column: str, key: bytes) -> tuple[pl.Series, pl.Series]:
    """Raw → token for every distinct value of one column of an immutable dataset file."""
    distinct = pl.scan_parquet(path).select(pl.col(column).unique().drop_nulls()).collect()[column]
    tokens = pl.Series([token(key, v) for v in distinct.to_list()], dtype=pl.Utf8)
    return distinct, tokens


def keyed_hash_expr(column: str, path: Path, key: bytes) -> pl.Expr:
    raw, tokens = token_table(path, column, key)
    return pl.col(column).replace_strict(raw, tokens, default=None, return_dtype=pl.Utf8)


def blank_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Utf8:
        return pl.when(pl.col(column).is_null()).then(None).otherwise(pl.lit(REDACTED)).alias(column)
    return pl.lit(None, dtype=dtype).alias(column)
