"""steward.drift: Evidently adapter, profile engine, and the material-drift policy."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from steward.monitoring.drift.engine import attach_report, detect_drift
from steward.monitoring.drift.evidently_adapter import parse_snapshot
from steward.monitoring.drift.history import DriftRecord
from steward.monitoring.drift.monitor import (
    Announcement,
    AnnounceReason,
    assess_drift,
    compare_seasonal,
    decide_announcement,
)
from steward.monitoring.drift.policy import (
    AccuracyEvidence,
    DriftPolicy,
    DriftReason,
    EvidenceSource,
    MaterialDriftDecision,
    decide_material_drift,
)
from steward.monitoring.drift.profile import NumericProfile, ReferenceProfile
from steward.monitoring.drift.result import ColumnDrift, DriftReportFormatError, DriftResult, save_report_html
from steward.monitoring.drift.statistics import wasserstein_normed
from steward.spec import FeatureRole, ModelSpec, SpecError, parse_spec
from steward.training.gates import RetrainCode, decide_retrain

NUM = ["income", "age", "utilization"]
CAT = ["region", "plan"]
PRED = "score"
COLS = dict(numeric=NUM, categorical=CAT, prediction_column=PRED)


def frame(n: int, seed: int, *, income_shift: float = 0.0, unseen: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = np.round(rng.lognormal(11.0 + income_shift, 0.5, n), -1)
    income[rng.random(n) < 0.02] = np.nan
    region = rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    region[rng.random(n) < unseen] = "overseas"
    df = pd.DataFrame(
        {
            "income": income,
            "age": rng.integers(18, 80, n).astype(float),
            "utilization": rng.beta(2, 5, n),
            "region": region,
            "plan": rng.choice(["basic", "plus", "pro"], n),
        }
    )
    df[PRED] = 1 / (1 + np.exp(-(np.log(np.nan_to_num(df["income"], nan=60_000)) - 11.0) * 2))
    return df


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(3000, seed=1)


@pytest.fixture(scope="module")
def quiet(reference: pd.DataFrame) -> tuple[DriftResult, DriftResult]:
    current = frame(2000, seed=2)
    full = detect_drift(reference, current, engine="evidently", **COLS)
    fast = detect_drift(reference, current, engine="profile", report=False, **COLS)
    return full, fast


@pytest.fixture(scope="module")
def drifted(reference: pd.DataFrame) -> tuple[DriftResult, DriftResult]:
    current = frame(2000, seed=3, income_shift=0.4, unseen=0.15)
    full = detect_drift(reference, current, engine="evidently", **COLS)
    fast = detect_drift(reference, current, engine="profile", report=False, **COLS)
    return full, fast


# ---------------------------------------------------------------------------- detection


def test_no_drift_gives_no_drift(quiet: tuple[DriftResult, DriftResult]) -> None:
    for result in quiet:
        assert result.drifted_columns == ()
        assert result.drift_share == 0.0
        assert not result.dataset_drift
        assert result.prediction is not None and not result.prediction.drifted


def test_clear_shift_and_unseen_category_are_detected_and_named(
    drifted: tuple[DriftResult, DriftResult],
) -> None:
    full, fast = drifted
    for result in (full, fast):
        assert set(result.drifted_columns) == {"income", "region"}
        assert result.column("income").method == "Wasserstein distance (normed)"
        assert result.column("region").method == "Jensen-Shannon distance"
        assert result.prediction is not None and result.prediction.drifted  # the score follows income
        assert result.drift_share == pytest.approx(2 / 5)
        assert not result.dataset_drift  # Evidently's rule: at least half the columns


def test_parsing_gives_typed_results(drifted: tuple[DriftResult, DriftResult]) -> None:
    full, _ = drifted
    assert full.engine == "evidently"
    assert [c.column for c in full.columns] == NUM + CAT
    assert [c.kind for c in full.columns] == ["numeric"] * 3 + ["categorical"] * 2
    for c in (*full.columns, full.prediction):
        assert isinstance(c, ColumnDrift)
        assert isinstance(c.score, float) and isinstance(c.threshold, float) and isinstance(c.drifted, bool)
        assert c.threshold == 0.1 and not c.p_value
    assert full.reference_rows == 3000 and full.current_rows == 2000
    assert full.column("income").reference_missing_share == pytest.approx(0.02, abs=0.01)
    assert full.snapshot is not None


def test_profile_engine_matches_evidently_scores(
    quiet: tuple[DriftResult, DriftResult], drifted: tuple[DriftResult, DriftResult]
) -> None:
    for full, fast in (quiet, drifted):
        for a, b in zip((*full.columns, full.prediction), (*fast.columns, fast.prediction), strict=True):
            assert (a.column, a.method, a.drifted) == (b.column, b.method, b.drifted)
            # the 3000-row reference fits the profile exactly, so scores are equal up to rounding
            assert b.score == pytest.approx(a.score, rel=1e-9, abs=1e-12)
        assert fast.dataset_drift == full.dataset_drift


def test_small_reference_uses_p_value_tests_in_both_engines() -> None:
    ref, cur = frame(600, seed=4), frame(1500, seed=5, income_shift=0.3, unseen=0.2)
    full = detect_drift(ref, cur, engine="evidently", **COLS)
    fast = detect_drift(ref, cur, engine="profile", report=False, **COLS)
    assert full.column("income").method == "K-S p_value" and full.column("income").p_value
    assert full.column("region").method == "chi-square p_value"
    for a, b in zip(full.columns, fast.columns, strict=True):
        assert (a.method, a.drifted) == (b.method, b.drifted)
        assert b.score == pytest.approx(a.score, rel=1e-6, abs=1e-12)
    assert {"income", "region"} <= set(full.drifted_columns)


def test_auto_engine_samples_large_windows_and_still_reports(reference: pd.DataFrame, tmp_path: Path) -> None:
    current = frame(4000, seed=6, income_shift=0.4)
    result = detect_drift(reference, current, full_max_rows=5000, sample_rows=1500, seed=3, **COLS)
    assert result.engine == "profile"
    assert (result.report_current_rows, result.report_reference_rows, result.sample_seed) == (1500, 1500, 3)
    assert result.reference_rows == 3000 and result.current_rows == 4000
    assert "income" in result.drifted_columns and "income" in (result.report_drifted_columns or ())
    out = save_report_html(result, tmp_path / "sub" / "drift.html")  # a Path, in a new folder
    assert out.is_file() and out.stat().st_size > 10_000
    assert "profile engine" in result.to_markdown_table()


def test_sampled_report_uses_the_verdicts_methods(reference: pd.DataFrame) -> None:
    # a 400-row sample would make Evidently switch to K-S / chi-square; the report is pinned instead
    current = frame(4000, seed=6, income_shift=0.4)
    prof = ReferenceProfile.build(reference, sample_rows=400, **COLS)
    result = detect_drift(prof, current, sample_rows=400, **COLS)
    assert result.snapshot is not None and result.report_current_rows == 400
    parsed = parse_snapshot(result.snapshot, NUM + CAT, PRED, 0.5)
    assert {c: m for c, (m, *_rest) in parsed.columns.items()} == {
        c.column: c.method for c in (*result.columns, result.prediction)
    }


def test_a_failing_report_keeps_the_verdict(reference: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    import steward.monitoring.drift.engine as engine

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(engine, "evidently_report", boom)
    result = detect_drift(reference, frame(4000, seed=6, income_shift=0.4), engine="profile", **COLS)
    assert "income" in result.drifted_columns
    assert result.snapshot is None and result.report_error == "RuntimeError: plotting failed"
    with pytest.raises(ValueError, match="the report failed: RuntimeError: plotting failed"):
        result.save_html("unused.html")


def test_auto_engine_runs_evidently_on_small_windows(reference: pd.DataFrame) -> None:
    result = detect_drift(reference, frame(1000, seed=7), numeric=["age"], categorical=[])
    assert result.engine == "evidently" and result.report_current_rows == 1000


# ---------------------------------------------------------------------------- profile


@pytest.mark.parametrize(
    ("n", "m", "rounding"), [(5000, 3000, 1), (40, 700, 0), (700, 40, 0), (2000, 2000, 3)]
)
def test_wasserstein_is_exact_for_exact_profiles(n: int, m: int, rounding: int) -> None:
    rng = np.random.default_rng(n + m)
    ref = np.round(rng.lognormal(0, 1, n), rounding)
    cur = np.round(rng.lognormal(0.2, 1.1, m), rounding)
    want = wasserstein_distance(ref, cur) / np.std(ref)
    assert wasserstein_normed(np.sort(cur), NumericProfile.build(ref, max_points=10_000)) == pytest.approx(
        want, rel=1e-9
    )
    if n > 1000 and np.unique(ref).size > 5:  # where Evidently itself picks the Wasserstein distance
        got = detect_drift(
            pd.DataFrame({"x": ref}),
            pd.DataFrame({"x": cur}),
            numeric=["x"],
            categorical=[],
            engine="profile",
            report=False,
        )
        assert got.columns[0].score == pytest.approx(want, rel=1e-9)


def test_sketched_profile_stays_within_its_error_bound() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.standard_t(3, 60_000), rng.standard_t(3, 30_000) + 0.05
    prof = NumericProfile.build(ref, max_points=1000)
    assert not prof.exact and prof.values.size == 1000 and prof.counts.sum() == ref.size
    got = (
        detect_drift(
            ReferenceProfile.build(pd.DataFrame({"x": ref}), numeric=["x"], categorical=[], max_points=1000),
            pd.DataFrame({"x": cur}),
            numeric=["x"],
            categorical=[],
            report=False,
        )
        .columns[0]
        .score
    )
    want = wasserstein_distance(ref, cur) / np.std(ref)
    assert abs(got - want) <= prof.sketch_error + 1e-12
    assert prof.sketch_error < 0.01


def test_profile_round_trips_through_json_and_parquet(reference: pd.DataFrame, tmp_path: Path) -> None:
    prof = ReferenceProfile.build(reference, sample_rows=500, **COLS)
    current = frame(2000, seed=3, income_shift=0.4, unseen=0.15)
    want = detect_drift(prof, current, report=False, **COLS)
    for loaded in (
        ReferenceProfile.from_json(prof.to_json(tmp_path / "p.json")),
        ReferenceProfile.from_parquet(prof.to_parquet(tmp_path / "p.parquet")),
    ):
        assert len(loaded.sample) == 500 and loaded.rows == 3000
        got = detect_drift(loaded, current, report=False, **COLS)
        assert [(c.column, c.score, c.drifted) for c in got.columns] == [
            (c.column, c.score, c.drifted) for c in want.columns
        ]


def test_result_round_trips_and_ranks(drifted: tuple[DriftResult, DriftResult]) -> None:
    full, _ = drifted
    back = DriftResult.from_dict(json.loads(json.dumps(full.to_dict())))
    assert back == full  # the snapshot is not compared
    assert back.snapshot is None
    with pytest.raises(ValueError, match="no Evidently report"):
        save_report_html(back, "unused.html")
    top = full.top_drifted(1, importances={"region": 0.9, "income": 0.1})
    assert [c.column for c in top] == ["region"]


# ---------------------------------------------------------------------------- bad input


def test_missing_column_says_what_to_do(reference: pd.DataFrame) -> None:
    current = frame(500, seed=8).drop(columns=["age"])
    with pytest.raises(ValueError, match=r"current lacks columns \['age'\].*leave them out"):
        detect_drift(reference, current, **COLS)
    prof = ReferenceProfile.build(reference, numeric=["income"], categorical=[])
    with pytest.raises(ValueError, match="rebuild it with ReferenceProfile.build"):
        detect_drift(prof, frame(500, seed=8), numeric=["income", "age"], categorical=[])


def test_empty_current_window_says_what_to_do(reference: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="0 rows.*skip the drift check.*or widen it"):
        detect_drift(reference, reference.iloc[:0], **COLS)


@pytest.mark.parametrize("engine", ["evidently", "profile"])
def test_all_missing_column_says_what_to_do(reference: pd.DataFrame, engine: str) -> None:
    current = frame(500, seed=9)
    current["income"] = np.nan
    with pytest.raises(
        ValueError, match="'income' has no non-missing values in the current window.*fix the upstream"
    ):
        detect_drift(reference, current, engine=engine, report=False, **COLS)  # type: ignore[arg-type]


def test_wrongly_typed_or_listed_columns_are_rejected(reference: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="'region' is declared numeric.*declare it categorical"):
        detect_drift(reference, reference, numeric=["region"], categorical=[])
    with pytest.raises(ValueError, match="both numeric and categorical"):
        detect_drift(reference, reference, numeric=["age"], categorical=["age"])


class _FakeSnapshot:
    def __init__(self, data: dict) -> None:
        self._data = data

    def dict(self) -> dict:
        return self._data


def test_unexpected_evidently_output_fails_clearly() -> None:
    with pytest.raises(DriftReportFormatError, match="lacks 'metrics'"):
        parse_snapshot(_FakeSnapshot({"widgets": []}), ["a"], None, 0.5)  # type: ignore[arg-type]
    no_column = {
        "metrics": [
            {
                "id": "1",
                "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
                "value": {"count": 0, "share": 0.0},
            }
        ],
        "tests": [],
    }
    with pytest.raises(DriftReportFormatError, match=r"no ValueDrift result for columns \['a'\]"):
        parse_snapshot(_FakeSnapshot(no_column), ["a"], None, 0.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- policy


def col(
    name: str,
    score: float,
    *,
    method: str = "Wasserstein distance (normed)",
    threshold: float = 0.1,
    importance: float | None = None,
) -> ColumnDrift:
    p = method.endswith("p_value")
    drifted = score < threshold if p else score >= threshold
    return ColumnDrift(name, "numeric", method, score, threshold, drifted, importance)


def result(*columns: ColumnDrift, prediction: ColumnDrift | None = None) -> DriftResult:
    share = sum(c.drifted for c in columns) / len(columns)
    return DriftResult(columns, prediction, share, share >= 0.5, 1000, 1000, "profile")


def test_share_policy() -> None:
    policy = DriftPolicy(hysteresis_margin=0)
    yes = decide_material_drift(result(col("a", 0.3), col("b", 0.2), col("c", 0.01)), policy)
    assert yes.material and yes.columns == ("a", "b") and yes.code is DriftReason.SHARE_REACHED
    assert yes.reason.startswith("Material drift: 2 of 3 input columns drifted (67%)")  # the sentence for people
    no = decide_material_drift(result(col("a", 0.3), col("b", 0.02), col("c", 0.01), col("d", 0.0)), policy)
    assert not no.material and no.code is DriftReason.BELOW_SHARE
    nothing = decide_material_drift(result(col("a", 0.01), col("b", 0.02)), policy)
    assert not nothing.material and nothing.code is DriftReason.NO_DRIFT


def test_weighted_share_policy_uses_importances() -> None:
    r = result(col("a", 0.3), col("b", 0.01), col("c", 0.01), col("d", 0.01))
    policy = DriftPolicy(method="weighted_share", share_threshold=0.5, hysteresis_margin=0)
    high = decide_material_drift(r, policy, importances={"a": 6, "b": 1, "c": 1, "d": 1})
    assert high.material and high.code is DriftReason.WEIGHTED_SHARE_REACHED
    low = decide_material_drift(r, policy, importances={"a": 1, "b": 3, "c": 3, "d": 3})
    assert not low.material and low.code is DriftReason.BELOW_WEIGHTED_SHARE
    with pytest.raises(ValueError, match="needs feature importances"):
        decide_material_drift(r, policy)


def test_top_k_policy() -> None:
    r = result(col("a", 0.3, importance=0.1), col("b", 0.01, importance=0.5), col("c", 0.01, importance=0.4))
    miss = decide_material_drift(r, DriftPolicy(method="top_k", top_k=2, hysteresis_margin=0))
    assert not miss.material and miss.code is DriftReason.NO_TOP_FEATURE_DRIFTED
    hit = decide_material_drift(r, DriftPolicy(method="top_k", top_k=3, hysteresis_margin=0))
    assert hit.material and hit.code is DriftReason.TOP_FEATURE_DRIFTED and hit.columns == ("a",)


def _evidence(drop: float, moved: bool) -> AccuracyEvidence:
    return AccuracyEvidence("accuracy", EvidenceSource.ESTIMATED, 0.8 - drop, 0.8, drop, 0.005, 2000, moved)


def test_prediction_drift_alone_is_material_only_when_accuracy_moves() -> None:
    # the case: the score moved past its limit (Wasserstein 0.11 > 0.1), no input column drifted
    r = result(col("a", 0.01), col("b", 0.01), prediction=col("score", 0.11))
    unconfirmed = decide_material_drift(r, DriftPolicy(hysteresis_margin=0))
    assert not unconfirmed.material and unconfirmed.code is DriftReason.PREDICTION_UNCONFIRMED
    steady = decide_material_drift(r, DriftPolicy(hysteresis_margin=0), accuracy=_evidence(0.004, moved=False))
    assert not steady.material and steady.code is DriftReason.PREDICTION_DRIFTED_ACCURACY_STEADY
    fell = decide_material_drift(r, DriftPolicy(hysteresis_margin=0), accuracy=_evidence(0.04, moved=True))
    assert fell.material and fell.code is DriftReason.PREDICTION_DRIFTED_WITH_ACCURACY
    assert fell.columns == ("score",) and "estimated accuracy" in fell.reason

    always = decide_material_drift(r, DriftPolicy(prediction_drift="always", hysteresis_margin=0))
    assert always.material and always.code is DriftReason.PREDICTION_DRIFTED
    assert DriftPolicy(prediction_drift_is_material=True).prediction_drift == "always"  # older specs still read
    quiet = decide_material_drift(r, DriftPolicy(prediction_drift_is_material=False, hysteresis_margin=0))
    assert not quiet.material and quiet.code is DriftReason.PREDICTION_NOT_COUNTED


def test_hysteresis_stops_a_flapping_column_from_re_alarming() -> None:
    policy = DriftPolicy(share_threshold=0.5, hysteresis=0.1)  # alias accepted
    scores = [0.05, 0.105, 0.095, 0.12, 0.095, 0.105, 0.092, 0.08, 0.105]
    previous: DriftResult | None = None
    states, alarms = [], []
    for s in scores:
        r = result(col("a", s), col("b", 0.01))
        d = decide_material_drift(r, policy, previous)
        states.append(d.material)
        alarms.append(d.newly_drifted)
        previous = r.with_decision(d)
    # enters only above 0.11, stays until below 0.09, and never re-enters below 0.11
    assert states == [False, False, False, True, True, True, True, False, False]
    assert [a for a in alarms if a] == [("a",)]
    held = decide_material_drift(
        result(col("a", 0.095), col("b", 0.01)), policy, result(col("a", 0.12), col("b", 0.01))
    )
    assert held.held == ("a",) and held.material and held.code is DriftReason.HELD_BY_HYSTERESIS
    near = decide_material_drift(result(col("a", 0.105), col("b", 0.01)), policy)
    assert not near.material and near.code is DriftReason.WITHIN_MARGIN


def test_hysteresis_for_p_values_runs_the_other_way() -> None:
    policy = DriftPolicy(share_threshold=0.5, hysteresis_margin=0.2, multiple_testing="none")
    ks = dict(method="K-S p_value", threshold=0.05)
    # p = 0.045 is below 0.05 but not below 0.04: not yet drifted
    assert not decide_material_drift(result(col("a", 0.045, **ks), col("b", 0.9, **ks)), policy).material
    assert decide_material_drift(result(col("a", 0.03, **ks), col("b", 0.9, **ks)), policy).material
    before = result(col("a", 0.03, **ks), col("b", 0.9, **ks))
    before = before.with_decision(decide_material_drift(before, policy))
    # p = 0.058 is above 0.05 but within 0.06: still drifted; p = 0.07 is out
    assert decide_material_drift(result(col("a", 0.058, **ks), col("b", 0.9, **ks)), policy, before).material
    assert not decide_material_drift(
        result(col("a", 0.07, **ks), col("b", 0.9, **ks)), policy, before
    ).material


def test_stattest_threshold_override_applies_to_policy_and_detection(reference: pd.DataFrame) -> None:
    r = result(col("a", 0.15), col("b", 0.01))
    assert decide_material_drift(r, DriftPolicy(share_threshold=0.5, hysteresis_margin=0)).material
    assert not decide_material_drift(
        r, DriftPolicy(share_threshold=0.5, hysteresis_margin=0, stattest_threshold=0.2)
    ).material
    current = frame(2000, seed=3, income_shift=0.4)
    strict = detect_drift(
        reference, current, engine="profile", report=False, policy=DriftPolicy(stattest_threshold=5.0), **COLS
    )
    assert strict.drifted_columns == () and strict.columns[0].threshold == 5.0
    # the report, rendered later, is pinned to the verdict's methods and thresholds
    prof = ReferenceProfile.build(reference, sample_rows=1000, **COLS)
    later = attach_report(strict, prof, current, sample_rows=1000, seed=1)
    assert later.report_drifted_columns == () and later.snapshot is not None
    assert (later.report_current_rows, later.sample_seed) == (1000, 1)


def test_policy_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        DriftPolicy(method="majority")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DriftPolicy(share_threshold=0)
    assert dataclasses.is_dataclass(decide_material_drift(result(col("a", 0.0)), DriftPolicy()))


# ---------------------------------------------------------------------------- feature roles, announcements


def roles_spec(**drift) -> ModelSpec:
    """A small spec with a calendar field, a weekly-seasonal count and two ordinary inputs."""
    return parse_spec({
        "name": "roles", "task": "binary_classification", "target": "y",
        "data": {"kind": "file", "path": "x.parquet"},
        "features": [
            {"name": "month", "type": "integer", "role": "calendar"},
            {"name": "visits", "type": "numeric", "role": "seasonal"},
            {"name": "income", "type": "numeric"},
            {"name": "age", "type": "numeric"},
        ],
        "drift": {"method": "share", "share_threshold": 0.3, "hysteresis_margin": 0, **drift},
    })


def weekly(days: pd.DatetimeIndex, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    """Rows whose ``visits`` follow the weekday (weekends twice as busy); ``month`` is the calendar month."""
    rng = np.random.default_rng(seed)
    weekend = days.dayofweek.to_numpy() >= 5
    return pd.DataFrame({
        "month": days.month.to_numpy().astype(float),
        "visits": rng.poisson(np.where(weekend, 20.0, 10.0)) * (1 + shift),
        "income": rng.lognormal(11, 0.4, len(days)),
        "age": rng.integers(18, 80, len(days)).astype(float),
    })


def test_a_seasonal_feature_needs_a_season_length() -> None:
    with pytest.raises(SpecError, match="set drift.season_days"):
        roles_spec()
    assert roles_spec(season_days=7).features_with_role(FeatureRole.CALENDAR) == ["month"]


def test_calendar_and_weekly_seasonal_features_are_not_material_by_construction() -> None:
    spec = roles_spec(season_days=7)
    cols = dict(numeric=["month", "visits", "income", "age"], categorical=[])
    training = weekly(pd.date_range("2026-01-01", "2026-03-31 23:00", freq="20min"), seed=1)  # a mix of weeks
    saturday = pd.date_range("2026-05-02", periods=2000, freq="43s")  # a Saturday in May
    last_saturday = pd.date_range("2026-04-25", periods=2000, freq="43s")
    today = weekly(saturday, seed=2)
    measured = detect_drift(training, today, engine="profile", report=False, **cols)
    assert {"month", "visits"} <= set(measured.drifted_columns)  # against the training mix both "drift"

    season_back = detect_drift(weekly(last_saturday, seed=3)[["visits"]], today[["visits"]], numeric=["visits"],
                               categorical=[], engine="profile", report=False)
    compared = compare_seasonal(measured, season_back)
    assert compared.seasonal_matched == ("visits",) and not compared.column("visits").drifted
    quiet = assess_drift(spec, compared, None)
    assert not quiet.material and quiet.calendar == ("month",) and quiet.decision.columns == ()
    assert "(vs one season back)" in compared.to_markdown_table()

    # the same weekday a season later, but the visits really doubled: material
    moved = weekly(saturday, seed=4, shift=1.0)
    real = compare_seasonal(
        detect_drift(training, moved, engine="profile", report=False, **cols),
        detect_drift(weekly(last_saturday, seed=3)[["visits"]], moved[["visits"]], numeric=["visits"],
                     categorical=[], engine="profile", report=False),
    )
    assert assess_drift(spec, real, None).decision.columns == ("visits",)

    # no traffic one season back: the seasonal feature is left out, and said to be
    unmatched = assess_drift(spec, compare_seasonal(measured, None), None)
    assert unmatched.seasonal_unmatched == ("visits",) and not unmatched.material
    # without roles the same window is called material: what the issue saw every week
    plain = assess_drift(roles_spec(season_days=7).model_copy(update={"features": tuple(
        f.model_copy(update={"role": FeatureRole.INPUT}) for f in spec.features)}), measured, None)
    assert plain.material


def _material(columns: tuple[str, ...]) -> MaterialDriftDecision:
    return MaterialDriftDecision(True, DriftReason.SHARE_REACHED, "why", columns, columns)


def _checked(version: str, announcement: Announcement, columns: tuple[str, ...], end: datetime) -> DriftRecord:
    return DriftRecord("m", version, end - timedelta(days=1), end, 500, True, announcement.announce, "why", columns,
                       result(col("a", 0.5)), material_since=announcement.material_since,
                       awaiting_retrain=announcement.awaiting_retrain)


def test_drift_past_a_cooldown_skip_is_raised_again_when_retraining_is_allowed() -> None:
    """Daily checks of one persisting drift; a retrain ran 2 h before the first, the cooldown is 72 h."""
    last_retrain = datetime(2026, 3, 1, 22, tzinfo=UTC)
    days = [datetime(2026, 3, d, tzinfo=UTC) for d in (2, 3, 4, 5, 6)]
    allowances = [decide_retrain(day, [last_retrain], cooldown_hours=72, max_per_week=3) for day in days]
    assert [a.code for a in allowances] == [RetrainCode.COOLDOWN] * 3 + [RetrainCode.WITHIN_BUDGET] * 2

    previous, codes = None, []
    for day, allowance in zip(days, allowances, strict=True):
        announcement = decide_announcement(_material(("a",)), previous, "3", day, allowance)
        codes.append((announcement.code, announcement.announce))
        previous = _checked("3", announcement, ("a",), day)
    assert codes == [
        (AnnounceReason.STARTED, True),  # announced, but the retrain it triggers is skipped (cooldown)
        (AnnounceReason.PERSISTS, False),
        (AnnounceReason.PERSISTS, False),
        (AnnounceReason.RETRAIN_ALLOWED_AGAIN, True),  # the cooldown ended and nothing retrained: raised again
        (AnnounceReason.PERSISTS, False),  # once: its retrain can run now
    ]

    # announced while retraining was allowed: its retrain ran; the new version drifting on the same
    # columns folds into the open entry, while a new column is news
    ran = decide_announcement(_material(("a",)), None, "3", days[0], allowances[-1])
    assert ran.announce and not ran.awaiting_retrain
    after = _checked("3", ran, ("a",), days[0])
    same = decide_announcement(_material(("a",)), after, "4", days[1], allowances[-1])
    assert not same.announce and same.code is AnnounceReason.PERSISTS_AFTER_RETRAIN
    assert decide_announcement(_material(("a", "b")), after, "4", days[1], allowances[-1]).code is AnnounceReason.SPREAD


def test_drift_records_keep_the_awaiting_retrain_state() -> None:
    announcement = Announcement(True, AnnounceReason.STARTED, "why", datetime(2026, 3, 2, tzinfo=UTC), True)
    record = _checked("3", announcement, ("a",), datetime(2026, 3, 2, tzinfo=UTC))
    assert DriftRecord.from_json(record.to_json()).awaiting_retrain


def test_p_valued_columns_share_the_significance_level() -> None:
    """Thirteen columns at p < 0.05 each flag one by chance in about half of stationary windows: Bonferroni."""
    ks = dict(method="K-S p_value", threshold=0.05)
    others = [col(f"c{i}", 0.5, **ks) for i in range(9)]
    chance = result(col("a", 0.02, **ks), *others)  # 0.02 > 0.05 / 10 (with the margin): a chance finding
    policy = DriftPolicy(share_threshold=0.1, hysteresis_margin=0)
    assert not decide_material_drift(chance, policy).material
    assert decide_material_drift(chance, policy.model_copy(update={"multiple_testing": "none"})).material
    real = result(col("a", 1e-4, **ks), *others)  # far beyond any chance level
    assert decide_material_drift(real, policy).columns == ("a",)
    wasserstein = dict(method="Wasserstein distance (normed)", threshold=0.1)  # effect sizes are not corrected
    big = result(col("a", 0.2, **wasserstein), *[col(f"c{i}", 0.01, **wasserstein) for i in range(9)])
    assert decide_material_drift(big, policy).columns == ("a",)



def test_a_distance_past_its_threshold_within_the_windows_noise_is_not_material() -> None:
    """The suite's quiet worlds: one column carrying 34% of the importance crossed its distance threshold in 3 of
    90 windows with a noise p-value near 0.001; the window has 14 columns, so the family-wise level is 0.01 / 14."""
    importances = {"num_late_payments": 0.34, **{f"c{i}": 0.66 / 13 for i in range(13)}}
    others = [col(f"c{i}", 0.04) for i in range(13)]
    policy = DriftPolicy(method="weighted_share", share_threshold=0.3)
    noisy = dataclasses.replace(col("num_late_payments", 0.125), noise_p_value=0.0015)
    decision = decide_material_drift(result(noisy, *others), policy, importances=importances)
    assert not decision.material and decision.code is DriftReason.WITHIN_NOISE
    assert "noise p 0.0015" in decision.reason and "0.01 shared among 14 columns" in decision.reason
    # One test per column at 1% would have counted it: the old rule.
    assert decide_material_drift(result(noisy, *others), policy.model_copy(update={"multiple_testing": "none"}),
                                 importances=importances).material
    clear = dataclasses.replace(noisy, noise_p_value=0.0005)  # beyond every draw of the noise
    assert decide_material_drift(result(clear, *others), policy, importances=importances).material
    large = dataclasses.replace(noisy, noise_p_value=None)  # a large window: the effect size alone decides
    assert decide_material_drift(result(large, *others), policy, importances=importances).material
    # Once drifted, a column stays so by the hysteresis rule: the noise test is for entering.
    was = result(clear, *others)
    was = dataclasses.replace(was, held_drifted=("num_late_payments",))
    assert decide_material_drift(result(noisy, *others), policy, was, importances=importances).material


def test_the_noise_p_value_of_a_small_window_separates_noise_from_a_shift() -> None:
    rng = np.random.default_rng(11)
    counts = rng.poisson(0.45, 13_000).astype(float)  # a count column like num_late_payments
    profile = ReferenceProfile.build(pd.DataFrame({"n": counts}), numeric=["n"], categorical=[])
    from steward.monitoring.drift.statistics import profile_column

    same = None
    for seed in range(40):  # a window of the same distribution that crosses the 0.1 threshold by chance
        window = pd.DataFrame({"n": np.random.default_rng(seed).poisson(0.45, 800).astype(float)})
        drift = profile_column("n", "numeric", window, profile, None, None)
        if drift.drifted:
            same = drift
            break
    shifted = profile_column("n", "numeric", pd.DataFrame({"n": rng.poisson(0.7, 800).astype(float)}),
                             profile, None, None)
    assert shifted.drifted and shifted.noise_p_value is not None and shifted.noise_p_value < 0.001
    if same is not None:
        assert same.noise_p_value is not None and same.noise_p_value > 0.01 / 2
    quiet = profile_column("n", "numeric", pd.DataFrame({"n": rng.poisson(0.45, 800).astype(float)}), profile, None,
                           None)
    assert quiet.drifted or quiet.noise_p_value is None  # measured only past the threshold
    large = profile_column("n", "numeric", pd.DataFrame({"n": rng.poisson(0.7, 20_000).astype(float)}),
                           profile, None, None)
    assert large.drifted and large.noise_p_value is None  # a large window: the effect size decides
