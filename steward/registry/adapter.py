"""The MLflow adapter: the only module in Steward that talks to MLflow.

``Registry`` reads versions and loads what was stored with them; registering a version and checking
its files (``steward.registry.registration``) and moving aliases with their audit history
(``steward.registry.aliases``) are its other two halves.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from steward.registry.aliases import AliasMixin
from steward.registry.errors import RegistryError
from steward.registry.history import CHAMPION
from steward.registry.registration import TRUSTED_SKOPS_TYPES, RegistrationMixin, truncate_tag

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from steward.config import Settings
    from steward.spec import ModelSpec

TAG_PREFIX = "steward."


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: str
    run_id: str | None
    source: str
    created: datetime
    aliases: tuple[str, ...]
    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def semver(self) -> str | None:
        return self.tags.get("steward.semver")

    @property
    def stage(self) -> str | None:
        return self.tags.get("steward.stage")

    @property
    def archived(self) -> bool:
        return self.tags.get("steward.archived") == "true"

    @property
    def digest(self) -> str | None:
        return self.tags.get("steward.artifact_digest")

    @property
    def training_seconds(self) -> float | None:
        value = self.tags.get("steward.training_seconds")
        return float(value) if value else None

    @property
    def input_schema(self) -> dict[str, str]:
        return json.loads(self.tags.get("steward.input_schema", "{}"))


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    version: VersionInfo
    digest: str


class Registry(RegistrationMixin, AliasMixin):
    """Steward's view of the MLflow model registry for every model it manages."""

    def __init__(
        self,
        tracking_uri: str,
        artifact_root: str,
        *,
        actor: str = "steward",
        extra_trusted_types: tuple[str, ...] = (),
        control_key: str | None = None,
    ) -> None:
        import mlflow

        self.control_key = control_key  # signs serving states and validations (steward.control)
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root.rstrip("/")
        self.actor = actor
        self.trusted_types = tuple(dict.fromkeys((*TRUSTED_SKOPS_TYPES, *extra_trusted_types)))
        self._mlflow = mlflow
        self._client: MlflowClient = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(
            settings.resolved_tracking_uri,
            settings.resolved_artifact_root,
            actor=settings.actor,
            extra_trusted_types=tuple(settings.skops_trusted_types),
            control_key=settings.control_key.get_secret_value() if settings.control_key else None,
        )

    # ------------------------------------------------------------------ experiments
    def _experiment_id(self, name: str) -> str:
        experiment = self._client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = f"{self.artifact_root}/{name.replace('/', '-')}"
        try:
            return self._client.create_experiment(name, artifact_location=location)
        except self._mlflow.exceptions.MlflowException:  # created concurrently by another process
            return self._client.get_experiment_by_name(name).experiment_id

    def training_experiment(self, model: str) -> str:
        return self._experiment_id(f"steward/{model}")

    # ------------------------------------------------------------------ versions
    def _info(self, mv: ModelVersion, with_metrics: bool = False) -> VersionInfo:
        metrics: dict[str, float] = {}
        if with_metrics and mv.run_id:
            metrics = dict(self._client.get_run(mv.run_id).data.metrics)
        return VersionInfo(
            model=mv.name,
            version=str(mv.version),
            run_id=mv.run_id,
            source=mv.source,
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
            aliases=tuple(getattr(mv, "aliases", ()) or ()),
            tags=dict(mv.tags or {}),
            metrics=metrics,
        )

    def model_exists(self, model: str) -> bool:
        return bool(self._client.search_registered_models(filter_string=f"name = '{model}'"))

    def get_version(self, model: str, version: str, *, with_metrics: bool = False) -> VersionInfo:
        try:
            mv = self._client.get_model_version(model, str(version))
        except self._mlflow.exceptions.MlflowException:
            known = [v.version for v in self.list_versions(model)] if self.model_exists(model) else []
            raise RegistryError(
                f"model {model!r} has no version {version}"
                + (f"; known versions: {', '.join(known)}" if known else "; it has no versions yet (run `steward train`)")
            ) from None
        return self._info(mv, with_metrics)

    def list_versions(self, model: str) -> list[VersionInfo]:
        found = self._client.search_model_versions(filter_string=f"name = '{model}'", max_results=10_000)
        return sorted((self._info(mv) for mv in found), key=lambda v: int(v.version))

    def alias_version(self, model: str, alias: str) -> str | None:
        if not self.model_exists(model):
            return None
        aliases = self._client.get_registered_model(model).aliases or {}
        version = aliases.get(alias)
        return str(version) if version is not None else None

    def champion(self, model: str) -> VersionInfo | None:
        version = self.alias_version(model, CHAMPION)
        return self.get_version(model, version, with_metrics=True) if version else None

    def set_version_tags(self, model: str, version: str, tags: dict[str, str]) -> None:
        from steward.control import (
            DIGEST_TAG,
            VALIDATION_SIGNATURE_TAG,
            VALIDATION_STATUS_TAG,
            sign_validation,
        )

        status = tags.get(VALIDATION_STATUS_TAG)
        if status is not None and self.control_key:
            digest = self.get_version(model, version).tags.get(DIGEST_TAG, "")
            tags = {**tags, VALIDATION_SIGNATURE_TAG: sign_validation(self.control_key, model, str(version), status, digest)}
        for key, value in tags.items():
            self._client.set_model_version_tag(model, str(version), key, truncate_tag(str(value)))

    # ------------------------------------------------------------------ loading
    def load_model(self, model: str, version: str) -> LoadedModel:
        """Load a version's estimator after checking its files against the recorded digest."""
        info = self.get_version(model, version)
        with self._verified_copy(info) as (local, digest):
            estimator = self._mlflow.sklearn.load_model(str(local))
        return LoadedModel(estimator, info, digest)

    def verify_version(self, model: str, version: str) -> str:
        """The version's digest if its stored files are intact; raises ArtifactIntegrityError otherwise."""
        with self._verified_copy(self.get_version(model, version)) as (_, digest):
            return digest

    def load_dataset(self, model: str, version: str, name: str) -> pd.DataFrame:
        """A dataset stored with the version at registration (``reference``, ``holdout``)."""
        info = self.get_version(model, version)
        if not info.run_id:
            raise RegistryError(f"{model} v{version} has no training run, so it has no stored {name} data")
        with tempfile.TemporaryDirectory() as scratch:
            try:
                path = self._mlflow.artifacts.download_artifacts(
                    run_id=info.run_id, artifact_path=f"datasets/{name}.parquet", dst_path=scratch
                )
            except Exception as error:
                raise RegistryError(f"{model} v{version} has no stored {name!r} dataset: {error}") from error
            return pd.read_parquet(path)

    def log_version_artifact(self, model: str, version: str, local_path: str | Path, artifact_path: str) -> str:
        """Attach a file (a drift report, a model card) to the version's training run; returns its URI."""
        info = self.get_version(model, version)
        if not info.run_id:
            raise RegistryError(f"{model} v{version} has no training run to attach {artifact_path} to")
        self._client.log_artifact(info.run_id, str(local_path), artifact_path=artifact_path)
        run = self._client.get_run(info.run_id)
        return f"{run.info.artifact_uri}/{artifact_path}/{Path(local_path).name}"

    def download_version_artifact(self, model: str, version: str, artifact_path: str, dst: str | Path) -> Path | None:
        """A file attached to the version's run, or None when there is none."""
        info = self.get_version(model, version)
        if not info.run_id:
            return None
        try:
            return Path(
                self._mlflow.artifacts.download_artifacts(
                    run_id=info.run_id, artifact_path=artifact_path, dst_path=str(dst)
                )
            )
        except Exception:  # MLflow raises several types for "not there"; absence is an answer here
            return None

    def training_durations(self, model: str) -> list[float]:
        return [v.training_seconds for v in self.list_versions(model) if v.training_seconds is not None]

    def version_spec(self, model: str, version: str) -> ModelSpec:
        """The spec a version was trained with (the ``spec.yaml`` logged with its run)."""
        import yaml

        from steward.spec import parse_spec

        info = self.get_version(model, version)
        if not info.run_id:
            raise RegistryError(f"{model} v{version} has no training run, so its spec is unknown; register it again")
        try:
            text = self._mlflow.artifacts.load_text(f"runs:/{info.run_id}/spec.yaml")
        except Exception as error:
            raise RegistryError(f"{model} v{version} has no stored spec.yaml ({error}); register it again") from error
        return parse_spec(yaml.safe_load(text), source=f"{model} v{version} spec.yaml")
