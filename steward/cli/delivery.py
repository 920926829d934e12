"""Commands that move traffic to a challenger: canary, blue-green, A/B test and shadow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from steward.cli.common import (
    AsOfOption,
    HomeOption,
    SpecArgument,
    begin,
    console,
    exit_unless,
    fail,
    user_errors,
)

EXPERIMENT_ACTIONS = ("start", "analyse", "stop")

ActionOption = Annotated[str, typer.Option(help="start, analyse or stop.")]


def _rollout_errors() -> tuple[type[Exception], ...]:
    from steward.delivery.rollout import RolloutError

    return (*user_errors(), RolloutError)


def _experiment_errors() -> tuple[type[Exception], ...]:
    from steward.delivery.experiments import ExperimentError
    from steward.registry.traffic import TrafficError

    return (*user_errors(), ExperimentError, TrafficError)


def _check_action(action: str) -> None:
    if action not in EXPERIMENT_ACTIONS:
        fail(f"--action {action!r}: use one of {', '.join(EXPERIMENT_ACTIONS)}")


def _finish_rollout(outcome: Any) -> None:
    """Print the steps of a canary or blue-green rollout and its result; exit 1 unless it promoted."""
    from rich.markup import escape

    from steward.delivery.rollout import RolloutResult

    table = Table(title=f"{outcome.kind.value} of {outcome.model} v{outcome.version}")
    columns = ("step", "traffic", "seconds", "challenger", "champion", "decision", "reason")
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in outcome.steps:
        row = record.row()
        table.add_row(*(escape(str(row[c])) for c in columns))
    console.print(table)
    colour = {"promoted": "green", "rolled_back": "red", "rejected": "red"}.get(outcome.result.value, "yellow")
    console.print(f"[{colour}]{outcome.result.value}[/]: {escape(outcome.reason)}")
    exit_unless(outcome.result is RolloutResult.PROMOTED)


def canary(
    spec: SpecArgument,
    version: Annotated[str | None, typer.Option(help="Version to roll out (default: the challenger).")] = None,
    poll_seconds: Annotated[float, typer.Option(help="Seconds between analyses of a step.")] = 5.0,
    home: HomeOption = None,
) -> None:
    """Ramp the challenger through the spec's canary steps; promote it, or roll it back on harm."""
    outcome = begin(home, spec).run_flow(
        "flows.canary_promote:canary_promote", status=f"canary of {spec}: analysing every {poll_seconds:g} s",
        errors=_rollout_errors, spec_path=str(spec), version=version, poll_seconds=poll_seconds,
    )
    _finish_rollout(outcome)


def blue_green(
    spec: SpecArgument,
    gateway: Annotated[str, typer.Option(help="Gateway URL for the smoke test (needs STEWARD_ADMIN_TOKEN).")],
    version: Annotated[str | None, typer.Option(help="Version to switch to (default: the challenger).")] = None,
    watch_seconds: Annotated[float | None, typer.Option(help="Watch window (default: canary.min_step_seconds).")] = None,
    poll_seconds: Annotated[float, typer.Option(help="Seconds between analyses of the watch.")] = 5.0,
    home: HomeOption = None,
) -> None:
    """Smoke-test the challenger as the idle colour, switch all traffic to it, watch, switch back on harm."""
    outcome = begin(home, spec).run_flow(
        "flows.blue_green:blue_green", status=f"blue-green of {spec} behind {gateway}", errors=_rollout_errors,
        spec_path=str(spec), gateway_url=gateway, version=version, watch_seconds=watch_seconds,
        poll_seconds=poll_seconds,
    )
    _finish_rollout(outcome)


def ab_test(
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML); its ab_test section is the design.")],
    action: ActionOption = "analyse",
    percent: Annotated[float, typer.Option(help="start: share of entities sent to the challenger.")] = 50.0,
    settle_seconds: Annotated[float, typer.Option(help="start: traffic of the first seconds is left out, "
                                                        "while gateways apply the plan.")] = 5.0,
    as_of: AsOfOption = None,
    home: HomeOption = None,
) -> None:
    """A/B test the challenger against the champion by entity; a winner is a recommendation (docs/experiments.md)."""
    invocation = begin(home, spec)
    _check_action(action)
    outcome = invocation.run_flow("flows.ab_test:ab_test", errors=_experiment_errors, spec_path=str(spec),
                                  action=action, challenger_percent=percent, settle_seconds=settle_seconds,
                                  as_of=as_of)
    if outcome.report is not None:
        console.print(outcome.report.to_markdown(), highlight=False, markup=False)
    else:
        console.print(outcome.recommendation, highlight=False, markup=False)
    if outcome.stopped:
        console.print(f"test {outcome.experiment_id} stopped; all traffic goes to the champion", highlight=False)


def shadow(
    spec: SpecArgument,
    action: ActionOption = "analyse",
    percent: Annotated[float, typer.Option(help="start: share of requests copied to the challenger.")] = 100.0,
    window_minutes: Annotated[float | None, typer.Option(help="start: wait this long, compare, and end the "
                                                                "shadow in one run.")] = None,
    tolerance: Annotated[float, typer.Option(help="Score difference still counted as agreement.")] = 0.05,
    settle_seconds: Annotated[float, typer.Option(help="start: seconds left out while gateways apply the "
                                                        "plan (and waited after the window).")] = 5.0,
    as_of: AsOfOption = None,
    home: HomeOption = None,
) -> None:
    """Shadow the challenger on live traffic: agreement, disagreement by slice, latency cost (docs/experiments.md)."""
    invocation = begin(home, spec)
    _check_action(action)
    outcome = invocation.run_flow("flows.shadow:shadow_analysis", errors=_experiment_errors, spec_path=str(spec),
                                  action=action, challenger_percent=percent, window_minutes=window_minutes,
                                  tolerance=tolerance, settle_seconds=settle_seconds, as_of=as_of)
    console.print(outcome.report.to_markdown() if outcome.report is not None else outcome.summary,
                  highlight=False, markup=False)
    if outcome.stopped:
        console.print(f"shadow {outcome.experiment_id} ended; the champion alone serves", highlight=False)
