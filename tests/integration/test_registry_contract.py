"""One set of assertions on the MLflow Registry and on the in-memory fake, so the fake cannot drift.

The fake's half is in the fast tier; the MLflow half runs on the session's store and is slow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from steward.registry.adapter import Registry
from steward.registry.errors import RegistryError
from steward.registry.history import CHALLENGER, CHAMPION, ChangeKind
from steward.registry.traffic import DEFAULT_PLAN, TrafficMode, TrafficPlan
from tests.support.fakes import InMemoryRegistry
from tests.support.models import mark_validated, register_trained


@pytest.fixture(params=["in-memory", pytest.param("mlflow", marks=pytest.mark.slow)])
def any_registry(request, settings) -> Registry:
    return InMemoryRegistry() if request.param == "in-memory" else Registry.from_settings(settings)


@pytest.fixture
def spec(quick_spec, model_name):
    return quick_spec.model_copy(update={"name": model_name})


def register(registry: Registry, spec, quick_model, count: int = 1, *, validated: bool = False) -> list[str]:
    return [register_trained(registry, spec, quick_model, validated=validated).version for _ in range(count)]


def test_versions_carry_lineage_semver_and_stored_datasets(any_registry, spec, quick_model, tmp_path: Path):
    registry, model = any_registry, spec.name
    assert not registry.model_exists(model) and registry.list_versions(model) == []
    assert registry.alias_version(model, CHAMPION) is None and registry.champion(model) is None
    first = register_trained(registry, spec, quick_model)
    assert (first.version, first.semver, first.stage, first.aliases) == ("1", "1.0.0", "candidate", ())
    for key in ("data_sha256", "data_rows", "code_version", "training_seconds", "schema_fingerprint",
                "artifact_digest", "input_schema"):
        assert first.tags.get(f"steward.{key}"), key
    assert first.metrics == pytest.approx(quick_model.metrics) and first.input_schema["age"] == "float64"
    assert registry.get_version(model, "1").metrics == {}
    assert registry.get_version(model, "1", with_metrics=True).metrics == pytest.approx(quick_model.metrics)
    second = register_trained(registry, spec, quick_model)
    assert (second.version, second.semver, second.tags["steward.schema_changed"]) == ("2", "1.1.0", "false")
    assert [v.version for v in registry.list_versions(model)] == ["1", "2"] and registry.model_exists(model)
    with pytest.raises(RegistryError, match="known versions: 1, 2"):
        registry.get_version(model, "42")

    registry.set_version_tags(model, "2", {"steward.validation.status": "passed", "steward.note": 7})
    assert registry.get_version(model, "2").tags["steward.note"] == "7"
    assert registry.training_durations(model) == [pytest.approx(quick_model.lineage.training_seconds, abs=1e-3)] * 2
    holdout = registry.load_dataset(model, "1", "holdout")
    assert len(holdout) == len(quick_model.holdout_frame) and "default" in holdout.columns
    with pytest.raises(RegistryError, match="no stored 'nothing' dataset"):
        registry.load_dataset(model, "1", "nothing")
    loaded = registry.load_model(model, "1")
    assert loaded.digest == first.digest and loaded.version.version == "1"
    rows = quick_model.holdout_frame[spec.feature_names].head(50)
    assert (loaded.model.predict_proba(rows) == quick_model.estimator.predict_proba(rows)).all()
    assert registry.verify_version(model, "1") == first.digest
    assert registry.version_spec(model, "1").feature_names == spec.feature_names

    (tmp_path / "card.md").write_text("# a model card")
    uri = registry.log_version_artifact(model, "1", tmp_path / "card.md", "cards")
    assert uri.endswith("cards/card.md")
    downloaded = registry.download_version_artifact(model, "1", "cards/card.md", tmp_path / "download")
    assert downloaded is not None and downloaded.read_text() == "# a model card"
    assert registry.download_version_artifact(model, "1", "cards/other.md", tmp_path / "none") is None

    other_schema = dataclasses.replace(quick_model.lineage, schema_fingerprint="another schema")
    third = registry.register_version(model, quick_model.estimator, lineage=other_schema, metrics={},
                                      input_example=rows.head(5), datasets={})
    assert (third.version, third.semver, third.tags["steward.schema_changed"]) == ("3", "2.0.0", "true")


def test_aliases_history_and_rollback(any_registry, spec, quick_model):
    registry, model = any_registry, spec.name
    versions = register(registry, spec, quick_model, 3)
    with pytest.raises(RegistryError, match="has not passed validation"):
        registry.promote(model, versions[0], reason="skip the gate")
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback(model, reason="nothing yet")
    mark_validated(registry, model, *versions)

    bootstrap = registry.promote(model, versions[0], reason="first", actor="ci")
    assert (bootstrap.kind, bootstrap.alias, bootstrap.from_version, bootstrap.to_version, bootstrap.actor) == (
        ChangeKind.BOOTSTRAP, CHAMPION, None, versions[0], "ci")
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote(model, versions[0], reason="again")
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback(model, reason="too early")
    registry.set_alias(model, CHALLENGER, versions[1], reason="validated", kind=ChangeKind.ASSIGN)
    assert registry.get_version(model, versions[1]).aliases == (CHALLENGER,)
    registry.promote(model, versions[1], reason="better auc")
    assert registry.alias_version(model, CHALLENGER) is None  # promoting the challenger clears it
    assert registry.get_version(model, versions[0]).stage == "retired"
    registry.promote(model, versions[2], reason="newer data")
    assert registry.champion(model).version == versions[2] and registry.champion(model).metrics

    assert registry.rollback_target(model) == versions[1]
    entry = registry.rollback(model, reason="error spike", actor="oncall")
    assert (entry.kind, entry.from_version, entry.to_version, entry.actor) == (
        ChangeKind.ROLLBACK, versions[2], versions[1], "oncall")
    assert registry.alias_version(model, CHAMPION) == versions[1]
    assert registry.get_version(model, versions[2]).stage == "rolled_back"
    assert registry.get_version(model, versions[1]).stage == "champion"
    assert registry.rollback_target(model) == versions[0]
    assert registry.clear_alias(model, CHALLENGER, reason="none set") is None

    history = registry.history(model)
    assert [(e.kind, e.alias, e.to_version) for e in history] == [
        (ChangeKind.BOOTSTRAP, CHAMPION, versions[0]), (ChangeKind.ASSIGN, CHALLENGER, versions[1]),
        (ChangeKind.PROMOTE, CHAMPION, versions[1]), (ChangeKind.ASSIGN, CHALLENGER, None),
        (ChangeKind.PROMOTE, CHAMPION, versions[2]), (ChangeKind.ROLLBACK, CHAMPION, versions[1]),
    ]
    assert all(e.actor and e.reason and e.time and e.model == model for e in history)
    recorded = registry.record(model, ChangeKind.DELIVERY_DECISION, "canary step 1: hold", details={"step": "1"})
    assert registry.history(model)[-1] == recorded and recorded.actor == registry.actor


def test_retention_archives_by_tag_and_an_archived_version_takes_no_alias(any_registry, spec, quick_model):
    registry, model = any_registry, spec.name
    versions = register(registry, spec, quick_model, 5, validated=True)
    registry.promote(model, versions[0], reason="first")
    registry.promote(model, versions[2], reason="second")
    decision = registry.apply_retention(model, keep_champions=3, keep_recent=1)
    assert decision.archive == (versions[1], versions[3])
    assert {v.version for v in registry.list_versions(model) if v.archived} == {versions[1], versions[3]}
    assert registry.load_model(model, versions[1]).model is not None  # archived is still loadable
    with pytest.raises(RegistryError, match="archived"):
        registry.set_alias(model, CHALLENGER, versions[3], reason="bring it back", kind=ChangeKind.ASSIGN)
    archived = [e for e in registry.history(model) if e.kind is ChangeKind.ARCHIVE]
    assert sorted(e.to_version for e in archived) == [versions[1], versions[3]]


def test_traffic_plans_need_a_challenger_and_are_read_with_the_aliases(any_registry, spec, quick_model):
    registry, model = any_registry, spec.name
    with pytest.raises(RegistryError, match="no model named"):
        registry.get_traffic_plan(model)
    with pytest.raises(RegistryError, match="no model named"):
        registry.serving_state(model)
    champion, challenger = register(registry, spec, quick_model, 2, validated=True)
    registry.promote(model, champion, reason="first")
    assert registry.get_traffic_plan(model) == DEFAULT_PLAN
    canary = TrafficPlan(mode=TrafficMode.CANARY, challenger_percent=25)
    with pytest.raises(RegistryError, match="has no challenger"):
        registry.set_traffic_plan(model, canary, reason="too soon")

    registry.set_alias(model, CHALLENGER, challenger, reason="validated", kind=ChangeKind.ASSIGN)
    entry = registry.set_traffic_plan(model, canary, reason="canary step", actor="flow")
    assert (entry.kind, entry.from_version, entry.to_version, entry.actor) == (
        ChangeKind.TRAFFIC_PLAN, champion, challenger, "flow")
    assert entry.details["summary"] == canary.describe()
    assert registry.get_traffic_plan(model) == canary
    state = registry.serving_state(model)
    assert (state.champion, state.challenger, state.plan, state.plan_error) == (champion, challenger, canary, None)
    back = registry.set_traffic_plan(model, DEFAULT_PLAN, reason="done")
    assert back.to_version is None and registry.serving_state(model).plan == DEFAULT_PLAN


def test_versions_are_listed_with_their_aliases_and_retention_never_archives_an_aliased_one(
    any_registry, spec, quick_model
):
    registry, model = any_registry, spec.name
    versions = register(registry, spec, quick_model, 5, validated=True)
    registry.promote(model, versions[0], reason="first")
    registry.promote(model, versions[3], reason="second")
    registry.set_alias(model, CHALLENGER, versions[1], reason="an old version back on trial", kind=ChangeKind.ASSIGN)
    listed = {v.version: v.aliases for v in registry.list_versions(model)}
    assert listed == {versions[0]: (), versions[1]: (CHALLENGER,), versions[2]: (), versions[3]: (CHAMPION,),
                      versions[4]: ()}
    decision = registry.apply_retention(model, keep_champions=1, keep_recent=1)
    assert versions[1] not in decision.archive and versions[3] not in decision.archive
    assert set(decision.archive) == {versions[0], versions[2]}
