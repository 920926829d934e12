"""Steward's container images, built on a Docker engine through the ``docker`` package.

Four images, one Dockerfile each under ``deployments/docker/``: PostgreSQL, the MLflow server,
the gateway and the flow worker. Their Dockerfiles keep the public Debian and Python bases as
defaults; where no registry can be pulled from, :func:`ensure_local_base` makes a Debian
bookworm base with ``debootstrap`` and imports it, once per engine (found again by name and
recipe label), and the builds take it through ``--build-arg``.

Builds that install from the package registries may need the host's CA bundle (a proxy that
inspects TLS): it goes into the build context beside ``with-build-ca.sh``, which only build
stages copy and use; no runtime stage copies it. ``docs/operations.md`` tells the operator's side.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = Path("deployments") / "docker"
BUILD_CA_IN_CONTEXT = (DOCKER_DIR / "build-ca" / "ca-certificates.crt").as_posix()
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

PUBLIC_PYTHON_IMAGE = "python:3.11-slim-bookworm"
PUBLIC_DEBIAN_IMAGE = "debian:bookworm-slim"
LOCAL_BASE_IMAGE = "steward-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: What the local base is made of; its hash labels the image, so a changed recipe is rebuilt.
BASE_RECIPE = ("debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm")
RECIPE_LABEL = "org.steward.base.recipe"


class BaseChoice(StrEnum):
    """Where the images' base comes from."""

    LOCAL = "local"  # made here with debootstrap (no registry needed)
    PUBLIC = "public"  # pulled from a registry: the Dockerfiles' defaults


class ImageError(RuntimeError):
    """An image could not be made; the message says what failed and what to do."""


@dataclass(frozen=True)
class ImageSpec:
    """One of Steward's images: its repository name, Dockerfile and the build argument naming its base."""

    name: str
    dockerfile: str  # under deployments/docker/
    base_argument: str  # PYTHON_IMAGE (a Python base) or BASE_IMAGE (plain Debian)

    @property
    def dockerfile_path(self) -> str:
        return (DOCKER_DIR / self.dockerfile).as_posix()

    def base(self, choice: BaseChoice) -> str:
        if choice is BaseChoice.LOCAL:
            return LOCAL_BASE_IMAGE
        return PUBLIC_PYTHON_IMAGE if self.base_argument == "PYTHON_IMAGE" else PUBLIC_DEBIAN_IMAGE


IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("steward-postgres", "Dockerfile.postgres", "BASE_IMAGE"),
    ImageSpec("steward-mlflow", "Dockerfile.mlflow", "PYTHON_IMAGE"),
    ImageSpec("steward-gateway", "Dockerfile.gateway", "PYTHON_IMAGE"),
    ImageSpec("steward-worker", "Dockerfile.worker", "PYTHON_IMAGE"),
)


def image_spec(name: str) -> ImageSpec:
    for spec in IMAGES:
        if spec.name == name or spec.name.removeprefix("steward-") == name:
            return spec
    raise ImageError(f"no image {name!r}; known: {[spec.name for spec in IMAGES]}")


@dataclass(frozen=True)
class BaseImage:
    name: str
    built: bool  # False: found on the engine with the same recipe
    seconds: float


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str
    image_id: str
    size_bytes: int
    seconds: float
    labels: dict[str, str]

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


@dataclass(frozen=True)
class BuildInfo:
    """What the labels say about the code: the semantic version and the commit."""

    version: str
    commit: str


def build_info(root: Path = ROOT) -> BuildInfo:
    """The version from pyproject.toml and the checked-out commit (``unknown`` outside a git checkout)."""
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"  # a source archive: the version label still says what it is
    return BuildInfo(version, commit)


def recipe_digest() -> str:
    return hashlib.sha256(" ".join((*BASE_RECIPE, *SLIMMED)).encode()).hexdigest()[:16]


#: Left by debootstrap, needed by no image: the downloaded packages and the package lists (a
#: Dockerfile that installs packages runs ``apt-get update`` itself).
SLIMMED = ("var/cache/apt/archives", "var/lib/apt/lists")


def slim_rootfs(rootfs: Path) -> None:
    for folder in SLIMMED:
        for entry in (rootfs / folder).glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()


def docker_client() -> Any:
    """The engine of ``DOCKER_HOST`` (or the local socket), or an error saying how to start one."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as error:
        raise ImageError(
            f"no Docker engine answers at {os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')} ({error}); "
            "start one (as root: dockerd --storage-driver=vfs --data-root=/var/lib/steward-docker &) or set DOCKER_HOST"
        ) from error
    return client


def find_local_base(client: Any) -> Any | None:
    """The local base on this engine if it was made from the current recipe."""
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(LOCAL_BASE_IMAGE)
    except ImageNotFound:
        return None
    return image if (image.labels or {}).get(RECIPE_LABEL) == recipe_digest() else None


def ensure_local_base(client: Any, echo: Callable[[str], None] = print, mirror: str = DEBIAN_MIRROR) -> BaseImage:
    """Find the local Debian base on the engine, or make it (debootstrap, a few minutes; root only)."""
    started = time.monotonic()
    if find_local_base(client) is not None:
        return BaseImage(LOCAL_BASE_IMAGE, built=False, seconds=time.monotonic() - started)
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed: `apt-get install debootstrap` (it makes the local base image)")
    if os.geteuid() != 0:
        raise ImageError("making the local base image needs root (debootstrap); run `steward images build` as root "
                         "once on this machine, or use --base public where a registry can be pulled from")
    echo(f"making {LOCAL_BASE_IMAGE}: {' '.join(BASE_RECIPE)} (a few minutes)")
    with tempfile.TemporaryDirectory(prefix="steward-base-", dir="/var/tmp") as scratch:
        rootfs = Path(scratch) / "rootfs"
        command = [*BASE_RECIPE, str(rootfs), mirror]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ImageError(f"debootstrap failed ({result.returncode}); its last lines:\n"
                             + "\n".join(result.stderr.splitlines()[-10:] or result.stdout.splitlines()[-10:]))
        slim_rootfs(rootfs)
        archive = Path(scratch) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        repository, tag = LOCAL_BASE_IMAGE.split(":")
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag, changes=[
            f"LABEL {RECIPE_LABEL}={recipe_digest()}",
            'CMD ["/bin/bash"]',
        ])
    if find_local_base(client) is None:
        raise ImageError(f"the engine did not keep the imported {LOCAL_BASE_IMAGE}; see `docker images`")
    return BaseImage(LOCAL_BASE_IMAGE, built=True, seconds=time.monotonic() - started)


def build_context(spec: ImageSpec, root: Path = ROOT, ca_bundle: Path | None = None) -> io.BytesIO:
    """The build context of ``spec``: what its own ``.dockerignore`` admits, plus the build-stage CA bundle."""
    from docker.utils.build import tar

    ignore = root / f"{spec.dockerfile_path}.dockerignore"
    if not ignore.exists():
        raise ImageError(f"{ignore} is missing: every Dockerfile has its own .dockerignore")
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    context = io.BytesIO()
    tar(str(root), exclude=patterns, dockerfile=(spec.dockerfile_path, None), fileobj=context)
    if ca_bundle is not None:
        data = ca_bundle.read_bytes()
        context.seek(0, io.SEEK_END)
        context.seek(0)
        with tarfile.open(fileobj=context, mode="a") as archive:
            info = tarfile.TarInfo(BUILD_CA_IN_CONTEXT)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    context.seek(0)
    return context


def _build_log(stream: Iterator[dict[str, Any]], echo: Callable[[str], None] | None) -> tuple[str | None, list[str]]:
    image_id, lines = None, []
    for chunk in stream:
        if "error" in chunk:
            lines.append(chunk["error"].rstrip())
            raise ImageError("\n".join(lines[-15:]))
        text = chunk.get("stream", "").rstrip()
        if text:
            lines.append(text)
            if echo is not None and text.startswith("Step "):
                echo(f"    {text}")
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    return image_id, lines


def build_image(client: Any, spec: ImageSpec, base: BaseChoice, *, root: Path = ROOT,
                ca_bundle: Path | None = None, info: BuildInfo | None = None,
                echo: Callable[[str], None] | None = print) -> BuiltImage:
    """Build one image, tagged ``<name>:<version>`` and ``<name>:latest``, on host networking."""
    info = info or build_info(root)
    tag = f"{spec.name}:{info.version}"
    started = time.monotonic()
    stream = client.api.build(
        fileobj=build_context(spec, root, ca_bundle), custom_context=True, dockerfile=spec.dockerfile_path,
        tag=tag, rm=True, forcerm=True, decode=True, network_mode="host",
        buildargs={spec.base_argument: spec.base(base), "VERSION": info.version, "GIT_COMMIT": info.commit},
    )
    image_id, _ = _build_log(stream, echo)
    image = client.images.get(image_id or tag)
    image.tag(spec.name, "latest")
    return BuiltImage(spec.name, tag, image.id, int(image.attrs["Size"]), time.monotonic() - started,
                      dict(image.labels or {}))


def build_images(client: Any, base: BaseChoice, *, names: tuple[str, ...] = (), root: Path = ROOT,
                 ca_bundle: Path | None = None, echo: Callable[[str], None] = print) -> list[BuiltImage]:
    """Build the named images (all by default), making the local base first when ``base`` is local.

    One build at a time per machine: a second waits for the first, then finds its layers cached.
    """
    with _one_build_at_a_time(echo):
        return _build_images(client, base, names=names, root=root, ca_bundle=ca_bundle, echo=echo)


BUILD_LOCK = Path(tempfile.gettempdir()) / "steward-images.lock"


@contextlib.contextmanager
def _one_build_at_a_time(echo: Callable[[str], None]) -> Iterator[None]:
    with BUILD_LOCK.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"another image build holds {BUILD_LOCK}: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_images(client: Any, base: BaseChoice, *, names: tuple[str, ...], root: Path,
                  ca_bundle: Path | None, echo: Callable[[str], None]) -> list[BuiltImage]:
    specs = [image_spec(name) for name in names] if names else list(IMAGES)
    if base is BaseChoice.LOCAL:
        made = ensure_local_base(client, echo)
        echo(f"{made.name}: {'made' if made.built else 'found'} ({made.seconds:.0f} s)")
    info = build_info(root)
    built = []
    for spec in specs:
        echo(f"building {spec.name}:{info.version} from {spec.dockerfile_path} on {spec.base(base)}")
        image = build_image(client, spec, base, root=root, ca_bundle=ca_bundle, info=info, echo=echo)
        echo(f"  {image.tag}: {image.size_mb:.0f} MB in {image.seconds:.0f} s")
        built.append(image)
    return built
