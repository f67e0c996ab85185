"""Segment profiles and image definitions, as data: validated, hashed, read from the machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from warden.config import REPO_ROOT, SandboxSettings
from warden.errors import Forbidden, Unprocessable
from warden.sandbox import images
from warden.sandbox.profiles import LaunchRequest, load_profiles, resolve

PROFILES = REPO_ROOT / "sandboxes" / "profiles.toml"


def test_shipped_profiles_keep_both_promises() -> None:
    profiles = load_profiles(PROFILES)
    ml, dev = profiles["ml"], profiles["app-dev"]
    assert ml.network == "none" and ml.gateway_socket and ml.data_access
    assert dev.network == "internal" and not dev.gateway_socket and not dev.data_access
    for p in (ml, dev):
        assert p.cap_drop == ("ALL",) and p.no_new_privileges and p.read_only_root
        assert not p.user.startswith("0")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ('network = "none"\ngateway_socket = true', None),
        ('network = "bridge"\ngateway_socket = true', "must have network 'none'"),
        ('user = "0:0"', "never run as root"),
        ('cap_drop = ["NET_RAW"]', "drop ALL"),
        ('seccomp = "unconfined"', "seccomp"),
        ("read_only_root = false", "read-only root"),
        ('memory = "64g"', "above their maximum"),
    ],
)
def test_profiles_that_weaken_a_sandbox_are_rejected(
    tmp_path: Path, change: str, problem: str | None
) -> None:
    text = PROFILES.read_text()
    head, ml = text.split("[segments.ml]", 1)
    ml_body, rest = ml.split("[segments.app-dev]", 1)
    lines = [
        ln
        for ln in ml_body.splitlines()
        if ln.split("=")[0].strip() not in {c.split("=")[0].strip() for c in change.splitlines()}
    ]
    path = tmp_path / "profiles.toml"
    path.write_text(
        head + "[segments.ml]\n" + change + "\n" + "\n".join(lines) + "\n[segments.app-dev]" + rest
    )
    if problem is None:
        assert load_profiles(path)["ml"].network == "none"
    else:
        with pytest.raises(Unprocessable, match=problem):
            load_profiles(path)


def test_resolve_uses_defaults_and_refuses_what_lies_outside() -> None:
    profiles = load_profiles(PROFILES)
    ok = resolve(profiles, LaunchRequest(segment="ml", command=["true"]), ["training"])
    assert ok.limits.memory == profiles["ml"].memory and ok.datasets == ()
    with pytest.raises(Forbidden):
        resolve(profiles, LaunchRequest(segment="ml", command=["x"], timeout=10**7), ["training"])


def test_mirror_is_read_from_the_machines_apt_sources(tmp_path: Path) -> None:
    folder = tmp_path / "sources.list.d"
    folder.mkdir()
    (folder / "a.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.invalid\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    assert images.read_mirror("bookworm", tmp_path) == "http://mirror.invalid/debian"
    (folder / "a.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://old.invalid/debian bookworm main contrib\n"
    )
    assert images.read_mirror("bookworm", tmp_path) == "http://old.invalid/debian"
    with pytest.raises(Exception, match="WARDEN_SANDBOX_MIRROR"):
        images.read_mirror("trixie", tmp_path)


def test_tags_hash_the_inputs_and_change_only_with_them(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "sandboxes", repo / "sandboxes")
    shutil.copytree(
        REPO_ROOT / "platform" / "warden" / "sdk",
        repo / "platform/warden/sdk",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(REPO_ROOT / "platform/warden/__init__.py", repo / "platform/warden/__init__.py")
    shutil.copy(REPO_ROOT / "pyproject.toml", repo / "pyproject.toml")
    settings = SandboxSettings(definitions_dir=repo / "sandboxes")
    defs = images.load_defs(settings, repo)
    ml, dev = images.image_tag(defs, "ml"), images.image_tag(defs, "app-dev")
    assert ml.startswith("warden-ml:") and dev.startswith("warden-app-dev:")
    assert images.image_tag(images.load_defs(settings, repo), "ml") == ml
    (repo / "platform/warden/sdk/client.py").write_text("# changed\n")
    changed = images.load_defs(settings, repo)
    assert images.image_tag(changed, "ml") != ml
    assert images.base_tag(changed) == images.base_tag(defs)
    # The ML image carries the SDK, never the control plane.
    sources = [rel for rel, _ in images._source_files(defs, defs.images["ml"])]
    assert all(
        s.startswith(("platform/warden/sdk/", "platform/warden/__init__.py", "platform/warden_ml"))
        for s in sources
    )


def test_one_builder_at_a_time_per_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two test workers (or two `warden sandbox build`s) on a fresh machine: the second waits
    for the first instead of building the same images beside it."""
    import threading

    inside: list[str] = []
    first_in, let_go = threading.Event(), threading.Event()

    def ensure(*args: object, **_kw: object) -> images.Built:
        who = threading.current_thread().name
        inside.append(who)
        if who == "first":
            first_in.set()
            assert let_go.wait(30)
        inside.append(f"{who} done")
        return images.Built("base", "warden-base:x", False, 0.0)

    monkeypatch.setattr(images, "_ensure_base", ensure)
    settings = SandboxSettings(cache_dir=tmp_path / "cache")

    def build() -> None:
        images.build_all(None, settings, [], lambda _line: None)

    first = threading.Thread(target=build, name="first")
    second = threading.Thread(target=build, name="second")
    first.start()
    assert first_in.wait(30)
    second.start()
    second.join(0.5)
    assert second.is_alive() and inside == ["first"]  # waiting for the first builder
    let_go.set()
    first.join(30)
    second.join(30)
    assert inside == ["first", "first done", "second", "second done"]
