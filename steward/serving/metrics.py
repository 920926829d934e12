"""Prometheus metrics of one gateway, in a registry of its own (several apps can share a process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from steward.serving.pool import RegistryView
from steward.store.writer import WriterStats

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20))


class _LogCollector(Collector):
    """Reads the log writer's counters at scrape time instead of updating metrics per record."""

    def __init__(self, stats: Callable[[], WriterStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self._stats()
        yield GaugeMetricFamily("steward_log_queue_depth", "Log records waiting to be written.", value=stats.pending)
        yield CounterMetricFamily("steward_log_dropped_records", "Log rows dropped (queue full or write failed).",
                                  value=stats.dropped)
        yield CounterMetricFamily("steward_log_written_records", "Log rows written to Parquet.", value=stats.written_rows)
        yield CounterMetricFamily("steward_log_writer_cpu_seconds", "CPU time of the gateway's log writer thread.",
                                  value=stats.cpu_seconds)


class _RegistryViewCollector(Collector):
    """The age of the gateway's view of the registry, read at scrape time."""

    def __init__(self, view: Callable[[], RegistryView | None]) -> None:
        self._view = view

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        view = self._view()
        if view is None:
            return
        age = view.age_seconds if view.age_seconds is not None else float("nan")
        yield GaugeMetricFamily("steward_registry_view_age_seconds",
                                "Seconds since the gateway last read every served model's registry state (NaN: never).",
                                value=age)
        yield GaugeMetricFamily("steward_registry_view_stale", "1 when the view is older than the gateway's stale_after.",
                                value=int(view.stale))
        yield CounterMetricFamily("steward_registry_stalled_polls", "Registry polls that outlasted registry_timeout.",
                                  value=view.stalled_polls)


class GatewayMetrics:
    def __init__(self, log_stats: Callable[[], WriterStats],
                 registry_view: Callable[[], RegistryView | None] = lambda: None) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # memory, CPU seconds, open files of this process
        self.requests = Counter(
            "steward_requests", "Predict requests by outcome.", ["model", "version", "arm", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "steward_request_latency_seconds", "Predict latency inside the gateway, by answering arm.",
            ["model", "version", "arm"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.scores = Histogram(
            "steward_prediction_score", "Scores (P(positive class), top-class probability or value) per row.",
            ["model", "version", "arm", "served"], buckets=SCORE_BUCKETS, registry=self.registry,
        )
        self.rows = Counter(
            "steward_predicted_rows", "Rows scored, served and shadow.", ["model", "version", "arm", "served"],
            registry=self.registry,
        )
        self.shadow_skipped = Counter(
            "steward_shadow_skipped", "Shadow copies not scored (invalid for the challenger's schema or failed).",
            ["model", "reason"], registry=self.registry,
        )
        self.deployment = Gauge(
            "steward_deployment_generation", "How many times the model's deployment changed.", ["model"],
            registry=self.registry,
        )
        self.champion_loaded = Gauge(
            "steward_champion_loaded", "1 when the model's champion is loaded; 0 while predict answers 503.", ["model"],
            registry=self.registry,
        )
        self.slow_clients = Counter(
            "steward_slow_clients_dropped", "Connections closed for sending headers or body too slowly.", ["stage"],
            registry=self.registry,
        )
        self.control_rejections = Counter(
            "steward_control_rejections", "Registry states or versions refused: not signed by Steward's control key.",
            ["model", "reason"], registry=self.registry,
        )
        self.relabels = Counter(
            "steward_relabels", "Labels given for a row this gateway had a label for already.", ["model"],
            registry=self.registry,
        )
        self.registry.register(_LogCollector(log_stats))
        self.registry.register(_RegistryViewCollector(registry_view))

    def slow_client_dropped(self, stage: str) -> None:
        self.slow_clients.labels(stage).inc()

    def render(self, *, openmetrics: bool = False) -> bytes:
        if openmetrics:
            from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

            return generate_openmetrics(self.registry)
        return generate_latest(self.registry)
