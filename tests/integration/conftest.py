"""A real gateway on a free loopback port, serving real models from the session's MLflow store."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

ADMIN_TOKEN = "test-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningGateway:
    url: str
    app: object
    server: object
    thread: threading.Thread
    store_uri: str

    @property
    def gateway(self):
        return self.app.state.gateway

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def admin(self) -> httpx.Client:
        return self.client(headers={"authorization": f"Bearer {ADMIN_TOKEN}"})

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what} after {timeout}s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Graceful shutdown, as on SIGTERM: in-flight requests finish, the log is flushed."""
        self.server.should_exit = True
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the gateway did not shut down"


@pytest.fixture
def start_gateway(registry, tmp_path: Path) -> Iterator[Callable[..., RunningGateway]]:
    import uvicorn

    from steward.serving import GatewayConfig, create_app

    running: list[RunningGateway] = []

    def start(models: list[str], **options) -> RunningGateway:
        settings = {
            "store_uri": str(tmp_path / "prediction-log"), "admin_token": SecretStr(ADMIN_TOKEN),
            "poll_interval": 0.2, "flush_interval": 0.5, **options,
        }
        config = GatewayConfig(models=tuple(models), **settings)
        app = create_app(config, registry=registry)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
        )
        thread = threading.Thread(target=server.run, name=f"gateway-{port}", daemon=True)
        thread.start()
        handle = RunningGateway(f"http://127.0.0.1:{port}", app, server, thread, config.store_uri)
        running.append(handle)
        handle.wait_until(lambda: server.started, "uvicorn to start")
        with handle.client() as client:
            handle.wait_until(lambda: client.get("/readyz").status_code == 200, "every model to load")
        return handle

    yield start
    for handle in running:
        if handle.thread.is_alive():
            handle.stop()


@pytest.fixture
def two_versions(registry, write_spec, register_version, example_frame, model_name):
    """A model with a champion (v1) and a challenger (v2) trained on different data, so they disagree."""
    from steward.registry.history import CHALLENGER, ChangeKind

    spec_path = write_spec()
    first = register_version(spec_path, example_frame.iloc[:3000], max_iter=15)
    second = register_version(spec_path, example_frame.iloc[3000:], max_iter=30)
    for info in (first, second):
        registry.set_version_tags(model_name, info.version, {"steward.validation.status": "passed"})
    registry.promote(model_name, first.version, reason="test champion")
    registry.set_alias(model_name, CHALLENGER, second.version, reason="test challenger", kind=ChangeKind.ASSIGN)
    return model_name, first.version, second.version
