"""Printing results: a rich table for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from warden.cli.client import console, fail

FORMATS = ("table", "json")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")


def show(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str, title: str = "") -> None:
    check_format(fmt)
    if fmt == "json":
        console.print_json(json.dumps(list(rows), default=str))
        return
    table = Table(title=title or None)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[_text(row.get(c)) for c in columns])
    console.print(table)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)
