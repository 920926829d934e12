"""Run a gateway with uvicorn."""

from __future__ import annotations

import gc
import socket
import sys

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
    uvicorn.run(
        create_app(config), host=host, port=port, log_config=None, access_log=False,
        timeout_graceful_shutdown=30, server_header=False,
    )
