from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from steward.simulation.examples import example_spec_text
from steward.spec import ModelSpec, SpecError, Task, load_spec, parse_spec


def example_document() -> dict:
    return yaml.safe_load(example_spec_text())


def test_example_spec_is_valid():
    spec = parse_spec(example_document())
    assert spec.task is Task.BINARY_CLASSIFICATION
    assert spec.primary_metric == "roc_auc"
    assert "region" in spec.categorical_features and "income" in spec.numeric_features


def test_errors_name_the_bad_field():
    document = example_document()
    document["gates"]["tolerance"] = -1
    document["canary"]["steps"] = [5, 1, 100]
    with pytest.raises(SpecError) as error:
        parse_spec(document, source="bad.yaml")
    message = str(error.value)
    assert "gates.tolerance" in message and "canary.steps" in message and "bad.yaml" in message


def test_unknown_field_is_rejected():
    document = example_document()
    document["gates"]["tolerence"] = 0.01
    with pytest.raises(SpecError, match="gates.tolerence"):
        parse_spec(document)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["features"].append({"name": "age", "type": "numeric"}), "more than once"),
        (lambda d: d["features"].append({"name": "default", "type": "numeric"}), "also the target"),
        (lambda d: d["gates"].update(slice_features=["income"]), "not categorical"),
        (lambda d: d["features"].__setitem__(0, {"name": "age", "type": "categorical", "min": 1}), "categorical"),
        (lambda d: d["features"].__setitem__(0, {"name": "age", "type": "numeric", "min": 9, "max": 1}), "above max"),
        (lambda d: d.update(task="ranking"), "task"),
        (lambda d: d["estimator"].update(factory="no_colon_here"), "import path"),
        (lambda d: d.update(data={"kind": "file"}), "data.path"),
        (lambda d: d.update(name="Bad Name!"), "name"),
    ],
)
def test_inconsistent_specs_are_rejected(mutate, expected):
    document = example_document()
    mutate(document)
    with pytest.raises(SpecError, match=expected):
        parse_spec(document)


def test_load_spec_resolves_data_path_against_the_file(tmp_path: Path):
    (tmp_path / "spec.yaml").write_text(example_spec_text())
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.data.path == str((tmp_path / "data" / "train.parquet").resolve())


def test_load_spec_reports_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(SpecError, match="steward init"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "broken.yaml")


def test_schema_fingerprint_changes_only_with_the_interface():
    spec = parse_spec(example_document())
    retuned = parse_spec({**example_document(), "description": "other words"})
    assert spec.schema_fingerprint() == retuned.schema_fingerprint()
    document = example_document()
    document["features"] = document["features"][:-1]
    assert parse_spec(document).schema_fingerprint() != spec.schema_fingerprint()


def test_bad_estimator_factory_is_reported():
    document = example_document()
    document["estimator"]["factory"] = "steward.estimators:no_such_factory"
    spec = ModelSpec.model_validate(document)
    with pytest.raises(SpecError, match="no_such_factory"):
        spec.estimator.load_factory()


def test_committed_example_matches_the_packaged_one():
    committed = Path(__file__).parents[2] / "examples" / "credit_default"
    assert (committed / "spec.yaml").read_text() == example_spec_text()
    spec = load_spec(committed / "spec.yaml")
    import pandas as pd

    frame = pd.read_parquet(spec.data.path)
    assert set(spec.feature_names) <= set(frame.columns) and len(frame) == 30_000
