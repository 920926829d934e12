"""Tasks of the adopt procedure: every check first, then Steward's record of the takeover."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from prefect import get_run_logger, task

from steward.registry.adapter import VersionInfo
from steward.registry.adopting import InspectedArtifacts
from steward.registry.adoption import (
    AdoptedLineage,
    AdoptionCode,
    AdoptionError,
    AliasNames,
    alias_clashes,
    frame_problems,
    signature_mismatches,
)
from steward.registry.flavors import ScoreSource
from steward.spec import ModelSpec
from steward.training.data import DataError, prepare_features, read_frame
from steward.training.evaluation import evaluate
from steward.training.scores import needs_scores
from tasks.common import registry


@dataclass(frozen=True)
class AdoptionData:
    """The reference set (for drift) and the labelled hold-out set (for the gate), as read and checked."""

    reference: pd.DataFrame
    holdout: pd.DataFrame
    sources: dict[str, str]


@task(name="find-version")
def find_version(spec: ModelSpec, model: str, version: str | None, alias: str | None) -> VersionInfo:
    """The team's version to adopt; refused when the spec names another model or Steward already keeps it."""
    if spec.name != model:
        raise AdoptionError(AdoptionCode.NAME_MISMATCH,
                            f"the spec is for {spec.name!r}, not {model!r}: set `name: {model}` in the spec")
    info = registry().resolve_version(model, version=version, alias=alias)
    if info.digest is not None:
        raise AdoptionError(AdoptionCode.ALREADY_MANAGED,
                            f"{model} v{info.version} is already maintained by Steward (stage {info.stage}); "
                            "see `steward status`")
    return info


@task(name="check-signature")
def check_signature(spec: ModelSpec, info: VersionInfo) -> bool:
    """Whether the version has a signature; raises where it disagrees with the spec's features."""
    columns = registry().version_signature(info)
    if columns is None:
        get_run_logger().warning("%s v%s has no column signature: the spec's features are taken as they are and "
                                 "checked by scoring the hold-out set", info.model, info.version)
        return False
    problems = signature_mismatches(columns, {f.name: f.type.value for f in spec.features})
    if problems:
        raise AdoptionError(AdoptionCode.SIGNATURE_MISMATCH,
                            f"{info.model} v{info.version}'s signature disagrees with the spec:\n  - "
                            + "\n  - ".join(problems)
                            + f"\nfix the spec, or write one from the signature with "
                              f"`steward init --from-model models:/{info.model}/{info.version}`")
    return True


@task(name="check-alias-names")
def check_alias_names(spec: ModelSpec, model: str) -> AliasNames:
    """Steward's alias names for the model, refused when the team already uses them."""
    reg = registry()
    names = AliasNames(spec.registry.champion_alias, spec.registry.challenger_alias)
    managed = reg.is_managed(model)
    if managed and reg.alias_names(model) != names:
        raise AdoptionError(AdoptionCode.ALIAS_CLASH,
                            f"{model} is maintained with aliases {reg.alias_names(model)}; the spec names {names}")
    clashes = alias_clashes(reg.mlflow_aliases(model), names, managed=managed)
    if clashes:
        raise AdoptionError(AdoptionCode.ALIAS_CLASH, f"{model}: " + "; ".join(clashes))
    return names


@task(name="read-adoption-data", retries=2, retry_delay_seconds=[2, 5])
def read_adoption_data(spec: ModelSpec, reference: str, holdout: str) -> AdoptionData:
    """Both sets through fsspec, checked against the spec's schema (features; the target too for the hold-out)."""
    frames, problems = {}, []
    for role, source, required in (("reference", reference, spec.feature_names),
                                   ("holdout", holdout, [*spec.feature_names, spec.target])):
        try:
            frame = read_frame(source)
        except DataError as error:
            raise AdoptionError(AdoptionCode.DATA_MISMATCH, f"the {role} set: {error}") from None
        problems += frame_problems(frame, required, role, source)
        if not problems:
            try:
                prepare_features(frame, spec)
            except DataError as error:
                problems.append(f"the {role} set at {source}: {error}")
        frames[role] = frame
    if problems:
        raise AdoptionError(AdoptionCode.DATA_MISMATCH, "; ".join(problems))
    return AdoptionData(frames["reference"], frames["holdout"], {"reference": reference, "holdout": holdout})


@task(name="inspect-artifacts", retries=1, retry_delay_seconds=[2])
def inspect_artifacts(spec: ModelSpec, info: VersionInfo) -> InspectedArtifacts:
    return registry().inspect_artifacts(info, spec)


@task(name="score-holdout")
def score_holdout(spec: ModelSpec, artifacts: InspectedArtifacts, data: AdoptionData) -> dict[str, float]:
    """The version's metrics on the hold-out set: a model that cannot score it is not adopted, nor one whose gate
    metric needs scores it does not give (never made up)."""
    if artifacts.scores is ScoreSource.NONE and needs_scores(spec.primary_metric):
        raise AdoptionError(AdoptionCode.NO_SCORES,
                            f"the model gives labels but no scores, and the gate's metric {spec.primary_metric} needs "
                            "them: name the output column with the positive class's probability in "
                            "estimator.score_column, or set gates.primary_metric to accuracy or f1")
    prepared = prepare_features(data.holdout, spec)
    prepared[spec.target] = data.holdout[spec.target].to_numpy()
    try:
        return evaluate(artifacts.model, prepared, spec)
    except Exception as error:  # the model's own failure on rows the spec admits
        raise AdoptionError(AdoptionCode.UNLOADABLE,
                            f"the model loads but cannot score the hold-out set: {type(error).__name__}: {error}"
                            ) from error


@task(name="gather-lineage")
def gather_lineage(info: VersionInfo, has_signature: bool) -> AdoptedLineage:
    return registry().adopted_lineage(info, has_signature=has_signature)


@task(name="record-adoption")
def record_adoption(
    spec: ModelSpec, info: VersionInfo, artifacts: InspectedArtifacts, lineage: AdoptedLineage,
    data: AdoptionData, metrics: dict[str, float],
) -> VersionInfo:
    features = prepare_features(data.holdout, spec)
    return registry().record_adoption(
        info, spec, artifacts=artifacts, lineage=lineage,
        datasets={"reference": data.reference, "holdout": data.holdout}, sources=data.sources,
        metrics={k: v for k, v in metrics.items() if v == v},  # MLflow refuses NaN
        input_schema={column: str(dtype) for column, dtype in features.dtypes.items()},
    )
