"""Shared plumbing for tasks: settings, the registry, events and artifacts."""

from __future__ import annotations

import functools
import re
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from steward.config import apply_environment
from steward.events import resource_id
from steward.registry import Registry


@functools.cache
def registry() -> Registry:
    """One registry client per process, pointed at the configured MLflow."""
    return Registry.from_settings(apply_environment())


def reset_registry() -> None:
    registry.cache_clear()


def emit_model_event(event: str, model: str, **payload: Any) -> None:
    """Emit ``event`` about ``model``; the payload carries versions and the reason in plain words."""
    emit_event(
        event=event,
        resource={"prefect.resource.id": resource_id(model), "prefect.resource.name": model},
        payload={"model": model, **{k: v for k, v in payload.items() if v is not None}},
    )


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def publish_markdown(markdown: str, *parts: str, description: str | None = None) -> None:
    create_markdown_artifact(markdown, key=artifact_key(*parts), description=description)
