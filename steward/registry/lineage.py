"""Facts about the code and environment that produced a model version."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = ("steward", "scikit-learn", "pandas", "numpy", "mlflow", "prefect", "evidently")


def code_version(start: Path | None = None) -> str:
    """The git commit of the code that trained: the working directory's checkout, else Steward's own.

    ``-dirty`` marks uncommitted changes; outside any checkout it is the installed Steward version.
    """
    for candidate in (start or Path.cwd(), Path(__file__).resolve().parent):
        commit = _git_commit(candidate)
        if commit:
            return commit
    try:
        return f"steward=={metadata.version('steward')}"
    except metadata.PackageNotFoundError:
        return "unknown"


def _git_commit(cwd: Path) -> str | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True,
            timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
