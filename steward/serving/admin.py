"""The gateway's admin API: who may use it, and what it does (status, refresh, traffic plans, log flush)."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from steward.registry.traffic import TrafficError, TrafficMode, parse_plan
from steward.serving.auth import Action, AuthError, Identity, KeysFileError, authenticate, now_utc
from steward.serving.fleet import ServingTarget
from steward.serving.schema import Problem, RequestError
from steward.serving.shadow import shadow_placement

if TYPE_CHECKING:
    from steward.serving.gateway import Gateway

log = logging.getLogger(__name__)

#: How long a log flush waits for the queued shadow copies to be scored (the shadow process runs on idle CPU).
SHADOW_DRAIN_SECONDS = 120.0


def authorize(gateway: Gateway, request: Request, action: Action) -> Identity:
    """The caller's identity if it may do ``action``; RequestError (401/403, 503 for an unreadable keys file)."""
    try:
        keys = gateway.keys.current(time.monotonic())
    except KeysFileError as error:
        raise RequestError(503, f"the gateway cannot read its keys, so it refuses authenticated calls: {error}") from None
    token = gateway.config.admin_token
    try:
        return authenticate(request.headers.get("authorization"), admin_token=token.get_secret_value() if token else None,
                            keys=keys, action=action, now=now_utc())
    except AuthError as error:
        raise RequestError(error.status, error.message) from None


class Admin:
    """The admin API's handling, on one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def authorize(self, request: Request, action: Action) -> str:
        """The authenticated actor of an admin request; RequestError (401/403) when it may not act."""
        return authorize(self.gateway, request, action).name

    def status(self) -> dict[str, Any]:
        gateway = self.gateway
        pool, stats, view = gateway.pool, gateway.log_stats(), gateway.registry_view()
        return {
            "ready": bool(pool and pool.ready),
            "models": pool.describe() if pool else [],
            "last_refresh": pool.last_refresh.isoformat() if pool and pool.last_refresh else None,
            "last_refresh_error": view.last_error if view else None,
            "poll_interval": gateway.config.poll_interval,
            "registry": view.describe() if view else None,
            "log": {**asdict(stats), "last_flush": stats.last_flush.isoformat() if stats.last_flush else None,
                    "uri": gateway.store.uri if gateway.store else None},
            "inference": {"batches": gateway.batcher.batches, "jobs": gateway.batcher.jobs,
                          "queued": gateway.batcher.depth, "shadow_inline_copies": gateway.batcher.copies,
                          "shadow_batches": gateway.shadow.worker.batches, "shadow_queued": gateway.shadow.queued},
            "shadow": self._shadow_placements(),
            "client_auth": "keys" if self._keys_configured() else "open (no client keys: anyone who reaches the "
                                                                    "gateway may predict and send labels)",
            "gc": {"thresholds": list(gc.get_threshold()), "frozen_objects": gc.get_freeze_count()},
        }

    def _keys_configured(self) -> bool:
        try:
            return self.gateway.keys.current(time.monotonic()).configured
        except KeysFileError:
            return True  # unreadable: refused, not open

    def _shadow_placements(self) -> dict[str, dict[str, Any]]:
        """Where each model under a shadow plan scores its challenger's copies."""
        gateway = self.gateway
        placements = {}
        for model in gateway.config.models:
            deployment = gateway.pool.get(model) if gateway.pool else None
            if deployment is None or deployment.challenger is None or deployment.plan.mode is not TrafficMode.SHADOW:
                continue
            placement = shadow_placement(deployment.challenger, gateway.config.shadow_inline_max_ms)
            placements[model] = {"where": "event loop" if placement.inline else "shadow process",
                                 "why": placement.reason}
        return placements

    async def refresh(self, model: str | None, document: Any = None) -> dict[str, Any]:
        """Re-read the registry now; with ``{"expect": target}`` (a flow telling the fleet) a model already
        serving the target answers at once, without waiting for a poll in progress or reading the registry."""
        if model is not None:
            self.gateway.check_served(model)
        expect = document.get("expect") if isinstance(document, dict) else None
        if model is not None and expect is not None:
            try:
                target = ServingTarget.from_document(expect)
            except ValueError as error:
                raise RequestError(422, f"expect: {error}") from None
            deployment = self.gateway.pool.get(model)
            if deployment is not None and target.met_by(deployment.describe()):
                return {"refreshed": [], **self.status()}
        results = await run_in_threadpool(self.gateway.pool.refresh, model)
        return {"refreshed": [asdict(r) for r in results], **self.status()}

    async def flush_log(self) -> dict[str, Any]:
        """Score the shadow copies queued now, then write every queued prediction and label (the shadow
        process's too); the log's status, with ``shadow_drained`` False if the copies took longer than
        ``SHADOW_DRAIN_SECONDS`` (an analysis after this then knows its window may still be filling)."""
        drained = True
        if self.gateway.prediction_log is not None:
            drained = await run_in_threadpool(self.gateway.shadow.drain, SHADOW_DRAIN_SECONDS)
            await run_in_threadpool(self.gateway.prediction_log.flush)
        return {**self.status()["log"], "shadow_drained": drained}

    async def set_plan(self, model: str, document: Any, actor: str) -> dict[str, Any]:
        from steward.registry.errors import RegistryError

        gateway = self.gateway
        gateway.check_served(model)
        if not isinstance(document, dict) or not isinstance(document.get("plan"), dict):
            raise RequestError(400, 'send {"plan": {"mode": "canary", "challenger_percent": 10}, "reason": "why"}')
        reason = document.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise RequestError(422, "say why in `reason`: it goes into the model's audit history",
                               [Problem("reason", "required")])
        try:
            plan = parse_plan(document["plan"])
        except TrafficError as error:
            raise RequestError(422, str(error)) from None
        try:
            entry = await run_in_threadpool(
                gateway.registry.set_traffic_plan, model, plan, reason=reason.strip(), actor=actor
            )
        except RegistryError as error:
            raise RequestError(409, str(error)) from None
        await run_in_threadpool(gateway.pool.refresh, model)
        deployment = gateway.pool.get(model)
        log.info("traffic plan of %s set by %s: %s", model, actor, plan.describe(),
                 extra={"event": "traffic_plan_set", "model": model, "actor": actor, "reason": reason,
                        "plan": plan.model_dump(mode="json")})
        return {"audit": entry.describe(), "deployment": deployment.describe() if deployment else None}
