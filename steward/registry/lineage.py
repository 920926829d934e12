"""Where a model version came from: the facts recorded with it, and how they are gathered from the code
and the environment that trained it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

KEY_PACKAGES = ("steward", "scikit-learn", "pandas", "numpy", "mlflow", "prefect", "evidently")


@dataclass(frozen=True)
class Lineage:
    """Where a version came from: enough to rebuild it or explain it."""

    data_sha256: str
    data_rows: int
    data_source: str
    data_window_start: str | None
    data_window_end: str | None
    params: dict[str, Any]
    code_version: str
    packages: dict[str, str]
    training_seconds: float
    schema_fingerprint: str
    spec_yaml: str

    def as_tags(self) -> dict[str, str]:
        return {
            "steward.data_sha256": self.data_sha256,
            "steward.data_rows": str(self.data_rows),
            "steward.data_source": self.data_source,
            "steward.data_window_start": self.data_window_start or "",
            "steward.data_window_end": self.data_window_end or "",
            "steward.code_version": self.code_version,
            "steward.packages": json.dumps(self.packages, sort_keys=True),
            "steward.training_seconds": f"{self.training_seconds:.3f}",
            "steward.schema_fingerprint": self.schema_fingerprint,
        }


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
