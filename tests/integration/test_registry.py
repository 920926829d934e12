"""The registry adapter against a real MLflow SQLite store: what only MLflow can show.

Retention, traffic plans and the alias rules are asserted on MLflow and on the in-memory fake
alike in test_registry_contract.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from steward.registry.adapter import Registry
from steward.registry.errors import ArtifactIntegrityError, RegistryError
from steward.registry.history import CHAMPION, ChangeKind
from tests.support.models import register_trained

pytestmark = pytest.mark.slow


def test_register_records_lineage_and_semver(registry, write_spec, register_version, example_frame, model_name):
    spec_path = write_spec()
    first = register_version(spec_path, example_frame)
    assert first.semver == "1.0.0" and first.stage == "candidate"
    for key in ("data_sha256", "data_rows", "data_window_start", "data_window_end", "code_version", "packages",
                "training_seconds", "schema_fingerprint", "artifact_digest", "input_schema"):
        assert first.tags.get(f"steward.{key}"), key
    assert first.tags["steward.data_rows"] == str(len(example_frame))
    assert first.metrics["roc_auc"] > 0.7
    assert set(registry.load_dataset(model_name, first.version, "holdout").columns) >= {"age", "default"}

    second = register_version(spec_path, example_frame.tail(4000))
    assert second.semver == "1.1.0"
    assert second.tags["steward.data_sha256"] != first.tags["steward.data_sha256"]

    fewer_features = write_spec(features=[f for f in _example_features() if f["name"] != "education"])
    third = register_version(fewer_features, example_frame)
    assert third.semver == "2.0.0" and third.tags["steward.schema_changed"] == "true"


def _example_features() -> list[dict]:
    import yaml

    from steward.simulation.examples import example_spec_text

    return yaml.safe_load(example_spec_text())["features"]


def test_tampered_artifact_is_refused(registry, write_spec, register_version, example_frame, model_name, settings):
    info = register_version(write_spec(), example_frame)
    assert registry.load_model(model_name, info.version).digest == info.digest
    model_files = [p for p in Path(settings.home).rglob("*") if p.is_file() and info.source.split("/")[-1] in str(p)]
    pickled = next(p for p in model_files if p.name.startswith("model.") and p.suffix in (".skops", ".pkl"))
    pickled.write_bytes(pickled.read_bytes() + b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="changed since registration"):
        registry.load_model(model_name, info.version)


def test_the_history_lives_in_mlflow_so_a_new_client_reads_the_rollback_path(registry, settings, quick_spec,
                                                                            quick_model, model_name):
    spec = quick_spec.model_copy(update={"name": model_name})
    versions = [register_trained(registry, spec, quick_model, validated=True).version for _ in range(3)]
    for version in versions:
        registry.promote(model_name, version, reason=f"v{version} is better")

    restarted = Registry.from_settings(settings)  # the history lives in MLflow, not in this process
    assert restarted.rollback_target(model_name) == versions[1]
    entry = restarted.rollback(model_name, reason="error spike", actor="oncall")
    assert (entry.from_version, entry.to_version) == (versions[2], versions[1])
    assert Registry.from_settings(settings).rollback_target(model_name) == versions[0]
    assert [(e.kind, e.to_version) for e in restarted.history(model_name) if e.alias == CHAMPION] == [
        (ChangeKind.BOOTSTRAP, versions[0]), (ChangeKind.PROMOTE, versions[1]), (ChangeKind.PROMOTE, versions[2]),
        (ChangeKind.ROLLBACK, versions[1]),
    ]


class Opaque(BaseEstimator, ClassifierMixin):
    """An estimator type skops does not know, so it must not be saved without being trusted."""

    def fit(self, X, y):
        self.classes_ = sorted(set(y))
        return self

    def predict(self, X):
        return [self.classes_[0]] * len(X)


def test_untrusted_estimator_is_refused_and_nothing_is_registered(registry, write_spec, example_frame, model_name):
    from steward.spec import load_spec
    from steward.training.data import frame_sha256, split_train_holdout
    from steward.training.train import train_model

    spec = load_spec(write_spec())
    trained = train_model(spec, split_train_holdout(example_frame, spec), data_sha256=frame_sha256(example_frame),
                          data_source="test")
    with pytest.raises(RegistryError, match="STEWARD_SKOPS_TRUSTED_TYPES"):
        registry.register_version(
            model_name, Opaque().fit(None, [0, 1]), lineage=trained.lineage, metrics=trained.metrics,
            input_example=trained.holdout_frame[spec.feature_names].head(5), datasets={},
        )
    assert not registry.model_exists(model_name)


def test_failure_after_creating_the_version_removes_it(registry, write_spec, register_version, example_frame,
                                                       model_name, monkeypatch):
    spec_path = write_spec()
    kept = register_version(spec_path, example_frame)

    def broken_get_version(*args, **kwargs):
        raise RuntimeError("store went away")

    monkeypatch.setattr(registry, "get_version", broken_get_version)
    with pytest.raises(RuntimeError, match="store went away"):
        register_version(spec_path, example_frame)
    monkeypatch.undo()
    assert [v.version for v in registry.list_versions(model_name)] == [kept.version]
