"""The gateway's check that a registry change came from Steward (``steward.control``): follow it or refuse it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from steward.control import validation_verifies, verify_seal
from steward.registry.traffic import ServingState

log = logging.getLogger(__name__)


class ControlRefusal(Exception):
    """A version the gateway will not serve: its validation record does not verify."""


@dataclass(frozen=True)
class Rejection:
    model: str
    reason: str  # a SealCheck value, or "validation"
    detail: str


class ControlVerifier:
    """Screens each serving state the poller reads; ``alarm`` hears of every state it refuses for longer than ``grace``.

    Steward writes an alias or plan first and its seal just after, so a state briefly unsealed is
    a change in progress: it is not followed until its seal arrives, and only one that stays
    unsealed past ``grace`` seconds raises the alarm.
    """

    def __init__(self, key: str, alarm: Callable[[Rejection], None], grace: float = 30.0) -> None:
        self.key = key
        self.alarm = alarm
        self.grace = grace
        self._followed: dict[str, int] = {}
        self._unverified_since: dict[tuple[str, ...], float] = {}
        self._alarmed: set[tuple[str, ...]] = set()

    def screen(self, model: str, state: ServingState) -> tuple[ServingState | None, str | None]:
        """The state to apply (None: keep what serves) and the problem to report when it is refused."""
        result = verify_seal(self.key, model, state.champion, state.challenger, state.plan_text, state.seal,
                             followed_sequence=self._followed.get(model, 0))
        if result.verified:
            self._followed[model] = result.sequence
            return state, None
        fingerprint = (model, state.champion or "", state.challenger or "", state.plan_text, result.check.value)
        first = self._unverified_since.setdefault(fingerprint, time.monotonic())
        problem = (f"registry state ignored ({result.check.value} seal): champion v{state.champion}, challenger "
                   f"v{state.challenger}, plan {state.plan_text or 'default'} was not written by Steward with the control "
                   "key; still serving the last verified state")
        if time.monotonic() - first >= self.grace and fingerprint not in self._alarmed:
            self._alarmed.add(fingerprint)
            self.alarm(Rejection(model, result.check.value, problem))
        return None, problem

    def check_version(self, model: str, version: str, tags: dict[str, str]) -> None:
        """ControlRefusal unless the version's passed validation record is signed for this version and artifact."""
        if validation_verifies(self.key, model, version, tags):
            return
        detail = (f"{model} v{version}: its validation record is not signed with the control key (copied tags, or "
                  "validated outside Steward); it is not served")
        key = (model, version, "validation")
        if key not in self._alarmed:
            self._alarmed.add(key)
            self.alarm(Rejection(model, "validation", detail))
        raise ControlRefusal(detail)
