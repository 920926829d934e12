"""Tasks of the validation procedure."""

from __future__ import annotations

from prefect import task

from steward.registry.errors import RegistryError
from steward.registry.history import CHALLENGER, ChangeKind
from steward.spec import ModelSpec
from steward.training.data import prepare_features
from steward.training.gates import ValidationReport, ValidationVerdict
from steward.training.validation import Contender, report_tags, validate_candidate
from tasks.common import registry


@task(name="pick-candidate")
def pick_candidate(spec: ModelSpec, version: str | None) -> str:
    """The version to validate: the one asked for, or the newest unvalidated candidate."""
    if version:
        return str(registry().get_version(spec.name, version).version)
    pending = [
        v for v in registry().list_versions(spec.name)
        if v.stage == "candidate" and "steward.validation.status" not in v.tags and not v.archived
    ] if registry().model_exists(spec.name) else []
    if not pending:
        raise RegistryError(
            f"{spec.name} has no candidate waiting for validation; train one with `steward train` "
            "or name a version with --version"
        )
    return pending[-1].version


@task(name="load-contender", retries=2, retry_delay_seconds=[2, 5])
def load_contender(spec: ModelSpec, version: str) -> Contender:
    loaded = registry().load_model(spec.name, version)
    return Contender(loaded.model, loaded.version.version, loaded.version.input_schema)


@task(name="load-holdout", retries=2, retry_delay_seconds=[2, 5])
def load_holdout(spec: ModelSpec, version: str):
    frame = registry().load_dataset(spec.name, version, "holdout")
    prepared = prepare_features(frame, spec)
    prepared[spec.target] = frame[spec.target].to_numpy()
    return prepared


@task(name="run-validation-gate")
def run_gate(spec: ModelSpec, candidate: Contender, champion: Contender | None, holdout,
             trigger_metric: str | None = None, refresh: bool = False) -> ValidationReport:
    return validate_candidate(spec, candidate, champion, holdout, trigger_metric=trigger_metric, refresh=refresh)


@task(name="record-validation")
def record_validation(spec: ModelSpec, report: ValidationReport) -> str:
    """Store the verdict on the version and move aliases: champion on bootstrap, challenger on pass.

    A failed or inconclusive candidate gets its tags and nothing else, so the aliases stay as they
    were; an inconclusive one can be validated again (``--version``) once more labelled rows exist.
    """
    reg = registry()
    version = report.candidate_version
    reg.set_version_tags(spec.name, version, report_tags(report))
    if report.verdict is ValidationVerdict.INCONCLUSIVE:
        reg.set_version_tags(spec.name, version, {"steward.stage": "inconclusive"})
        return "inconclusive"
    if not report.passed:
        reg.set_version_tags(spec.name, version, {"steward.stage": "rejected"})
        return "rejected"
    reg.set_version_tags(spec.name, version, {"steward.stage": "validated"})
    if report.champion_version is None:
        reg.promote(spec.name, version, reason="bootstrap: first validated version of the model")
        return "champion"
    reg.set_alias(
        spec.name, CHALLENGER, version, kind=ChangeKind.ASSIGN,
        reason=f"passed validation against champion v{report.champion_version}",
    )
    return "challenger"
