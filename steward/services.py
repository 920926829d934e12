"""The I/O a procedure reaches: one object, built from the settings, replaceable as a whole.

Tasks read the clients from here instead of building their own, so a test (or another
deployment) can hand every task the same set of fakes or alternatives at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from steward.monitoring.ledger import Ledger
from steward.registry.adapter import Registry
from steward.store.reader import PredictionStore

if TYPE_CHECKING:
    from steward.config import Settings


@dataclass(frozen=True)
class Services:
    """The model registry, the prediction log and the maintenance ledger of one Steward installation."""

    registry: Registry
    store: PredictionStore
    ledger: Ledger

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """The real clients: MLflow at the configured URI, the log and the ledger under the store URI."""
        return cls(
            registry=Registry.from_settings(settings),
            store=PredictionStore.from_settings(settings),
            ledger=Ledger.from_settings(settings),
        )
