"""Adopt: bring a version that plain MLflow code registered under Steward's maintenance.

Every check runs before anything is written (name, signature, alias names, the reference and hold-out
sets, the files loading and scoring); then Steward records the takeover and the validate flow gates the
version, which makes it champion when the model has none (the bootstrap gate).
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger

from flows.validate import validate
from tasks.adoption import (
    check_alias_names,
    check_signature,
    find_version,
    gather_lineage,
    inspect_artifacts,
    read_adoption_data,
    record_adoption,
    score_holdout,
)
from tasks.data import load_model_spec


@dataclass(frozen=True)
class AdoptionOutcome:
    model: str
    version: str
    flavor: str
    scores: str  # where its scores come from (flavors.ScoreSource)
    lineage: str  # what MLflow held and what is missing
    missing_lineage: tuple[str, ...]
    metrics: dict[str, float]
    action: str  # the validate flow's: champion (bootstrap), challenger, rejected, inconclusive
    passed: bool
    summary: str


@flow(name="adopt", description="Bring a version registered by plain MLflow code under Steward's maintenance.")
def adopt(
    spec_path: str, reference: str, holdout: str, version: str | None = None, alias: str | None = None,
    model: str | None = None,
) -> AdoptionOutcome:
    """``reference`` and ``holdout`` are paths or fsspec URLs; ``model`` defaults to the spec's name."""
    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    model = model or spec.name
    info = find_version(spec, model, version, alias)
    has_signature = check_signature(spec, info)
    check_alias_names(spec, model)
    data = read_adoption_data(spec, reference, holdout)
    artifacts = inspect_artifacts(spec, info)
    metrics = score_holdout(spec, artifacts, data)
    lineage = gather_lineage(info, has_signature)
    record_adoption(spec, info, artifacts, lineage, data, metrics)
    logger.info("%s v%s adopted (%s, scores: %s); lineage: %s", model, info.version, artifacts.flavor.value,
                artifacts.scores.value, lineage.describe())
    outcome = validate(spec_path, info.version)
    return AdoptionOutcome(model, info.version, artifacts.flavor.value, artifacts.scores.value, lineage.describe(),
                           lineage.missing, metrics, outcome.action, outcome.passed, outcome.summary)
