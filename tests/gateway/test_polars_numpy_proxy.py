"""polars reaches numpy through a lazy proxy whose first use copies numpy's names over its own
(numpy's `_globals` module among them): two threads using it for the first time at once could
fail a read with "'module' object does not support item assignment" (seen with concurrent
first reads in a fresh process). Importing the gateway replaces the proxy, in one thread."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_gateway_leaves_no_lazy_numpy_in_polars() -> None:
    code = (
        "import polars._dependencies as d\n"
        "assert isinstance(vars(d)['numpy'], d._LazyModule), 'polars imported numpy eagerly'\n"
        "import warden.gateway.service\n"
        "print(type(vars(d)['numpy']).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "module"
