"""The I/O a procedure reaches: one object, built from the settings, replaceable as a whole.

Tasks read the clients from here instead of building their own, so a test (or another
deployment) can hand every task the same set of fakes or alternatives at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from steward.monitoring.drift.history import DriftHistory
from steward.monitoring.ledger import Ledger
from steward.monitoring.slo import SLOStore
from steward.registry.adapter import Registry
from steward.serving.fleet import Fleet
from steward.store.reader import PredictionStore

if TYPE_CHECKING:
    from steward.config import Settings


@dataclass(frozen=True)
class Services:
    """The model registry and the stores of one Steward installation: the prediction log, the
    maintenance ledger, the daily SLO records, the drift history and the gateway fleet (all under one
    store URI)."""

    registry: Registry
    store: PredictionStore
    ledger: Ledger
    slo: SLOStore
    drift_history: DriftHistory
    fleet: Fleet

    @classmethod
    def at(cls, registry: Registry, store: PredictionStore) -> Services:
        """``registry`` and every store beside the prediction log ``store``, under its URI."""
        return cls(registry=registry, store=store, ledger=Ledger(store.uri), slo=SLOStore(store.uri),
                   drift_history=DriftHistory(store.uri), fleet=Fleet(store.uri))

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """The real clients: MLflow at the configured URI, the stores under the store URI."""
        return cls.at(Registry.from_settings(settings), PredictionStore.from_settings(settings))
