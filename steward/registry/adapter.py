"""The MLflow adapter: the only module in Steward that talks to MLflow.

It registers versions with their lineage, moves the ``champion`` and ``challenger``
aliases while keeping the history MLflow does not keep, verifies artifact digests
when loading, and archives old versions by tag (never by deleting them).

The audit history is stored in MLflow itself, as one run per change in the
``steward-audit`` experiment: it survives restarts, is shared by every process that
uses the same tracking server, and is searchable in the MLflow UI.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from steward.registry.history import (
    CHALLENGER,
    CHAMPION,
    AuditEntry,
    ChangeKind,
    RetentionDecision,
    next_semver,
    rollback_target,
    select_for_archive,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from steward.config import Settings

log = logging.getLogger(__name__)

AUDIT_EXPERIMENT = "steward-audit"
TAG_PREFIX = "steward."
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
)


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message says why and what to do."""


class ArtifactIntegrityError(RegistryError):
    """A model's stored files no longer match the digest recorded when it was registered."""


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


def serving_requirements() -> list[str]:
    """What a model needs to load, pinned to the versions that trained it.

    Stating it explicitly keeps MLflow from inferring requirements (seconds per model, and
    it can pick up the whole development environment).
    """
    from importlib import metadata

    return [f"{name}=={metadata.version(name)}" for name in ("mlflow", "scikit-learn", "pandas", "numpy", "skops")]


def _truncate(value: str) -> str:
    return value if len(value) <= MAX_TAG_CHARS else value[: MAX_TAG_CHARS - 15] + " …(truncated)"


class Registry:
    """Steward's view of the MLflow model registry for every model it manages."""

    def __init__(
        self,
        tracking_uri: str,
        artifact_root: str,
        *,
        actor: str = "steward",
        extra_trusted_types: tuple[str, ...] = (),
    ) -> None:
        import mlflow

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
        for key, value in tags.items():
            self._client.set_model_version_tag(model, str(version), key, _truncate(str(value)))

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
        """Log the estimator with its lineage, metrics and datasets, and register it as a ``candidate``.

        A failure after the version exists removes that version again, so a half-registered
        model never appears in the registry.
        """
        from mlflow.models import infer_signature

        self._refuse_untrusted_types(estimator)
        previous = self.list_versions(model_name) if self.model_exists(model_name) else []
        latest = previous[-1] if previous else None
        schema_changed = bool(latest) and latest.tags.get("steward.schema_fingerprint") != lineage.schema_fingerprint
        semver = next_semver(latest.semver if latest else None, schema_changed)
        input_schema = {column: str(dtype) for column, dtype in input_example.dtypes.items()}
        output = estimator.predict_proba(input_example) if hasattr(estimator, "predict_proba") else estimator.predict(
            input_example
        )

        experiment_id = self.training_experiment(model_name)
        version: str | None = None
        with self._mlflow.start_run(experiment_id=experiment_id, run_name=f"{model_name} {semver}") as run:
            try:
                self._mlflow.log_params({k: _truncate(str(v)) for k, v in lineage.params.items()})
                self._mlflow.log_metrics(metrics)
                self._mlflow.set_tags({**lineage.as_tags(), "steward.model": model_name, "steward.semver": semver})
                self._mlflow.log_text(lineage.spec_yaml, "spec.yaml")
                with tempfile.TemporaryDirectory() as scratch:
                    for name, frame in datasets.items():
                        path = Path(scratch) / f"{name}.parquet"
                        frame.to_parquet(path, index=False)
                        self._mlflow.log_artifact(str(path), artifact_path="datasets")
                info = self._mlflow.sklearn.log_model(
                    estimator,
                    name="model",
                    signature=infer_signature(input_example, output),
                    input_example=input_example.head(5),
                    skops_trusted_types=list(self.trusted_types),
                    pip_requirements=serving_requirements(),
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
                }
                self._ensure_registered_model(model_name, description)
                mv = self._client.create_model_version(
                    model_name, source=info.model_uri, run_id=run.info.run_id, model_id=info.model_id,
                    tags={k: _truncate(v) for k, v in tags.items()}, description=description,
                )
                version = str(mv.version)
                return self.get_version(model_name, version, with_metrics=True)
            except Exception:
                if version is not None:
                    self._client.delete_model_version(model_name, version)
                raise

    def _ensure_registered_model(self, model: str, description: str) -> None:
        if self.model_exists(model):
            return
        try:
            self._client.create_registered_model(model, tags={"steward.managed": "true"}, description=description)
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

    # ------------------------------------------------------------------ aliases and history
    def _record(self, entry: AuditEntry) -> AuditEntry:
        tags = {
            "steward.model": entry.model,
            "steward.kind": entry.kind.value,
            "steward.actor": entry.actor,
            "steward.reason": _truncate(entry.reason),
            "steward.alias": entry.alias or "",
            "steward.from_version": entry.from_version or "",
            "steward.to_version": entry.to_version or "",
            "steward.time": entry.time.isoformat(),
            "steward.sequence": str(entry.sequence),
            "steward.details": _truncate(json.dumps(entry.details, sort_keys=True)),
        }
        title = f"{entry.model}: {entry.kind.value}" + (f" {entry.alias} -> v{entry.to_version}" if entry.alias else "")
        run = self._client.create_run(self._experiment_id(AUDIT_EXPERIMENT), run_name=title, tags=tags)
        self._client.set_terminated(run.info.run_id)
        return entry

    def record(
        self,
        model: str,
        kind: ChangeKind,
        reason: str,
        *,
        actor: str | None = None,
        alias: str | None = None,
        from_version: str | None = None,
        to_version: str | None = None,
        details: dict[str, str] | None = None,
    ) -> AuditEntry:
        """Append an entry to the model's audit history."""
        return self._record(
            AuditEntry(
                time=datetime.now(UTC), model=model, kind=kind, actor=actor or self.actor, reason=reason,
                alias=alias, from_version=from_version, to_version=to_version, details=details or {},
                sequence=time.time_ns(),
            )
        )

    def history(self, model: str) -> list[AuditEntry]:
        """Every recorded change of the model, oldest first."""
        experiment = self._client.get_experiment_by_name(AUDIT_EXPERIMENT)
        if experiment is None:
            return []
        entries, token = [], None
        while True:
            page = self._client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`steward.model` = '{model}'",
                max_results=1000, page_token=token,
            )
            for run in page:
                tags = run.data.tags
                entries.append(
                    AuditEntry(
                        time=datetime.fromisoformat(tags["steward.time"]),
                        model=model,
                        kind=ChangeKind(tags["steward.kind"]),
                        actor=tags.get("steward.actor", ""),
                        reason=tags.get("steward.reason", ""),
                        alias=tags.get("steward.alias") or None,
                        from_version=tags.get("steward.from_version") or None,
                        to_version=tags.get("steward.to_version") or None,
                        details=json.loads(tags.get("steward.details", "{}")),
                        sequence=int(tags.get("steward.sequence", "0")),
                    )
                )
            token = page.token
            if not token:
                break
        return sorted(entries, key=lambda e: e.sequence)

    def set_alias(
        self, model: str, alias: str, version: str, *, reason: str, kind: ChangeKind, actor: str | None = None
    ) -> AuditEntry:
        """Point ``alias`` at ``version`` and record who did it and why."""
        info = self.get_version(model, version)
        if info.archived:
            raise RegistryError(
                f"{model} v{version} is archived ({info.tags.get('steward.archived_reason', 'no reason recorded')}); "
                "an archived version cannot take an alias"
            )
        previous = self.alias_version(model, alias)
        self._client.set_registered_model_alias(model, alias, str(version))
        return self.record(model, kind, reason, actor=actor, alias=alias, from_version=previous, to_version=str(version))

    def clear_alias(self, model: str, alias: str, *, reason: str, actor: str | None = None) -> AuditEntry | None:
        previous = self.alias_version(model, alias)
        if previous is None:
            return None
        self._client.delete_registered_model_alias(model, alias)
        return self.record(model, ChangeKind.ASSIGN, reason, actor=actor, alias=alias, from_version=previous)

    def promote(self, model: str, version: str, *, reason: str, actor: str | None = None) -> AuditEntry:
        """Make ``version`` the champion; the old champion stays loadable as the rollback target."""
        info = self.get_version(model, version)
        if info.tags.get("steward.validation.status") != "passed":
            raise RegistryError(
                f"{model} v{version} has not passed validation "
                f"(status: {info.tags.get('steward.validation.status', 'never validated')}); "
                f"run `steward validate --version {version}` first"
            )
        current = self.alias_version(model, CHAMPION)
        if current == str(version):
            raise RegistryError(f"{model} v{version} is already the champion")
        kind = ChangeKind.BOOTSTRAP if current is None else ChangeKind.PROMOTE
        entry = self.set_alias(model, CHAMPION, version, reason=reason, kind=kind, actor=actor)
        if current is not None:
            self.set_version_tags(model, current, {"steward.stage": "retired"})
        if self.alias_version(model, CHALLENGER) == str(version):
            self.clear_alias(model, CHALLENGER, reason=f"v{version} became champion", actor=actor)
        self.set_version_tags(model, version, {"steward.stage": "champion"})
        return entry

    def rollback_target(self, model: str) -> str | None:
        unavailable = {v.version for v in self.list_versions(model) if v.archived or v.stage == "rejected"}
        return rollback_target(self.history(model), unavailable)

    def rollback(self, model: str, *, reason: str, actor: str | None = None) -> AuditEntry:
        """Return the champion alias to the previous champion, in one step."""
        current = self.alias_version(model, CHAMPION)
        if current is None:
            raise RegistryError(f"{model!r} has no champion, so there is nothing to roll back")
        target = self.rollback_target(model)
        if target is None:
            raise RegistryError(
                f"{model} has no earlier champion to roll back to (champion is v{current}); "
                "promote a specific version with `steward promote` instead"
            )
        self.verify_version(model, target)
        entry = self.set_alias(model, CHAMPION, target, reason=reason, kind=ChangeKind.ROLLBACK, actor=actor)
        self.set_version_tags(model, current, {"steward.stage": "rolled_back", "steward.rolled_back_reason": reason})
        self.set_version_tags(model, target, {"steward.stage": "champion"})
        return entry

    # ------------------------------------------------------------------ retention
    def apply_retention(self, model: str, *, keep_champions: int = 3, keep_recent: int = 3) -> RetentionDecision:
        """Tag old versions archived; aliased versions and the rollback path are never touched."""
        versions = [v for v in self.list_versions(model) if not v.archived]
        protected = {v.version for v in versions if v.aliases}
        decision = select_for_archive(
            [v.version for v in versions], self.history(model), protected,
            keep_champions=keep_champions, keep_recent=keep_recent,
        )
        for version in decision.archive:
            reason = decision.reasons[version]
            self.set_version_tags(model, version, {"steward.archived": "true", "steward.archived_reason": reason})
            self.record(model, ChangeKind.ARCHIVE, reason, to_version=version)
        return decision

    def training_durations(self, model: str) -> list[float]:
        return [v.training_seconds for v in self.list_versions(model) if v.training_seconds is not None]

    # ------------------------------------------------------------------ traffic plans (serving)
    # Section added for the gateway (issue #3), with TRAFFIC_PLAN_TAG at the end of the module.
    # The gateway's view of a model: its aliases and traffic plan, read in one call so that
    # every replica polling the registry sees a consistent pair. The plan is stored as a
    # registered-model tag; each change is an audit entry like an alias move.
    def get_traffic_plan(self, model: str) -> TrafficPlan:
        """The model's stored traffic plan; the default (all to the champion) when none is set."""
        from steward.delivery.traffic import DEFAULT_PLAN, parse_plan

        if not self.model_exists(model):
            raise RegistryError(f"no model named {model!r} in the registry; train one with `steward train`")
        text = (self._client.get_registered_model(model).tags or {}).get(TRAFFIC_PLAN_TAG)
        return parse_plan(text, source=f"{model}'s stored traffic plan") if text else DEFAULT_PLAN

    def set_traffic_plan(
        self, model: str, plan: TrafficPlan, *, reason: str, actor: str | None = None
    ) -> AuditEntry:
        """Store ``plan`` for ``model`` and record who changed it and why; gateways follow it."""
        from steward.delivery.traffic import TrafficMode

        previous = self.get_traffic_plan(model)
        challenger = self.alias_version(model, CHALLENGER)
        if plan.needs_challenger and challenger is None:
            raise RegistryError(
                f"{model} has no challenger, so a plan that sends traffic to one cannot apply "
                f"({plan.describe()}); validate a candidate first (`steward validate`), which makes it the challenger"
            )
        document = plan.model_dump_json()
        self._client.set_registered_model_tag(model, TRAFFIC_PLAN_TAG, document)
        return self.record(
            model, ChangeKind.TRAFFIC_PLAN, reason, actor=actor,
            from_version=self.alias_version(model, CHAMPION),
            to_version=challenger if plan.needs_challenger or plan.mode is TrafficMode.SHADOW else None,
            details={"plan": document, "previous": previous.model_dump_json(), "summary": plan.describe()},
        )

    def serving_state(self, model: str) -> ServingState:
        """Aliases and traffic plan of ``model`` from a single registry read."""
        from steward.delivery.traffic import DEFAULT_PLAN, ServingState, TrafficError, parse_plan

        try:
            registered = self._client.get_registered_model(model)
        except self._mlflow.exceptions.MlflowException:
            raise RegistryError(f"no model named {model!r} in the registry; train one with `steward train`") from None
        aliases = {alias: str(version) for alias, version in (registered.aliases or {}).items()}
        text = (registered.tags or {}).get(TRAFFIC_PLAN_TAG)
        plan, plan_error = DEFAULT_PLAN, None
        if text:
            try:
                plan = parse_plan(text, source=f"{model}'s stored traffic plan")
            except TrafficError as error:
                plan, plan_error = None, str(error)
        return ServingState(aliases.get(CHAMPION), aliases.get(CHALLENGER), plan, plan_error)

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


# ---------------------------------------------------------------------- traffic plans (serving)
TRAFFIC_PLAN_TAG = "steward.traffic_plan"

if TYPE_CHECKING:
    from steward.delivery.traffic import ServingState, TrafficPlan
    from steward.spec import ModelSpec
