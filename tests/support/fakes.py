"""In-memory services for fast tests: the real procedures' code, no MLflow, no files, no server.

- ``InMemoryRegistry`` keeps versions, tags, aliases, model tags, the audit history and fitted
  estimators in dictionaries. It subclasses ``Registry`` and replaces only what reads or writes
  MLflow, so promotion, rollback and retention run Registry's own code. The contract test
  (tests/integration/test_registry_contract.py) runs the same assertions on both.
- The prediction log and the ledger are the real classes on fsspec's ``memory://`` filesystem.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from steward.registry.adapter import LoadedModel, Registry, VersionInfo
from steward.registry.errors import ArtifactIntegrityError, RegistryError
from steward.registry.history import AuditEntry, next_semver
from steward.registry.lineage import Lineage
from steward.registry.registration import TRUSTED_SKOPS_TYPES, truncate_tag
from steward.services import Services
from steward.store.reader import PredictionStore

if TYPE_CHECKING:
    from steward.spec import ModelSpec

MEMORY_ROOT = "memory://steward-tests"


@dataclass
class _StoredVersion:
    info: VersionInfo  # aliases are read from the model, not kept here
    model_bytes: bytes  # the pickled estimator: what load_model deserialises and the digest covers
    datasets: dict[str, pd.DataFrame]
    spec_yaml: str
    artifacts: dict[str, bytes] = field(default_factory=dict)  # "<artifact_path>/<file name>" -> bytes


@dataclass
class _StoredModel:
    tags: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)
    versions: dict[str, _StoredVersion] = field(default_factory=dict)


class InMemoryRegistry(Registry):
    """Registry's public API over dictionaries; the alias policy is inherited from Registry."""

    def __init__(self, *, actor: str = "steward", extra_trusted_types: tuple[str, ...] = ()) -> None:
        self.tracking_uri = f"{MEMORY_ROOT}/registry"
        self.artifact_root = f"{MEMORY_ROOT}/artifacts"
        self.actor = actor
        self.trusted_types = tuple(dict.fromkeys((*TRUSTED_SKOPS_TYPES, *extra_trusted_types)))
        self._models: dict[str, _StoredModel] = {}
        self._audit: list[AuditEntry] = []

    # ------------------------------------------------------------------ versions
    def _model(self, model: str) -> _StoredModel:
        if model not in self._models:
            raise RegistryError(f"no model named {model!r} in the registry; train one with `steward train`")
        return self._models[model]

    def _stored(self, model: str, version: str) -> _StoredVersion:
        stored = self._models.get(model)
        if stored is None or str(version) not in stored.versions:
            known = list(stored.versions) if stored else []
            raise RegistryError(
                f"model {model!r} has no version {version}"
                + (f"; known versions: {', '.join(known)}" if known else "; it has no versions yet (run `steward train`)")
            )
        return stored.versions[str(version)]

    def model_exists(self, model: str) -> bool:
        return model in self._models

    def get_version(self, model: str, version: str, *, with_metrics: bool = False) -> VersionInfo:
        info = self._stored(model, version).info
        aliases = tuple(alias for alias, v in self._models[model].aliases.items() if v == info.version)
        return replace(info, aliases=aliases, tags=dict(info.tags),
                       metrics=dict(info.metrics) if with_metrics else {})

    def list_versions(self, model: str) -> list[VersionInfo]:
        stored = self._models.get(model)
        versions = sorted(stored.versions, key=int) if stored else []
        return [self.get_version(model, version) for version in versions]

    def alias_version(self, model: str, alias: str) -> str | None:
        stored = self._models.get(model)
        return stored.aliases.get(alias) if stored else None

    def set_version_tags(self, model: str, version: str, tags: dict[str, str]) -> None:
        stored = self._stored(model, version)
        stored.info.tags.update({key: truncate_tag(str(value)) for key, value in tags.items()})

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
        """Keep the estimator pickled, with the tags Registry.register_version writes."""
        self._refuse_untrusted_types(estimator)
        previous = self.list_versions(model_name)
        latest = previous[-1] if previous else None
        schema_changed = bool(latest) and latest.tags.get("steward.schema_fingerprint") != lineage.schema_fingerprint
        semver = next_semver(latest.semver if latest else None, schema_changed)
        # Registry infers the signature from the model's output on the example: a model that cannot score fails here.
        _ = estimator.predict_proba(input_example) if hasattr(estimator, "predict_proba") else estimator.predict(
            input_example
        )
        model_bytes = pickle.dumps(estimator)
        tags = {
            **lineage.as_tags(),
            "steward.semver": semver,
            "steward.stage": "candidate",
            "steward.artifact_digest": hashlib.sha256(model_bytes).hexdigest(),
            "steward.input_schema": json.dumps({column: str(dtype) for column, dtype in input_example.dtypes.items()}),
            "steward.schema_changed": str(schema_changed).lower(),
            "steward.registered_by": self.actor,
        }
        stored = self._models.setdefault(model_name, _StoredModel(tags={"steward.managed": "true"}))
        version = str(max((int(v) for v in stored.versions), default=0) + 1)
        run_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        info = VersionInfo(
            model=model_name, version=version, run_id=run_id, source=f"{self.artifact_root}/{run_id}/model",
            created=now.replace(microsecond=now.microsecond // 1000 * 1000), aliases=(),
            tags={k: truncate_tag(v) for k, v in tags.items()}, metrics={k: float(v) for k, v in metrics.items()},
        )
        stored.versions[version] = _StoredVersion(
            info, model_bytes, {name: frame.copy() for name, frame in datasets.items()}, lineage.spec_yaml
        )
        return self.get_version(model_name, version, with_metrics=True)

    def load_model(self, model: str, version: str, *, spec: Any = None) -> LoadedModel:
        """A fresh copy of the estimator, after checking its bytes against the recorded digest."""
        digest = self.verify_version(model, version)
        return LoadedModel(pickle.loads(self._stored(model, version).model_bytes), self.get_version(model, version),
                           digest)

    def verify_version(self, model: str, version: str) -> str:
        stored = self._stored(model, version)
        digest, recorded = hashlib.sha256(stored.model_bytes).hexdigest(), stored.info.digest
        if digest != recorded:
            raise ArtifactIntegrityError(
                f"{model} v{version}: stored artifacts changed since registration "
                f"(digest {digest[:12]}… != recorded {str(recorded)[:12]}…)"
            )
        return digest

    def tamper(self, model: str, version: str) -> None:
        """Change a version's stored bytes, as a corrupted or replaced artifact would (tests of the refusal)."""
        stored = self._stored(model, version)
        stored.model_bytes += b"tampered"

    def load_dataset(self, model: str, version: str, name: str) -> pd.DataFrame:
        stored = self._stored(model, version)
        if name not in stored.datasets:
            raise RegistryError(f"{model} v{version} has no stored {name!r} dataset")
        return stored.datasets[name].copy()

    def log_version_artifact(self, model: str, version: str, local_path: str | Path, artifact_path: str) -> str:
        stored = self._stored(model, version)
        key = f"{artifact_path}/{Path(local_path).name}"
        stored.artifacts[key] = Path(local_path).read_bytes()
        return f"{self.artifact_root}/{stored.info.run_id}/artifacts/{key}"

    def download_version_artifact(self, model: str, version: str, artifact_path: str, dst: str | Path) -> Path | None:
        stored = self._stored(model, version)
        found = {key: data for key, data in stored.artifacts.items()
                 if key == artifact_path or key.startswith(artifact_path.rstrip("/") + "/")}
        if not found:
            return None
        for key, data in found.items():
            target = Path(dst) / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return Path(dst) / artifact_path

    def version_spec(self, model: str, version: str) -> ModelSpec:
        import yaml

        from steward.spec import parse_spec

        text = self._stored(model, version).spec_yaml
        return parse_spec(yaml.safe_load(text), source=f"{model} v{version} spec.yaml")

    # ------------------------------------------------------------------ aliases and history
    def _record(self, entry: AuditEntry) -> AuditEntry:
        # Stored as Registry stores it: the reason truncated, the details through JSON.
        kept = replace(entry, reason=truncate_tag(entry.reason), details=json.loads(json.dumps(entry.details)))
        self._audit.append(kept)
        return entry

    def _model_state(self, model: str) -> tuple[dict[str, str], dict[str, str]]:
        stored = self._model(model)
        return dict(stored.aliases), dict(stored.tags)

    def _set_model_tag(self, model: str, key: str, value: str) -> None:
        self._model(model).tags[key] = value

    def _write_alias(self, model: str, alias: str, version: str) -> None:
        self._model(model).aliases[alias] = version

    def _delete_alias(self, model: str, alias: str) -> None:
        del self._model(model).aliases[alias]

    def history(self, model: str) -> list[AuditEntry]:
        return sorted((entry for entry in self._audit if entry.model == model), key=lambda e: e.sequence)


def in_memory_services(registry: Registry | None = None) -> Services:
    """A fake registry, and the real prediction log and ledger on a fresh ``memory://`` folder of their own."""
    root = f"{MEMORY_ROOT}/{uuid.uuid4().hex}"
    return Services.at(registry or InMemoryRegistry(), PredictionStore(root))


def forget(services: Services) -> None:
    """Delete what ``services`` wrote to the process-wide memory filesystem."""
    import fsspec

    memory = fsspec.filesystem("memory")
    if memory.exists(services.store.root):
        memory.rm(services.store.root, recursive=True)
