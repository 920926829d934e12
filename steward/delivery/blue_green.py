"""Blue-green: the smoke test of the idle colour (forced-arm requests through the gateway) and the watch plan.

The switch and the watch are a rollout like a canary's (``steward.delivery.rollout``); what is
its own is the smoke test before any real traffic: sample rows and the validation edge cases sent
to the challenger through the gateway, each answer checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd

from steward.delivery.decisions import StepAction, StepCode
from steward.delivery.rollout import RolloutState
from steward.delivery.timeline import ArmSummary, StepRecord
from steward.registry.history import CHALLENGER
from steward.spec import CanaryPlan


@dataclass(frozen=True)
class SmokeResult:
    """One forced-arm request to the idle colour and what came back."""

    case: str
    rows: int
    must_answer: bool
    status: int
    version: str | None
    arm: str | None
    answered_rows: int
    valid_output: bool
    error: str | None = None


@dataclass(frozen=True)
class SmokeReport:
    version: str
    results: tuple[SmokeResult, ...]

    @property
    def failures(self) -> list[str]:
        problems = []
        for r in self.results:
            if r.status >= 500 or r.status == 0:
                problems.append(f"{r.case}: the gateway answered {r.status or 'nothing'} ({r.error or 'no detail'})")
            elif r.status >= 400:
                if r.must_answer:
                    problems.append(f"{r.case}: refused with {r.status} ({r.error or 'no detail'})")
            elif r.version != self.version or r.arm != CHALLENGER:
                problems.append(f"{r.case}: answered by {r.arm} v{r.version}, not the challenger v{self.version}")
            elif r.answered_rows != r.rows or not r.valid_output:
                problems.append(f"{r.case}: {r.answered_rows} of {r.rows} rows answered"
                                + ("" if r.valid_output else ", with invalid scores"))
        return problems

    @property
    def passed(self) -> bool:
        return bool(self.results) and not self.failures

    def summary(self) -> str:
        if self.passed:
            return f"smoke test of v{self.version}: {len(self.results)} requests answered by the idle colour"
        return f"smoke test of v{self.version} failed: " + "; ".join(self.failures[:5])


def smoke_record(state: RolloutState, report: SmokeReport, now: datetime | None = None) -> StepRecord:
    """The smoke test as the first row of a blue-green timeline (no traffic share: forced requests only)."""
    errors = sum(1 for r in report.results if r.status >= 500 or r.status == 0)
    return StepRecord(
        rollout=state.id, step=0, percent=0.0, started=state.step_started, decided=now or datetime.now(UTC),
        action=StepAction.ADVANCE if report.passed else StepAction.ROLLBACK, reason=report.summary(),
        challenger=ArmSummary(requests=len(report.results), errors=errors), champion=ArmSummary(),
        code=StepCode.SMOKE_PASSED if report.passed else StepCode.SMOKE_FAILED,
    )


def valid_scores(scores: Sequence[Any] | None, rows: int) -> bool:
    """Scores a client can use: one per row, finite (a regression answer carries none)."""
    if scores is None:
        return True
    values = np.asarray([np.nan if s is None else s for s in scores], float)
    return len(values) == rows and bool(np.isfinite(values).all())


def watch_plan(canary: CanaryPlan, watch_seconds: float) -> CanaryPlan:
    """The canary thresholds with the watch window as the step's minimum duration (blue-green)."""
    return canary.model_copy(update={"min_step_seconds": watch_seconds,
                                     "max_hold_seconds": max(canary.max_hold_seconds, watch_seconds * 2)})


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    def plain(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    return [{k: plain(v) for k, v in row.items()} for row in frame.astype(object).to_dict(orient="records")]


def smoke_request(client: httpx.Client, model: str, case: str, frame: pd.DataFrame, must_answer: bool) -> SmokeResult:
    """Send one smoke case to the gateway (the client carries the forced-arm headers) and read the answer."""
    try:
        answer = client.post(f"/v1/models/{model}/predict", json={"dataframe_records": _records(frame)})
    except httpx.HTTPError as error:
        return SmokeResult(case, len(frame), must_answer, 0, None, None, 0, False, f"{type(error).__name__}: {error}")
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    if answer.status_code >= 400:
        return SmokeResult(case, len(frame), must_answer, answer.status_code, None, None, 0, False,
                           str(body.get("error", answer.text))[:300])
    predictions = body.get("predictions") or []
    return SmokeResult(case, len(frame), must_answer, answer.status_code, body.get("version"), body.get("arm"),
                       len(predictions), valid_scores(body.get("scores"), len(frame)))
