"""The gateway's request handling: predict and feedback, independent of the web framework.

Handlers run on the event loop and never block it on I/O: models score on the loop in
batches (``LoopBatcher``), each batch's jobs become one log record per version and arm
(``PredictionLog.record_jobs``) that the writer thread writes, shadow copies go to the
challenger through ``steward.serving.shadow_copies`` (inline or in the shadow process), and
registry calls go to a thread pool. The admin API's handling is in ``steward.serving.admin``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from steward.registry.traffic import (
    EVENT_TIME_HEADER,
    Arm,
    Route,
    TrafficError,
    TrafficMode,
    parse_forced_arm,
    route_entity,
    route_forced,
    route_request,
)
from steward.serving.admin import authorize
from steward.serving.arms import LoadedArm, Scored
from steward.serving.auth import ANONYMOUS, Action, Identity, KeysFile, KeysFileError
from steward.serving.config import GatewayConfig
from steward.serving.control import ControlVerifier, Rejection
from steward.serving.fleet import Fleet, GatewayRecord, Membership, new_gateway_id
from steward.serving.inference import Job, LoopBatcher
from steward.serving.metrics import GatewayMetrics
from steward.serving.pool import Deployment, ModelPool, Poller, RegistryView
from steward.serving.prediction_log import LogContext, LogSettings, PredictionLog, labels_record
from steward.serving.ratelimit import RateLimiter
from steward.serving.responses import error_response, is_json_media_type, json_response
from steward.serving.schema import Payload, RequestError, check_entities, parse_payload, select_rows
from steward.serving.shadow_copies import ShadowCopies
from steward.store.reader import PredictionStore
from steward.store.request_ids import new_request_id
from steward.store.writer import LogMode, WriterStats

if TYPE_CHECKING:
    from steward.registry.adapter import Registry

log = logging.getLogger(__name__)

FORCE_ARM_HEADER = "x-steward-arm"
MAX_CLOCK_SKEW = timedelta(minutes=5)
UNKNOWN_MODEL = "(unknown)"


class ReadyState(StrEnum):
    READY = "ready"
    DEGRADED = "degraded"  # serving, but the registry view is older than stale_after
    UNREADY = "unready"


@dataclass(frozen=True)
class Readiness:
    state: ReadyState
    models: list[dict[str, Any]]
    registry: RegistryView | None

    @property
    def serving(self) -> bool:
        return self.state is not ReadyState.UNREADY

    def describe(self) -> dict[str, Any]:
        return {"ready": self.serving, "status": self.state.value, "models": self.models,
                "registry": self.registry.describe() if self.registry else None}


class _RateLimited(RequestError):
    def __init__(self, wait: float) -> None:
        super().__init__(429, f"rate limit exceeded for this client: retry in {wait:.2f}s or slow down")
        self.retry_after = wait


class RelabelTracker:
    """The labels this gateway accepted lately, so that a second label for a row is reported as a relabel.

    Bounded (the most recent ``capacity`` rows): labels that old, or given to another gateway,
    are not compared; the log keeps every label with its time either way.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._labels: collections.OrderedDict[tuple[str, str, int], str] = collections.OrderedDict()

    def seen(self, model: str, request_ids: tuple[str, ...], rows: tuple[int, ...],
             labels: tuple[str, ...]) -> list[tuple[str, int, str, str]]:
        """Record these labels; the (request id, row, previous label, new label) of those given before."""
        relabelled = []
        for request_id, row, label in zip(request_ids, rows, labels, strict=True):
            key = (model, request_id, row)
            previous = self._labels.pop(key, None)
            if previous is not None:
                relabelled.append((request_id, row, previous, label))
            self._labels[key] = label
        while len(self._labels) > self.capacity:
            self._labels.popitem(last=False)
        return relabelled


def _not_served(name: str, served: frozenset[str]) -> RequestError:
    return RequestError(404, f"model {name!r} is not served here; this gateway serves {sorted(served)}")


class Gateway:
    """State and handlers of one gateway process."""

    def __init__(
        self, config: GatewayConfig, *, registry: Registry | None = None, store: PredictionStore | None = None
    ) -> None:
        self.config = config
        self.registry = registry
        self.store = store
        self.pool: ModelPool | None = None
        self.poller: Poller | None = None
        self.membership: Membership | None = None
        self.prediction_log: PredictionLog | None = None
        self.batcher = LoopBatcher(scored=self._scored)
        self.metrics = GatewayMetrics(self.log_stats, self.registry_view)
        self.limiter = RateLimiter(config.rate_limit, config.burst) if config.rate_limit else None
        self.random = random.Random()
        self._children: dict[tuple[str, str, str, bool], tuple[Any, Any]] = {}
        self.served = frozenset(config.models)
        self.keys = KeysFile(config.keys_file)
        self.relabels = RelabelTracker()
        self.shadow = ShadowCopies(config, self.metrics, self.batcher, partial(self._observe_rows, served=False))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the threads; models load in the poller's first pass (``/readyz`` says when)."""
        if self.registry is None:
            from steward.config import apply_environment
            from steward.registry.adapter import Registry

            self.registry = Registry.from_settings(apply_environment())
        if self.store is None:
            from steward.config import get_settings

            self.store = PredictionStore(self.config.store_uri or get_settings().resolved_store_uri)
        settings = LogSettings(self.config.log_mode, self.config.flush_interval, self.config.max_log_queue,
                               self.config.wal_dir)
        self.prediction_log = PredictionLog(self.store, settings).start()
        self.shadow.start(self.store.uri, self.prediction_log)
        control = None
        if self.config.control_key is not None and self.config.control_key.get_secret_value():
            control = ControlVerifier(self.config.control_key.get_secret_value(), self._control_alarm,
                                      self.config.unverified_grace)
        self.pool = ModelPool(
            self.registry, self.config.models, out_of_range=self.config.out_of_range,
            warm_versions=self.config.warm_versions, control=control,
        )
        self.poller = Poller(self.pool, self.config.poll_interval, self.config.registry_timeout,
                             self.config.stale_after)
        self.poller.start()
        if self.config.admin_url:
            self.membership = Membership(Fleet(self.store.uri), self._fleet_record(self.config.admin_url))
            self.membership.start()
        log.info("gateway started for %s", ", ".join(self.config.models),
                 extra={"event": "gateway_started", "models": list(self.config.models),
                        "log_mode": self.config.log_mode.value, "poll_interval": self.config.poll_interval})

    def _control_alarm(self, rejection: Rejection) -> None:
        """A registry change Steward did not make, refused: a metric, a critical log line, a ledger finding."""
        from steward.findings import Finding, MaintenanceKind, Priority
        from steward.monitoring.ledger import Ledger

        self.metrics.control_rejections.labels(rejection.model, rejection.reason).inc()
        log.critical("unverified registry change refused: %s", rejection.detail,
                     extra={"event": "control_rejected", "model": rejection.model, "reason": rejection.reason})
        finding = Finding(
            f"registry change not made by Steward refused ({rejection.reason})",
            f"{rejection.detail}. Someone with write access to MLflow changed what serves without Steward's control "
            "key: find who (MLflow's server logs), undo it, and check MLflow's credentials.",
            MaintenanceKind.CORRECTIVE, Priority.CRITICAL, "gateway-control",
            f"control:{rejection.model}:{rejection.reason}", incident=True,
        )
        try:
            Ledger(self.store.uri).record_finding(rejection.model, finding)
        except Exception as error:  # the metric and the log line stand; the ledger is best effort here
            log.error("could not record the control finding in the ledger: %s", error)

    def _fleet_record(self, admin_url: str) -> GatewayRecord:
        now = datetime.now(UTC)
        token = self.config.admin_token
        return GatewayRecord(new_gateway_id(admin_url), admin_url, self.config.models,
                             token is not None and bool(token.get_secret_value()), now, now)

    def stop(self) -> None:
        """Finish queued work and flush the log: called after the server stopped taking requests."""
        if self.membership is not None:
            self.membership.stop()
        if self.poller is not None:
            self.poller.stop()
        self.shadow.stop()
        if self.prediction_log is not None:
            self.prediction_log.close()
            stats = self.log_stats()
            log.info("gateway stopped; prediction log flushed (%d rows written, %d dropped)",
                     stats.written_rows, stats.dropped,
                     extra={"event": "gateway_stopped", "written_rows": stats.written_rows, "dropped": stats.dropped})

    def log_stats(self) -> WriterStats:
        """The log writer's counters, with the shadow process's (it writes the shadow copies) added."""
        if self.prediction_log is None:
            return WriterStats(self.config.log_mode, 0, 0, 0, 0, 0, 0, None, None)
        return self.shadow.with_log_stats(self.prediction_log.stats())

    # ------------------------------------------------------------------ predict
    async def predict(self, name: str, request: Request, *, mlflow_answer: bool = False) -> Response:
        """Score the request's rows; ``mlflow_answer``: answer ``{"predictions": [...]}`` as MLflow's scoring server does."""
        started = time.perf_counter()
        time_ns = time.time_ns()
        request_id = new_request_id(time_ns)
        try:
            self._client_identity(request, Action.PREDICT)
            deployment = self._deployment(name)
            if (event_ns := self._event_time_ns(request, time_ns)) != time_ns:  # a replayed request's own time
                time_ns, request_id = event_ns, new_request_id(event_ns)
            if self.limiter is not None:
                wait = self.limiter.acquire(self._client(request), time.monotonic())
                if wait:
                    raise _RateLimited(wait)
            body = await self._raw_body(request)
            payload = parse_payload(self._json_body(body), max_rows=self.config.max_batch_rows)
            groups, allowed_extra, entities = self._route(deployment, payload, request)
            if entities is not None:
                check_entities(entities, self.config.max_text_length)
            context = (request_id, time_ns, started, entities)
            jobs = [self._validated_job(deployment, route, rows, payload, allowed_extra, context,
                                        self.config.max_text_length)
                    for route, rows in groups]
        except RequestError as error:
            self._count(name, "", "", str(error.status))
            return error_response(error, request_id)

        if len(jobs) == 1:
            results: list[Scored | BaseException] = [await self.batcher.score(jobs[0])]
        else:
            results = list(await asyncio.gather(*(self.batcher.score(job) for job in jobs)))
        latency = time.perf_counter() - started

        failure: tuple[LoadedArm, BaseException] | None = None
        for job, result, (route, _) in zip(jobs, results, groups, strict=True):
            ok = not isinstance(result, BaseException)
            self._count(name, job.arm.version, route.answer.value, "200" if ok else "500", latency)
            if not ok:
                failure = (job.arm, result)
                continue
            self._observe(name, job.arm, route.answer, result, served=True)
            if route.shadow is not None:
                self.shadow.submit(deployment, job, payload, body, allowed_extra, entities)
        if self.config.log_mode is LogMode.DURABLE:
            logged = [job.logged is not None and await job.logged for job in jobs]  # None: the record failed
            if not all(logged):
                return error_response(RequestError(503, "the prediction log could not record this request (see the "
                                                        "gateway's logs); the prediction was not acknowledged: retry"),
                                      request_id)
        if failure is not None:
            arm, error = failure
            return error_response(RequestError(500, f"{name} v{arm.version} failed to score the request "
                                                    f"({type(error).__name__}: {error}); this is a gateway-side fault"),
                                  request_id)
        answer = self._answer(name, request_id, payload.rows, jobs, results, groups)
        if mlflow_answer:
            answer = {"predictions": answer["predictions"]}
        return json_response(answer, 200, {"x-request-id": request_id})

    def check_served(self, name: str) -> None:
        """RequestError (404) unless this gateway serves the model."""
        if name not in self.served:
            raise _not_served(name, self.served)

    def registry_view(self) -> RegistryView | None:
        """How current this gateway's view of the registry is (None before start)."""
        return self.poller.view() if self.poller is not None else None

    def readiness(self) -> Readiness:
        """Every served model loaded (and its challenger, when the plan needs one), and the registry view's age."""
        loaded = bool(self.pool and self.pool.ready)
        view = self.registry_view()
        unready_after = self.config.unready_after
        too_old = (view is not None and unready_after is not None and view.age_seconds is not None
                   and view.age_seconds > unready_after)
        if not loaded or too_old:
            state = ReadyState.UNREADY
        elif view is not None and view.stale:
            state = ReadyState.DEGRADED
        else:
            state = ReadyState.READY
        return Readiness(state, self.pool.describe() if self.pool else [], view)

    def render_metrics(self, *, openmetrics: bool = False) -> bytes:
        """The Prometheus exposition, with each model's deployment generation and champion state brought up to date."""
        if self.pool is not None:
            for deployment in filter(None, map(self.pool.get, self.config.models)):
                self.metrics.deployment.labels(deployment.model).set(deployment.generation)
        for name in self.config.models:
            deployment = self.pool.get(name) if self.pool is not None else None
            self.metrics.champion_loaded.labels(name).set(int(deployment is not None and deployment.champion is not None))
        return self.metrics.render(openmetrics=openmetrics)

    def _deployment(self, name: str) -> Deployment:
        if name not in self.served:  # check_served, inlined: this runs per request
            raise _not_served(name, self.served)
        deployment = self.pool.get(name) if self.pool else None
        if deployment is None or deployment.champion is None:
            reasons = deployment.problems if deployment else ("not loaded yet",)
            raise RequestError(503, f"{name} has no loaded champion ({'; '.join(reasons)}); see GET /readyz")
        return deployment

    def _client(self, request: Request) -> str:
        if self.config.client_header:
            given = request.headers.get(self.config.client_header)
            if given:
                return given
        return request.client.host if request.client else "unknown"

    async def read_json(self, request: Request) -> Any:
        """The request's body as JSON, within the body size limit; RequestError (400/413) otherwise."""
        return self._json_body(await self._raw_body(request))

    async def _raw_body(self, request: Request) -> bytes:
        kind = request.headers.get("content-type")
        if kind is not None and not is_json_media_type(kind):
            raise RequestError(415, f"the body must be JSON (Content-Type: application/json); got {kind!r}")
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"the body has {declared} bytes; the limit is {limit}: send fewer rows per request")
        try:
            body = await request.body()
        except ClientDisconnect:
            raise RequestError(408, f"the client sent its body too slowly (over {self.config.body_timeout:g}s) "
                                    "or went away") from None
        if len(body) > limit:
            raise RequestError(413, f"the body has {len(body)} bytes; the limit is {limit}: send fewer rows per request")
        return body

    @staticmethod
    def _json_body(body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError as error:
            raise RequestError(400, f"the body is not valid JSON ({error})") from None
        except RecursionError:
            raise RequestError(400, "the body's JSON is nested too deeply to read") from None

    def _route(
        self, deployment: Deployment, payload: Payload, request: Request
    ) -> tuple[list[tuple[Route, list[int]]], frozenset[str], list[str | None] | None]:
        """Which arm answers which rows; also the extra field the plan reads and each row's entity."""
        every = list(range(payload.rows))
        plan = deployment.plan
        available = deployment.challenger is not None
        spec = deployment.champion.spec
        key = plan.key if plan.mode is TrafficMode.AB else None
        allowed = frozenset({key.name}) if key is not None and key.source == "field" else frozenset()

        # The logged entity is the unit the plan assigns by: under an A/B plan its sticky key
        # (and nothing else: a request without it goes to the champion with a null entity, so
        # A/B analyses leave it out), otherwise the spec's entity column.
        entities: list[str | None] | None = None
        if key is not None and key.source == "header":
            header = request.headers.get(key.name)
            if header is not None:
                entities = [header] * payload.rows
        else:
            column = key.name if key is not None else spec.entity_column
            if column is not None and column in payload.columns:
                entities = [None if v is None else str(v) for v in payload.columns[column]]

        forced = request.headers.get(FORCE_ARM_HEADER)
        if forced is not None:
            authorize(self, request, Action.OPERATE)
            try:
                return [(route_forced(parse_forced_arm(forced), challenger_available=available), every)], allowed, entities
            except TrafficError as error:
                raise RequestError(409 if "not loaded" in str(error) else 400, str(error)) from None
        if key is None:
            return [(route_request(plan, self.random.random(), challenger_available=available), every)], allowed, entities
        if key.source == "header" or entities is None:
            entity = entities[0] if entities else None
            return [(route_entity(plan, entity, challenger_available=available), every)], allowed, entities
        by_arm: dict[Arm, list[int]] = {}
        for row, entity in enumerate(entities):
            by_arm.setdefault(route_entity(plan, entity, challenger_available=available).answer, []).append(row)
        return [(Route(arm), rows) for arm, rows in by_arm.items()], allowed, entities

    @staticmethod
    def _validated_job(
        deployment: Deployment, route: Route, rows: list[int], payload: Payload, allowed: frozenset[str],
        request: tuple[str, int, float, list[str | None] | None], max_text_length: int,
    ) -> Job:
        arm = deployment.arm(route.answer)
        if arm is None:
            raise RequestError(503, f"{deployment.model} has no {route.answer} loaded")
        part = payload if len(rows) == payload.rows else select_rows(payload, rows)
        columns = arm.schema.validate(part, allowed_extra=allowed, row_numbers=rows, max_text_length=max_text_length)
        return Job(arm, columns, len(rows), context=LogContext(*request, route.answer.value, True, rows))

    def _answer(
        self, name: str, request_id: str, n: int, jobs: list[Job], results: list[Any],
        groups: list[tuple[Route, list[int]]],
    ) -> dict[str, Any]:
        if len(jobs) == 1:
            arm, scored, route = jobs[0].arm, results[0], groups[0][0]
            body: dict[str, Any] = {
                "request_id": request_id, "model": name, "version": arm.version, "arm": route.answer.value,
                "predictions": scored.predictions,
            }
            if scored.probabilities is not None:
                body["classes"] = list(arm.classes)
                body["probabilities"] = scored.probabilities
            elif scored.scores is not None and arm.classes is not None:
                body["scores"] = scored.scores
            return body
        predictions: list[Any] = [None] * n
        scores: list[Any] = [None] * n
        versions: list[Any] = [None] * n
        arms: list[Any] = [None] * n
        probabilities: list[Any] | None = None
        for job, scored, (route, rows) in zip(jobs, results, groups, strict=True):
            arm = job.arm
            for position, row in enumerate(rows):
                predictions[row] = scored.predictions[position]
                scores[row] = scored.scores[position] if scored.scores is not None else None
                versions[row] = arm.version
                arms[row] = route.answer.value
            if scored.probabilities is not None:
                probabilities = probabilities or [None] * n
                for position, row in enumerate(rows):
                    probabilities[row] = scored.probabilities[position]
        body = {"request_id": request_id, "model": name, "version": None, "arm": None, "predictions": predictions,
                "versions": versions, "arms": arms}
        if probabilities is not None:
            body["classes"] = list(jobs[0].arm.classes)
            body["probabilities"] = probabilities
        elif jobs[0].arm.classes is not None:
            body["scores"] = scores
        return body

    def _count(self, model: str, version: str, arm: str, status: str, seconds: float | None = None) -> None:
        label = model if model in self.served else UNKNOWN_MODEL
        self.metrics.requests.labels(label, version, arm, status).inc()
        if seconds is not None:
            self.metrics.latency.labels(label, version, arm).observe(seconds)

    def _observe(self, model: str, arm: LoadedArm, which: Arm, scored: Scored, *, served: bool) -> None:
        self._observe_rows(model, arm, which, len(scored.predictions), scored.scores, served=served)

    def _observe_rows(
        self, model: str, arm: LoadedArm, which: Arm, rows: int, scores: list[float] | None, *, served: bool
    ) -> None:
        # The labelled children are cached: ``labels()`` takes the metric's lock, and the shadow
        # thread and the event loop contending for it cost a fifth of the throughput in shadow mode.
        key = (model, arm.version, which.value, served)
        children = self._children.get(key)
        if children is None:
            flag = "true" if served else "false"
            children = self._children[key] = (
                self.metrics.rows.labels(model, arm.version, which.value, flag),
                self.metrics.scores.labels(model, arm.version, which.value, flag),
            )
        counter, histogram = children
        counter.inc(rows)
        if scores is not None:
            for score in scores:
                histogram.observe(score)

    def _scored(self, jobs: list[Job]) -> None:
        """The batcher's report of scored jobs: log them, and observe the shadow copies (nobody awaits those)."""
        for job in jobs:
            if not job.context.served:
                if isinstance(job.result, BaseException):
                    self.metrics.shadow_skipped.labels(job.arm.model, "model_error").inc()
                else:
                    self._observe(job.arm.model, job.arm, Arm.CHALLENGER, job.result, served=False)
        self.prediction_log.record_jobs(jobs)

    # ------------------------------------------------------------------ feedback
    async def feedback(self, name: str, request: Request) -> Response:
        try:
            identity = self._client_identity(request, Action.FEEDBACK)
            self.check_served(name)
            if self.config.log_mode is LogMode.OFF:
                raise RequestError(409, "this gateway runs with the prediction log off, so it cannot store labels; "
                                        "send them to a gateway started with --log-mode batched or durable")
            batch = labels_record(name, await self.read_json(request), self._event_time_ns(request, time.time_ns()),
                                  self.config.max_feedback_labels, self.config.max_text_length)
        except RequestError as error:
            return error_response(error)
        acknowledged = self.prediction_log.submit(batch, asyncio.get_running_loop())
        if acknowledged is not None and not await acknowledged:
            return error_response(RequestError(503, "the labels could not be written (see the gateway's logs): retry"))
        relabelled = self.relabels.seen(name, batch.request_ids, batch.rows, batch.labels)
        if relabelled:
            self.metrics.relabels.labels(name).inc(len(relabelled))
            log.warning("%d labels of %s relabelled by %s", len(relabelled), name, identity.name,
                        extra={"event": "relabel", "model": name, "actor": identity.name,
                               "labels": [{"request_id": r, "row": row, "previous": old, "label": new}
                                          for r, row, old, new in relabelled[:100]]})
        return json_response({"model": name, "accepted": batch.size, "relabelled": len(relabelled)})

    def keys_required(self) -> bool:
        """Whether client keys are configured (or the keys file is unreadable, which refuses rather than opens)."""
        try:
            return self.keys.current(time.monotonic()).configured
        except KeysFileError:
            return True

    def _client_identity(self, request: Request, action: Action) -> Identity:
        """Who calls predict or feedback: anyone while no keys are configured, else a key that may."""
        if not self.keys_required():
            return ANONYMOUS
        return authorize(self, request, action)

    def _event_time_ns(self, request: Request, arrival_ns: int) -> int:
        """The time to log: the arrival time, or, for replayed traffic, the time the header gives.

        Replaying recorded days (backfills, the demo) must land each request and label in the day
        it happened, so that windowed checks read them as they would have then. Admin only: it
        rewrites history.
        """
        given = request.headers.get(EVENT_TIME_HEADER)
        if given is None:
            return arrival_ns
        authorize(self, request, Action.CONFIGURE)
        try:
            stamp = datetime.fromisoformat(given.strip())
        except ValueError:
            stamp = None
        if stamp is None or stamp.tzinfo is None:
            raise RequestError(400, f"{EVENT_TIME_HEADER} must be an ISO 8601 time with a UTC offset, "
                                    f"e.g. 2026-11-20T13:45:00Z; got {given!r}")
        if stamp - datetime.fromtimestamp(arrival_ns / 1e9, UTC) > MAX_CLOCK_SKEW:
            raise RequestError(400, f"{EVENT_TIME_HEADER} {given} is in the future; replay only what happened")
        return (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
