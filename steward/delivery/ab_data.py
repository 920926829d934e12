"""A/B data: a window of the prediction log shaped into one outcome per entity and arm.

The unit of analysis is the entity (the sticky key the gateway assigned by), because that is
the unit that was randomised: requests of one customer are not independent. Each entity gets one
outcome per metric (the share of its labelled predictions that were right, the mean of its
labels, or its mean latency); ``steward.delivery.ab_verdict`` then judges the look.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from steward.delivery.experiments import ExperimentError, ExperimentRun
from steward.registry.history import CHALLENGER, CHAMPION
from steward.spec import ABTestSpec, ModelSpec, Task

OUTCOME_DESCRIPTIONS = {
    "accuracy": "share of the entity's labelled predictions that were right (an unanswered request counts as wrong)",
    "label_mean": "mean of the entity's labels (e.g. its conversion rate)",
    "latency_ms": "mean latency of the entity's requests, in ms",
}


@dataclass(frozen=True, eq=False)
class ABData:
    """Per-entity outcomes of both arms, and the counts the trust checks need.

    ``binary`` is true when every entity has exactly one 0/1 observation (one-shot entities): the
    outcomes are then Bernoulli and the two-proportion test applies; otherwise per-entity means
    are compared with Welch's test.
    """

    metric: str
    binary: bool
    treatment: np.ndarray  # challenger, one outcome per entity
    control: np.ndarray  # champion
    assigned: tuple[int, int]  # entities served per arm (challenger, champion): the SRM check's counts
    requests: tuple[int, int]
    observations: tuple[int, int]  # labelled predictions (or requests, for latency) behind the outcomes
    unkeyed_requests: int  # requests without the sticky key: always champion, left out
    crossover_entities: int  # entities served by both arms: left out
    other_version_rows: int  # rows of versions the test did not set up: left out
    truncated_to: int | None = None  # fixed design: the first N entities per arm by first request

    @property
    def units(self) -> tuple[int, int]:
        return len(self.treatment), len(self.control)

    @property
    def crossover_share(self) -> float:
        total = sum(self.assigned) + self.crossover_entities
        return self.crossover_entities / total if total else 0.0


def _arm_rows(frame: pd.DataFrame, run: ExperimentRun) -> tuple[pd.DataFrame, int]:
    """Served rows of the versions the test set up, with each row's arm; and how many rows were other versions."""
    served = frame[frame["served"].astype(bool)] if "served" in frame.columns else frame
    expected = ((served["arm"] == CHALLENGER) & (served["version"] == run.challenger_version)) | (
        (served["arm"] == CHAMPION) & (served["version"] == run.champion_version)
    )
    return served[expected], int((~expected).sum())


def check_design(spec: ModelSpec, design: ABTestSpec) -> None:
    """Refuse a design that cannot be measured on this model, before any traffic is split."""
    if design.metric == "accuracy" and spec.task is Task.REGRESSION:
        raise ExperimentError(
            f"ab_test.metric is 'accuracy' but {spec.name} is a regression model: use 'label_mean' for the "
            "outcome the business measures, or 'latency_ms'"
        )


def _row_outcomes(labelled: pd.DataFrame, metric: str) -> pd.Series:
    if metric == "accuracy":
        right = (labelled["status"] == "ok") & (labelled["prediction"].astype(str) == labelled["label"].astype(str))
        return right.astype(float)
    values = pd.to_numeric(labelled["label"], errors="coerce")
    if values.isna().any():
        bad = labelled.loc[values.isna(), "label"].astype(str).unique()[:3].tolist()
        raise ExperimentError(
            f"ab_test.metric is 'label_mean' but some labels are not numbers (e.g. {bad}); send numeric outcomes "
            "(1/0 for a conversion) to the feedback endpoint, or use metric 'accuracy'"
        )
    return values.astype(float)


def ab_data(
    predictions: pd.DataFrame, labelled: pd.DataFrame, spec: ModelSpec, run: ExperimentRun,
) -> ABData:
    """Shape a window of the log into per-entity outcomes for ``analyse_ab_test``.

    ``predictions`` are the window's served rows; ``labelled`` is ``join_labels`` of them (unused
    for latency). Entities seen in both arms, requests without the key and rows of other versions
    are left out and counted. With a fixed design only the first ``planned_samples_per_arm``
    entities of each arm (by first request) count, so reading the test again later does not add
    looks to a pre-registered sample.
    """
    design = run.design or spec.ab_test
    check_design(spec, design)
    rows, other_versions = _arm_rows(predictions, run)
    keyed = rows[rows["entity"].notna()]
    unkeyed = int(rows.loc[rows["entity"].isna(), "request_id"].nunique())
    arms_per_entity = keyed.groupby("entity")["arm"].nunique()
    crossover = set(arms_per_entity.index[arms_per_entity > 1])
    keyed = keyed[~keyed["entity"].isin(crossover)]
    assigned = tuple(int(keyed.loc[keyed["arm"] == arm, "entity"].nunique()) for arm in (CHALLENGER, CHAMPION))
    requests = tuple(int(keyed.loc[keyed["arm"] == arm, "request_id"].nunique()) for arm in (CHALLENGER, CHAMPION))

    if design.metric == "latency_ms":
        # latency is per request; a batch carrying several entities counts once for each of them
        observed = keyed.drop_duplicates(["request_id", "entity"]).assign(outcome=lambda f: f["latency_ms"].astype(float))
    else:
        labelled_rows, _ = _arm_rows(labelled, run) if len(labelled) else (labelled, 0)
        labelled_rows = labelled_rows[labelled_rows["entity"].notna() & ~labelled_rows["entity"].isin(crossover)]
        outcome = _row_outcomes(labelled_rows, design.metric) if len(labelled_rows) else pd.Series(dtype=float)
        observed = labelled_rows.assign(outcome=outcome)

    units = (
        observed.groupby(["arm", "entity"], sort=False)
        .agg(outcome=("outcome", "mean"), n=("outcome", "size"), first=("time", "min"))
        .reset_index()
        .sort_values(["first", "entity"], kind="stable")
    )
    limit = design.planned_samples_per_arm if design.stopping == "fixed" else None
    if limit is not None:
        units = units.groupby("arm", sort=False).head(limit)
    binary = (
        design.metric != "latency_ms" and len(units) > 0 and bool((units["n"] == 1).all())
        and bool(units["outcome"].isin([0.0, 1.0]).all())
    )
    by_arm = {arm: units[units["arm"] == arm] for arm in (CHALLENGER, CHAMPION)}
    return ABData(
        metric=design.metric,
        binary=binary,
        treatment=by_arm[CHALLENGER]["outcome"].to_numpy(float),
        control=by_arm[CHAMPION]["outcome"].to_numpy(float),
        assigned=assigned,  # type: ignore[arg-type]
        requests=requests,  # type: ignore[arg-type]
        observations=(int(by_arm[CHALLENGER]["n"].sum()), int(by_arm[CHAMPION]["n"].sum())),
        unkeyed_requests=unkeyed,
        crossover_entities=len(crossover),
        other_version_rows=other_versions,
        truncated_to=limit,
    )


