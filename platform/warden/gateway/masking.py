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


def token(key: bytes, value: object) -> int | str:
    digest = hmac.new(key, str(value).encode(), hashlib.sha256).digest()
    if isinstance(value, int):
        return int.from_bytes(digest[:8], "big", signed=True)
    return "h_" + digest[:8].hex()


@lru_cache(maxsize=64)
def token_table(path: Path, column: str, key: bytes) -> tuple[pl.Series, pl.Series]:
    """Raw → token for every distinct value of one column of an immutable dataset file."""
    distinct = pl.scan_parquet(path).select(pl.col(column).unique().drop_nulls()).collect()[column]
    dtype = pl.Int64 if distinct.dtype.is_integer() else pl.Utf8
    return distinct, pl.Series([token(key, v) for v in distinct.to_list()], dtype=dtype)


def masked_dtype(dtype: str) -> str:
    """The type a masked identifier column has in a read's result."""
    return "Int64" if dtype.startswith(("Int", "UInt")) else "Utf8"


def keyed_hash_expr(column: str, path: Path, key: bytes) -> pl.Expr:
    raw, tokens = token_table(path, column, key)
    return pl.col(column).replace_strict(raw, tokens, default=None, return_dtype=tokens.dtype)


def blank_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Utf8:
        redacted = pl.when(pl.col(column).is_null()).then(None).otherwise(pl.lit(REDACTED))
        return redacted.alias(column)
    return pl.lit(None, dtype=dtype).alias(column)
