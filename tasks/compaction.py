"""Compacting a model's prediction log (the merge itself is ``steward.store.compaction``)."""

from __future__ import annotations

from datetime import date, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from steward.store.compaction import CompactionReport, compact_model
from tasks.common import store


@task(name="compact-log", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def compact_log_days(model: str, before: date, grace: timedelta) -> CompactionReport:
    """Every day of the model's predictions and labels before ``before``; idempotent, so a retry only finishes
    the work. The grace period runs on the wall clock, whatever day is compacted: it protects readers now."""
    return compact_model(store(), model, before=before, grace=grace)
