"""The event-loop batcher's order of work, and where a challenger's shadow copies are scored."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest
import yaml

from steward.estimators import build_estimator
from steward.serving.arms import check_rows, loaded_arm, measure_call_seconds
from steward.serving.inference import Job, LoopBatcher, score_copies, score_jobs
from steward.serving.schema import InputSchema
from steward.serving.shadow import PlacementReason, shadow_placement
from steward.simulation.examples import example_spec_text
from steward.spec import OutOfRangePolicy, parse_spec
from steward.training.data import prepare_features


def logistic_arm(frame, version: str):
    document = yaml.safe_load(example_spec_text())
    document["estimator"] = {"factory": "steward.estimators:tabular_pipeline",
                             "params": {"estimator": "sklearn.linear_model.LogisticRegression", "max_iter": 300}}
    spec = parse_spec(document)
    model = build_estimator(spec).fit(prepare_features(frame, spec), frame[spec.target])
    return loaded_arm(spec.name, version, "digest", model, spec, InputSchema(spec, out_of_range=OutOfRangePolicy.ALLOW))


@pytest.fixture(scope="module")
def arm(example_frame):
    return logistic_arm(example_frame.head(800), "1")


def columns_of(arm, n: int = 2) -> dict[str, list]:
    return {name: values[:n] for name, values in check_rows(arm.spec).items()}


def test_copies_queued_while_a_batch_waits_are_scored_after_its_answers(arm):
    async def run() -> list[tuple[str, object]]:
        events: list[tuple[str, object]] = []
        batcher = LoopBatcher(scored=lambda jobs: events.append(("scored", [job.context for job in jobs])))

        async def request(tag: str) -> None:
            result = await batcher.score(Job(arm, columns_of(arm), 2, context=tag))
            events.append(("answered", (tag, len(result.predictions))))

        requests = [asyncio.create_task(request(tag)) for tag in ("a", "b")]
        await asyncio.sleep(0)  # both requests are waiting in the batcher
        batcher.copy(Job(arm, columns_of(arm), 2, context="copy"))
        await asyncio.gather(*requests)
        for _ in range(10):
            await asyncio.sleep(0)
        assert batcher.copies == 1 and batcher.copies_queued == 0
        return events

    assert asyncio.run(run()) == [
        ("scored", ["a", "b"]),  # one model call for both requests
        ("answered", ("a", 2)), ("answered", ("b", 2)),  # the answers go out first
        ("scored", ["copy"]),
    ]


def test_a_failing_copy_is_reported_with_its_error_and_does_not_stop_the_batcher(arm):
    async def run():
        seen = []
        batcher = LoopBatcher(scored=seen.extend)
        batcher.copy(Job(arm, {"age": ["not a number"]}, 1, context="bad copy"))
        result = await batcher.score(Job(arm, columns_of(arm, 1), 1, context="request"))
        for _ in range(10):
            await asyncio.sleep(0)
        return seen, result

    seen, result = asyncio.run(run())
    assert len(result.predictions) == 1
    assert {job.context: isinstance(job.result, BaseException) for job in seen} == {"bad copy": True, "request": False}


def test_shadow_copies_stay_on_the_loop_only_for_a_quick_challenger(arm):
    measured = measure_call_seconds(arm)
    assert 0 < measured < 1
    quick = dataclasses.replace(arm, version="2", call_seconds=0.0002)
    slow = dataclasses.replace(arm, version="3", call_seconds=0.004)
    assert shadow_placement(quick, 0.5).inline and shadow_placement(quick, 0.5).code is PlacementReason.WITHIN_LIMIT
    placement = shadow_placement(slow, 0.5)
    assert not placement.inline and placement.code is PlacementReason.OVER_LIMIT
    assert not shadow_placement(quick, 0).inline  # 0: every challenger's copies go to the shadow process
    assert not shadow_placement(arm, 1000).inline and shadow_placement(arm, 1000).code is PlacementReason.NOT_MEASURED


def test_copies_are_scored_on_their_batchs_prepared_rows_with_the_same_results(arm, example_frame):
    """Copies of jobs 0, 1 and 3 of a batch: runs [0, 1] and [3] on the batch's arrays, as if scored anew."""
    challenger = logistic_arm(example_frame.iloc[800:1600], "2")
    rows = check_rows(arm.spec)
    columns = [{name: values[i:i + 1 + i % 2] for name, values in rows.items()} for i in range(4)]
    served = [Job(arm, c, len(next(iter(c.values())))) for c in columns]
    score_jobs(served)
    copies = [Job(challenger, job.columns, job.rows, source=job.source) for job in (served[0], served[1], served[3])]
    score_copies(copies)
    for copy in copies:
        expected = challenger.score(copy.columns)
        assert copy.result.predictions == expected.predictions
        assert copy.result.scores == pytest.approx(expected.scores, rel=1e-12)  # batch size moves the last bit
    assert served[1].source[1] == served[0].rows and served[0].source[0] is served[3].source[0]
    assert challenger.score(columns[0]).scores != arm.score(columns[0]).scores  # really another model


def test_a_log_records_features_are_its_jobs_rows_sliced_from_the_batch_or_chained(arm, example_frame):
    """One arm's jobs sit side by side in the batch's input and take a slice of it (the numeric
    features as a view of the batch's float64 block); others are chained from their own columns."""
    from steward.serving.prediction_log import FLOAT64, features_of

    challenger = logistic_arm(example_frame.iloc[800:1600], "2")
    rows = check_rows(arm.spec)
    columns = [{name: values[i:i + 1 + i % 2] for name, values in rows.items()} for i in range(6)]
    jobs = [Job(challenger if i % 3 == 0 else arm, c, len(next(iter(c.values())))) for i, c in enumerate(columns)]
    score_jobs(jobs)
    numeric = arm.schema.numeric_names
    assert numeric and set(rows) - set(numeric)  # the example has features of both kinds

    def chained(members: list[Job]) -> dict[str, list]:
        return {name: [value for job in members for value in job.columns[name]] for name in members[0].columns}

    champion = [job for job in jobs if job.arm is arm]
    assert len({id(job.source[0]) for job in jobs}) == 1  # one model input for both arms
    text, block = features_of(champion, arm.schema)
    expected = chained(champion)
    assert text == {name: values for name, values in expected.items() if name not in numeric}
    as_floats = np.array([[np.nan if v is None else v for v in expected[name]] for name in numeric]).T
    assert np.array_equal(block, as_floats, equal_nan=True)
    prepared = champion[0].source[0]
    assert np.shares_memory(block, prepared.block(numeric, FLOAT64))  # a view: nothing copied per value
    apart = champion[:1] + champion[2:]  # not side by side: chained from the jobs' own columns
    assert features_of(apart, arm.schema) == (chained(apart), None)
    text, block = features_of(champion[1:2], arm.schema)
    assert block.shape == (champion[1].rows, len(numeric))