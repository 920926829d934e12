"""Adopting models registered by plain MLflow code (no Steward involved), on the session's real MLflow store,
served by a real gateway over HTTP; every refusal leaves the registry as it was."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.models import infer_signature

from steward.registry.adoption import AdoptionCode, AdoptionError
from steward.registry.flavors import Flavor, ScoreSource
from steward.registry.history import CHALLENGER, CHAMPION

FEATURES = ["income", "debt_ratio", "utilisation", "accounts"]
TARGET = "defaulted"


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        yield


def team_frame(rows: int, seed: int) -> pd.DataFrame:
    """A team's own tabular data: three measurements and a count, a binary target they drive."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "income": rng.normal(50, 15, rows).round(2),
        "debt_ratio": rng.uniform(0, 1, rows).round(3),
        "utilisation": rng.uniform(0, 1, rows).round(3),
        "accounts": rng.integers(0, 8, rows).astype("int64"),
    })
    logit = -0.04 * (frame.income - 50) + 2.5 * frame.debt_ratio + 1.5 * frame.utilisation - 0.2 * frame.accounts - 1.2
    frame[TARGET] = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    return frame


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    return {"train": team_frame(2000, 1), "reference": team_frame(800, 2), "holdout": team_frame(1500, 3)}


@pytest.fixture
def data_urls(tmp_path: Path, data) -> dict[str, str]:
    urls = {}
    for name, frame in data.items():
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
        urls[name] = str(tmp_path / f"{name}.parquet")
    urls["reference_missing_column"] = str(tmp_path / "reference_missing.parquet")
    data["reference"].drop(columns=["utilisation"]).to_parquet(urls["reference_missing_column"], index=False)
    return urls


def log_team_model(name: str, flavor: str, data, *, signature: bool = True) -> str:
    """Register a model the way a team does with plain MLflow; returns the version."""
    train = data["train"]
    x, y = train[FEATURES], train[TARGET]
    mlflow.set_experiment(f"team/{name}")
    with mlflow.start_run():
        mlflow.log_params({"flavor": flavor, "rows": len(train)})
        mlflow.log_input(mlflow.data.from_pandas(train, name="team-train"), context="training")
        if flavor == "xgboost":
            import xgboost

            model = xgboost.XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1).fit(x, y)
            sig = infer_signature(x, model.predict_proba(x)) if signature else None
            info = mlflow.xgboost.log_model(model, name="model", signature=sig, registered_model_name=name)
        elif flavor == "lightgbm":
            import lightgbm

            model = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=7, n_jobs=1, verbose=-1).fit(x, y)
            sig = infer_signature(x, model.predict_proba(x)) if signature else None
            info = mlflow.lightgbm.log_model(model, name="model", signature=sig, registered_model_name=name)
        elif flavor == "pyfunc":
            from sklearn.linear_model import LogisticRegression

            wrapped = TeamScorer(LogisticRegression(max_iter=200).fit(x, y))
            sig = infer_signature(x, wrapped.predict(None, x)) if signature else None
            info = mlflow.pyfunc.log_model(name="model", python_model=wrapped, signature=sig,
                                           registered_model_name=name)
        elif flavor == "unloadable":
            info = mlflow.pyfunc.log_model(name="model", loader_module="team_package_not_installed",
                                           data_path=str(Path(__file__)), signature=infer_signature(x),
                                           registered_model_name=name)
        mlflow.log_metric("train_rows", len(train))
    return str(info.registered_model_version)


class TeamScorer(mlflow.pyfunc.PythonModel):
    """A team's custom wrapper: returns a frame with the decision and the probability of default."""

    def __init__(self, model) -> None:
        self.model = model

    def predict(self, context, model_input, params=None):
        probability = self.model.predict_proba(model_input[FEATURES])[:, 1]
        return pd.DataFrame({"decision": (probability >= 0.5).astype("int64"), "p_default": probability})


def write_spec_from_model(reg, tmp_path: Path, name: str, version: str, urls, **extra) -> Path:
    """``steward init --from-model``'s spec, with the training data path and any extra sections."""
    document = reg.spec_document_for(f"models:/{name}/{version}", target=TARGET, task="binary_classification",
                                          data_path=urls["train"], score_column=extra.pop("score_column", None))
    document["data_validation"] = {"min_rows": 200}
    document.update(extra)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def adopt(name: str, spec_path: Path, urls, **options):
    from flows.adopt import adopt as adopt_flow

    return adopt_flow(spec_path=str(spec_path), reference=urls.get("reference_url", urls["reference"]),
                      holdout=urls["holdout"], model=name, **options)


def registry_snapshot(registry, name: str):
    """Everything adoption could change: each version's tags, the aliases, the model's tags."""
    aliases, tags = registry._raw_model_state(name)
    return aliases, tags, {v.version: dict(v.tags) for v in registry.list_versions(name)}


def predict(gateway, name: str, frame: pd.DataFrame, rows: int = 5) -> dict:
    records = frame[FEATURES].head(rows).to_dict(orient="records")
    with gateway.client() as client:
        response = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": records})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("flavor", ["xgboost", "lightgbm"])
def test_a_team_model_is_adopted_as_champion_and_served_over_http(registry, tmp_path, data, data_urls, model_name,
                                                                  start_gateway, flavor):
    version = log_team_model(model_name, flavor, data)
    spec_path = write_spec_from_model(registry, tmp_path, model_name, version, data_urls)
    outcome = adopt(model_name, spec_path, data_urls)

    assert (outcome.flavor, outcome.scores, outcome.action, outcome.passed) == (flavor, "predict_proba",
                                                                               "champion", True)
    assert "code version" in outcome.missing_lineage and "dataset inputs" not in outcome.missing_lineage
    info = registry.get_version(model_name, version)
    assert info.aliases == (CHAMPION,) and info.digest and info.tags["steward.flavor"] == flavor
    assert registry.is_managed(model_name) and model_name in registry.managed_models()
    loaded = registry.load_model(model_name, version)
    assert (loaded.flavor, loaded.scores) == (Flavor(flavor), ScoreSource.PREDICT_PROBA)
    expected = loaded.model.predict_proba(data["holdout"][FEATURES].head(5).astype("float64"))[:, 1]

    gateway = start_gateway([model_name])
    body = predict(gateway, model_name, data["holdout"])
    assert body["version"] == version and body["arm"] == CHAMPION
    assert np.allclose(body["scores"], expected, atol=1e-6)
    assert set(body["predictions"]) <= {0, 1}


def test_a_custom_pyfunc_is_adopted_with_a_spec_written_from_its_signature(registry, tmp_path, data, data_urls,
                                                                           model_name, start_gateway):
    version = log_team_model(model_name, "pyfunc", data)
    spec_path = write_spec_from_model(registry, tmp_path, model_name, version, data_urls, score_column="p_default",
                                      estimator={"score_column": "p_default", "label_column": "decision"})
    written = yaml.safe_load(spec_path.read_text())
    assert [f["name"] for f in written["features"]] == FEATURES
    assert {f["name"]: f["type"] for f in written["features"]}["accounts"] == "integer"

    outcome = adopt(model_name, spec_path, data_urls)
    assert (outcome.flavor, outcome.scores, outcome.action) == ("python_function", "output_column", "champion")
    assert outcome.metrics["roc_auc"] > 0.6
    body = predict(start_gateway([model_name]), model_name, data["holdout"])
    assert body["version"] == version and all(0 <= s <= 1 for s in body["scores"])


def test_a_classifier_without_scores_is_served_with_labels_only_and_never_given_made_up_scores(
    registry, tmp_path, data, data_urls, model_name, start_gateway
):
    version = log_team_model(model_name, "pyfunc", data)
    by_auc = write_spec_from_model(registry, tmp_path, model_name, version, data_urls,
                                   estimator={"label_column": "decision"})
    before = registry_snapshot(registry, model_name)
    with pytest.raises(AdoptionError, match="labels but no scores") as refused:
        adopt(model_name, by_auc, data_urls)
    assert refused.value.code is AdoptionCode.NO_SCORES and registry_snapshot(registry, model_name) == before

    by_accuracy = write_spec_from_model(registry, tmp_path, model_name, version, data_urls,
                                        estimator={"label_column": "decision"}, gates={"primary_metric": "accuracy"})
    outcome = adopt(model_name, by_accuracy, data_urls)
    assert (outcome.scores, outcome.action) == ("none", "champion") and "roc_auc" not in outcome.metrics
    body = predict(start_gateway([model_name]), model_name, data["holdout"])
    assert set(body["predictions"]) <= {0, 1} and "scores" not in body and "probabilities" not in body


def test_the_team_aliases_and_other_versions_are_left_as_they_were(registry, tmp_path, data, data_urls, model_name):
    first = log_team_model(model_name, "xgboost", data)
    second = log_team_model(model_name, "lightgbm", data)
    mlflow.MlflowClient().set_registered_model_alias(model_name, "production", first)
    mlflow.MlflowClient().set_model_version_tag(model_name, first, "team.owner", "risk")
    spec_path = write_spec_from_model(registry, tmp_path, model_name, second, data_urls)

    outcome = adopt(model_name, spec_path, data_urls, alias=None, version=second)
    assert outcome.action == "champion"
    aliases = registry.mlflow_aliases(model_name)
    assert aliases == {"production": first, CHAMPION: second}
    untouched = registry.get_version(model_name, first)
    assert untouched.tags == {"team.owner": "risk"}
    assert "production" in untouched.aliases


def test_alias_names_are_configurable_and_a_clash_is_refused_with_nothing_changed(registry, tmp_path, data,
                                                                                  data_urls, model_name):
    version = log_team_model(model_name, "xgboost", data)
    mlflow.MlflowClient().set_registered_model_alias(model_name, CHAMPION, version)
    spec_path = write_spec_from_model(registry, tmp_path, model_name, version, data_urls)
    before = registry_snapshot(registry, model_name)
    with pytest.raises(AdoptionError, match="registry.champion_alias") as refused:
        adopt(model_name, spec_path, data_urls)
    assert refused.value.code is AdoptionCode.ALIAS_CLASH
    assert registry_snapshot(registry, model_name) == before

    renamed = write_spec_from_model(registry, tmp_path, model_name, version, data_urls,
                                    registry={"champion_alias": "steward-champion",
                                              "challenger_alias": "steward-challenger"})
    outcome = adopt(model_name, renamed, data_urls)
    assert outcome.action == "champion"
    assert registry.mlflow_aliases(model_name) == {CHAMPION: version, "steward-champion": version}
    assert registry.alias_version(model_name, CHAMPION) == version  # Steward's role, through its own name
    assert set(registry.get_version(model_name, version).aliases) == {CHAMPION, "champion (team)"}


def test_a_model_steward_does_not_maintain_is_never_touched(registry, tmp_path, data, data_urls, model_name):
    from steward.registry.errors import RegistryError
    from steward.registry.history import ChangeKind
    from steward.spec import load_spec
    from tests.support.models import register_trained, train_spec

    first = log_team_model(model_name, "xgboost", data)
    for _ in range(3):
        log_team_model(model_name, "lightgbm", data)
    mlflow.MlflowClient().set_registered_model_alias(model_name, CHAMPION, first)
    before = registry_snapshot(registry, model_name)

    assert model_name not in registry.managed_models() and model_name in registry.all_models()
    assert registry.champion(model_name) is None and registry.serving_state(model_name).champion is None
    with pytest.raises(RegistryError, match="not maintained by Steward"):
        registry.apply_retention(model_name, keep_champions=0, keep_recent=1)
    with pytest.raises(RegistryError, match="not maintained by Steward"):
        registry.set_alias(model_name, CHALLENGER, first, reason="test", kind=ChangeKind.ASSIGN)
    spec_path = write_spec_from_model(registry, tmp_path, model_name, first, data_urls)
    spec = load_spec(spec_path)
    with pytest.raises(RegistryError, match="Steward does not maintain it"):
        register_trained(registry, spec, train_spec(spec, data["train"], data_urls["train"]))
    assert registry_snapshot(registry, model_name) == before


@pytest.mark.parametrize("case", ["no_signature_no_spec", "signature_disagrees", "unloadable", "reference_missing"])
def test_bad_cases_are_refused_with_a_clear_error_and_nothing_changed(registry, tmp_path, data, data_urls,
                                                                      model_name, case):
    flavor = {"unloadable": "unloadable"}.get(case, "xgboost")
    version = log_team_model(model_name, flavor, data, signature=case != "no_signature_no_spec")
    before = registry_snapshot(registry, model_name)
    if case == "no_signature_no_spec":
        with pytest.raises(AdoptionError, match="without a column signature") as refused:
            registry.spec_document_for(f"models:/{model_name}/{version}", target=TARGET,
                                       task="binary_classification")
        assert refused.value.code is AdoptionCode.NO_SIGNATURE
        assert registry_snapshot(registry, model_name) == before
        return
    spec_path = write_spec_from_model(registry, tmp_path, model_name, version, data_urls)
    expected = {"signature_disagrees": (AdoptionCode.SIGNATURE_MISMATCH, "'debt_ratio' is categorical"),
                "unloadable": (AdoptionCode.UNLOADABLE, "team_package_not_installed"),
                "reference_missing": (AdoptionCode.DATA_MISMATCH, r"lacks the columns \['utilisation'\]")}[case]
    if case == "signature_disagrees":
        document = yaml.safe_load(spec_path.read_text())
        for feature in document["features"]:
            if feature["name"] == "debt_ratio":
                feature["type"] = "categorical"
        spec_path.write_text(yaml.safe_dump(document))
    urls = {**data_urls, "reference_url": data_urls["reference_missing_column"]} if case == "reference_missing" \
        else data_urls
    with pytest.raises(AdoptionError, match=expected[1]) as refused:
        adopt(model_name, spec_path, urls)
    assert refused.value.code is expected[0]
    assert registry_snapshot(registry, model_name) == before
    assert not registry.is_managed(model_name)


@pytest.mark.slow
def test_adopted_xgboost_canaried_against_a_scikit_learn_challenger_promoted_then_rolled_back(
    registry, tmp_path, data, data_urls, model_name, start_gateway
):
    from steward.registry.history import ChangeKind
    from steward.registry.traffic import TrafficPlan
    from steward.spec import load_spec
    from tests.support.models import mark_validated, register_trained, train_spec, with_estimator_params

    version = log_team_model(model_name, "xgboost", data)
    spec_path = write_spec_from_model(registry, tmp_path, model_name, version, data_urls)
    assert adopt(model_name, spec_path, data_urls).action == "champion"

    spec = with_estimator_params(load_spec(spec_path), max_iter=20)
    challenger = register_trained(registry, spec, train_spec(spec, data["train"], data_urls["train"]))
    assert challenger.tags["steward.flavor"] == "sklearn"
    mark_validated(registry, model_name, challenger.version)
    registry.set_alias(model_name, CHALLENGER, challenger.version, reason="test challenger", kind=ChangeKind.ASSIGN)
    gateway = start_gateway([model_name])
    plan = TrafficPlan(mode="canary", challenger_percent=30)
    registry.set_traffic_plan(model_name, plan, reason="canary 30%")
    gateway.wait_for_plan(model_name, plan)
    answers = [predict(gateway, model_name, data["holdout"].sample(1, random_state=i), rows=1) for i in range(120)]
    arms = Counter((a["arm"], a["version"]) for a in answers)
    assert set(arms) == {(CHAMPION, version), (CHALLENGER, challenger.version)}
    assert all(0 <= a["scores"][0] <= 1 for a in answers)

    registry.promote(model_name, challenger.version, reason="canary passed")
    assert registry.alias_version(model_name, CHAMPION) == challenger.version
    registry.rollback(model_name, reason="test rollback")
    assert registry.alias_version(model_name, CHAMPION) == version
    gateway.wait_until(lambda: predict(gateway, model_name, data["holdout"])["version"] == version,
                       "the gateway to serve the adopted xgboost champion again")
