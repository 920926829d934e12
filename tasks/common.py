"""Shared plumbing for tasks: the services (registry, prediction log, ledger), events and artifacts."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run

from steward.config import apply_environment
from steward.events import resource_id
from steward.monitoring.ledger import Ledger
from steward.registry.adapter import Registry
from steward.services import Services
from steward.store.reader import PredictionStore
from tasks.credentials import apply_mlflow_credentials_block

_services: Services | None = None
_services_lock = threading.Lock()


def services() -> Services:
    """The process's clients: built from the settings on first use, unless a caller installed others."""
    global _services
    with _services_lock:
        if _services is None:
            settings = apply_environment()
            apply_mlflow_credentials_block(settings)
            _services = Services.from_settings(settings)
        return _services


@contextmanager
def use_services(replacement: Services) -> Iterator[Services]:
    """Hand every task ``replacement`` (fakes, in tests) until the block ends, then restore the previous ones.

    Process-wide rather than per context, because Prefect runs tasks in worker threads.
    """
    global _services
    with _services_lock:
        previous, _services = _services, replacement
    try:
        yield replacement
    finally:
        with _services_lock:
            _services = previous


def reset_services() -> None:
    """Forget the built clients, so the next use builds them from the settings again (after they change)."""
    global _services
    with _services_lock:
        _services = None


def registry() -> Registry:
    """The model registry (MLflow, unless replaced)."""
    return services().registry


def store() -> PredictionStore:
    """The prediction log at the configured store URI."""
    return services().store


def ledger() -> Ledger:
    """The maintenance ledger beside the prediction log."""
    return services().ledger


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
