"""Shadow copies of served requests: which path a copy takes, and what happens when it fails.

The gateway answers with the champion; when the traffic plan shadows the challenger, each
answered request is also copied to it. A challenger quick enough for the event loop
(``fits_inline``) scores its copies in the batcher after the answers are out; a slower one
gets the raw body in the shadow process (``steward.serving.shadow``). Copies are optional:
past ``MAX_SHADOW_BACKLOG`` queued copies, or when the challenger refuses the rows, they are
skipped and counted, never a cost to the served request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from steward.registry.traffic import Arm
from steward.serving.arms import LoadedArm
from steward.serving.config import GatewayConfig
from steward.serving.inference import Job, LoopBatcher
from steward.serving.metrics import GatewayMetrics
from steward.serving.schema import Payload, RequestError, parse_payload
from steward.serving.shadow import (
    ShadowCopy,
    ShadowLogSettings,
    ShadowProcess,
    ShadowSummary,
    ShadowWorker,
    fits_inline,
)
from steward.store.writer import WriterStats

if TYPE_CHECKING:
    from steward.serving.pool import Deployment
    from steward.serving.prediction_log import LogContext, PredictionLog

MAX_SHADOW_BACKLOG = 20_000  # queued shadow copies beyond which copies are skipped and counted

ObserveRows = Callable[[str, LoadedArm, Arm, int, "list[float] | None"], None]


class ShadowCopies:
    """The gateway's shadow copies: submitted after an answer, scored inline or in the shadow process."""

    def __init__(self, config: GatewayConfig, metrics: GatewayMetrics, batcher: LoopBatcher,
                 observe_rows: ObserveRows) -> None:
        self.config, self.metrics, self.batcher = config, metrics, batcher
        self._observe_rows = observe_rows  # the gateway's row and score metrics of an unserved arm
        self.process = ShadowProcess()
        self.worker = ShadowWorker(self.process, collect_seconds=config.shadow_collect_seconds,
                                   report=self._scored, failed=self._failed)
        self.prediction_log: PredictionLog | None = None

    def start(self, store_uri: str, prediction_log: PredictionLog) -> None:
        self.prediction_log = prediction_log
        self.process.settings = ShadowLogSettings(store_uri, prediction_log.settings, self.config.max_batch_rows)
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.process.close()

    def with_log_stats(self, stats: WriterStats) -> WriterStats:
        """The log writer's counters with the shadow process's added (it writes the slow copies itself)."""
        process = self.process
        return replace(stats, pending=stats.pending + process.log_pending, dropped=stats.dropped + process.log_dropped,
                       written_rows=stats.written_rows + process.log_written)

    def submit(self, deployment: Deployment, served: Job, payload: Payload, body: bytes, allowed: frozenset[str],
               entities: list[str | None] | None) -> None:
        """Have the challenger score a copy of a request the champion answered, off the request path.

        An inline copy reuses the rows the champion's schema validated when both versions take
        the same features.
        """
        challenger = deployment.challenger
        if challenger is None:
            return
        context: LogContext = served.context
        if fits_inline(challenger, self.config.shadow_inline_max_ms):
            columns, source = served.columns, served.source
            if challenger.feature_key != served.arm.feature_key:
                source = None
                try:
                    columns = challenger.schema.validate(payload, allowed_extra=allowed,
                                                         max_text_length=self.config.max_text_length)
                except RequestError:
                    self.metrics.shadow_skipped.labels(deployment.model, "invalid_for_challenger").inc()
                    return
            self.batcher.copy(Job(challenger, columns, served.rows, source=source,
                                  context=context._replace(arm=Arm.CHALLENGER.value, served=False)))
            return
        if self.worker.depth >= MAX_SHADOW_BACKLOG:  # the copies are optional; memory is not
            self.metrics.shadow_skipped.labels(deployment.model, "backlog").inc()
            return
        self.worker.submit(challenger, ShadowCopy(
            context.request_id, context.time_ns, body, tuple(allowed), tuple(entities) if entities is not None else None,
            time.monotonic(),
        ))

    @property
    def queued(self) -> int:
        return self.worker.depth + self.batcher.copies_queued

    def drain(self, timeout: float) -> bool:
        """Score every copy queued now and write the shadow process's rows (the caller flushes the gateway's
        own log, which holds the inline copies); False if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.batcher.copies_queued and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.worker.flush(max(deadline - time.monotonic(), 0.0)) and not self.batcher.copies_queued

    def _scored(self, arm: LoadedArm, summary: ShadowSummary) -> None:
        """Metrics of a batch of copies the shadow process scored and logged (shadow thread)."""
        if summary.rows or summary.scores:
            self._observe_rows(arm.model, arm, Arm.CHALLENGER, summary.rows, summary.scores)
        if summary.refused:
            self.metrics.shadow_skipped.labels(arm.model, "invalid_for_challenger").inc(summary.refused)
        if summary.failed:
            self.metrics.shadow_skipped.labels(arm.model, "model_error").inc(summary.failed)

    def _failed(self, arm: LoadedArm, copies: list[ShadowCopy], error: BaseException) -> None:
        """The shadow process could not take a batch: log its copies as failed, as if the model had."""
        for copy in copies:
            try:
                payload = parse_payload(json.loads(copy.body), max_rows=self.config.max_batch_rows)
                columns = arm.schema.validate(payload, allowed_extra=frozenset(copy.allowed))
            except (RequestError, ValueError, RecursionError):
                self.metrics.shadow_skipped.labels(arm.model, "invalid_for_challenger").inc()
                continue
            self.metrics.shadow_skipped.labels(arm.model, "model_error").inc()
            self.prediction_log.record_copy(arm, copy.request_id, copy.time_ns, columns, payload.rows, copy.entities,
                                            copy.submitted, None)
