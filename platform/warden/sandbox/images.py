"""Images built on this machine from `sandboxes/`: no registry is ever needed.

The base comes from Debian packages (debootstrap with the mirror from the machine's own apt
sources, then `docker import`); the others are Dockerfiles FROM that base, with Python wheels
downloaded on the host into a wheelhouse (pip inside a container cannot verify the registry's
certificate here) and installed with `--no-index`. A tag is a hash of the image's inputs, so an
unchanged image is never rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warden.config import REPO_ROOT, SandboxSettings
from warden.core.filesystem import shared_umask
from warden.sandbox.driver import SandboxError

BUILDER_VERSION = "1"  # bump to rebuild everything after a change to how images are made
REPO_PREFIX = "warden-"
APT_SOURCES = Path("/etc/apt")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BaseDef:
    suite: str
    variant: str
    include: tuple[str, ...]


@dataclass(frozen=True)
class ImageDef:
    name: str
    dockerfile: Path
    # A path relative to sandboxes/, "pyproject" (the project's deps), or "" (no Python wheels).
    requirements: str
    sources: tuple[str, ...]
    extra: tuple[str, ...] = ()  # requirements added to "pyproject" ones the project lacks


@dataclass(frozen=True)
class ImageDefs:
    root: Path  # the sandboxes/ folder
    repo: Path  # the repository root (sources are relative to it)
    base: BaseDef
    images: dict[str, ImageDef]


@dataclass(frozen=True)
class Built:
    name: str
    tag: str
    built: bool  # False when the tag already existed
    seconds: float


def load_defs(settings: SandboxSettings, repo: Path = REPO_ROOT) -> ImageDefs:
    path = settings.images_path
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        base = raw["base"]
        images = {
            name: ImageDef(
                name=name,
                dockerfile=settings.definitions_dir / body["dockerfile"],
                requirements=str(body.get("requirements", "")),
                sources=tuple(body.get("sources", ())),
                extra=tuple(body.get("extra_requirements", ())),
            )
            for name, body in raw["images"].items()
        }
        return ImageDefs(
            root=settings.definitions_dir,
            repo=repo,
            base=BaseDef(str(base["suite"]), str(base["variant"]), tuple(base["include"])),
            images=images,
        )
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise SandboxError(f"cannot read image definitions {path}: {exc!r}") from exc


# --- tags: a hash of the inputs ----------------------------------------------------------------


def base_tag(defs: ImageDefs) -> str:
    spec = {"v": BUILDER_VERSION, "suite": defs.base.suite, "variant": defs.base.variant}
    spec["include"] = sorted(defs.base.include)  # type: ignore[assignment]
    return f"{REPO_PREFIX}base:{_digest(json.dumps(spec, sort_keys=True).encode())}"


def image_tag(defs: ImageDefs, name: str) -> str:
    image = _image(defs, name)
    h = hashlib.sha256()
    for part in (BUILDER_VERSION, name, base_tag(defs)):
        h.update(part.encode() + b"\0")
    h.update(image.dockerfile.read_bytes() + b"\0")
    h.update(requirements_text(defs, image).encode() + b"\0")
    for rel, path in _source_files(defs, image):
        h.update(rel.encode() + b"\0")
        h.update(path.read_bytes() if path else b"<missing>")
        h.update(b"\0")
    return f"{REPO_PREFIX}{name}:{h.hexdigest()[:12]}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _image(defs: ImageDefs, name: str) -> ImageDef:
    image = defs.images.get(name)
    if image is None:
        raise SandboxError(f"no image named {name!r}; known: {', '.join(sorted(defs.images))}")
    return image


def requirements_text(defs: ImageDefs, image: ImageDef) -> str:
    if not image.requirements:
        return ""
    if image.requirements == "pyproject":
        project = tomllib.loads((defs.repo / "pyproject.toml").read_text(encoding="utf-8"))
        deps = list(project["project"]["dependencies"])
        named = {_project_name(d) for d in deps}
        deps += [e for e in image.extra if _project_name(e) not in named]
        return "\n".join(deps) + "\n"
    return (defs.root / image.requirements).read_text(encoding="utf-8")


def _project_name(requirement: str) -> str:
    return re.split(r"[=<>!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def _source_files(defs: ImageDefs, image: ImageDef) -> Iterator[tuple[str, Path | None]]:
    """(path relative to the repository, file) for each source file, sorted; None if missing."""
    for source in image.sources:
        top = defs.repo / source
        if top.is_file():
            yield source, top
        elif top.is_dir():
            for path in sorted(top.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                    yield path.relative_to(defs.repo).as_posix(), path
        else:
            yield source, None


# --- building ----------------------------------------------------------------------------------


def build_all(
    driver_client: Any,
    settings: SandboxSettings,
    names: Iterable[str],
    progress: Progress,
    *,
    force: bool = False,
) -> list[Built]:
    """Build the base and the named images unless their tags exist; returns what happened."""
    defs = load_defs(settings)
    names = list(names)
    for name in names:
        _image(defs, name)
    # One builder at a time per cache folder: a second process (another test worker, a
    # second `warden sandbox build`) waits, then finds the tags built instead of building too.
    # The process umask is private (core/filesystem.py); image files must be readable inside.
    with _one_builder(settings.cache_dir), shared_umask():
        results = [_ensure_base(driver_client, settings, defs, progress, force=force)]
        for name in names:
            results.append(
                _ensure_image(driver_client, settings, defs, name, progress, force=force)
            )
    return results


@contextmanager
def _one_builder(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / "build.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file closes
        yield


def _exists(client: Any, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _ensure_base(
    client: Any, settings: SandboxSettings, defs: ImageDefs, progress: Progress, *, force: bool
) -> Built:
    tag = base_tag(defs)
    if not force and _exists(client, tag):
        progress(f"base: {tag} is up to date")
        return Built("base", tag, False, 0.0)
    if os.geteuid() != 0:
        raise SandboxError("building the base image runs debootstrap, which needs root")
    if shutil.which("debootstrap") is None:
        raise SandboxError(
            "debootstrap is missing: `apt-get install debootstrap` (scripts/docker-up.sh does it)"
        )
    mirror = settings.mirror or read_mirror(defs.base.suite)
    started = time.monotonic()
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.cache_dir, prefix="rootfs-") as tmp:
        root = Path(tmp) / "root"
        progress(f"base: debootstrap {defs.base.suite} from {mirror}")
        _run(
            [
                "debootstrap",
                f"--variant={defs.base.variant}",
                f"--include={','.join(defs.base.include)}",
                defs.base.suite,
                str(root),
                mirror,
            ],
            progress,
            "base",
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
            for path in (root / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        progress(f"base: docker import → {tag}")
        repository, version = tag.split(":")
        tar_command = ["tar", "-C", str(root), "--numeric-owner", "-c", "."]
        with subprocess.Popen(tar_command, stdout=subprocess.PIPE) as tar:  # noqa: S603,S607
            result = client.api.import_image(
                src=tar.stdout,
                repository=repository,
                tag=version,
                changes=[
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "ENV LANG=C.UTF-8",
                    'CMD ["bash"]',
                    f"LABEL warden.image=base warden.inputs={version}",
                ],
                stream_src=True,
            )
        if tar.returncode != 0:
            raise SandboxError(f"tar of the base root failed ({tar.returncode})")
        if "error" in str(result).lower() and not _exists(client, tag):
            raise SandboxError(f"docker import failed: {str(result)[:500]}")
    seconds = time.monotonic() - started
    progress(f"base: built {tag} in {seconds:.0f}s")
    return Built("base", tag, True, seconds)


def _ensure_image(
    client: Any,
    settings: SandboxSettings,
    defs: ImageDefs,
    name: str,
    progress: Progress,
    *,
    force: bool,
) -> Built:
    image = _image(defs, name)
    tag = image_tag(defs, name)
    if not force and _exists(client, tag):
        _tag_latest(client, tag)
        progress(f"{name}: {tag} is up to date")
        return Built(name, tag, False, 0.0)
    started = time.monotonic()
    requirements = requirements_text(defs, image)
    wheels = wheelhouse(settings, defs, requirements, progress, name) if requirements else None
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.cache_dir, prefix=f"ctx-{name}-") as tmp:
        ctx = Path(tmp)
        shutil.copyfile(image.dockerfile, ctx / "Dockerfile")
        (ctx / "requirements.txt").write_text(requirements, encoding="utf-8")
        (ctx / "wheels").mkdir()
        for wheel in wheels.glob("*.whl") if wheels else ():
            _link_or_copy(wheel, ctx / "wheels" / wheel.name)
        for rel, path in _source_files(defs, image):
            if path is not None:
                target = ctx / "src" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        (ctx / "src" / "platform").mkdir(parents=True, exist_ok=True)
        progress(f"{name}: docker build → {tag}")
        repository, version = tag.split(":")
        stream = client.api.build(
            path=str(ctx),
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            buildargs={"BASE": base_tag(defs)},
            labels={"warden.image": name, "warden.inputs": version},
        )
        tail: list[str] = []
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise SandboxError(
                    f"building {name} failed: {detail}\n" + "".join(tail[-20:]).rstrip()
                )
            line = str(chunk.get("stream", "")).rstrip()
            if line:
                tail.append(line + "\n")
                if line.startswith("Step "):
                    progress(f"{name}: {line}")
    seconds = time.monotonic() - started
    _tag_latest(client, tag)
    progress(f"{name}: built {tag} in {seconds:.0f}s")
    return Built(name, tag, True, seconds)


def _tag_latest(client: Any, tag: str) -> None:
    """Also tag it `latest`, the name docker-compose.yml uses for the service image."""
    repository = tag.split(":")[0]
    client.images.get(tag).tag(repository, "latest")


def wheelhouse(
    settings: SandboxSettings, defs: ImageDefs, requirements: str, progress: Progress, name: str
) -> Path:
    """Download the wheels for these requirements on the host, once per requirements text."""
    folder = settings.cache_dir / "wheels" / _digest(requirements.encode())
    stamp = folder / ".complete"
    if stamp.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    req = folder / "requirements.txt"
    req.write_text(requirements, encoding="utf-8")
    progress(f"{name}: pip download → {folder}")
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", str(folder)]
    command += ["-r", str(req)]
    constraints = defs.repo / "constraints.txt"
    if constraints.exists():
        command += ["-c", str(constraints)]
    _run(command, progress, name, quiet=True)
    stamp.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return folder


def read_mirror(suite: str, apt_dir: Path = APT_SOURCES) -> str:
    """The Debian mirror this machine's apt uses for `suite` (deb822 .sources or .list files)."""
    candidates: list[Path] = []
    if (apt_dir / "sources.list").exists():
        candidates.append(apt_dir / "sources.list")
    folder = apt_dir / "sources.list.d"
    if folder.is_dir():
        candidates += sorted(p for p in folder.iterdir() if p.suffix in (".list", ".sources"))
    for path in candidates:
        text = path.read_text(encoding="utf-8", errors="replace")
        found = _mirror_in_deb822(text, suite) if path.suffix == ".sources" else None
        found = found or _mirror_in_list(text, suite)
        if found:
            return found
    raise SandboxError(
        f"no Debian mirror for {suite!r} in {apt_dir}/sources.list(.d); "
        "set WARDEN_SANDBOX_MIRROR to one"
    )


def _mirror_in_deb822(text: str, suite: str) -> str | None:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
            uris = fields.get("uris", "").split()
            if uris and "main" in fields.get("components", "").split():
                return uris[0]
    return None


def _mirror_in_list(text: str, suite: str) -> str | None:
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 4 and parts[0] == "deb":
            rest = [p for p in parts[1:] if not p.startswith("[")]
            if len(rest) >= 3 and rest[1] == suite and "main" in rest[2:]:
                return rest[0]
    return None


def _run(command: list[str], progress: Progress, label: str, *, quiet: bool = False) -> None:
    tail: list[str] = []
    with subprocess.Popen(  # noqa: S603 - fixed argument lists built here, never a shell
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-30:], line]
            if not quiet and line.startswith("I: "):
                progress(f"{label}: {line[3:].strip()}")
    if proc.returncode != 0:
        raise SandboxError(
            f"{label}: {' '.join(command[:3])}… failed ({proc.returncode}):\n" + "".join(tail)
        )


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
