"""A real gateway served by uvicorn on a thread of the test process, on a free loopback port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from tests.support.polling import wait_until


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningGateway:
    url: str
    app: Any
    server: Any
    thread: threading.Thread
    store_uri: str
    admin_token: str | None

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def admin(self) -> httpx.Client:
        return self.client(headers={"authorization": f"Bearer {self.admin_token}"})

    def wait_until(self, condition: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
        wait_until(condition, what, timeout, every=0.02)

    def plan(self, model: str) -> Any:
        """The plan the gateway applies right now (not the registry's)."""
        deployment = self.gateway.pool.get(model)
        return deployment.plan if deployment is not None else None

    def wait_for_plan(self, model: str, plan: Any, timeout: float = 30.0) -> None:
        self.wait_until(lambda: self.plan(model) == plan, f"the gateway to apply {plan.describe()}", timeout)

    def stop(self) -> None:
        """Graceful shutdown, as on SIGTERM: in-flight requests finish, the log is flushed."""
        self.server.should_exit = True
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the gateway did not shut down"


def start_gateway(registry: Any, models: Sequence[str], *, store_uri: str, admin_token: str | None,
                  **options: Any) -> RunningGateway:
    """Serve ``models`` (each needs a champion) from ``registry``; returns once every model is loaded.

    ``options`` are GatewayConfig fields; a poll every 0.2 s and a flush every 0.5 s unless given. The
    gateway joins the fleet under ``store_uri`` with its loopback URL.
    """
    import uvicorn

    from steward.serving import GatewayConfig, create_app
    from steward.serving.server import uvicorn_config

    port = free_port()
    token = SecretStr(admin_token) if admin_token else None
    config = GatewayConfig(models=tuple(models), store_uri=store_uri, admin_token=token,
                           **{"poll_interval": 0.2, "flush_interval": 0.5, "admin_url": f"http://127.0.0.1:{port}",
                              **options})
    app = create_app(config, registry=registry)
    server = uvicorn.Server(uvicorn_config(app, config, host="127.0.0.1", port=port, lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"gateway-{port}", daemon=True)
    thread.start()
    handle = RunningGateway(f"http://127.0.0.1:{port}", app, server, thread, config.store_uri, admin_token)
    try:
        handle.wait_until(lambda: server.started, "uvicorn to start")
        with handle.client() as client:
            handle.wait_until(lambda: client.get("/readyz").status_code == 200, "every model to load", timeout=60)
    except BaseException:
        if thread.is_alive():
            handle.stop()
        raise
    return handle
