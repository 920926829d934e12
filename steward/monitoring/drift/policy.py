"""When drift is material: ``DriftPolicy`` and ``decide_material_drift``, pure (no data, no Evidently).

Share / importance-weighted share / top-k, with hysteresis so a column near its threshold does
not flap.  Each decision carries a ``DriftReason`` code and the sentence for people.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from steward.monitoring.drift.result import ColumnDrift, DriftResult, beyond, is_p_value
from steward.spec import upgrade_prediction_flag


class DriftPolicy(BaseModel):
    """When drift is material enough to act on (alert, consider retraining).

    ``share``: at least ``share_threshold`` of the input columns drifted.  ``weighted_share``: the
    drifted columns hold at least ``share_threshold`` of the total feature importance.  ``top_k``:
    one of the ``top_k`` most important columns drifted.  ``hysteresis_margin`` (also accepted as
    ``hysteresis``): a column becomes drifted only beyond threshold*(1+margin) and stays drifted
    until back inside threshold*(1-margin) (mirrored for p-values), so it does not flap.
    ``prediction_drift``: when drift of the predicted score/class alone is material: ``never``,
    ``with_accuracy`` (only when measured or estimated accuracy moved with it: the scores move
    whenever many small input changes add up, which alone says nothing about the model's quality)
    or ``always``.  ``prediction_drift_is_material=True/False`` is read as ``always``/``never``.
    ``noise_alpha``: the chance, per window, that sampling noise alone puts any column into the drifted
    state. A distance past its threshold (the effect size) on a small window enters the drifted state only
    when its noise p-value (``ColumnDrift.noise_p_value``) is at most ``noise_alpha`` shared among the
    window's columns (Bonferroni; ``multiple_testing="none"``: each column at ``noise_alpha``).
    ``multiple_testing`` also shares p-valued tests' threshold among them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    method: Literal["share", "weighted_share", "top_k"] = "share"
    share_threshold: float = Field(default=0.3, gt=0, le=1)
    top_k: int = Field(default=5, ge=1)
    stattest_threshold: float | None = Field(default=None, gt=0)
    hysteresis_margin: float = Field(
        default=0.1, ge=0, lt=1, validation_alias=AliasChoices("hysteresis_margin", "hysteresis")
    )
    prediction_drift: Literal["never", "with_accuracy", "always"] = "with_accuracy"
    multiple_testing: Literal["bonferroni", "none"] = "bonferroni"
    noise_alpha: float = Field(default=0.01, gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _old_prediction_flag(cls, data: Any) -> Any:
        return upgrade_prediction_flag(data)


class EvidenceSource(StrEnum):
    MEASURED = "measured"  # on labelled predictions of the window
    ESTIMATED = "estimated"  # label-free, from calibrated probabilities


@dataclass(frozen=True)
class AccuracyEvidence:
    """Whether the model's quality moved in the window, as the drift judgment hears it from the accuracy check.

    ``drop`` is positive when worse than ``baseline``; ``moved`` is the accuracy check's own verdict
    (a significant drop), so the drift report and the health check read the same numbers the same way.
    """

    metric: str
    source: EvidenceSource
    value: float
    baseline: float
    drop: float
    error: float
    rows: int
    moved: bool

    def describe(self) -> str:
        kind = "estimated " if self.source is EvidenceSource.ESTIMATED else ""
        return (f"{kind}{self.metric} {self.value:.3f} against {self.baseline:.3f} "
                f"(drop {self.drop:+.3f} +/- {self.error:.3f} on {self.rows} rows)")


class DriftReason(StrEnum):
    """Why a decision came out material or not; ``MaterialDriftDecision.reason`` says it for people."""

    SHARE_REACHED = "share_reached"
    WEIGHTED_SHARE_REACHED = "weighted_share_reached"
    TOP_FEATURE_DRIFTED = "top_feature_drifted"
    HELD_BY_HYSTERESIS = "held_by_hysteresis"  # material only because columns stay drifted in the margin
    PREDICTION_DRIFTED = "prediction_drifted"  # material by the prediction's drift alone (policy: always)
    PREDICTION_DRIFTED_WITH_ACCURACY = "prediction_drifted_with_accuracy"  # the outputs moved and accuracy fell
    PREDICTION_DRIFTED_ACCURACY_STEADY = "prediction_drifted_accuracy_steady"  # outputs moved, accuracy did not
    PREDICTION_UNCONFIRMED = "prediction_unconfirmed"  # outputs moved; no accuracy evidence was given
    NO_DRIFT = "no_drift"
    WITHIN_MARGIN = "within_margin"  # columns crossed the threshold, but only within the hysteresis margin
    WITHIN_NOISE = "within_noise"  # columns crossed their distance threshold, but not beyond the window's noise
    PREDICTION_NOT_COUNTED = "prediction_not_counted"  # only the prediction drifted; the policy does not count it
    BELOW_SHARE = "below_share"
    BELOW_WEIGHTED_SHARE = "below_weighted_share"  # the drifted columns carry too little importance
    NO_TOP_FEATURE_DRIFTED = "no_top_feature_drifted"


_MET = {"share": DriftReason.SHARE_REACHED, "weighted_share": DriftReason.WEIGHTED_SHARE_REACHED,
        "top_k": DriftReason.TOP_FEATURE_DRIFTED}
_NOT_MET = {"share": DriftReason.BELOW_SHARE, "weighted_share": DriftReason.BELOW_WEIGHTED_SHARE,
            "top_k": DriftReason.NO_TOP_FEATURE_DRIFTED}


@dataclass(frozen=True)
class MaterialDriftDecision:
    """The policy's verdict: ``columns`` are all columns in the drifted state after hysteresis."""

    material: bool
    code: DriftReason
    reason: str
    columns: tuple[str, ...]
    newly_drifted: tuple[str, ...] = ()
    held: tuple[str, ...] = ()


def _levels(method: str, threshold: float, margin: float) -> tuple[float, float]:
    """(enter, stay) levels: a distance must exceed more to enter; a p-value must fall lower."""
    if is_p_value(method):
        return threshold * (1 - margin), threshold * (1 + margin)
    return threshold * (1 + margin), threshold * (1 - margin)


def _names(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def decide_material_drift(
    result: DriftResult,
    policy: DriftPolicy,
    previous: DriftResult | None = None,
    importances: Mapping[str, float] | None = None,
    accuracy: AccuracyEvidence | None = None,
) -> MaterialDriftDecision:
    """Decide whether ``result`` is material drift under ``policy``; pure and deterministic.

    The previous state comes from ``previous.held_drifted`` (set by ``DriftResult.with_decision``)
    or, if absent, from the previous result's own per-column verdicts.  Importances come from
    ``importances`` or else the ones recorded in the result.  ``accuracy`` is what the accuracy
    check found in the window; policy ``with_accuracy`` needs it before the prediction's drift counts.
    """
    margin = policy.hysteresis_margin
    judged = [*result.columns, *([result.prediction] if result.prediction is not None else [])]
    p_valued = sum(1 for c in judged if is_p_value(c.method))

    noise_level = policy.noise_alpha / (len(judged) if policy.multiple_testing == "bonferroni" else 1)
    noisy: list[ColumnDrift] = []

    def clear_of_noise(c: ColumnDrift) -> bool:
        """The family-wise test: a distance past its threshold is also past what noise alone reaches."""
        return c.noise_p_value is None or c.noise_p_value <= noise_level

    def threshold(c: ColumnDrift) -> float:
        """The column's level: the policy's or the test's, shared among the p-valued columns (Bonferroni)."""
        level = policy.stattest_threshold if policy.stattest_threshold is not None else c.threshold
        if policy.multiple_testing == "bonferroni" and p_valued > 1 and is_p_value(c.method):
            return level / p_valued
        return level

    if previous is not None and previous.held_drifted is not None:
        was = set(previous.held_drifted)
    elif previous is not None:
        prev_cols = list(previous.columns) + ([previous.prediction] if previous.prediction else [])
        was = {
            c.column
            for c in prev_cols
            if beyond(c.method, c.score, threshold(c))
        }
    else:
        was = set()

    held: list[str] = []
    newly: list[str] = []

    def state(c: ColumnDrift) -> bool:
        thr = threshold(c)
        enter, stay = _levels(c.method, thr, margin)
        if c.column in was:
            on = beyond(c.method, c.score, stay)
            if on and not beyond(c.method, c.score, thr):
                held.append(c.column)
            return on
        on = beyond(c.method, c.score, enter)
        if on and not clear_of_noise(c):
            noisy.append(c)
            return False
        if on:
            newly.append(c.column)
        return on

    drifted = [c.column for c in result.columns if state(c)]
    pred_drifted = result.prediction is not None and state(result.prediction)
    n = max(len(result.columns), 1)
    notes: list[str] = []
    if held:
        notes.append(
            f"{_names(held)} stay drifted: back under the threshold but not yet below the "
            f"{margin:.0%} hysteresis margin"
        )
    if noisy:
        notes.append(
            f"{_names([f'{c.column} (noise p {c.noise_p_value:.2g})' for c in noisy])} crossed the threshold but "
            f"not beyond this window's sampling noise (p at most {noise_level:.2g} needed: {policy.noise_alpha:g} "
            f"shared among {len(judged)} columns), so not counted"
        )
    near: list[str] = []
    if margin > 0:
        near = [
            c.column
            for c in result.columns
            if c.column not in drifted
            and c.column not in was
            and c not in noisy
            and beyond(c.method, c.score, threshold(c))
        ]
        if near:
            notes.append(
                f"{_names(near)} crossed the threshold only within the {margin:.0%} hysteresis margin, "
                "so they are not counted yet"
            )

    known: dict[str, float] = {}
    if policy.method != "share":
        given = dict(importances) if importances is not None else {}
        weights = {c.column: given.get(c.column, c.importance) for c in result.columns}
        known = {k: abs(float(v)) for k, v in weights.items() if v is not None and math.isfinite(float(v))}
        if not known or sum(known.values()) <= 0:
            raise ValueError(
                f"policy method {policy.method!r} needs feature importances: pass importances={{column: weight}} "
                "to decide_material_drift or detect_drift, or use method='share'"
            )
        unweighted = sorted(set(weights) - set(known))
        if unweighted:
            notes.append(f"{_names(unweighted)} had no importance and count as weight 0")
    material, core = _rule(policy, drifted, n, known)
    code = _MET[policy.method] if material else _NOT_MET[policy.method]
    if material and held and not _rule(policy, [c for c in drifted if c not in held], n, known)[0]:
        code = DriftReason.HELD_BY_HYSTERESIS
    if not drifted:
        code = (DriftReason.WITHIN_NOISE if noisy else DriftReason.WITHIN_MARGIN if margin > 0 and near
                else DriftReason.NO_DRIFT)
    if drifted and policy.method != "top_k":
        core += f" ({_names(drifted)})"
    if pred_drifted and result.prediction is not None:
        p = result.prediction
        moved = f"the prediction {p.column!r} drifted ({p.method} {p.score:.3g})"
        if material or policy.prediction_drift == "always":
            core += f"; {moved}"
            if not material:
                material, code = True, DriftReason.PREDICTION_DRIFTED
        elif policy.prediction_drift == "never":
            notes.append(f"{moved}, which this policy does not count on its own")
            if not drifted:
                code = DriftReason.PREDICTION_NOT_COUNTED
        elif accuracy is not None and accuracy.moved:
            core += f"; {moved} and {accuracy.describe()}"
            material, code = True, DriftReason.PREDICTION_DRIFTED_WITH_ACCURACY
        elif accuracy is not None:
            notes.append(f"{moved}, but accuracy held ({accuracy.describe()}), so the outputs' move alone "
                         "is not counted")
            code = DriftReason.PREDICTION_DRIFTED_ACCURACY_STEADY
        else:
            notes.append(f"{moved}; with no accuracy evidence (labels or a calibrated estimate) it is not "
                         "counted on its own")
            code = DriftReason.PREDICTION_UNCONFIRMED

    columns = tuple(drifted) + ((result.prediction.column,) if pred_drifted and result.prediction else ())
    head = "Material drift: " if material else "No material drift: "
    reason = head + core + "." + "".join(f" {note[0].upper()}{note[1:]}." for note in notes)
    return MaterialDriftDecision(
        material=material,
        code=code,
        reason=reason,
        columns=columns,
        newly_drifted=tuple(newly),
        held=tuple(held),
    )


def _rule(policy: DriftPolicy, drifted: Sequence[str], n: int, known: Mapping[str, float]) -> tuple[bool, str]:
    """Whether the policy's rule holds for these drifted columns, and the sentence saying so."""
    if policy.method == "share":
        share = len(drifted) / n
        met = share >= policy.share_threshold
        return met, (
            f"{len(drifted)} of {n} input columns drifted ({share:.0%}), "
            f"{'at or above' if met else 'below'} the {policy.share_threshold:.0%} share threshold"
        )
    if policy.method == "weighted_share":
        share = sum(known.get(c, 0.0) for c in drifted) / sum(known.values())
        met = share >= policy.share_threshold
        return met, (
            f"drifted columns carry {share:.0%} of the feature importance "
            f"({len(drifted)} of {n} columns), {'at or above' if met else 'below'} the "
            f"{policy.share_threshold:.0%} threshold"
        )
    top = sorted(known, key=lambda c: (-known[c], c))[: policy.top_k]
    counted = [c for c in top if c in drifted]
    return bool(counted), (
        f"{len(counted)} of the {len(top)} most important columns drifted"
        + (f" ({_names(counted)})" if counted else "")
        + (f"; {len(drifted)} of {n} columns drifted in all" if drifted else "")
    )
