"""Telling a model's gateways that its aliases or plan changed, and waiting until each serves the change."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward.config import apply_environment
from steward.serving.fleet import (
    ACK_DEADLINE_SECONDS,
    FleetFlush,
    FleetReach,
    ServingTarget,
    flush_gateways,
    tell_gateways,
)
from tasks.common import registry, services


def reach_gateways_now(model: str, deadline_seconds: float = ACK_DEADLINE_SECONDS) -> FleetReach:
    """The registry's state of ``model`` now, told to every live gateway; returns who acknowledged it.

    For call sites inside a task (a blue-green switch); flows use the ``reach_gateways`` task.
    """
    settings = apply_environment()
    target = ServingTarget.of(registry().serving_state(model))
    return tell_gateways(services().fleet, model, target, settings.admin_token, actor=settings.actor,
                         deadline_seconds=deadline_seconds)


@task(name="tell-gateways", cache_policy=NO_CACHE)
def reach_gateways(model: str, deadline_seconds: float = ACK_DEADLINE_SECONDS) -> FleetReach:
    """After an alias or plan change: every live gateway refreshes now; a silent one is named, the change stands."""
    reach = reach_gateways_now(model, deadline_seconds)
    logger = get_run_logger()
    if reach.acknowledged:
        logger.info("%s", reach.describe())
    else:
        logger.warning("%s", reach.describe())
    return reach


@task(name="flush-gateways", cache_policy=NO_CACHE)
def flush_fleet(model: str) -> FleetFlush:
    """Before reading a window that just ended: every live gateway scores its queued shadow copies and writes its log."""
    settings = apply_environment()
    flushed = flush_gateways(services().fleet, model, settings.admin_token, actor=settings.actor)
    (get_run_logger().info if flushed.complete else get_run_logger().warning)("%s", flushed.describe())
    return flushed
