"""The MLflow half of adoption: reading what a team's version holds, and recording Steward's takeover.

Reads never write; ``record_adoption`` writes only what is Steward's: an adoption run in Steward's own
experiment (spec, reference and hold-out sets, hold-out metrics), ``steward.*`` tags on the adopted
version, and the ``steward.managed`` and alias-name tags on the registered model. The team's run, its
other versions, aliases and tags stay as they were.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from steward.registry.adoption import (
    MANAGED_TAG,
    AdoptedLineage,
    AdoptionCode,
    AdoptionError,
    AliasNames,
    SignatureColumn,
    spec_document_from_signature,
)
from steward.registry.flavors import Flavor, ScoreSource, load_scorer
from steward.registry.registration import directory_digest, truncate_tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from steward.registry.adapter import VersionInfo
    from steward.spec import ModelSpec


@dataclass(frozen=True)
class InspectedArtifacts:
    """A version's files as adoption found them: their digest, and the model loaded from those same bytes."""

    digest: str
    flavor: Flavor
    scores: ScoreSource
    model: Any


class AdoptionMixin:
    """The adoption half of :class:`~steward.registry.adapter.Registry`."""

    _client: MlflowClient
    _mlflow: Any
    actor: str

    def is_managed(self, model: str) -> bool:
        """Whether Steward maintains ``model`` (it registered or adopted it); others' models are never touched."""
        return self.model_exists(model) and self._raw_model_state(model)[1].get(MANAGED_TAG) == "true"

    def managed_models(self) -> list[str]:
        """Names of the registered models Steward maintains, in a registry others share."""
        found = self._client.search_registered_models(filter_string=f"tags.`{MANAGED_TAG}` = 'true'",
                                                      max_results=1000)
        return sorted(model.name for model in found)

    def mlflow_aliases(self, model: str) -> dict[str, str]:
        """The model's aliases as MLflow names them, the team's included."""
        return self._raw_model_state(model)[0]

    def all_models(self) -> list[str]:
        return sorted(model.name for model in self._client.search_registered_models(max_results=1000))

    def resolve_version(self, model: str, *, version: str | None = None, alias: str | None = None) -> VersionInfo:
        """The version asked for by number or by one of the team's aliases; the newest when neither is given."""
        if not self.model_exists(model):
            raise AdoptionError(AdoptionCode.NO_SUCH_VERSION, f"no registered model named {model!r} in the registry")
        if version and alias:
            raise AdoptionError(AdoptionCode.NO_SUCH_VERSION, "name the version by --version or by --alias, not both")
        if alias:
            aliases, _ = self._raw_model_state(model)
            if alias not in aliases:
                raise AdoptionError(AdoptionCode.NO_SUCH_VERSION, f"{model} has no alias {alias!r}; its aliases: "
                                    f"{', '.join(sorted(aliases)) or 'none'}")
            version = aliases[alias]
        if version is None:
            versions = self.list_versions(model)
            if not versions:
                raise AdoptionError(AdoptionCode.NO_SUCH_VERSION, f"{model} has no versions to adopt")
            return versions[-1]
        try:
            return self.get_version(model, version)
        except Exception as error:
            raise AdoptionError(AdoptionCode.NO_SUCH_VERSION, str(error)) from None

    def version_signature(self, info: VersionInfo) -> list[SignatureColumn] | None:
        """The input columns of the version's MLflow signature; None when it was logged without one."""
        from mlflow.models import get_model_info

        try:
            signature = get_model_info(info.source).signature
        except Exception as error:  # no MLmodel where the version points: nothing Steward can load
            raise AdoptionError(AdoptionCode.UNLOADABLE,
                                f"{info.model} v{info.version}: no MLflow model at {info.source} ({error})") from error
        if signature is None or signature.inputs is None:
            return None
        columns = []
        for column in signature.inputs.inputs:
            if getattr(column, "name", None) is None:
                return None  # a tensor signature names no columns: the spec cannot be checked against it
            kind = getattr(column.type, "name", str(column.type))
            columns.append(SignatureColumn(column.name, kind, getattr(column, "required", True)))
        return columns

    def spec_document_for(
        self, uri: str, *, target: str, task: str, data_path: str | None = None, score_column: str | None = None,
        champion_alias: str = "champion", challenger_alias: str = "challenger",
    ) -> dict[str, Any]:
        """A spec written from the signature of ``models:/NAME/VERSION`` (``steward init --from-model``)."""
        name, _, version = uri.removeprefix("models:/").partition("/")
        if not uri.startswith("models:/") or not name or not version:
            raise AdoptionError(AdoptionCode.NO_SUCH_VERSION, f"{uri!r} is not a model URI: write models:/NAME/VERSION")
        info = self.resolve_version(name, version=version)
        columns = self.version_signature(info)
        if columns is None:
            raise AdoptionError(AdoptionCode.NO_SIGNATURE,
                                f"{name} v{info.version} was logged without a column signature, so Steward cannot "
                                "tell its inputs: write the spec's features by hand, or log the model again with "
                                "a signature (mlflow's infer_signature)")
        return spec_document_from_signature(
            name, columns, target=target, task=task, data_path=data_path, score_column=score_column,
            champion_alias=champion_alias, challenger_alias=challenger_alias,
        )

    def adopted_lineage(self, info: VersionInfo, *, has_signature: bool) -> AdoptedLineage:
        """What the version's run recorded: parameters, metrics, dataset inputs, the git commit."""
        if not info.run_id:
            return AdoptedLineage(None, has_signature=has_signature)
        try:
            run = self._client.get_run(info.run_id)
        except self._mlflow.exceptions.MlflowException:
            return AdoptedLineage(None, has_signature=has_signature)
        datasets = tuple(
            f"{entry.dataset.name} (digest {entry.dataset.digest}, {entry.dataset.source_type})"
            for entry in (run.inputs.dataset_inputs if run.inputs else [])
        )
        return AdoptedLineage(
            source_run_id=info.run_id, params=dict(run.data.params), metrics=dict(run.data.metrics),
            datasets=datasets, code_version=run.data.tags.get("mlflow.source.git.commit"),
            has_signature=has_signature,
        )

    @contextmanager
    def _downloaded(self, info: VersionInfo) -> Iterator[Path]:
        with tempfile.TemporaryDirectory() as scratch:
            try:
                local = self._mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=scratch)
            except Exception as error:
                raise AdoptionError(AdoptionCode.UNLOADABLE,
                                    f"{info.model} v{info.version}: its files at {info.source} cannot be read "
                                    f"({error})") from error
            yield Path(local)

    def inspect_artifacts(self, info: VersionInfo, spec: ModelSpec) -> InspectedArtifacts:
        """Hash the version's files and load the model from the same bytes (a load failure is UNLOADABLE)."""
        with self._downloaded(info) as local:
            digest = directory_digest(local)
            try:
                model, flavor, scores = load_scorer(local, spec)
            except Exception as error:
                raise AdoptionError(AdoptionCode.UNLOADABLE, f"{info.model} v{info.version}: {error}") from error
        return InspectedArtifacts(digest, flavor, scores, model)

    def record_adoption(
        self,
        info: VersionInfo,
        spec: ModelSpec,
        *,
        artifacts: InspectedArtifacts,
        lineage: AdoptedLineage,
        datasets: dict[str, pd.DataFrame],
        sources: dict[str, str],
        metrics: dict[str, float],
        input_schema: dict[str, str],
    ) -> VersionInfo:
        """Write Steward's record of the takeover; on a failure part-way, the version's Steward tags go again."""
        model, version = info.model, info.version
        names = AliasNames(spec.registry.champion_alias, spec.registry.challenger_alias)
        with self._mlflow.start_run(experiment_id=self.training_experiment(model),
                                    run_name=f"{model} v{version} adopted") as run:
            self._mlflow.log_metrics(metrics)
            self._mlflow.set_tags({"steward.model": model, "steward.adopted_version": version,
                                   "steward.adopted.source_run": info.run_id or ""})
            self._mlflow.log_text(spec.to_yaml(), "spec.yaml")
            with tempfile.TemporaryDirectory() as scratch:
                for name, frame in datasets.items():
                    path = Path(scratch) / f"{name}.parquet"
                    frame.to_parquet(path, index=False)
                    self._mlflow.log_artifact(str(path), artifact_path="datasets")
        tags = {
            **lineage.as_tags(),
            "steward.run_id": run.info.run_id,
            "steward.semver": "1.0.0",
            "steward.stage": "candidate",
            "steward.artifact_digest": artifacts.digest,
            "steward.flavor": artifacts.flavor.value,
            "steward.scores": artifacts.scores.value,
            "steward.input_schema": json.dumps(input_schema),
            "steward.schema_fingerprint": spec.schema_fingerprint(),
            "steward.schema_changed": "false",
            "steward.registered_by": self.actor,
            "steward.adopted_by": self.actor,
            "steward.data_source": sources.get("holdout", ""),
            "steward.data_rows": str(len(datasets.get("holdout", ()))),
            "steward.reference_source": sources.get("reference", ""),
        }
        try:
            for key, value in tags.items():
                self._client.set_model_version_tag(model, version, key, truncate_tag(str(value)))
            for key, value in {MANAGED_TAG: "true", **names.as_tags()}.items():
                self._client.set_registered_model_tag(model, key, value)
        except Exception:
            for key in tags:
                with contextlib.suppress(self._mlflow.exceptions.MlflowException):  # never set: nothing to undo
                    self._client.delete_model_version_tag(model, version, key)
            self._client.delete_run(run.info.run_id)
            raise
        return self.get_version(model, version, with_metrics=True)
