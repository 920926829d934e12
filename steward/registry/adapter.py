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

from steward.registry.adopting import AdoptionMixin
from steward.registry.adoption import MANAGED_TAG, AliasNames
from steward.registry.aliases import AliasMixin
from steward.registry.errors import RegistryError
from steward.registry.flavors import Flavor, ScoreSource, load_scorer
from steward.registry.history import CHALLENGER, CHAMPION
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
    def steward_run_id(self) -> str | None:
        """The run holding Steward's files for this version (spec, datasets, reports): the training run of a
        version Steward registered, the adoption run of one it adopted (the team's run is left as it was)."""
        return self.tags.get("steward.run_id") or self.run_id

    @property
    def input_schema(self) -> dict[str, str]:
        return json.loads(self.tags.get("steward.input_schema", "{}"))


@dataclass(frozen=True)
class LoadedModel:
    """A digest-verified version, scorable as ``flavors`` describes: ``model.predict`` always, and
    ``model.predict_proba`` / ``model.classes_`` where ``scores`` is not NONE."""

    model: Any
    version: VersionInfo
    digest: str
    flavor: Flavor = Flavor.SKLEARN
    scores: ScoreSource = ScoreSource.PREDICT_PROBA


class Registry(RegistrationMixin, AliasMixin, AdoptionMixin):
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
    def _info(
        self, mv: ModelVersion, with_metrics: bool = False, model_state: tuple[dict[str, str], dict[str, str]] | None = None
    ) -> VersionInfo:
        """A version as Steward reads it; its aliases from ``model_state`` (one read of the registered model),
        since MLflow's version search leaves them out, shown as Steward's roles or the team's names."""
        metrics: dict[str, float] = {}
        run_id = (mv.tags or {}).get("steward.run_id") or mv.run_id
        if with_metrics and run_id:
            metrics = dict(self._client.get_run(run_id).data.metrics)
        return VersionInfo(
            model=mv.name,
            version=str(mv.version),
            run_id=mv.run_id,
            source=mv.source,
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
            aliases=self._version_aliases(mv, model_state),
            tags=dict(mv.tags or {}),
            metrics=metrics,
        )

    def _version_aliases(
        self, mv: ModelVersion, model_state: tuple[dict[str, str], dict[str, str]] | None
    ) -> tuple[str, ...]:
        try:
            aliases, tags = model_state or self._raw_model_state(mv.name)
        except RegistryError:
            return tuple(getattr(mv, "aliases", ()) or ())
        mine = [alias for alias, version in aliases.items() if str(version) == str(mv.version)]
        if tags.get(MANAGED_TAG) != "true":
            return tuple(mine)  # every alias of a model Steward does not maintain is the team's
        names = AliasNames.from_tags(tags)
        return tuple(names.describe(alias) for alias in mine)

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
        """Every version with its aliases; MLflow's search leaves ``aliases`` empty, so they are read from the
        registered model (status shows them, retention protects by them)."""
        found = self._client.search_model_versions(filter_string=f"name = '{model}'", max_results=10_000)
        state = self._raw_model_state(model) if found else None
        return sorted((self._info(mv, model_state=state) for mv in found), key=lambda v: int(v.version))

    def alias_version(self, model: str, alias: str) -> str | None:
        """The version a Steward role (or any other alias name) points at, or None."""
        if not self.model_exists(model):
            return None
        aliases, tags = self._raw_model_state(model)
        if alias in (CHAMPION, CHALLENGER) and tags.get(MANAGED_TAG) != "true":
            return None  # a model Steward does not maintain has no Steward roles
        return aliases.get(AliasNames.from_tags(tags).to_mlflow(alias))

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
    def load_model(self, model: str, version: str, *, spec: ModelSpec | None = None) -> LoadedModel:
        """Load a version, any flavor, after checking its files against the recorded digest.

        ``spec`` (default: the version's own) says how a python-function model's output gives scores.
        """
        info = self.get_version(model, version)
        if spec is None and info.steward_run_id and info.tags.get("steward.flavor", "sklearn") != "sklearn":
            spec = self.version_spec(model, version)
        with self._verified_copy(info) as (local, digest):
            scorer, flavor, scores = load_scorer(local, spec)
        return LoadedModel(scorer, info, digest, flavor, scores)

    def verify_version(self, model: str, version: str) -> str:
        """The version's digest if its stored files are intact; raises ArtifactIntegrityError otherwise."""
        with self._verified_copy(self.get_version(model, version)) as (_, digest):
            return digest

    def load_dataset(self, model: str, version: str, name: str) -> pd.DataFrame:
        """A dataset stored with the version at registration (``reference``, ``holdout``)."""
        info = self.get_version(model, version)
        if not info.steward_run_id:
            raise RegistryError(f"{model} v{version} has no training run, so it has no stored {name} data")
        with tempfile.TemporaryDirectory() as scratch:
            try:
                path = self._mlflow.artifacts.download_artifacts(
                    run_id=info.steward_run_id, artifact_path=f"datasets/{name}.parquet", dst_path=scratch
                )
            except Exception as error:
                raise RegistryError(f"{model} v{version} has no stored {name!r} dataset: {error}") from error
            return pd.read_parquet(path)

    def log_version_artifact(self, model: str, version: str, local_path: str | Path, artifact_path: str) -> str:
        """Attach a file (a drift report, a model card) to the version's training run; returns its URI."""
        info = self.get_version(model, version)
        if not info.steward_run_id:
            raise RegistryError(f"{model} v{version} has no training run to attach {artifact_path} to")
        self._client.log_artifact(info.steward_run_id, str(local_path), artifact_path=artifact_path)
        run = self._client.get_run(info.steward_run_id)
        return f"{run.info.artifact_uri}/{artifact_path}/{Path(local_path).name}"

    def download_version_artifact(self, model: str, version: str, artifact_path: str, dst: str | Path) -> Path | None:
        """A file attached to the version's run, or None when there is none."""
        info = self.get_version(model, version)
        if not info.steward_run_id:
            return None
        try:
            return Path(
                self._mlflow.artifacts.download_artifacts(
                    run_id=info.steward_run_id, artifact_path=artifact_path, dst_path=str(dst)
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
        if not info.steward_run_id:
            raise RegistryError(f"{model} v{version} has no training run, so its spec is unknown; register it again")
        try:
            text = self._mlflow.artifacts.load_text(f"runs:/{info.steward_run_id}/spec.yaml")
        except Exception as error:
            raise RegistryError(f"{model} v{version} has no stored spec.yaml ({error}); register it again") from error
        return parse_spec(yaml.safe_load(text), source=f"{model} v{version} spec.yaml")
