"""Notify: tell people that a model was promoted or rolled back.

Started by the ``steward.model.promoted`` and ``steward.model.rolled-back`` triggers of the
catalog. It always logs and publishes a markdown artifact (visible in the Prefect UI); with
``STEWARD_NOTIFY_WEBHOOK`` set it also posts a JSON message there (Slack-compatible ``text``).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import httpx
from prefect import flow, get_run_logger, task

from tasks.common import publish_markdown

WEBHOOK_ENV = "STEWARD_NOTIFY_WEBHOOK"


def notification_text(model: str, event: str, version: str | None, reason: str | None,
                      occurred: datetime | None) -> str:
    what = event.rsplit(".", 1)[-1].replace("-", " ")
    when = f" at {occurred:%Y-%m-%d %H:%M:%S %Z}" if occurred else ""
    return f"{model}: {what}{f' to v{version}' if version else ''}{when}. Why: {reason or 'no reason given'}"


@task(retries=3, retry_delay_seconds=[2, 5, 15])
def post_webhook(url: str, message: str, payload: dict[str, Any]) -> None:
    response = httpx.post(url, json={"text": message, "payload": payload}, timeout=10)
    response.raise_for_status()


@flow(name="notify", description="Tell people that a model was promoted or rolled back.")
def notify(
    model: str,
    event: str = "steward.model.promoted",
    version: str | None = None,
    reason: str | None = None,
    payload: dict[str, Any] | None = None,
    occurred: datetime | None = None,
) -> str:
    """Log, publish and (optionally) post one notification; returns the message."""
    message = notification_text(model, event, version, reason, occurred)
    get_run_logger().info("%s", message)
    publish_markdown(f"# {message}\n\n```\n{payload or {}}\n```\n", "notify", model,
                     description=f"latest notification about {model}")
    url = os.environ.get(WEBHOOK_ENV)
    if url:
        post_webhook(url, message, payload or {})
    return message
