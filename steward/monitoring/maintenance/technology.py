"""The quarterly technology review: installed key packages against uv.lock, pyproject and the champion's training set."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata
from pathlib import Path

import steward
from steward.findings import Finding, MaintenanceKind, Priority

KEY_PACKAGES = (
    "prefect", "mlflow", "evidently", "scikit-learn", "pandas", "numpy", "scipy", "pyarrow", "fastapi",
    "pydantic", "skops", "fsspec", "uvicorn",
)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_text: str) -> dict[str, tuple[str, ...]]:
    """Package -> versions pinned in a ``uv.lock`` (several when markers split the resolution)."""
    document = tomllib.loads(lock_text)
    pins: dict[str, list[str]] = {}
    for package in document.get("package", []):
        if "version" in package:
            pins.setdefault(normalize(package["name"]), []).append(str(package["version"]))
    return {name: tuple(sorted(set(vs))) for name, vs in pins.items()}


def declared_requirements(pyproject_text: str) -> dict[str, str]:
    """Package -> version specifier from ``[project].dependencies`` of a pyproject.toml."""
    from packaging.requirements import Requirement

    document = tomllib.loads(pyproject_text)
    out = {}
    for line in document.get("project", {}).get("dependencies", []):
        requirement = Requirement(line)
        out[normalize(requirement.name)] = str(requirement.specifier)
    return out


class TechStatus(StrEnum):
    OK = "ok"
    LOCK_NEWER = "lock pins a newer version"
    ENV_NEWER = "installed is newer than the lock"
    NOT_LOCKED = "not in the lock"
    NOT_INSTALLED = "not installed"
    OUTSIDE_DECLARED = "outside the declared range"


@dataclass(frozen=True)
class TechCheck:
    package: str
    installed: str | None
    locked: tuple[str, ...]
    declared: str | None
    trained_with: str | None
    status: TechStatus
    detail: str


def review_technology(
    packages: Iterable[str],
    installed: Mapping[str, str | None],
    locked: Mapping[str, tuple[str, ...]],
    declared: Mapping[str, str],
    trained_with: Mapping[str, str] | None = None,
) -> list[TechCheck]:
    """Installed versions against the lock's pins and pyproject's ranges, and the champion's training set."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    trained = {normalize(k): v for k, v in (trained_with or {}).items()}
    checks = []
    for raw in packages:
        name = normalize(raw)
        have, pins, spec, was = installed.get(name), tuple(locked.get(name, ())), declared.get(name), trained.get(name)
        notes = []
        if was and have and was != have:
            notes.append(f"the champion was trained with {was}")
        if have is None:
            status, detail = TechStatus.NOT_INSTALLED, "not installed in this environment"
        elif not pins:
            status, detail = TechStatus.NOT_LOCKED, f"{have} installed; the lock file does not pin it"
        elif spec and not SpecifierSet(spec).contains(have, prereleases=True):
            status, detail = TechStatus.OUTSIDE_DECLARED, f"{have} installed; pyproject requires {spec}"
        elif have in pins:
            status, detail = TechStatus.OK, f"{have} as locked"
        else:
            try:
                newest = max(pins, key=Version)
                newer = Version(newest) > Version(have)
            except InvalidVersion:
                newest, newer = pins[-1], False
            status = TechStatus.LOCK_NEWER if newer else TechStatus.ENV_NEWER
            detail = (
                f"{have} installed, the lock pins {newest}: run `uv sync --locked`"
                if newer
                else f"{have} installed, newer than the locked {', '.join(pins)}: the environment drifted from the "
                "lock; run `uv sync --locked`, or `uv lock` if the newer version was checked"
            )
        if notes:
            detail += "; " + "; ".join(notes)
        checks.append(TechCheck(name, have, pins, spec, was, status, detail))
    return checks


def technology_findings(checks: Sequence[TechCheck]) -> list[Finding]:
    source, found = "technology-review", []
    for c in checks:
        if c.status is TechStatus.OK and not (c.trained_with and c.installed and c.trained_with != c.installed):
            continue
        if c.status is TechStatus.OK:
            title = f"{c.package}: champion trained with {c.trained_with}, environment has {c.installed}"
            detail = c.detail + ". Retrain or validate the champion under the installed version before relying on it."
            priority = Priority.MEDIUM
        else:
            title = f"{c.package}: {c.status.value}"
            detail = c.detail
            priority = Priority.HIGH if c.status in (TechStatus.OUTSIDE_DECLARED, TechStatus.NOT_INSTALLED) else Priority.MEDIUM
        found.append(Finding(title, detail, MaintenanceKind.ADAPTIVE, priority, source, f"technology:{c.package}"))
    return found


def installed_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Normalised package name -> the version installed in this environment, or None."""
    installed: dict[str, str | None] = {}
    for name in packages:
        try:
            installed[normalize(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[normalize(name)] = None
    return installed


def project_root() -> Path:
    """Where pyproject.toml and uv.lock sit for this checkout of Steward."""
    return Path(steward.__file__).resolve().parent.parent


def review_checkout(root: Path, trained_with: Mapping[str, str]) -> list[TechCheck]:
    """The key packages installed here against ``root``'s uv.lock and pyproject, and the champion's training set."""
    lock, pyproject = root / "uv.lock", root / "pyproject.toml"
    if not lock.is_file():
        raise FileNotFoundError(
            f"no uv.lock at {lock}: the technology review compares installed versions with the lock file; "
            "run it from a checkout of Steward (where `uv lock` writes it)"
        )
    declared = declared_requirements(pyproject.read_text()) if pyproject.is_file() else {}
    return review_technology(
        KEY_PACKAGES, installed_versions(KEY_PACKAGES), locked_versions(lock.read_text()), declared, trained_with
    )
