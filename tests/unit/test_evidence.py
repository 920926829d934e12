from __future__ import annotations

import pandas as pd
import yaml

from steward.delivery.evidence import arm_evidence
from steward.simulation.examples import example_spec_text
from steward.spec import parse_spec

SPEC = parse_spec(yaml.safe_load(example_spec_text()))


T0 = pd.Timestamp("2026-12-03T12:00:00Z")


def log(rows):
    frame = pd.DataFrame(rows, columns=["request_id", "row", "arm", "version", "served", "status", "prediction",
                                        "score", "latency_ms"])
    return frame.assign(time=[T0 + pd.Timedelta(seconds=i) for i in range(len(frame))])


def test_counts_requests_errors_and_losses_per_arm_and_version():
    predictions = log([
        ("a", 0, "champion", "1", True, "ok", "0", 0.1, 5.0),
        ("a", 1, "champion", "1", True, "ok", "1", 0.8, 5.0),   # second row of the same request
        ("b", 0, "challenger", "2", True, "error", None, None, 9.0),
        ("c", 0, "challenger", "2", True, "ok", "1", 0.9, 7.0),
        ("d", 0, "challenger", "3", True, "ok", "1", 0.9, 7.0),  # an older challenger: not counted
        ("a", 0, "challenger", "2", False, "ok", "0", 0.2, 6.0),  # shadow copy
    ])
    labelled = predictions.assign(label=["0", "0", "1", "0", "1", "0"])
    evidence = arm_evidence(predictions, SPEC, versions={"champion": "1", "challenger": "2"}, labelled=labelled)
    champion, challenger = evidence["champion"], evidence["challenger"]
    assert (champion.requests, champion.errors, list(champion.latencies_ms)) == (1, 0, [5.0])
    assert list(champion.losses) == [0.0, 1.0]
    assert (challenger.requests, challenger.errors) == (2, 1)
    assert list(challenger.latencies_ms) == [7.0]  # a failure's time is no evidence of the model's speed
    assert list(challenger.times_s) == [T0.timestamp() + 3]  # its arrival, for matching time slices
    assert list(challenger.losses) == [1.0]  # the errored row has no prediction to score
    shadow = arm_evidence(predictions, SPEC, versions={"challenger": "2"}, served_only=False)["challenger"]
    assert shadow.requests == 3


def test_validation_scores_are_the_score_the_gateway_logs():
    """P(positive class) of a binary classifier, on the version's own hold-out rows."""
    from sklearn.dummy import DummyClassifier

    from steward.delivery.evidence import validation_scores
    from steward.simulation.examples import example_training_frame
    from steward.training.data import prepare_features

    frame = example_training_frame().head(200)
    model = DummyClassifier(strategy="prior").fit(prepare_features(frame, SPEC), frame[SPEC.target])
    scores = validation_scores(model, frame, SPEC)
    assert scores.shape == (200,) and abs(scores[0] - frame[SPEC.target].mean()) < 1e-9


def test_each_arms_own_compute_time_is_recorded_when_both_share_a_batch(example_frame, tmp_path):
    """Both arms' requests scored in one batch of the gateway's loop answer at the same moment, so their
    end-to-end latencies match; the time inside each arm's model call tells the slow one apart."""
    import dataclasses
    import time

    from test_serving_batcher import columns_of, logistic_arm  # tests/unit is on the path (no package)

    from steward.serving.inference import Job, score_jobs
    from steward.serving.prediction_log import LogContext, LogSettings, PredictionLog
    from steward.simulation.candidates import SlowerClassifier, units_for
    from steward.store.reader import PredictionStore
    from steward.store.writer import LogMode

    champion = logistic_arm(example_frame.head(800), "1")
    slow = dataclasses.replace(champion, version="2", compiled=None,
                               estimator=SlowerClassifier(champion.estimator, work_units=units_for(30.0)))
    day_ns = 1_773_100_800 * 10**9  # 2026-03-10T00:00Z
    started = time.perf_counter()
    jobs = [Job(which, columns_of(which, 1), 1, context=LogContext(f"r{i}", day_ns + i * 10**9, started, None, name,
                                                                     True, [0]))
            for i, (which, name) in enumerate([(champion, "champion"), (slow, "challenger")] * 4)]
    score_jobs(jobs)
    prediction_log = PredictionLog(PredictionStore(str(tmp_path / "log")),
                                   LogSettings(LogMode.BATCHED, flush_interval=60, max_pending=1000, wal_dir=None))
    prediction_log.start().record_jobs(jobs)
    prediction_log.close()
    logged = prediction_log.store.read_predictions(champion.model, "2026-03-10", "2026-03-11")
    evidence = arm_evidence(logged, champion.spec, versions={"champion": "1", "challenger": "2"})
    fast, slower = evidence["champion"], evidence["challenger"]
    assert len(fast.compute_ms) == len(slower.compute_ms) == 4
    assert max(fast.latencies_ms) == min(slower.latencies_ms)  # logged at the same moment: no difference
    assert slower.compute_ms.min() > 3 * fast.compute_ms.max(), (slower.compute_ms, fast.compute_ms)


def test_rows_logged_before_compute_time_was_recorded_read_as_not_measured():
    predictions = log([("a", 0, "champion", "1", True, "ok", "0", 0.1, 5.0)])
    evidence = arm_evidence(predictions, SPEC, versions={"champion": "1"})["champion"]
    assert len(evidence.compute_ms) == 1 and pd.isna(evidence.compute_ms[0])
