"""Data at rest is the platform's alone: a private umask makes every file 0600 and folder 0700,
and `warden serve` / `warden worker` refuse a data folder or SQLite file others can reach."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.serving import warden_cli

from warden.config import Settings
from warden.core.filesystem import UnsafeDataDir, check_data_at_rest, restrict_umask
from warden.core.platform import load_mask_key


@pytest.fixture
def private_umask() -> Iterator[None]:
    previous = restrict_umask()
    yield
    os.umask(previous)


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        config_dir=tmp_path / "config",
        **extra,  # type: ignore[arg-type]
    )


def _modes(root: Path) -> dict[str, str]:
    out = {".": f"{stat.S_IMODE(root.stat().st_mode):04o}"}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = f"{stat.S_IMODE(path.lstat().st_mode):04o}"
    return out


def test_world_readable_data_dir_is_refused_with_the_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    with pytest.raises(UnsafeDataDir) as refused:
        check_data_at_rest(_settings(tmp_path))
    assert f"chmod -R go-rwx {data}" in refused.value.detail
    assert "0755" in refused.value.detail
    for mode in (0o750, 0o705, 0o720, 0o701, 0o710):
        data.chmod(mode)
        with pytest.raises(UnsafeDataDir):
            check_data_at_rest(_settings(tmp_path))
    data.chmod(0o700)
    check_data_at_rest(_settings(tmp_path))


def test_readable_sqlite_file_is_refused_even_in_a_private_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    for name in ("warden.db", "warden.db-wal"):
        path = data / name
        path.write_bytes(b"")
        path.chmod(0o644)
        with pytest.raises(UnsafeDataDir) as refused:
            check_data_at_rest(_settings(tmp_path))
        assert f"chmod go-rwx {path}" in refused.value.detail
        path.chmod(0o600)
    check_data_at_rest(_settings(tmp_path))
    # a SQLite file outside the data folder is checked too
    outside = tmp_path / "elsewhere.db"
    outside.write_bytes(b"")
    outside.chmod(0o666)
    with pytest.raises(UnsafeDataDir) as refused:
        check_data_at_rest(_settings(tmp_path, database_url=f"sqlite:///{outside}"))
    assert f"chmod go-rwx {outside}" in refused.value.detail


def test_a_missing_data_dir_is_created_private(tmp_path: Path) -> None:
    check_data_at_rest(_settings(tmp_path))
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


def test_serve_and_worker_refuse_an_open_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    for args in (["serve", "--port", "1"], ["worker", "--once"]):
        done = warden_cli(tmp_path, *args)
        assert done.returncode != 0, (args, done.stdout, done.stderr)
        said = " ".join((done.stdout + done.stderr).split())
        assert f"chmod -R go-rwx {data}" in said, said
        assert "refusing to start" in said
    assert stat.S_IMODE(data.stat().st_mode) == 0o755  # told, not silently changed


def test_warden_init_makes_everything_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)  # e.g. made by a package manager or an earlier tool
    done = warden_cli(tmp_path, "init")
    assert done.returncode == 0, done.stdout + done.stderr
    modes = _modes(data)
    assert modes["."] == "0700"
    assert modes["warden.db"] == "0600"
    assert all(m == "0600" for p, m in modes.items() if (data / p).is_file()), modes
    assert all(m == "0700" for p, m in modes.items() if (data / p).is_dir()), modes


def test_files_written_under_the_private_umask_are_0600(
    tmp_path: Path, private_umask: None, taste_graph: list
) -> None:
    from warden.catalog.seeding import register_generated
    from warden.core.platform import build_platform
    from warden.db.session import unit_of_work
    from warden.identity.bootstrap import initialize

    settings = _settings(tmp_path)
    initialize(settings, tenant="acme", admin="admin")
    state = build_platform(settings)
    try:
        with unit_of_work(state.sessions) as db:
            register_generated(db, taste_graph, settings.datasets_dir, "acme", "admin", {})
        load_mask_key(settings)
    finally:
        state.engine.dispose()
    check_data_at_rest(settings)
    modes = _modes(settings.data_dir)
    files = {p: m for p, m in modes.items() if (settings.data_dir / p).is_file()}
    dirs = {p: m for p, m in modes.items() if (settings.data_dir / p).is_dir()}
    assert any(p.endswith(".parquet") for p in files), sorted(files)
    assert "mask.key" in files and "warden.db" in files
    assert set(files.values()) == {"0600"}, files
    assert set(dirs.values()) == {"0700"}, dirs


def test_sandbox_images_are_built_under_a_shared_umask(private_umask: None, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Image files (the SDK the sandbox's non-root user imports) are not Warden data: building
    them under the private umask would make them unreadable inside the image."""
    from warden.config import SandboxSettings
    from warden.sandbox import images

    seen: list[int] = []

    def record(*_args: object, **_kw: object) -> images.Built:
        current = os.umask(0o077)
        os.umask(current)
        seen.append(current)
        return images.Built("x", "x:y", False, 0.0)

    monkeypatch.setattr(images, "_ensure_base", record)
    monkeypatch.setattr(images, "_ensure_image", record)
    images.build_all(None, SandboxSettings(), ["ml"], lambda _line: None)
    assert seen == [0o022, 0o022]
    current = os.umask(0o077)
    assert current == 0o077  # restored
