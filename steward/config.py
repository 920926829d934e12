"""Typed settings: ``STEWARD_*`` environment variables plus an optional YAML file.

Nothing happens at import. ``get_settings()`` builds the object on first use, and
``apply_environment()`` points Prefect and MLflow at the Steward home; it must run
before either library is imported, which is why the CLI and the flow entry points
call it first.
"""

from __future__ import annotations

import functools
import getpass
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

CONFIG_FILE_ENV = "STEWARD_CONFIG"


class MonitoringExecutor(StrEnum):
    LOCAL = "local"  # one bounded scan in the flow's process
    DASK = "dask"  # per-day summaries on a Dask cluster, merged
class HomeAccess(StrEnum):
    OWNER = "owner"  # files 0600, folders 0700: one user runs every Steward process
    GROUP = "group"  # files 0660, folders 0770: a data folder shared with containers running as another uid


HOME_UMASKS = {HomeAccess.OWNER: 0o077, HomeAccess.GROUP: 0o007}
OWNER_ONLY_UMASK = HOME_UMASKS[HomeAccess.OWNER]
# the home's group may pass through it (never list or read it): the production profile's PostgreSQL runs as
# another user when Steward is root, and its data folder is under the home (steward.postgres)
HOME_GROUP_TRAVERSE = 0o010
DEFAULT_CONFIG_FILE = "steward.yaml"


def _config_file() -> Path | None:
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(
                f"{CONFIG_FILE_ENV}={explicit} does not name a file; create it or unset the variable."
            )
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


class Settings(BaseSettings):
    """Where Steward keeps its state and how it talks to Prefect and MLflow.

    Every field can be set as ``STEWARD_<FIELD>`` or in ``steward.yaml``
    (or the file named by ``STEWARD_CONFIG``); the environment wins.
    """

    model_config = SettingsConfigDict(env_prefix="STEWARD_", extra="forbid")

    home: Path = Field(default=Path(".steward"), description="Folder holding all embedded-mode state.")
    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking/registry URI; default: SQLite under the home."
    )
    artifact_root: str | None = Field(
        default=None, description="Where MLflow stores model artifacts; default: <home>/mlflow/artifacts."
    )
    store_uri: str | None = Field(
        default=None, description="fsspec URL of the prediction log; default: <home>/predictions."
    )
    prefect_api_url: str | None = Field(
        default=None, description="A Prefect server to use; unset means an embedded server under the home."
    )
    actor: str = Field(default_factory=getpass.getuser, description="Who is recorded as making changes.")
    admin_token: SecretStr | None = Field(default=None, description="Bearer token of the gateway admin API.")
    control_key: SecretStr | None = Field(
        default=None, description="Key that signs Steward's registry changes and validations; gateways holding it "
        "follow nothing else (give it to Steward's processes only, never to MLflow users).",
    )
    mlflow_credentials_block: str | None = Field(
        default=None, description="Prefect Secret block holding {\"username\": ..., \"password\": ...} for MLflow; "
        "flow runs read it when MLFLOW_TRACKING_USERNAME/PASSWORD are neither in the environment nor under the home.",
    )
    skops_trusted_types: list[str] = Field(
        default_factory=list,
        description="Extra types trusted when MLflow saves models with skops (added to Steward's own list).",
    )
    home_access: HomeAccess = Field(
        default=HomeAccess.OWNER, description="Who may read what Steward writes under the home: `owner` only, or "
        "also the home's `group` (a data folder shared with the compose stack's containers, which run as uid 10001: "
        "give the folder that group with the setgid bit, docs/operations.md).",
    )
    telemetry: bool = Field(default=False, description="Let Prefect and MLflow send usage telemetry.")
    monitoring_executor: MonitoringExecutor = Field(
        default=MonitoringExecutor.LOCAL,
        description="Where the checks summarise the log: `local` (one scan, in the flow's process) or `dask` (a "
        "day per task, submitted through Prefect's DaskTaskRunner and merged into one verdict).",
    )
    dask_address: str | None = Field(
        default=None, description="With the dask executor: the scheduler to use (tcp://host:8786); unset starts a "
        "local cluster of `dask_workers` processes for each check.",
    )
    dask_workers: int = Field(default=2, ge=1, description="Worker processes of the local Dask cluster.")

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def resolved_artifact_root(self) -> str:
        return self.artifact_root or (self.mlflow_dir / "artifacts").as_uri()

    @property
    def resolved_store_uri(self) -> str:
        return self.store_uri or str(self.home / "predictions")

    @property
    def keys_file(self) -> Path:
        """The gateway's client keys (`steward keys`), hashed."""
        return self.home / "keys.json"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    def ensure_home(self) -> None:
        """Create the home closed to others, and make this process (and the servers it starts) create files so.

        The home holds the prediction log, the MLflow store and Prefect's database: features,
        labels and audit history nobody else on the machine should read. The umask makes every
        later file 0600 and folder 0700 (0660/0770 with ``home_access: group``); a home made
        world-readable by an older version is closed at its top folder, which keeps others out of
        everything below it. With owner access, only group traverse of the top folder is kept, which
        :mod:`steward.postgres` grants its server's user.
        """
        umask = HOME_UMASKS[self.home_access]
        os.umask(umask)
        for path in (self.home, self.mlflow_dir, self.prefect_home):
            path.mkdir(mode=0o777 & ~umask, parents=True, exist_ok=True)
            allowed = (HOME_GROUP_TRAVERSE if path == self.home else 0) | (0o7070 & ~umask)
            mode = path.stat().st_mode
            if mode & 0o077 & ~allowed:
                path.chmod(0o700 | (mode & allowed))


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI's ``--home`` use this)."""
    get_settings.cache_clear()


# Prefect's 20 s default is too short for a first start on a loaded two-core machine: the embedded
# server migrates a new SQLite database first (a CI run timed out there while other tests ran).
EMBEDDED_PREFECT_STARTUP_SECONDS = 120


def environment_for(settings: Settings) -> dict[str, str]:
    """Environment variables that make Prefect and MLflow use the Steward home."""
    env: dict[str, str] = {
        "PREFECT_HOME": str(settings.prefect_home),
        "MLFLOW_TRACKING_URI": settings.resolved_tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.resolved_tracking_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    if settings.prefect_api_url:
        env["PREFECT_API_URL"] = settings.prefect_api_url
    else:
        env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = str(EMBEDDED_PREFECT_STARTUP_SECONDS)
    if not settings.telemetry:
        env.update(
            {
                "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "MLFLOW_DISABLE_TELEMETRY": "true",
            }
        )
    return env


# What apply_environment exported itself: a later call for another home replaces these, never a user's own values.
_exported: dict[str, str] = {}


def apply_environment(settings: Settings | None = None, *, override: bool = False) -> Settings:
    """Export :func:`environment_for` into ``os.environ`` and create the home folders.

    Values already in the environment are kept unless ``override`` is set, so a user's
    explicit ``PREFECT_API_URL`` or ``MLFLOW_TRACKING_URI`` is respected; so are MLflow and Prefect
    credentials, which otherwise come from the home's files (:mod:`steward.credentials`). Values an
    earlier call exported are not the user's: importing ``flows`` applies the default home, and a
    command's ``--home`` applied afterwards must replace it, or MLflow's fluent API (which reads
    ``MLFLOW_TRACKING_URI``) would write to one store while the registry's client reads another.
    """
    settings = settings or get_settings()
    settings.ensure_home()
    wanted = environment_for(settings)
    for key, value in list(_exported.items()):
        if key not in wanted and os.environ.get(key) == value:
            del os.environ[key]
            del _exported[key]
    for key, value in wanted.items():
        if override or key not in os.environ or os.environ[key] == _exported.get(key):
            os.environ[key] = value
            _exported[key] = value
    os.environ.update(control_plane_credentials(settings))
    return settings


def control_plane_credentials(settings: Settings) -> dict[str, str]:
    """MLflow and Prefect credentials the environment lacks and the home holds (``steward up`` wrote them).

    Empty for a home without them (the embedded profile, whose servers need none).
    """
    from steward.credentials import ControlPlaneSecrets

    return ControlPlaneSecrets(settings.home).client_environment_from_files(os.environ)


def settings_summary(settings: Settings) -> dict[str, Any]:
    """What ``steward status`` prints about the installation; never includes secrets."""
    return {
        "home": str(settings.home),
        "tracking_uri": settings.resolved_tracking_uri,
        "artifact_root": settings.resolved_artifact_root,
        "store_uri": settings.resolved_store_uri,
        "prefect_api_url": settings.prefect_api_url or f"embedded (PREFECT_HOME={settings.prefect_home})",
        "admin_token": "set" if settings.admin_token else "not set",
        "control_key": "set" if settings.control_key else "not set",
    }
