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


# --- imports go one way: domains below the core's process, the API and the CLI above it ------

PACKAGE = REPO / "platform" / "warden"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every warden module `path` imports, at any depth (functions too), but type-only ones."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only |= {id(n) for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("warden")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("warden"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else str(node.module))
    return {m for m in found if m in modules}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def test_nothing_outside_the_api_and_cli_imports_the_api() -> None:
    outside = {
        (mod, dep)
        for mod, deps in _graph().items()
        for dep in deps
        if dep.startswith("warden.api") and not mod.startswith(("warden.api", "warden.cli"))
    }
    assert outside == set()


def test_domains_never_import_the_process() -> None:
    """Domains may take the Platform (warden.core.platform); only entry points run a process."""
    outside = {
        (mod, dep)
        for mod, deps in _graph().items()
        for dep in deps
        if dep == "warden.core.process"
        and not mod.startswith(("warden.api", "warden.cli", "warden.core.process"))
    }
    assert outside == set()


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_long_modules_say_why_at_their_top() -> None:
    unexplained = [
        str(path.relative_to(REPO))
        for path in REPO.joinpath("platform").rglob("*.py")
        if len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES
        and f"over {MAX_LINES} lines" not in "\n".join(path.read_text().splitlines()[:12])
    ]
    assert unexplained == []
