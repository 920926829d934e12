"""Traffic plans: which registry alias answers which request.

A plan is stored with the model in the registry (``Registry.set_traffic_plan``) and every
gateway replica applies it. The two arms are the registry aliases ``champion`` and
``challenger``; the plan says how requests are shared between them. Everything here is
pure: the gateway passes in the random draw or the entity key, so the same inputs always
give the same arm and the functions can be tested without a server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from steward.registry.history import CHALLENGER, CHAMPION

#: Replayed traffic (admin only): the gateway logs this time instead of the arrival time.
EVENT_TIME_HEADER = "x-steward-event-time"


class TrafficError(ValueError):
    """A traffic plan or an arm request that cannot be applied; the message says what to change."""


class Arm(StrEnum):
    CHAMPION = CHAMPION
    CHALLENGER = CHALLENGER


class TrafficMode(StrEnum):
    CANARY = "canary"  # weighted random split per request
    AB = "ab"  # deterministic split by an entity key: one entity, one arm
    SHADOW = "shadow"  # champion answers; challenger scores a copy off the request path
    BLUE_GREEN = "blue_green"  # every request to the ``live`` arm


@dataclass(frozen=True)
class StickyKey:
    """Where an A/B plan reads the entity key: a payload field (per row) or a request header."""

    source: Literal["field", "header"]
    name: str

    @classmethod
    def parse(cls, text: str) -> StickyKey:
        source, _, name = text.partition(":")
        if source not in ("field", "header") or not name.strip():
            raise TrafficError(
                f"sticky_key {text!r}: write it as 'field:<column>' (e.g. field:entity_id) "
                "or 'header:<name>' (e.g. header:X-Customer-Id)"
            )
        name = name.strip()
        return cls(source, name.lower() if source == "header" else name)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


class TrafficPlan(BaseModel):
    """How one model's traffic is shared between its champion and challenger aliases.

    ``challenger_percent`` is the challenger's share of requests in canary mode, its share of
    entities in A/B mode, and the share of requests copied to it in shadow mode. In blue-green
    mode every request goes to ``live``. The default plan sends everything to the champion.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: TrafficMode = TrafficMode.CANARY
    challenger_percent: float = Field(default=0.0, ge=0, le=100)
    sticky_key: str | None = Field(default=None, description="A/B only: 'field:<column>' or 'header:<name>'.")
    live: Arm = Field(default=Arm.CHAMPION, description="Blue-green only: the colour that takes all traffic.")
    salt: str = Field(default="", max_length=200, description="A/B only: change it to reshuffle entities.")

    @field_validator("sticky_key")
    @classmethod
    def _sticky_key_form(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(StickyKey.parse(value))
        except TrafficError as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="after")
    def _consistent(self) -> TrafficPlan:
        mode, percent = self.mode, self.challenger_percent
        if mode is not TrafficMode.BLUE_GREEN and self.live is not Arm.CHAMPION:
            raise ValueError(f"live: only a blue_green plan can send all traffic to the {self.live}")
        if mode is not TrafficMode.AB and self.sticky_key is not None:
            raise ValueError(f"sticky_key: a {mode} plan does not assign by key; use mode 'ab' for sticky arms")
        if mode is TrafficMode.AB:
            if self.sticky_key is None:
                raise ValueError("sticky_key: an ab plan needs one, e.g. 'field:entity_id' or 'header:X-Customer-Id'")
            if not 0 < percent < 100:
                raise ValueError(f"challenger_percent: an ab plan needs a share strictly between 0 and 100, got {percent}")
        if mode is TrafficMode.SHADOW and percent == 0:
            raise ValueError("challenger_percent: a shadow plan copies this share of requests; give more than 0")
        if mode is TrafficMode.BLUE_GREEN and percent != 0:
            raise ValueError("challenger_percent: a blue_green plan sends all traffic to `live`; leave it at 0")
        return self

    @property
    def key(self) -> StickyKey | None:
        return StickyKey.parse(self.sticky_key) if self.sticky_key else None

    @property
    def needs_challenger(self) -> bool:
        """Whether applying the plan requires a ``challenger`` alias."""
        if self.mode is TrafficMode.BLUE_GREEN:
            return self.live is Arm.CHALLENGER
        return self.challenger_percent > 0

    def describe(self) -> str:
        if self.mode is TrafficMode.BLUE_GREEN:
            return f"blue_green: all traffic to the {self.live}"
        if self.mode is TrafficMode.SHADOW:
            return f"shadow: champion answers, {self.challenger_percent:g}% copied to the challenger"
        if self.mode is TrafficMode.AB:
            return f"ab: {self.challenger_percent:g}% of entities to the challenger, by {self.sticky_key}"
        if self.challenger_percent == 0:
            return "canary: all traffic to the champion"
        return f"canary: {self.challenger_percent:g}% of requests to the challenger"


DEFAULT_PLAN = TrafficPlan()


@dataclass(frozen=True)
class ServingState:
    """What a gateway reads from the registry for one model: its aliases and its plan.

    ``plan`` is None when the stored plan cannot be parsed; ``plan_error`` then says why, and
    gateways keep applying the plan they had.
    """

    champion: str | None
    challenger: str | None
    plan: TrafficPlan | None
    plan_error: str | None = None
    plan_text: str = ""  # the stored plan tag as read ("" for none): what a seal signs
    seal: str | None = None  # steward.control's seal of this state, when Steward wrote it with the control key


def parse_plan(document: object, *, source: str = "traffic plan") -> TrafficPlan:
    """Validate a plan document (a mapping or JSON text); the error lists every bad field."""
    try:
        if isinstance(document, str | bytes):
            return TrafficPlan.model_validate_json(document)
        return TrafficPlan.model_validate(document)
    except ValidationError as error:
        lines = []
        for detail in error.errors():
            location = ".".join(str(part) for part in detail["loc"]) or "(top level)"
            lines.append(f"  - {location}: {detail['msg'].removeprefix('Value error, ')}")
        raise TrafficError(f"{source} is not valid:\n" + "\n".join(lines)) from None


@dataclass(frozen=True)
class Route:
    """The arm that answers a request and, in shadow mode, the arm that scores a copy."""

    answer: Arm
    shadow: Arm | None = None
    forced: bool = False


def weighted_arm(challenger_percent: float, draw: float) -> Arm:
    """Canary split: ``draw`` is uniform in [0, 1)."""
    return Arm.CHALLENGER if draw * 100 < challenger_percent else Arm.CHAMPION


def sticky_draw(entity: str, salt: str = "") -> float:
    """A uniform number in [0, 1) that depends only on the entity key and the salt, in any process."""
    digest = hashlib.blake2b(f"{salt}\x00{entity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sticky_arm(entity: str, challenger_percent: float, salt: str = "") -> Arm:
    """A/B split: the same entity always gets the same arm for a given share and salt."""
    return weighted_arm(challenger_percent, sticky_draw(entity, salt))


def parse_forced_arm(value: str) -> Arm:
    """The arm named in the force-arm header."""
    try:
        return Arm(value.strip().lower())
    except ValueError:
        raise TrafficError(f"cannot force arm {value!r}: use 'champion' or 'challenger'") from None


def route_request(plan: TrafficPlan, draw: float, *, challenger_available: bool = True) -> Route:
    """Route a whole request under a canary, shadow or blue-green plan.

    Without a loaded challenger everything goes to the champion, so a plan that outlives its
    challenger alias degrades to champion-only instead of failing requests. A/B plans route
    by entity with :func:`route_entity`.
    """
    if not challenger_available:
        return Route(Arm.CHAMPION)
    if plan.mode is TrafficMode.BLUE_GREEN:
        return Route(plan.live)
    if plan.mode is TrafficMode.SHADOW:
        copied = weighted_arm(plan.challenger_percent, draw) is Arm.CHALLENGER
        return Route(Arm.CHAMPION, Arm.CHALLENGER if copied else None)
    if plan.mode is TrafficMode.AB:
        raise TrafficError("an ab plan routes by entity key: call route_entity")
    return Route(weighted_arm(plan.challenger_percent, draw))


def route_entity(plan: TrafficPlan, entity: str | None, *, challenger_available: bool = True) -> Route:
    """Route one entity under an A/B plan; a request without a key goes to the champion."""
    if not challenger_available or entity is None:
        return Route(Arm.CHAMPION)
    return Route(sticky_arm(entity, plan.challenger_percent, plan.salt))


def route_forced(arm: Arm, *, challenger_available: bool) -> Route:
    """A smoke test's forced arm; forcing a challenger that is not loaded is an error, not a fallback."""
    if arm is Arm.CHALLENGER and not challenger_available:
        raise TrafficError("cannot force the challenger: this model has no challenger loaded")
    return Route(arm, forced=True)
