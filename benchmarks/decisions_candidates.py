"""Candidate scenarios: the real canary flow judges good and bad candidates behind the real gateway.

Each scenario registers a champion and one candidate (``steward.simulation.candidates``) under a
model of its own, in a throw-away Steward home with a temporary Prefect server, puts the candidate
through Steward's validate flow (the gate a retrain runs, on the candidate's hold-out; the spec asks
non-inferiority only, ``require_expected_gain: false``), then runs
``flows.canary_promote.canary_promote`` while scenario rows are sent to a gateway process
(``python -m steward serve``) on 127.0.0.1, each label fed back right after its answer. With
``hog`` a busy-looping process per core runs through the whole canary.

Traffic: ``steady`` is one connection sending one row per request as fast as the gateway answers
(the gateway scores requests that arrive together in one batch, so with more connections a slow
challenger also slows the champion's answers that share its batches); ``concurrent`` is eight
connections, the load under which the load-sensitive candidate is slow.

Canary timings are short for a benchmark: steps 10, 50, 100 %, ``min_step_seconds`` 3,
``min_requests_per_arm`` 50, ``min_labelled`` 30, ``max_hold_seconds`` 120, polled every 0.5 s;
the other thresholds are the spec defaults (the example spec's 25 ms p95 SLO).

Scores per scenario: the decision (stopped at the gate: step 0, no traffic; promoted, rolled back,
held: still ramping at the time limit, aborted), the step it stopped at, the checks that breached, the candidate's exposure (its share of
served requests from the canary's start until one second after its traffic was withdrawn, which
covers the gateway's poll) and the seconds to promotion. A candidate the gate stopped is still put
through the canary with the gate bypassed, and what the canary alone did is reported beside it.

Usage:
    uv run python benchmarks/decisions_candidates.py --quick           # good, good after concept drift,
                                                                       # inverted, slower; each under a CPU hog
    uv run python benchmarks/decisions_candidates.py                   # every candidate, with and without the hog
    uv run python benchmarks/decisions_candidates.py --quick --out benchmarks/results/x.md
    uv run python benchmarks/decisions_candidates.py --only error_prone slower_under_load+concurrent
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from steward.simulation.candidates import TRUSTED_TYPES, CandidateKind  # noqa: E402

STEPS = (10.0, 50.0, 100.0)
CANARY = {"steps": list(STEPS), "min_requests_per_arm": 50, "min_step_seconds": 3, "max_hold_seconds": 120,
          "min_labelled": 30}
POLL_SECONDS = 0.5
GATE_LATENCY_FACTOR = 50.0


class Traffic(StrEnum):
    STEADY = "steady"  # one connection
    CONCURRENT = "concurrent"  # eight connections


TRAFFIC_CONNECTIONS = {Traffic.STEADY: 1, Traffic.CONCURRENT: 8}


class Decision(StrEnum):
    STOPPED_AT_GATE = "stopped_at_gate"  # the validation gate did not pass it: no traffic at all (step 0)
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    HELD = "held"  # held for evidence until max_hold_seconds, then stopped (no_evidence_in_time)
    ABORTED = "aborted"


@dataclass(frozen=True)
class CandidateScenario:
    candidate: CandidateKind
    hog: bool
    traffic: Traffic = Traffic.STEADY

    @property
    def name(self) -> str:
        return f"{self.candidate.value}{'+hog' if self.hog else ''}{'+concurrent' if self.traffic is Traffic.CONCURRENT else ''}"


@dataclass(frozen=True)
class CandidateScenarioScore:
    """What the canary did with one candidate, and whether that was right."""

    scenario: str
    candidate: CandidateKind
    bad: bool
    hog: bool
    traffic: Traffic
    decision: Decision
    stopped_at_step: int | None  # 1-based; the last step for a promotion
    breaches: tuple[str, ...]
    exposure: float  # the candidate's share of served requests during the canary (until withdrawn + 1 s)
    seconds_to_decision: float
    seconds_to_promotion: float | None
    reason: str
    steps: tuple = ()  # the rollout's step records (``steward.delivery.timeline.StepRecord``)
    gate: str = ""  # the validation gate's verdict and summary
    canary_alone: str = ""  # for a candidate the gate stopped: what the canary did with the gate bypassed

    @property
    def correct(self) -> bool:
        """A good candidate through the gate and promoted; a bad one stopped at the gate or at its first step."""
        if self.bad:
            return self.decision is Decision.STOPPED_AT_GATE or (
                self.decision is Decision.ROLLED_BACK and self.stopped_at_step == 1)
        return self.decision is Decision.PROMOTED


def quick_scenarios() -> list[CandidateScenario]:
    kinds = (CandidateKind.GOOD, CandidateKind.GOOD_AFTER_CONCEPT_DRIFT, CandidateKind.INVERTED_LABELS,
             CandidateKind.SLOWER)
    return [CandidateScenario(kind, hog=True) for kind in kinds]


def full_scenarios() -> list[CandidateScenario]:
    steady = [CandidateScenario(kind, hog) for kind in CandidateKind if kind is not CandidateKind.SLOWER_UNDER_LOAD
              for hog in (False, True)]
    concurrent = [CandidateScenario(kind, hog, Traffic.CONCURRENT)
                  for kind in (CandidateKind.GOOD, CandidateKind.SLOWER_UNDER_LOAD) for hog in (False, True)]
    return steady + concurrent


# ---------------------------------------------------------------------------------------- the stack
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _gateway(models: list[str], folder: Path) -> Iterator[str]:
    import httpx

    port = _free_port()
    log = (folder / "gateway.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "steward", "serve", *models, "--port", str(port), "--poll-interval", "0.5",
         "--flush-interval", "0.5", "--log-level", "warning"],
        cwd=REPOSITORY, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited ({process.returncode}); see {folder / 'gateway.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway was not ready after 240 s")
            time.sleep(0.3)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()


def _spec_document(name: str) -> dict:
    from steward.simulation.examples import example_spec_text

    document = yaml.safe_load(example_spec_text())
    document["name"] = name
    document["data"]["path"] = "train.parquet"
    # A fixed number of trees, so champion and candidate differ in what they learnt, not in their size.
    document["estimator"]["params"] = {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                                       "max_iter": 60, "early_stopping": False, "random_state": 0}
    document["canary"] = CANARY
    # The suite asks whether a candidate no worse than the champion gets through; whether a retrain is
    # worth having at all (``require_expected_gain``) is the retrain decision's question, not delivery's.
    document["gates"]["require_expected_gain"] = False
    # The gate's speed check times one model after the other, so other jobs' load decides it (a good
    # candidate failed at 159 against 67 ms single-row p95 at a load average of 20): speed is left to the
    # canary here, which compares both arms on the same time slices.
    document["gates"]["max_latency_factor"] = GATE_LATENCY_FACTOR
    return document


def _answered_rows(estimator, frame):
    """Up to 20 rows the model answers: registration scores its input example, which an error-prone
    candidate fails on its bad category's rows."""
    kept = []
    for i in range(len(frame)):
        try:
            estimator.predict_proba(frame.iloc[[i]])
        except Exception:  # the candidate's fault, by design
            continue
        kept.append(i)
        if len(kept) == 20:
            break
    return frame.iloc[kept]


def _register(registry, spec, trained, *, validated: bool) -> str:
    info = registry.register_version(
        spec.name, trained.estimator, lineage=trained.lineage, metrics=trained.metrics,
        input_example=_answered_rows(trained.estimator, trained.holdout_frame[list(spec.feature_names)]),
        datasets={"holdout": trained.holdout_frame, "reference": trained.train_frame},
    )
    if validated:
        _mark_validated(registry, spec.name, info.version)
    return info.version


def _mark_validated(registry, model: str, version: str) -> None:
    registry.set_version_tags(model, version, {"steward.validation.status": "passed", "steward.stage": "validated"})


@dataclass(frozen=True)
class GateResult:
    passed: bool
    summary: str


def _gate(spec_path: Path, version: str) -> GateResult:
    """Steward's validate flow on the candidate's hold-out, as a retrain runs it; on a pass it becomes challenger."""
    from flows.validate import validate

    try:
        outcome = validate(spec_path=str(spec_path), version=version)
    except Exception as error:  # the gate could not judge it (e.g. the candidate raises on its hold-out)
        return GateResult(False, f"the validate flow failed: {type(error).__name__}: {str(error)[:200]}")
    return GateResult(outcome.passed, f"{outcome.report.verdict.value}: {outcome.summary}")


def _served(model: str, start: datetime, end: datetime):
    import pandas as pd

    from tasks.common import store

    rows = store().read_predictions(model, pd.Timestamp(start), pd.Timestamp(end), served_only=True)
    return rows.drop_duplicates("request_id")


def _run_one(scenario: CandidateScenario, model: str, spec, spec_path: Path, url: str, traffic) -> (
        CandidateScenarioScore):
    from flows.canary_promote import canary_promote
    from steward.delivery.decisions import StepAction, StepCode
    from steward.delivery.rollout import RolloutResult
    from steward.simulation.http_traffic import TrafficSender
    from steward.simulation.load import cpu_hog

    hog = cpu_hog() if scenario.hog else contextlib.nullcontext()
    started = datetime.now(UTC)
    with hog, TrafficSender(url, spec, concurrency=TRAFFIC_CONNECTIONS[scenario.traffic], send_labels=True) as sender:
        sender.start(traffic, loop=True)
        outcome = canary_promote(spec_path=str(spec_path), poll_seconds=POLL_SECONDS)
        time.sleep(1.5)  # the gateway's poll and log flush, so exposure counts what it served until withdrawn
    steps = [r for r in outcome.steps if r.action is not StepAction.HOLD]
    last = steps[-1] if steps else None
    if outcome.result is RolloutResult.PROMOTED:
        decision = Decision.PROMOTED
    elif outcome.result is RolloutResult.ROLLED_BACK:
        held = last is not None and last.code is StepCode.NO_EVIDENCE_IN_TIME
        decision = Decision.HELD if held else Decision.ROLLED_BACK
    else:
        decision = Decision.ABORTED
    until = (outcome.withdrawn_at or outcome.finished_at) + timedelta(seconds=1)
    window = _served(model, started, until)
    exposure = float((window["arm"] == "challenger").mean()) if len(window) else float("nan")
    seconds = (outcome.finished_at - started).total_seconds()
    return CandidateScenarioScore(
        scenario.name, scenario.candidate, scenario.candidate.bad, scenario.hog, scenario.traffic, decision,
        (last.step + 1) if last is not None else None,
        tuple(c.value for c in last.breaches) if last is not None else (),
        exposure, seconds, seconds if decision is Decision.PROMOTED else None, outcome.reason, tuple(outcome.steps),
    )


def run_candidate_scenarios(
    quick: bool, seed: int, only: tuple[str, ...] = (),
    progress: Callable[[list[CandidateScenarioScore]], None] | None = None,
) -> list[CandidateScenarioScore]:
    """Run the quick (four scenarios, each under a CPU hog) or full set; one score per scenario, in order.

    ``only``: scenario names (``CandidateScenario.name``) to keep; ``progress`` gets the scores so far after
    each scenario (a long run keeps what it measured if stopped). Sets up its own Steward home and
    Prefect server, so call it from a process that has not used others.
    """
    scenarios = quick_scenarios() if quick else full_scenarios()
    if only:
        unknown = sorted(set(only) - {s.name for s in scenarios})
        if unknown:
            raise ValueError(f"unknown scenarios {unknown}; choose from {[s.name for s in scenarios]}")
        scenarios = [s for s in scenarios if s.name in only]
    folder = Path(tempfile.mkdtemp(prefix="steward-candidates-"))
    os.environ["STEWARD_HOME"] = str(folder / "home")
    os.environ["STEWARD_SKOPS_TRUSTED_TYPES"] = json.dumps(list(TRUSTED_TYPES))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Gateway and flows share an admin token, so a rollback or promotion is acknowledged, not left to the poll.
    os.environ["STEWARD_ADMIN_TOKEN"] = secrets.token_hex(16)
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_API_URL", "PREFECT_HOME",
                     "STEWARD_CONFIG"):
        os.environ.pop(variable, None)
    from prefect.testing.utilities import prefect_test_harness

    from steward.config import apply_environment, get_settings, reset_settings
    from steward.registry.adapter import Registry
    from steward.registry.history import CHALLENGER, ChangeKind
    from steward.simulation.candidates import build_candidate, candidate_world, costs_for, train_on
    from steward.spec import parse_spec

    reset_settings()
    apply_environment(override=True)
    registry = Registry.from_settings(get_settings())
    costs = costs_for()  # before any load: fixed work from here on
    prepared = []
    # Only the drifted world differs, and a candidate kind is built the same way for every variant.
    worlds: dict[bool, object] = {}
    champions: dict[bool, object] = {}
    candidates: dict[CandidateKind, object] = {}
    for index, scenario in enumerate(scenarios):
        model = f"cand-{index}-{scenario.candidate.value.replace('_', '-')}"
        spec = parse_spec(_spec_document(model))
        drifted = scenario.candidate is CandidateKind.GOOD_AFTER_CONCEPT_DRIFT
        if drifted not in worlds:
            worlds[drifted] = candidate_world(scenario.candidate, seed=seed)
        world = worlds[drifted]
        if drifted not in champions:
            champions[drifted] = train_on(spec, world.champion_rows, "champion: the first 20 days")
        champion = _register(registry, spec, champions[drifted], validated=True)
        registry.promote(model, champion, reason="candidate scenarios: champion")
        if scenario.candidate not in candidates:
            candidates[scenario.candidate] = build_candidate(scenario.candidate, spec, world, seed=seed, costs=costs)
        candidate = candidates[scenario.candidate]
        challenger = _register(registry, spec, candidate, validated=False)
        spec_path = folder / f"{model}.yaml"
        spec_path.write_text(yaml.safe_dump(_spec_document(model), sort_keys=False))
        prepared.append((scenario, model, spec, spec_path, world.traffic, challenger))
        print(f"prepared {scenario.name} as {model}", file=sys.stderr, flush=True)

    scores = []
    with prefect_test_harness(server_startup_timeout=120):
        gates = {}
        for scenario, model, _, spec_path, _, challenger in prepared:  # before any traffic or hog
            gates[model] = _gate(spec_path, challenger)
            if not gates[model].passed:  # the canary alone, with the gate bypassed, for the record
                _mark_validated(registry, model, challenger)
                registry.set_alias(model, CHALLENGER, challenger, kind=ChangeKind.ASSIGN,
                                   reason="candidate scenarios: the canary alone, gate bypassed")
            print(f"{scenario.name}: gate {'passed' if gates[model].passed else 'STOPPED'}: "
                  f"{gates[model].summary[:300]}", file=sys.stderr, flush=True)
        with _gateway([p[1] for p in prepared], folder) as url:
            for scenario, model, spec, spec_path, traffic, _ in prepared:
                score = _with_gate(_run_one(scenario, model, spec, spec_path, url, traffic), gates[model])
                for record in score.steps:
                    print(f"  step {record.step + 1} ({record.percent:g}%) {record.action.value}: challenger "
                          f"{record.challenger.describe()}; champion {record.champion.describe()}", file=sys.stderr)
                print(f"{score.scenario}: {score.decision.value} at step {score.stopped_at_step} "
                      f"({'right' if score.correct else 'WRONG'}; canary alone: {score.canary_alone or '-'}): "
                      f"{score.reason[:300]}", file=sys.stderr, flush=True)
                scores.append(score)
                if progress is not None:
                    progress(scores)
    return scores


def _with_gate(score: CandidateScenarioScore, gate: GateResult) -> CandidateScenarioScore:
    """The score with the gate's verdict first: a candidate the gate stopped never took traffic (step 0)."""
    if gate.passed:
        return replace(score, gate=gate.summary)
    alone = (f"{score.decision.value} at step {score.stopped_at_step or '-'}"
             f" ({', '.join(score.breaches) or 'no breach'})")
    return replace(score, decision=Decision.STOPPED_AT_GATE, stopped_at_step=0, breaches=(), exposure=0.0,
                   seconds_to_promotion=None, reason=gate.summary, gate=gate.summary, canary_alone=alone)


def markdown_table(scores: list[CandidateScenarioScore]) -> str:
    lines = ["| scenario | candidate | hog | traffic | decision | step | breaches | exposure | to promotion (s) "
             "| canary alone (gate bypassed) | right |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in scores:
        promotion = f"{s.seconds_to_promotion:.0f}" if s.seconds_to_promotion is not None else "-"
        step = "-" if s.stopped_at_step is None else str(s.stopped_at_step)
        lines.append(f"| {s.scenario} | {'bad' if s.bad else 'good'} | {'yes' if s.hog else 'no'} | {s.traffic.value} "
                     f"| {s.decision.value} | {step} | {', '.join(s.breaches) or '-'} "
                     f"| {s.exposure:.1%} | {promotion} | {s.canary_alone or '-'} | {'yes' if s.correct else 'NO'} |")
    good = [s for s in scores if not s.bad]
    bad = [s for s in scores if s.bad]
    lines += ["", f"- good candidates stopped, rolled back or held: {sum(not s.correct for s in good)} of {len(good)}",
              f"- bad candidates not stopped at the gate or their first step: {sum(not s.correct for s in bad)} "
              f"of {len(bad)}"]
    if bad:
        worst = max((s.exposure for s in bad if s.exposure == s.exposure), default=float("nan"))
        lines.append(f"- largest exposure of a bad candidate: {worst:.1%}")
    lines += ["", "Reasons:", ""]
    lines += [f"- {s.scenario}: gate {s.gate[:400]}" + ("" if s.decision is Decision.STOPPED_AT_GATE
                                                        else f"; canary {s.reason[:400]}") for s in scores]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="four scenarios, each under a CPU hog (a few minutes)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--only", nargs="+", default=(), help="scenario names to run, e.g. slower_under_load+concurrent")
    arguments = parser.parse_args()
    started = time.monotonic()

    def report(scores: list[CandidateScenarioScore]) -> str:
        return (f"# Candidate scenarios ({'quick' if arguments.quick else 'full'}, seed {arguments.seed}), "
                f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {time.monotonic() - started:.0f} s on {os.cpu_count()} "
                f"cores, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n\n" + markdown_table(scores) + "\n")

    def partial(scores: list[CandidateScenarioScore]) -> None:
        if arguments.out:
            arguments.out.write_text(report(scores))

    scores = run_candidate_scenarios(arguments.quick, arguments.seed, tuple(arguments.only), progress=partial)
    print(report(scores))
    partial(scores)


if __name__ == "__main__":
    main()
