"""Run a gateway with uvicorn, guarded against clients that hold connections open without sending."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from steward.serving.app import create_app
from steward.serving.config import GatewayConfig
from steward.serving.logs import configure_json_logging
from steward.store.writer import use_writer_memory_pool

# CPython collects its young generation every 700 new tracked objects and runs a full
# collection every 100 young ones; a gateway makes a few hundred such objects per request. The
# heap it loaded (models, libraries) is already frozen (``ModelPool`` calls ``gc.freeze`` after
# each load), so what remains is the young collections' cadence, which these thresholds slow
# (``benchmarks/gateway_load.py --only gc-pairs`` measures both settings).
GC_THRESHOLDS = (10_000, 20, 20)


class GuardedHttpProtocol(HttpToolsProtocol):
    """Uvicorn's HTTP protocol with read deadlines: a client is dropped when a request's headers take
    longer than ``header_timeout`` (from connect, or from the last answer on a kept-alive connection)
    or its body longer than ``body_timeout``. Uvicorn alone waits forever for a silent connection."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    on_drop: Callable[[str], None] = staticmethod(lambda stage: None)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._arm(self.header_timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.header_timeout, "headers")

    def _arm(self, seconds: float, stage: str) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(seconds, self._too_slow, stage)

    def _disarm(self) -> None:
        deadline = getattr(self, "_read_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._read_deadline = None

    def _too_slow(self, stage: str) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.on_drop(stage)
            self.transport.close()  # a handler waiting for the body sees the client disconnect


def guarded_protocol(header_timeout: float, body_timeout: float,
                     on_drop: Callable[[str], None] | None = None) -> type[GuardedHttpProtocol]:
    """The protocol class uvicorn instantiates per connection, with these deadlines."""
    attributes: dict[str, Any] = {"header_timeout": header_timeout, "body_timeout": body_timeout}
    if on_drop is not None:
        attributes["on_drop"] = staticmethod(on_drop)
    return type("GatewayHttpProtocol", (GuardedHttpProtocol,), attributes)


def uvicorn_config(app: Any, config: GatewayConfig, *, host: str, port: int, **options: Any) -> Any:
    """Uvicorn's settings for a gateway app: read deadlines, a connection limit (503 beyond it)."""
    import uvicorn

    gateway = app.state.gateway
    protocol = guarded_protocol(config.header_timeout, config.body_timeout, gateway.metrics.slow_client_dropped)
    return uvicorn.Config(app, host=host, port=port, http=protocol, limit_concurrency=config.max_connections,
                          log_config=None, access_log=False, server_header=False, **options)


def advertised_url(host: str, port: int) -> str:
    """Where flows on other processes (or machines) reach this gateway, when not given."""
    reachable = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{reachable}]' if ':' in reachable else reachable}:{port}"


def serve(
    config: GatewayConfig, *, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info",
    tune_gc: bool = True,
) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight requests and flush the prediction log.

    Uvicorn's access log is off: every prediction is already in the prediction log and in
    /metrics, and a log line per request costs throughput. ``tune_gc``: the collector runs at
    ``GC_THRESHOLDS`` instead of Python's (700, 10, 10).
    """
    import prometheus_client
    import uvicorn

    prometheus_client.disable_created_metrics()  # the *_created series only add scrape noise
    # The event loop shares the GIL with the log writer, the registry poller and the shadow
    # scorer; with the default 5 ms switch interval each of their bursts stalls every request
    # in flight by up to 5 ms, which showed in p99.
    sys.setswitchinterval(0.001)
    use_writer_memory_pool()
    configure_json_logging(log_level)
    if tune_gc:
        gc.set_threshold(*GC_THRESHOLDS)
    if config.admin_url is None:
        config = config.model_copy(update={"admin_url": advertised_url(host, port)})
    # MLflow's HTTP client retries for minutes by default; the poller's timeout reports a stall,
    # and these let the stuck read itself give up soon after, so a returning registry is followed.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(config.registry_timeout))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    app = create_app(config)
    uvicorn.Server(uvicorn_config(app, config, host=host, port=port, timeout_graceful_shutdown=30)).run()
