"""A/B data shaping and verdicts, experiment state from the audit history, and the shadow comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from steward.delivery.ab_data import ABData, ab_data
from steward.delivery.ab_verdict import ABReason, ABStatus, already_concluded, judge_ab_test, previous_p_value
from steward.delivery.experiments import (
    ExperimentError,
    ExperimentKind,
    ExperimentWindow,
    ab_plan,
    active_experiment,
    check_can_start,
    experiment_window,
    new_experiment,
    require_active,
    shadow_plan,
    stop_details,
)
from steward.delivery.shadow import compare_shadow
from steward.registry.history import AuditEntry, ChangeKind
from steward.registry.traffic import DEFAULT_PLAN, TrafficPlan
from steward.simulation.examples import example_spec_text
from steward.spec import parse_spec

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def spec(**ab_test):
    import yaml

    document = yaml.safe_load(example_spec_text())
    document["name"] = "exp-model"
    if ab_test:
        document["ab_test"] = ab_test
    return parse_spec(document)


def run_for(model_spec, kind=ExperimentKind.AB_TEST, percent=50.0, design=None):
    plan = ab_plan(model_spec, percent, salt="s") if kind is ExperimentKind.AB_TEST else shadow_plan(percent)
    return new_experiment(kind, model_spec.name, champion_version="1", challenger_version="2", plan=plan, now=T0,
                          settle_seconds=5, design=design or model_spec.ab_test)


WINDOW = ExperimentWindow(T0, T0 + timedelta(hours=1))


def log(rows: list[dict]) -> pd.DataFrame:
    """Log rows with the store's columns; each dict overrides the defaults of one row."""
    base = {"row": 0, "served": True, "status": "ok", "prediction": "0", "score": 0.2, "latency_ms": 5.0,
            "region": "north"}
    frame = pd.DataFrame([{**base, **row} for row in rows])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def request(i: int, entity: str | None, arm: str, label: str | None = None, **extra) -> dict:
    version = {"challenger": "2", "champion": "1"}[arm]
    row = {"request_id": f"r{i}", "time": T0 + timedelta(seconds=10 + i), "version": version, "arm": arm,
           "entity": entity, **extra}
    if label is not None:
        row["label"] = label
    return row


def split(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, labelled) as the flow gets them from the store."""
    frame = log(rows)
    labelled = frame[frame["label"].notna()] if "label" in frame.columns else frame.iloc[:0].assign(label=None)
    return frame.drop(columns=["label"], errors="ignore"), labelled


# ---------------------------------------------------------------------- A/B data
def test_repeat_entities_get_one_outcome_each_and_are_compared_with_welch():
    s = spec()
    rows = [request(0, "a", "challenger", "0"), request(1, "a", "challenger", "1"), request(2, "a", "challenger", "0"),
            request(3, "b", "champion", "0"), request(4, "c", "champion", "1")]
    data = ab_data(*split(rows), s, run_for(s))
    assert data.treatment.tolist() == pytest.approx([2 / 3])
    assert sorted(data.control.tolist()) == [0.0, 1.0]
    assert not data.binary and data.assigned == (1, 2) and data.observations == (3, 2)


def test_one_shot_entities_are_bernoulli_outcomes():
    s = spec()
    rows = [request(i, f"e{i}", "challenger" if i % 2 else "champion", "1" if i % 3 else "0") for i in range(10)]
    data = ab_data(*split(rows), s, run_for(s))
    assert data.binary and data.units == (5, 5)
    assert set(data.treatment) | set(data.control) <= {0.0, 1.0}


def test_crossovers_unkeyed_requests_and_other_versions_are_left_out_and_counted():
    s = spec()
    rows = [
        request(0, "x", "challenger", "0"), request(1, "x", "champion", "0"),  # served by both arms
        request(2, None, "champion", "0"),  # no sticky key
        {**request(3, "y", "champion", "0"), "version": "7"},  # a version the test did not set up
        request(4, "z", "challenger", "0"), request(5, "w", "champion", "0"),
        {**request(6, "v", "champion", "0"), "served": False},  # a shadow copy is not an A/B answer
    ]
    data = ab_data(*split(rows), s, run_for(s))
    assert (data.crossover_entities, data.unkeyed_requests, data.other_version_rows) == (1, 1, 1)
    assert data.assigned == (1, 1) and data.units == (1, 1)


def test_an_unanswered_request_counts_as_wrong_for_accuracy():
    s = spec()
    rows = [request(0, "a", "challenger", "0", status="error", prediction=None), request(1, "b", "champion", "0")]
    data = ab_data(*split(rows), s, run_for(s))
    assert data.treatment.tolist() == [0.0] and data.control.tolist() == [1.0]


def test_label_mean_uses_the_labels_and_refuses_text_labels():
    s = spec(metric="label_mean")
    rows = [request(0, "a", "challenger", "1"), request(1, "a", "challenger", "0"), request(2, "b", "champion", "1")]
    data = ab_data(*split(rows), s, run_for(s))
    assert data.treatment.tolist() == [0.5] and data.control.tolist() == [1.0]
    rows[0]["label"] = "yes"
    with pytest.raises(ExperimentError, match="not numbers.*feedback endpoint"):
        ab_data(*split(rows), s, run_for(s))


def test_latency_is_per_request_and_needs_no_labels():
    s = spec(metric="latency_ms", higher_is_better=False)
    rows = [request(0, "a", "challenger", latency_ms=10.0), {**request(0, "a", "challenger", latency_ms=10.0), "row": 1},
            request(1, "a", "challenger", latency_ms=20.0), request(2, "b", "champion", latency_ms=4.0)]
    data = ab_data(*split(rows), s, run_for(s))
    assert data.treatment.tolist() == [15.0] and data.control.tolist() == [4.0] and not data.binary


def test_accuracy_on_a_regression_model_is_refused_with_what_to_use():
    import yaml

    document = yaml.safe_load(example_spec_text())
    document.update(name="reg", task="regression")
    document["gates"] = {"primary_metric": "rmse"}
    document["slo"].pop("min_accuracy")
    s = parse_spec(document)
    with pytest.raises(ExperimentError, match="regression model: use 'label_mean'"):
        ab_data(*split([request(0, "a", "champion", "1.5")]), s, run_for(s))


def test_a_fixed_design_reads_only_the_first_planned_entities_per_arm():
    s = spec(stopping="fixed", planned_samples_per_arm=3)
    rows = [request(i, f"e{i}", "challenger" if i % 2 else "champion", "0" if i < 6 else "1") for i in range(12)]
    data = ab_data(*split(rows), s, run_for(s))
    assert data.units == (3, 3) and data.truncated_to == 3
    assert data.treatment.tolist() == [1.0, 1.0, 1.0]  # e1, e3, e5: the first three, all right
    assert data.assigned == (6, 6)  # the sample-ratio check still counts every entity


# ---------------------------------------------------------------------- A/B verdict
def data_of(treatment, control, *, binary=True, assigned=None, crossovers=0) -> ABData:
    t, c = np.asarray(treatment, float), np.asarray(control, float)
    return ABData("accuracy", binary, t, c, assigned or (len(t), len(c)), (len(t), len(c)), (len(t), len(c)),
                  0, crossovers, 0)


rng = np.random.default_rng(3)


def test_equal_arms_give_no_clear_winner_with_the_traffic_still_needed():
    s = spec(minimum_effect=0.05)
    report = judge_ab_test(data_of(rng.binomial(1, 0.8, 400), rng.binomial(1, 0.8, 400)), run_for(s), WINDOW)
    assert report.status is ABStatus.RUNNING and report.winner is None
    assert report.code is ABReason.NO_CLEAR_WINNER, report.recommendation
    assert report.result.additional_samples_per_arm > 0
    assert report.p_value == report.result.sequential.p_value <= 1.0


def test_a_known_difference_names_the_right_winner_as_a_recommendation():
    s = spec(minimum_effect=0.05)
    better = judge_ab_test(data_of(rng.binomial(1, 0.9, 500), rng.binomial(1, 0.6, 500)), run_for(s), WINDOW,
                           spec_path="model.yaml")
    assert better.status is ABStatus.CONCLUDED and better.winner == "challenger" and better.winner_version == "2"
    assert better.code is ABReason.WINNER, better.recommendation
    worse = judge_ab_test(data_of(rng.binomial(1, 0.6, 500), rng.binomial(1, 0.9, 500)), run_for(s), WINDOW)
    assert worse.winner == "champion" and worse.code is ABReason.WINNER
    markdown = better.to_markdown()
    assert markdown.startswith(f"# A/B test of exp-model: {better.recommendation}")
    assert "confidence sequence" in markdown and "unit of analysis: the entity" in markdown


def test_lower_is_better_turns_the_winner_around():
    s = spec(metric="latency_ms", higher_is_better=False, minimum_effect=1.0)
    data = ABData("latency_ms", False, rng.normal(20, 2, 200), rng.normal(10, 2, 200), (200, 200), (200, 200),
                  (200, 200), 0, 0, 0)
    assert judge_ab_test(data, run_for(s), WINDOW).winner == "champion"


def test_a_sample_ratio_mismatch_refuses_to_conclude_and_does_not_move_the_p_value():
    s = spec(minimum_effect=0.05)
    data = data_of(rng.binomial(1, 0.95, 300), rng.binomial(1, 0.5, 500), assigned=(300, 500))
    report = judge_ab_test(data, run_for(s), WINDOW, previous_p_value=0.4)
    assert report.status is ABStatus.INVALID and report.winner is None and not report.conclusive
    assert report.code is ABReason.SAMPLE_RATIO_MISMATCH
    assert report.p_value == 0.4  # the untrusted look is not carried into the next one
    assert report.result.sequential.p_value < 0.001  # although this look alone would have "won"


def test_a_sample_ratio_mismatch_is_reported_before_enough_outcomes_arrive():
    s = spec()
    report = judge_ab_test(data_of([1] * 5, [1] * 5, assigned=(100, 400)), run_for(s), WINDOW)
    assert report.status is ABStatus.INVALID and report.result is None
    assert report.code is ABReason.SAMPLE_RATIO_MISMATCH


def test_too_few_entities_wait_and_non_sticky_assignment_is_invalid():
    s = spec()
    waiting = judge_ab_test(data_of([1] * 10, [0] * 12), run_for(s), WINDOW)
    assert waiting.status is ABStatus.WAITING and waiting.code is ABReason.WAITING_FOR_DATA
    assert waiting.data.units == (10, 12)
    crossed = judge_ab_test(data_of(rng.binomial(1, 0.9, 300), rng.binomial(1, 0.5, 300), crossovers=20), run_for(s),
                            WINDOW)
    assert crossed.status is ABStatus.INVALID and crossed.code is ABReason.NOT_STICKY


def test_the_carried_p_value_never_rises_across_looks():
    s = spec(minimum_effect=0.05)
    treatment, control = rng.binomial(1, 0.85, 1000), rng.binomial(1, 0.8, 1000)
    previous, seen = 1.0, []
    for n in (100, 300, 600, 1000):
        report = judge_ab_test(data_of(treatment[:n], control[:n]), run_for(s), WINDOW, previous_p_value=previous)
        seen.append(report.p_value)
        previous = report.p_value
    assert seen == sorted(seen, reverse=True)


def test_a_fixed_design_keeps_running_until_its_planned_sample():
    s = spec(stopping="fixed", planned_samples_per_arm=500)
    report = judge_ab_test(data_of(rng.binomial(1, 0.9, 100), rng.binomial(1, 0.5, 100)), run_for(s), WINDOW)
    assert report.status is ABStatus.RUNNING and report.code is ABReason.BELOW_PLANNED_SAMPLE
    assert report.result.additional_samples_per_arm == 400
    assert report.p_value is None


# ---------------------------------------------------------------------- state in the audit history
def entry(seq: int, kind: ChangeKind, details: dict | None = None, alias: str | None = None) -> AuditEntry:
    return AuditEntry(time=T0 + timedelta(seconds=seq), model="exp-model", kind=kind, actor="t", reason="r",
                      alias=alias, details=details or {}, sequence=seq)


def started(seq: int, run) -> AuditEntry:
    return entry(seq, ChangeKind.DELIVERY_DECISION, run.to_details())


def test_the_active_experiment_is_the_last_start_not_stopped():
    s = spec()
    run = run_for(s)
    assert active_experiment([]) is None
    history = [entry(1, ChangeKind.TRAFFIC_PLAN), started(2, run)]
    found = active_experiment(history)
    assert found.experiment_id == run.experiment_id and found.sequence == 2 and found.design == s.ab_test
    assert found.plan == run.plan and found.analysis_from == T0 + timedelta(seconds=5)
    history.append(entry(3, ChangeKind.DELIVERY_DECISION, stop_details(run)))
    assert active_experiment(history) is None
    with pytest.raises(ExperimentError, match="steward ab-test m.yaml --action start"):
        require_active(history, ExperimentKind.AB_TEST, "exp-model", "m.yaml")


def test_one_experiment_at_a_time_and_only_from_the_default_plan():
    s = spec()
    history = [started(1, run_for(s, ExperimentKind.SHADOW))]
    with pytest.raises(ExperimentError, match="running a shadow.*steward shadow m.yaml --action stop"):
        require_active(history, ExperimentKind.AB_TEST, "exp-model", "m.yaml")
    with pytest.raises(ExperimentError, match="already runs shadow"):
        check_can_start(history, DEFAULT_PLAN, model="m", spec_path="m.yaml", champion="1", challenger="2")
    with pytest.raises(ExperimentError, match="has no challenger; validate a candidate"):
        check_can_start([], DEFAULT_PLAN, model="m", spec_path="m.yaml", champion="1", challenger=None)
    canary = TrafficPlan(mode="canary", challenger_percent=25)
    with pytest.raises(ExperimentError, match="canary: 25% of requests.*needs the traffic to itself"):
        check_can_start([], canary, model="m", spec_path="m.yaml", champion="1", challenger="2")
    check_can_start([], DEFAULT_PLAN, model="m", spec_path="m.yaml", champion="1", challenger="2")


def test_the_window_closes_at_a_plan_change_or_an_alias_move_after_the_start():
    s = spec()
    run = active_experiment([started(10, run_for(s))])
    now = T0 + timedelta(minutes=30)
    open_window = experiment_window([started(10, run)], run, now)
    assert (open_window.start, open_window.end, open_window.closed_by) == (run.analysis_from, now, None)
    changed = entry(60, ChangeKind.TRAFFIC_PLAN, {"summary": "canary: 10% of requests to the challenger"})
    window = experiment_window([started(10, run), changed], run, now)
    assert window.end == T0 + timedelta(seconds=60) and "canary: 10%" in window.closed_by
    moved = entry(40, ChangeKind.PROMOTE, alias="champion")
    assert experiment_window([moved, changed], run, now).end == T0 + timedelta(seconds=40)


def test_previous_p_value_and_conclusion_come_from_this_tests_looks():
    s = spec()
    run = active_experiment([started(1, run_for(s))])
    other = run_for(s)
    looks = [
        entry(2, ChangeKind.DELIVERY_DECISION, {"experiment": "ab-test", "action": "analyse",
                                                "experiment_id": run.experiment_id, "p_value": "0.3",
                                                "status": "running"}),
        entry(3, ChangeKind.DELIVERY_DECISION, {"experiment": "ab-test", "action": "analyse",
                                                "experiment_id": run.experiment_id, "p_value": "0.02",
                                                "status": "concluded"}),
        entry(4, ChangeKind.DELIVERY_DECISION, {"experiment": "ab-test", "action": "analyse",
                                                "experiment_id": other.experiment_id, "p_value": "0.0001"}),
    ]
    assert previous_p_value(looks[:1], run) == 0.3 and previous_p_value(looks, run) == 0.02
    assert previous_p_value([], run) == 1.0
    assert not already_concluded(looks[:1], run) and already_concluded(looks, run)


def test_report_details_round_trip_the_p_value():
    s = spec(minimum_effect=0.05)
    run = run_for(s)
    report = judge_ab_test(data_of(rng.binomial(1, 0.8, 200), rng.binomial(1, 0.8, 200)), run, WINDOW)
    looked = entry(5, ChangeKind.DELIVERY_DECISION, report.to_details())
    assert previous_p_value([looked], run) == report.p_value


def test_plans_and_design_are_checked_before_traffic_moves():
    s = spec()
    assert ab_plan(s, 30, "x").sticky_key == "field:entity_id"
    assert ab_plan(spec(sticky_key="header:X-Customer"), 30, "x").sticky_key == "header:x-customer"
    assert ab_plan(spec(sticky_key="customer"), 30, "x").sticky_key == "field:customer"
    with pytest.raises(ExperimentError, match="strictly between 0 and 100"):
        ab_plan(s, 100, "x")
    with pytest.raises(ExperimentError, match=r"\(0, 100\]"):
        shadow_plan(0)


# ---------------------------------------------------------------------- shadow
def shadow_log(n: int, disagree: set[int], *, regions=("north", "south"), copy_every: int = 1,
               champion_ms: float = 5.0, shadow_ms: float = 50.0) -> pd.DataFrame:
    rows = []
    for i in range(n):
        region = regions[i % len(regions)]
        common = {"request_id": f"r{i}", "time": T0 + timedelta(seconds=10 + i), "entity": None, "region": region}
        rows.append({**common, "version": "1", "arm": "champion", "served": True, "prediction": "0", "score": 0.20,
                     "latency_ms": champion_ms + (i % 7)})
        if i % copy_every == 0:
            flipped = i in disagree
            rows.append({**common, "version": "2", "arm": "challenger", "served": False,
                         "prediction": "1" if flipped else "0", "score": 0.70 if flipped else 0.22,
                         "latency_ms": shadow_ms + (i % 7)})
    return log(rows)


def test_shadow_agreement_slices_and_latency():
    s = spec()
    run = run_for(s, ExperimentKind.SHADOW, percent=100)
    south = {i for i in range(200) if i % 2 == 1 and i % 4 == 1}  # half of the south rows disagree
    during = shadow_log(200, south)
    before = shadow_log(200, set(), champion_ms=5.0)
    before = before[before["served"]]
    report = compare_shadow(during, s, run, WINDOW, before=before, tolerance=0.05)
    assert report.pairs == 200 and report.coverage == 1.0
    assert report.agreement_rate == pytest.approx(0.75) and report.score_agreement_rate == pytest.approx(0.75)
    by_value = {(x.feature, x.value): x for x in report.slices}
    assert by_value[("region", "south")].rate == pytest.approx(0.5) and by_value[("region", "south")].above_overall
    assert by_value[("region", "north")].rate == 0 and not by_value[("region", "north")].above_overall
    assert [f"{x.feature}={x.value}" for x in report.flagged_slices] == ["region=south"]
    assert {x.feature for x in report.slices} == {"region"}  # employment_type is not in these rows
    latency = report.latency
    assert latency.challenger_vs_champion_p95.ratio == pytest.approx((50 + 6) / (5 + 6), rel=0.05)
    assert latency.champion_p95_change.ratio == pytest.approx(1.0) and latency.champion_slowed is False
    markdown = report.to_markdown()
    assert "same predicted class: 75.00%" in markdown and "| region | south | 100 | 50.00%" in markdown
    assert "region=south" in report.summary()


def test_shadow_of_a_label_only_challenger_compares_classes_and_no_scores():
    s = spec()
    run = run_for(s, ExperimentKind.SHADOW, percent=100)
    during = shadow_log(100, {1, 2, 3, 4})
    during.loc[~during["served"], "score"] = None  # the challenger gives labels only
    report = compare_shadow(during, s, run, WINDOW, tolerance=0.05)
    assert report.agreement_rate == pytest.approx(0.96)
    assert report.score_agreement_rate is None and report.mean_abs_score_diff is None  # never 0% made up
    assert "scores not compared (no_scores" in report.to_markdown()


def test_shadow_sees_a_slower_champion_and_partial_copies():
    s = spec()
    run = run_for(s, ExperimentKind.SHADOW, percent=50)
    during = shadow_log(200, set(), copy_every=2, champion_ms=20.0)
    before = shadow_log(200, set(), champion_ms=5.0)
    report = compare_shadow(during, s, run, WINDOW, before=before[before["served"]])
    assert report.coverage == pytest.approx(0.5) and report.pairs == 100
    assert report.latency.champion_slowed is True and report.agreement_rate == 1.0
    assert "rose during the shadow" in report.summary()


def test_shadow_compares_both_versions_on_the_same_labels():
    s = spec()
    run = run_for(s, ExperimentKind.SHADOW)
    during = shadow_log(40, disagree=set(range(0, 40, 4)))  # the challenger says 1 on ten rows
    labels = pd.DataFrame({"request_id": [f"r{i}" for i in range(40)], "row": 0,
                           "label": ["1" if i % 4 == 0 else "0" for i in range(40)],
                           "time": pd.Timestamp(T0) + pd.Timedelta(minutes=5)})
    report = compare_shadow(during, s, run, WINDOW, labels=labels)
    labelled = report.labelled
    assert (labelled.pairs, labelled.challenger, labelled.champion) == (40, 1.0, 0.75)
    assert (labelled.challenger_only_right, labelled.champion_only_right) == (10, 0)
    assert labelled.p_value == pytest.approx(2 * 0.5**10)


def test_shadow_without_copies_says_so():
    s = spec()
    run = run_for(s, ExperimentKind.SHADOW)
    during = shadow_log(20, set())
    report = compare_shadow(during[during["served"]], s, run, WINDOW)
    assert report.pairs == 0 and report.agreement_rate is None
    assert "no paired predictions yet (20 served, 0 shadow copies" in report.summary()
    assert "not enough served requests before it" in report.to_markdown()
