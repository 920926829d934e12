"""Tasks that fit and register a model."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task

from steward.registry.adapter import VersionInfo
from steward.spec import ModelSpec
from steward.training.data import Split, frame_sha256
from steward.training.entrypoints import PRODUCER_TAG
from steward.training.gates import (
    TRAINED_AS_OF_TAG,
    RetrainAllowance,
    TrainingDurationVerdict,
    decide_retrain,
    judge_training_duration,
    trained_as_of,
)
from steward.training.train import TrainedModel, reference_sample, train_model
from tasks.common import registry


def retrain_allowance(spec: ModelSpec, as_of: datetime | None = None) -> RetrainAllowance:
    """The cooldown and weekly budget at event time ``as_of`` (default now), against the event times
    earlier versions were trained at."""
    reg = registry()
    versions = reg.list_versions(spec.name) if reg.model_exists(spec.name) else []
    earlier = [trained_as_of(v.tags, v.created) for v in versions]
    return decide_retrain(
        as_of, earlier, cooldown_hours=spec.retrain.cooldown_hours, max_per_week=spec.retrain.max_per_week
    )


@task(name="check-retrain-allowance", retries=2, retry_delay_seconds=[2, 5])
def check_retrain_allowance(spec: ModelSpec, as_of: datetime | None = None) -> RetrainAllowance:
    return retrain_allowance(spec, as_of)


@task(name="fit-model")
def fit_model(spec: ModelSpec, split: Split, data_sha256: str, data_source: str) -> TrainedModel:
    return train_model(spec, split, data_sha256=data_sha256, data_source=data_source)


@task(name="hash-training-data")
def hash_training_data(split: Split) -> str:
    import pandas as pd

    return frame_sha256(pd.concat([split.train, split.holdout]))


@task(name="judge-training-duration", retries=2, retry_delay_seconds=[2, 5])
def judge_duration(spec: ModelSpec, trained: TrainedModel) -> TrainingDurationVerdict:
    earlier = registry().training_durations(spec.name) if registry().model_exists(spec.name) else []
    return judge_training_duration(trained.lineage.training_seconds, earlier, spec.training.slow_training_factor)


@task(name="register-candidate", retries=2, retry_delay_seconds=[2, 5])
def register_candidate(
    spec: ModelSpec, trained: TrainedModel, slow: TrainingDurationVerdict, as_of: datetime | None = None
) -> VersionInfo:
    """Register with lineage, the held-out rows and a bounded training sample (the drift reference).

    ``as_of`` (default now) is recorded as the version's training event time, the clock of the retrain cooldown.
    """
    reference = reference_sample(trained.train_frame, spec.training.reference_sample_rows, spec.training.random_state)
    info = registry().register_version(
        spec.name,
        trained.estimator,
        lineage=trained.lineage,
        metrics=trained.metrics,
        input_example=trained.holdout_frame[spec.feature_names].head(20),
        datasets={"holdout": trained.holdout_frame, "reference": reference},
        description=spec.description,
    )
    registry().set_version_tags(
        spec.name, info.version,
        {
            "steward.training_duration_flag": ("slow: " if slow.slow else "normal: ") + slow.reason,
            TRAINED_AS_OF_TAG: (as_of or datetime.now(UTC)).astimezone(UTC).isoformat(),
            PRODUCER_TAG: trained.producer.tag,
        },
    )
    return info


@task(name="archive-old-versions", retries=2, retry_delay_seconds=[2, 5])
def archive_old_versions(spec: ModelSpec) -> tuple[str, ...]:
    """Tag versions past retention archived; aliased ones and the rollback path are kept."""
    return registry().apply_retention(spec.name).archive
