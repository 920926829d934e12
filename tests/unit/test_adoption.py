"""Adoption's decisions on plain values: signatures against specs, specs from signatures, alias names, lineage."""

from __future__ import annotations

import pandas as pd
import pytest

from steward.registry.adoption import (
    AdoptedLineage,
    AdoptionCode,
    AdoptionError,
    AliasNames,
    SignatureColumn,
    alias_clashes,
    frame_problems,
    signature_mismatches,
    spec_document_from_signature,
)
from steward.registry.errors import RegistryError
from steward.registry.flavors import Flavor, flavor_of_mlmodel
from steward.spec import SpecError, parse_spec

SIGNATURE = [SignatureColumn("income", "double"), SignatureColumn("accounts", "long"),
             SignatureColumn("region", "string"), SignatureColumn("note", "string", required=False)]


def test_a_signature_that_agrees_with_the_spec_gives_no_problems():
    features = {"income": "numeric", "accounts": "integer", "region": "categorical"}
    assert signature_mismatches(SIGNATURE, features) == []


def test_every_disagreement_is_named():
    problems = signature_mismatches(SIGNATURE, {"income": "categorical", "accounts": "integer", "age": "numeric"})
    assert any("'age' is not an input" in p for p in problems)
    assert any("requires 'region'" in p for p in problems)
    assert any("'income' is categorical in the spec but double" in p for p in problems)
    assert not any("note" in p for p in problems)  # an optional input the spec may leave out


def test_a_spec_written_from_a_signature_parses_and_asks_for_target_and_task():
    document = spec_document_from_signature("team-model", SIGNATURE, target="defaulted",
                                            task="binary_classification", data_path="s3://bucket/train.parquet")
    spec = parse_spec(document)
    assert [(f.name, f.type.value, f.nullable) for f in spec.features] == [
        ("income", "numeric", False), ("accounts", "integer", False), ("region", "categorical", False),
        ("note", "categorical", True)]
    assert spec.target == "defaulted" and spec.registry.champion_alias == "champion"


def test_a_spec_from_a_pyfunc_signature_names_its_score_column_and_alias_names():
    document = spec_document_from_signature("team-model", SIGNATURE[:2], target="y", task="binary_classification",
                                            score_column="p_default", champion_alias="steward-champion",
                                            challenger_alias="steward-challenger")
    spec = parse_spec(document)
    assert spec.estimator.score_column == "p_default"
    assert (spec.registry.champion_alias, spec.registry.challenger_alias) == ("steward-champion",
                                                                              "steward-challenger")


def test_no_signature_is_refused_with_its_code():
    with pytest.raises(AdoptionError) as refused:
        spec_document_from_signature("team-model", [], target="y", task="regression")
    assert refused.value.code is AdoptionCode.NO_SIGNATURE


def test_alias_names_must_differ():
    document = spec_document_from_signature("m", SIGNATURE[:1], target="y", task="regression")
    document["registry"] = {"champion_alias": "prod", "challenger_alias": "prod"}
    with pytest.raises(SpecError, match="give them different names"):
        parse_spec(document)


def test_a_team_alias_with_stewards_name_is_a_clash_on_a_model_steward_does_not_maintain():
    team = {"champion": "3", "production": "2"}
    assert alias_clashes(team, AliasNames(), managed=False)[0].startswith("the model already has an alias 'champion'")
    assert alias_clashes(team, AliasNames("steward-champion", "steward-challenger"), managed=False) == []
    assert alias_clashes(team, AliasNames(), managed=True) == []  # Steward's own aliases


def test_roles_are_read_through_the_configured_names_and_team_aliases_are_shown_as_theirs():
    names = AliasNames.from_tags(AliasNames("prod-steward", "next-steward").as_tags())
    assert names.roles({"prod-steward": 4, "champion": 2, "next-steward": "5"}) == {"champion": "4",
                                                                                    "challenger": "5"}
    assert names.to_mlflow("champion") == "prod-steward" and names.to_mlflow("other") == "other"
    assert [names.describe(a) for a in ("prod-steward", "champion", "production")] == [
        "champion", "champion (team)", "production"]
    assert AliasNames.from_tags({}) == AliasNames()


def test_lineage_says_what_is_missing():
    full = AdoptedLineage("run1", {"depth": "3"}, {"auc": 0.8}, ("train (digest ab, local)",), "abc123")
    assert full.missing == ()
    bare = AdoptedLineage(None, has_signature=False)
    assert bare.missing == ("source run", "parameters", "metrics", "dataset inputs", "code version", "signature")
    assert bare.as_tags()["steward.adopted.missing"].startswith("source run, parameters")


def test_a_data_set_missing_columns_or_rows_is_named():
    frame = pd.DataFrame({"income": [1.0]})
    assert frame_problems(frame, ["income", "accounts"], "reference", "s3://x.parquet") == [
        "the reference set at s3://x.parquet lacks the columns ['accounts'] that the spec requires"]
    assert frame_problems(frame.iloc[:0], ["income"], "holdout", "h.csv") == ["the holdout set at h.csv has no rows"]


def test_the_flavor_is_the_first_steward_loads_natively_else_the_python_function():
    assert flavor_of_mlmodel({"python_function": {}, "xgboost": {}}) is Flavor.XGBOOST
    assert flavor_of_mlmodel({"python_function": {}, "sklearn": {}}) is Flavor.SKLEARN
    assert flavor_of_mlmodel({"python_function": {"loader_module": "mlflow.pyfunc.model"}}) is Flavor.PYFUNC
    with pytest.raises(RegistryError, match="none of which Steward loads"):
        flavor_of_mlmodel({"onnx": {}})
