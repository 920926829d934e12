"""Registering a version, and keeping its stored files what they were.

A version is logged with its lineage, metrics, spec and datasets, and its artifact folder is hashed;
every later load downloads, hashes and compares the same bytes it then loads.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from steward.registry.adoption import MANAGED_TAG, AliasNames
from steward.registry.errors import ArtifactIntegrityError, RegistryError
from steward.registry.flavors import Flavor, flavor_of_object, log_model, model_output
from steward.registry.history import CHALLENGER, CHAMPION, next_semver
from steward.registry.lineage import Lineage

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from steward.registry.adapter import VersionInfo

MAX_TAG_CHARS = 4000

# Types MLflow's skops serialisation must be told to trust. skops refuses anything not on
# its own safe list; these are the scikit-learn internals that common estimators contain.
# Users add their own through Settings.skops_trusted_types.
TRUSTED_SKOPS_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "steward.training.threshold.ShiftedLogOdds",  # a champion with its decision threshold re-fitted
)



def directory_digest(root: Path) -> str:
    """sha256 over every file's relative path and bytes, in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def alias_names_of(spec_yaml: str) -> AliasNames:
    """The alias names a spec's ``registry`` section gives (the defaults where it has none)."""
    import yaml

    section = (yaml.safe_load(spec_yaml) or {}).get("registry") or {}
    return AliasNames(section.get("champion_alias", CHAMPION), section.get("challenger_alias", CHALLENGER))


def truncate_tag(value: str) -> str:
    """MLflow refuses longer tag values; the end is cut and marked."""
    return value if len(value) <= MAX_TAG_CHARS else value[: MAX_TAG_CHARS - 15] + " …(truncated)"


class RegistrationMixin:
    """The registering half of :class:`~steward.registry.adapter.Registry` (it provides the client and reads)."""

    _client: MlflowClient
    actor: str
    trusted_types: tuple[str, ...]

    def register_version(
        self,
        model_name: str,
        estimator: Any,
        *,
        lineage: Lineage,
        metrics: dict[str, float],
        input_example: pd.DataFrame,
        datasets: dict[str, pd.DataFrame],
        description: str = "",
    ) -> VersionInfo:
        """Log the fitted model (any flavor ``flavors.log_model`` takes) with its lineage, metrics and datasets, and register it as a ``candidate``.

        A failure after the version exists removes that version again, so a half-registered
        model never appears in the registry.
        """
        from mlflow.models import infer_signature

        if flavor_of_object(estimator) is Flavor.SKLEARN:
            self._refuse_untrusted_types(estimator)
        exists = self.model_exists(model_name)
        if exists and self._raw_model_state(model_name)[1].get(MANAGED_TAG) != "true":
            raise RegistryError(
                f"a model named {model_name!r} exists in the registry and Steward does not maintain it: Steward "
                f"adds no versions to it. Adopt it (`steward adopt {model_name} --spec ...`) or name the spec's "
                "model differently"
            )
        previous = self.list_versions(model_name) if exists else []
        latest = previous[-1] if previous else None
        schema_changed = bool(latest) and latest.tags.get("steward.schema_fingerprint") != lineage.schema_fingerprint
        semver = next_semver(latest.semver if latest else None, schema_changed)
        input_schema = {column: str(dtype) for column, dtype in input_example.dtypes.items()}
        output = model_output(estimator, input_example)

        experiment_id = self.training_experiment(model_name)
        version: str | None = None
        with self._mlflow.start_run(experiment_id=experiment_id, run_name=f"{model_name} {semver}") as run:
            try:
                self._mlflow.log_params({k: truncate_tag(str(v)) for k, v in lineage.params.items()})
                self._mlflow.log_metrics(metrics)
                self._mlflow.set_tags({**lineage.as_tags(), "steward.model": model_name, "steward.semver": semver})
                self._mlflow.log_text(lineage.spec_yaml, "spec.yaml")
                with tempfile.TemporaryDirectory() as scratch:
                    for name, frame in datasets.items():
                        path = Path(scratch) / f"{name}.parquet"
                        frame.to_parquet(path, index=False)
                        self._mlflow.log_artifact(str(path), artifact_path="datasets")
                info = log_model(
                    estimator, signature=infer_signature(input_example, output),
                    input_example=input_example.head(5), trusted_types=list(self.trusted_types),
                )
                digest = self._digest_of(info.model_uri)
                tags = {
                    **lineage.as_tags(),
                    "steward.semver": semver,
                    "steward.stage": "candidate",
                    "steward.artifact_digest": digest,
                    "steward.input_schema": json.dumps(input_schema),
                    "steward.schema_changed": str(schema_changed).lower(),
                    "steward.registered_by": self.actor,
                    "steward.flavor": flavor_of_object(estimator).value,
                }
                self._ensure_registered_model(model_name, description, alias_names_of(lineage.spec_yaml))
                mv = self._client.create_model_version(
                    model_name, source=info.model_uri, run_id=run.info.run_id, model_id=info.model_id,
                    tags={k: truncate_tag(v) for k, v in tags.items()}, description=description,
                )
                version = str(mv.version)
                return self.get_version(model_name, version, with_metrics=True)
            except Exception:
                if version is not None:
                    self._client.delete_model_version(model_name, version)
                raise

    def _ensure_registered_model(self, model: str, description: str, names: AliasNames | None = None) -> None:
        if self.model_exists(model):
            return
        tags = {MANAGED_TAG: "true", **(names or AliasNames()).as_tags()}
        try:
            self._client.create_registered_model(model, tags=tags, description=description)
        except self._mlflow.exceptions.MlflowException:
            if not self.model_exists(model):  # anything but a concurrent creation is a real error
                raise

    def _refuse_untrusted_types(self, estimator: Any) -> None:
        import skops.io

        untrusted = set(skops.io.get_untrusted_types(data=skops.io.dumps(estimator))) - set(self.trusted_types)
        if untrusted:
            raise RegistryError(
                f"the estimator contains types that are not trusted for serialisation: {sorted(untrusted)}. "
                "If you trust them, add them to STEWARD_SKOPS_TRUSTED_TYPES (or skops_trusted_types in steward.yaml)"
            )

    def _digest_of(self, artifact_uri: str) -> str:
        with tempfile.TemporaryDirectory() as scratch:
            local = self._mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=scratch)
            return directory_digest(Path(local))

    @contextmanager
    def _verified_copy(self, info: VersionInfo) -> Iterator[tuple[Path, str]]:
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(self._mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=scratch))
            digest = directory_digest(local)
            if info.digest is None:
                raise ArtifactIntegrityError(
                    f"{info.model} v{info.version} has no recorded artifact digest, so it cannot be verified: "
                    "it was not registered by Steward; register it again with `steward train`"
                )
            if digest != info.digest:
                raise ArtifactIntegrityError(
                    f"{info.model} v{info.version}: stored artifacts changed since registration "
                    f"(digest {digest[:12]}… != recorded {info.digest[:12]}…). Refusing to load it; "
                    "restore the artifacts from backup or roll back to another version"
                )
            yield local, digest

    # ---------------------------------------------------------------- versions registered by others
    def versions_of_run_tag(self, model: str, key: str, value: str) -> list[VersionInfo]:
        """Versions of ``model`` registered from a run (in any experiment) tagged ``key = value``."""
        if not self.model_exists(model):
            return []
        escaped = value.replace("'", "\\'")
        runs = self._mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.`{key}` = '{escaped}'",
                                        output_format="list")
        found = [
            mv for run in runs
            for mv in self._client.search_model_versions(f"name = '{model}' and run_id = '{run.info.run_id}'")
        ]
        return sorted((self._info(mv) for mv in found), key=lambda v: int(v.version))

    def take_in_version(
        self, model: str, version: str, *, lineage: Lineage, datasets: dict[str, pd.DataFrame],
        input_schema: dict[str, str], tags: dict[str, str],
    ) -> VersionInfo:
        """Bring a version another process registered (a team's training deployment) under Steward, as
        ``register_version`` would have left it: its datasets on its run, its files hashed, its lineage and
        semver tagged, and ``candidate`` as its stage. Its own params and tags stay; its hold-out metrics are
        measured on the verified copy afterwards (``log_version_metrics``)."""
        info = self.get_version(model, version)
        if info.digest:
            raise RegistryError(f"{model} v{version} already has an artifact digest: it is under Steward already")
        if not info.run_id:
            raise RegistryError(
                f"{model} v{version} has no MLflow run, so its hold-out data and metrics have nowhere to go: "
                "register it from inside a run (mlflow.start_run) in the training code"
            )
        with tempfile.TemporaryDirectory() as scratch:
            for name, frame in datasets.items():
                path = Path(scratch) / f"{name}.parquet"
                frame.to_parquet(path, index=False)
                self._client.log_artifact(info.run_id, str(path), artifact_path="datasets")
        self._client.log_text(info.run_id, lineage.spec_yaml, "spec.yaml")
        earlier = [v for v in self.list_versions(model) if int(v.version) < int(version) and v.semver]
        latest = earlier[-1] if earlier else None
        schema_changed = bool(latest) and latest.tags.get("steward.schema_fingerprint") != lineage.schema_fingerprint
        semver = next_semver(latest.semver if latest else None, schema_changed)
        self.set_version_tags(model, version, {
            **lineage.as_tags(),
            "steward.semver": semver,
            "steward.stage": "candidate",
            "steward.artifact_digest": self._digest_of(info.source),
            "steward.input_schema": json.dumps(input_schema),
            "steward.schema_changed": str(schema_changed).lower(),
            "steward.registered_by": self.actor,
            **tags,
        })
        self._client.set_registered_model_tag(model, "steward.managed", "true")
        return self.get_version(model, version, with_metrics=True)

    def log_version_metrics(self, model: str, version: str, metrics: dict[str, float]) -> None:
        """Metrics measured after registration (a taken-in version's hold-out scores), on the version's run."""
        info = self.get_version(model, version)
        if not info.run_id:
            raise RegistryError(f"{model} v{version} has no MLflow run to log metrics to")
        for name, value in metrics.items():
            self._client.log_metric(info.run_id, name, value)
