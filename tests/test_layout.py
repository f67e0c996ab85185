"""Layout promises: `platform/` is no package (`import platform` is the stdlib's)."""

from __future__ import annotations

import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_platform_is_the_standard_library() -> None:
    assert callable(platform.python_version)
    assert not (REPO / "platform" / "__init__.py").exists()


def test_sdk_imports_no_control_plane_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, warden.sdk; "
        "bad = [m for m in sys.modules"
        " if m.startswith('warden.') and not m.startswith('warden.sdk')]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
