"""Log compaction: a model's finished days of small log parts merged into a few large, time-sorted files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger

from steward.store.compaction import DEFAULT_GRACE, CompactionReport
from tasks.common import publish_markdown
from tasks.compaction import compact_log_days


@flow(name="compact-log",
      description="Merge each finished day of the model's prediction log and labels into a few large files; "
                  "safe while gateways write and checks read, and idempotent.")
def compact_log(model: str, as_of: datetime | None = None,
                grace_minutes: float = DEFAULT_GRACE.total_seconds() / 60) -> CompactionReport:
    """Compact every day before ``as_of``'s (today's parts are still being written).

    Files a compaction replaced are removed by a later run, ``grace_minutes`` after it committed.
    """
    if grace_minutes < 0:
        raise ValueError(f"grace_minutes must be 0 or more, got {grace_minutes}")
    as_of = as_of or datetime.now(UTC)
    report = compact_log_days(model, as_of.astimezone(UTC).date(), timedelta(minutes=grace_minutes))
    publish_markdown(report.to_markdown(), "compaction", model, as_of.strftime("%Y%m%d"))
    get_run_logger().info("%s", report.describe())
    return report
