"""Shared plumbing for tasks: settings, the registry, events and artifacts."""

from __future__ import annotations

import functools
import re
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run

from steward.config import apply_environment
from steward.events import resource_id
from steward.monitoring.ledger import Ledger
from steward.registry.adapter import Registry
from steward.store.reader import PredictionStore


@functools.cache
def registry() -> Registry:
    """One registry client per process, pointed at the configured MLflow."""
    return Registry.from_settings(apply_environment())


@functools.cache
def store() -> PredictionStore:
    """The prediction log at the configured store URI."""
    return PredictionStore.from_settings(apply_environment())


@functools.cache
def ledger() -> Ledger:
    """The maintenance ledger beside the prediction log."""
    return Ledger.from_settings(apply_environment())


def reset_clients() -> None:
    """Forget cached clients (after the settings change, e.g. in tests)."""
    for cached in (registry, store, ledger):
        cached.cache_clear()


def current_flow_run_id() -> str | None:
    """The id of the flow run this code runs in, to link ledger entries to it."""
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def emit_model_event(
    event: str, model: str, *, resource_labels: dict[str, str] | None = None, **payload: Any
) -> None:
    """Emit ``event`` about ``model``; the payload carries versions and the reason in plain words.

    ``resource_labels`` are what triggers can match on besides the resource id.
    """
    emit_event(
        event=event,
        resource={"prefect.resource.id": resource_id(model), "prefect.resource.name": model, **(resource_labels or {})},
        payload={"model": model, **{k: v for k, v in payload.items() if v is not None}},
    )


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def publish_markdown(markdown: str, *parts: str, description: str | None = None) -> None:
    create_markdown_artifact(markdown, key=artifact_key(*parts), description=description)


def publish_table(rows: list[dict[str, Any]], *parts: str, description: str | None = None) -> None:
    create_table_artifact(rows, key=artifact_key(*parts), description=description)
