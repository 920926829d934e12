"""Which gateways serve a model, and telling them when its aliases or traffic plan change.

Gateways follow the registry by polling it. A rollback, promotion or blue-green switch also tells
every live gateway at once (``POST /admin/models/{name}/refresh``) and waits until each answers
that it serves the new state, so the change reaches the fleet without waiting for a poll that a
busy machine delays; the poll stays the fallback for a gateway that does not answer.

The fleet is one record per gateway and model in the record store beside the prediction log
(``<store>/gateways/model=<name>/<gateway id>.json``), written when the gateway starts, renewed by
its heartbeat and removed when it stops. A record whose heartbeat is older than its ``ttl_seconds``
is not live (the gateway died without removing it); it is deleted once ``FORGET_AFTER_SECONDS`` old.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
from pydantic import SecretStr

from steward.monitoring.records import RecordStore
from steward.registry.traffic import ServingState, TrafficPlan

log = logging.getLogger(__name__)

COLLECTION = "gateways"
HEARTBEAT_SECONDS = 5.0
TTL_HEARTBEATS = 3  # a record is live while its heartbeat is younger than three heartbeats
FORGET_AFTER_SECONDS = 3600.0
ACK_DEADLINE_SECONDS = 10.0  # long enough for a gateway to load a version it does not hold warm
RETRY_SECONDS = 0.05


class FleetError(ValueError):
    """A fleet record that cannot be read: names the file and what is wrong."""


@dataclass(frozen=True)
class GatewayRecord:
    """One gateway as the fleet knows it: where to tell it, what it serves, when it last said it is alive."""

    gateway_id: str
    admin_url: str
    models: tuple[str, ...]
    admin_api: bool  # False: started without an admin token, so it can only follow by polling
    started: datetime
    heartbeat: datetime
    ttl_seconds: float = HEARTBEAT_SECONDS * TTL_HEARTBEATS

    def live(self, now: datetime) -> bool:
        return now - self.heartbeat <= timedelta(seconds=self.ttl_seconds)

    def beat(self, now: datetime) -> GatewayRecord:
        return GatewayRecord(self.gateway_id, self.admin_url, self.models, self.admin_api, self.started, now,
                             self.ttl_seconds)

    def to_json(self) -> str:
        return json.dumps({"gateway_id": self.gateway_id, "admin_url": self.admin_url, "models": list(self.models),
                           "admin_api": self.admin_api, "started": self.started.isoformat(),
                           "heartbeat": self.heartbeat.isoformat(), "ttl_seconds": self.ttl_seconds})

    @classmethod
    def from_json(cls, text: str) -> GatewayRecord:
        document = json.loads(text)
        return cls(document["gateway_id"], document["admin_url"], tuple(document["models"]),
                   bool(document["admin_api"]), datetime.fromisoformat(document["started"]),
                   datetime.fromisoformat(document["heartbeat"]), float(document["ttl_seconds"]))


def new_gateway_id(admin_url: str) -> str:
    """Readable in a report (host and port), unique across restarts on the same port."""
    where = admin_url.split("://", 1)[-1].rstrip("/").replace("/", "_").replace(":", "-")
    return f"{socket.gethostname()}-{where}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Fleet:
    """The one owner of the gateway records under a store URI."""

    def __init__(self, store_uri: str) -> None:
        self._records = RecordStore(store_uri, COLLECTION)

    def register(self, record: GatewayRecord) -> None:
        """Write (or renew) the gateway's record under each model it serves."""
        text = record.to_json()
        for model in record.models:
            self._records.put(model, record.gateway_id, text)

    def withdraw(self, record: GatewayRecord) -> None:
        for model in record.models:
            self._records.delete(model, record.gateway_id)

    def gateways(self, model: str, now: datetime | None = None) -> list[GatewayRecord]:
        """The live gateways serving ``model``; records long dead are deleted on the way."""
        now = now or datetime.now(UTC)
        live = []
        for key, text in self._records.texts(model):
            try:
                record = GatewayRecord.from_json(text)
            except (ValueError, KeyError, TypeError) as error:
                raise FleetError(f"gateway record {model}/{key} cannot be read ({error}); delete it, the gateway "
                                 "writes it again at its next heartbeat") from None
            if record.live(now):
                live.append(record)
            elif now - record.heartbeat > timedelta(seconds=FORGET_AFTER_SECONDS):
                self._records.delete(model, key)
        return sorted(live, key=lambda r: r.gateway_id)


class Membership:
    """A gateway's place in the fleet: registered at start, renewed every ``heartbeat_seconds``, withdrawn at stop."""

    def __init__(self, fleet: Fleet, record: GatewayRecord, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.fleet = fleet
        self.record = record
        self.heartbeat_seconds = heartbeat_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self.fleet.register(self.record)
        except OSError as error:  # serving matters more: the heartbeat registers it later
            log.warning("could not register this gateway in the fleet: %s", error,
                        extra={"event": "fleet_heartbeat_failed"})
        self._thread = threading.Thread(target=self._run, name="steward-fleet-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self.record = self.record.beat(datetime.now(UTC))
            try:
                self.fleet.register(self.record)
            except OSError as error:  # the store is unreachable for a moment: the next beat tries again
                log.warning("fleet heartbeat failed: %s", error, extra={"event": "fleet_heartbeat_failed"})

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        try:
            self.fleet.withdraw(self.record)
        except OSError as error:
            log.warning("could not remove this gateway's fleet record: %s (it expires)", error,
                        extra={"event": "fleet_withdraw_failed"})


# ---------------------------------------------------------------------------------------- telling
@dataclass(frozen=True)
class ServingTarget:
    """What a model's gateways must serve after a change: the registry's aliases and plan."""

    champion: str | None
    challenger: str | None
    plan: TrafficPlan | None  # None: the stored plan is unreadable, so gateways keep theirs and it is not compared

    @classmethod
    def of(cls, state: ServingState) -> ServingTarget:
        return cls(state.champion, state.challenger, state.plan)

    def to_document(self) -> dict[str, Any]:
        return {"champion": self.champion, "challenger": self.challenger,
                "plan": self.plan.model_dump(mode="json") if self.plan is not None else None}

    @classmethod
    def from_document(cls, document: Any) -> ServingTarget:
        """The target a refresh request names; ValueError saying what is wrong."""
        if not isinstance(document, dict) or not {"champion", "challenger", "plan"} <= set(document):
            raise ValueError('expect {"champion": "3", "challenger": null, "plan": {...} or null}')
        versions = (document["champion"], document["challenger"])
        if not all(v is None or isinstance(v, str) for v in versions):
            raise ValueError("champion and challenger are version strings or null")
        plan = None if document["plan"] is None else TrafficPlan.model_validate(document["plan"])
        return cls(versions[0], versions[1], plan)

    def met_by(self, deployment: dict[str, Any]) -> bool:
        """Does a gateway's description of its deployment (``/admin/status``'s model entry) serve this?"""
        champion = (deployment.get("champion") or {}).get("version")
        challenger = (deployment.get("challenger") or {}).get("version")
        if (champion, challenger) != (self.champion, self.challenger):
            return False
        return self.plan is None or TrafficPlan.model_validate(deployment.get("plan") or {}) == self.plan

    def describe(self) -> str:
        plan = f", {self.plan.describe()}" if self.plan is not None else ""
        return (f"champion v{self.champion or '-'}, challenger "
                f"{'v' + self.challenger if self.challenger else 'none'}{plan}")


class AckCode(StrEnum):
    ACKNOWLEDGED = "acknowledged"  # it answered that it serves the target
    STILL_SERVING_OTHER = "still_serving_other"  # it answered, but serves something else at the deadline
    UNREACHABLE = "unreachable"  # no answer by the deadline (down, or too busy)
    REFUSED = "refused"  # 401/403/404: token, or it no longer serves the model
    NO_ADMIN_API = "no_admin_api"  # started without an admin token: it follows by polling only
    NO_TOKEN = "no_token"  # this side has no admin token to tell gateways with
    NOT_DRAINED = "not_drained"  # it flushed, but its shadow copies were still being scored at its deadline


@dataclass(frozen=True)
class GatewayAck:
    gateway_id: str
    admin_url: str
    code: AckCode
    seconds: float  # from the start of the telling to the answer (or to giving up)
    detail: str = ""

    @property
    def acknowledged(self) -> bool:
        return self.code is AckCode.ACKNOWLEDGED

    def describe(self) -> str:
        return f"{self.gateway_id} ({self.admin_url}): {self.code.value} after {self.seconds:.2f} s" + (
            f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class FleetReach:
    """How a change of ``model``'s serving state reached its gateways."""

    model: str
    target: ServingTarget
    acks: tuple[GatewayAck, ...]
    told_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def acknowledged(self) -> bool:
        """Every live gateway serves the target (trivially so with no gateway registered)."""
        return all(a.acknowledged for a in self.acks)

    @property
    def missing(self) -> tuple[GatewayAck, ...]:
        return tuple(a for a in self.acks if not a.acknowledged)

    @property
    def seconds(self) -> float:
        """Telling to the last acknowledgement (0 with no gateway)."""
        return max((a.seconds for a in self.acks), default=0.0)

    @property
    def acknowledged_at(self) -> datetime:
        """When the last gateway acknowledged: a request arriving later is served by the target."""
        return self.told_at + timedelta(seconds=self.seconds)

    def describe(self) -> str:
        if not self.acks:
            return f"{self.model}: no live gateway registered; any gateway not registered follows at its next poll"
        if self.acknowledged:
            return (f"{self.model}: {len(self.acks)} gateway(s) acknowledged {self.target.describe()} "
                    f"within {self.seconds:.2f} s")
        return (f"{self.model}: {len(self.missing)} of {len(self.acks)} gateway(s) did not acknowledge "
                f"{self.target.describe()} (the change stands; they follow at their next registry poll): "
                + "; ".join(a.describe() for a in self.missing))


def tell_gateways(
    fleet: Fleet, model: str, target: ServingTarget, token: SecretStr | None, *, actor: str = "steward",
    deadline_seconds: float = ACK_DEADLINE_SECONDS, client: Callable[..., httpx.Client] = httpx.Client,
) -> FleetReach:
    """Tell every live gateway of ``model`` to refresh it now; wait (up to the deadline) for each to serve ``target``."""
    told_at = datetime.now(UTC)
    gateways = fleet.gateways(model, told_at)
    started = time.monotonic()
    if not gateways:
        return FleetReach(model, target, (), told_at)
    secret = token.get_secret_value() if token is not None else ""
    if not secret:
        why = "set STEWARD_ADMIN_TOKEN to the token the gateways were started with"
        return FleetReach(model, target, tuple(GatewayAck(g.gateway_id, g.admin_url, AckCode.NO_TOKEN, 0.0, why)
                                               for g in gateways), told_at)
    headers = {"authorization": f"Bearer {secret}", "x-steward-actor": actor}

    def tell(gateway: GatewayRecord) -> GatewayAck:
        if not gateway.admin_api:
            return GatewayAck(gateway.gateway_id, gateway.admin_url, AckCode.NO_ADMIN_API, 0.0,
                              "started without STEWARD_ADMIN_TOKEN")
        return _tell_one(gateway, model, target, headers, started, deadline_seconds, client)

    with ThreadPoolExecutor(max_workers=len(gateways), thread_name_prefix="steward-fleet-tell") as pool:
        acks = tuple(pool.map(tell, gateways))
    reach = FleetReach(model, target, acks, told_at)
    log.log(logging.INFO if reach.acknowledged else logging.WARNING, "%s", reach.describe(),
            extra={"event": "fleet_told", "model": model, "acknowledged": reach.acknowledged})
    return reach


def _tell_one(
    gateway: GatewayRecord, model: str, target: ServingTarget, headers: dict[str, str], started: float,
    deadline_seconds: float, client: Callable[..., httpx.Client],
) -> GatewayAck:
    deadline = started + deadline_seconds
    last = "no answer"
    code = AckCode.UNREACHABLE
    with client(base_url=gateway.admin_url.rstrip("/"), headers=headers) as http:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return GatewayAck(gateway.gateway_id, gateway.admin_url, code, time.monotonic() - started, last)
            try:
                answer = http.post(f"/admin/models/{model}/refresh", json={"expect": target.to_document()},
                                   timeout=max(remaining, 0.05))
            except httpx.HTTPError as error:
                code, last = AckCode.UNREACHABLE, f"{type(error).__name__}: {error}"
            else:
                if answer.status_code in (401, 403, 404):
                    return GatewayAck(gateway.gateway_id, gateway.admin_url, AckCode.REFUSED,
                                      time.monotonic() - started, f"{answer.status_code}: {answer.text[:200]}")
                if answer.status_code == 200:
                    deployment = {m.get("model"): m for m in answer.json().get("models", [])}.get(model, {})
                    if target.met_by(deployment):
                        return GatewayAck(gateway.gateway_id, gateway.admin_url, AckCode.ACKNOWLEDGED,
                                          time.monotonic() - started)
                    code = AckCode.STILL_SERVING_OTHER
                    last = (f"serves champion {(deployment.get('champion') or {}).get('version')}, challenger "
                            f"{(deployment.get('challenger') or {}).get('version')}; problems: "
                            f"{deployment.get('problems')}")
                else:
                    code, last = AckCode.UNREACHABLE, f"{answer.status_code}: {answer.text[:200]}"
            time.sleep(min(RETRY_SECONDS, max(deadline - time.monotonic(), 0)))


# ---------------------------------------------------------------------------------------- flushing
@dataclass(frozen=True)
class FleetFlush:
    """How a flush of ``model``'s gateways went: each scored its queued shadow copies and wrote its log."""

    model: str
    acks: tuple[GatewayAck, ...]

    @property
    def complete(self) -> bool:
        return all(a.acknowledged for a in self.acks)

    def describe(self) -> str:
        if not self.acks:
            return f"{self.model}: no live gateway registered to flush; rows still queued in one arrive later"
        if self.complete:
            return f"{self.model}: {len(self.acks)} gateway(s) wrote their queued rows and shadow copies"
        missing = [a for a in self.acks if not a.acknowledged]
        return (f"{self.model}: {len(missing)} of {len(self.acks)} gateway(s) did not finish writing; their rows "
                "arrive later: " + "; ".join(a.describe() for a in missing))


def flush_gateways(
    fleet: Fleet, model: str, token: SecretStr | None, *, actor: str = "steward", timeout_seconds: float = 150.0,
    client: Callable[..., httpx.Client] = httpx.Client,
) -> FleetFlush:
    """Have every live gateway of ``model`` score its queued shadow copies and write its log now, so that an
    analysis of a window that just ended reads all of it, however busy the machine."""
    gateways = fleet.gateways(model)
    secret = token.get_secret_value() if token is not None else ""
    started = time.monotonic()

    def flush(gateway: GatewayRecord) -> GatewayAck:
        if not gateway.admin_api:
            return GatewayAck(gateway.gateway_id, gateway.admin_url, AckCode.NO_ADMIN_API, 0.0,
                              "started without STEWARD_ADMIN_TOKEN")
        if not secret:
            return GatewayAck(gateway.gateway_id, gateway.admin_url, AckCode.NO_TOKEN, 0.0,
                              "set STEWARD_ADMIN_TOKEN to the token the gateways were started with")
        headers = {"authorization": f"Bearer {secret}", "x-steward-actor": actor}
        try:
            with client(base_url=gateway.admin_url.rstrip("/"), headers=headers) as http:
                answer = http.post("/admin/log/flush", timeout=timeout_seconds)
        except httpx.HTTPError as error:
            return GatewayAck(gateway.gateway_id, gateway.admin_url, AckCode.UNREACHABLE, time.monotonic() - started,
                              f"{type(error).__name__}: {error}")
        if answer.status_code in (401, 403, 404):
            return GatewayAck(gateway.gateway_id, gateway.admin_url, AckCode.REFUSED, time.monotonic() - started,
                              f"{answer.status_code}: {answer.text[:200]}")
        if answer.status_code != 200:
            return GatewayAck(gateway.gateway_id, gateway.admin_url, AckCode.UNREACHABLE, time.monotonic() - started,
                              f"{answer.status_code}: {answer.text[:200]}")
        drained = answer.json().get("shadow_drained", True)
        return GatewayAck(gateway.gateway_id, gateway.admin_url,
                          AckCode.ACKNOWLEDGED if drained else AckCode.NOT_DRAINED, time.monotonic() - started)

    if not gateways:
        return FleetFlush(model, ())
    with ThreadPoolExecutor(max_workers=len(gateways), thread_name_prefix="steward-fleet-flush") as pool:
        return FleetFlush(model, tuple(pool.map(flush, gateways)))
