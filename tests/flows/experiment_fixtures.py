"""Helpers of the experiment flow tests: models registered as champion and challenger, a real gateway on
loopback writing the session's prediction log (the one the flows read), and waits on what arrives
asynchronously (the gateway following a plan, the log's flushes)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import yaml
from pydantic import SecretStr

ADMIN_TOKEN = "experiments-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout}s")
        time.sleep(0.05)


@dataclass
class RunningGateway:
    url: str
    app: object
    server: object
    thread: threading.Thread
    store_uri: str

    def plan(self, model: str):
        """The plan the gateway applies right now (not the registry's)."""
        deployment = self.app.state.gateway.pool.get(model)
        return deployment.plan if deployment is not None else None

    def wait_for_plan(self, model: str, plan, timeout: float = 30.0) -> None:
        wait_until(lambda: self.plan(model) == plan, f"the gateway to apply {plan.describe()}", timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the gateway did not shut down"


def start_gateway(registry, models: list[str], **options) -> RunningGateway:
    """A gateway in this process, as tests/integration/conftest.py starts one, logging where the flows read."""
    import uvicorn

    from steward.config import get_settings
    from steward.serving import GatewayConfig, create_app

    settings = {"store_uri": get_settings().resolved_store_uri, "admin_token": SecretStr(ADMIN_TOKEN),
                "poll_interval": 0.2, "flush_interval": 0.5, **options}
    config = GatewayConfig(models=tuple(models), **settings)
    app = create_app(config, registry=registry)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"experiment-gateway-{port}", daemon=True)
    thread.start()
    handle = RunningGateway(f"http://127.0.0.1:{port}", app, server, thread, config.store_uri)
    wait_until(lambda: server.started, "uvicorn to start")
    with httpx.Client(base_url=handle.url, timeout=10) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, "every model to load", timeout=60)
    return handle


def write_spec(directory: Path, name: str, frame: pd.DataFrame, **sections) -> Path:
    """The example spec under ``name``, trained on ``frame``; keyword arguments replace whole sections."""
    from steward.simulation.examples import example_spec_text

    document = yaml.safe_load(example_spec_text())
    document.update(name=name, data={"kind": "file", "path": f"{name}.parquet"})
    document["estimator"]["params"]["max_iter"] = 15
    document.update(sections)
    frame.to_parquet(directory / f"{name}.parquet", index=False)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def train(spec_path: Path, frame: pd.DataFrame):
    from steward.spec import load_spec
    from steward.training.data import frame_sha256, split_train_holdout
    from steward.training.train import train_model

    spec = load_spec(spec_path)
    return train_model(spec, split_train_holdout(frame, spec), data_sha256=frame_sha256(frame),
                       data_source=str(spec_path))


def register(registry, spec_path: Path, trained) -> str:
    """Register a trained model as a version that passed validation; returns its version."""
    from steward.spec import load_spec

    spec = load_spec(spec_path)
    info = registry.register_version(
        spec.name, trained.estimator, lineage=trained.lineage, metrics=trained.metrics,
        input_example=trained.holdout_frame[spec.feature_names].head(20),
        datasets={"holdout": trained.holdout_frame, "reference": trained.train_frame},
    )
    registry.set_version_tags(spec.name, info.version, {"steward.validation.status": "passed"})
    return info.version


def champion_and_challenger(registry, spec_path: Path, champion, challenger, *,
                            challenger_spec: Path | None = None) -> tuple[str, str]:
    """Register both (the challenger with its own spec if given) and set the aliases."""
    from steward.registry.history import CHALLENGER, ChangeKind
    from steward.spec import load_spec

    name = load_spec(spec_path).name
    first, second = register(registry, spec_path, champion), register(registry, challenger_spec or spec_path, challenger)
    registry.promote(name, first, reason="experiment tests: champion")
    registry.set_alias(name, CHALLENGER, second, reason="experiment tests: challenger", kind=ChangeKind.ASSIGN)
    return first, second


def wait_for_log(store, model: str, since: datetime, *, served: int, labels: int | None = None,
                 shadow: int = 0, timeout: float = 30.0) -> None:
    """Until the prediction log holds what the sender got answered (the gateway flushes every 0.5 s)."""
    def arrived() -> bool:
        log = store.read_predictions(model, since, pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1))
        enough = log.loc[log["served"], "request_id"].nunique() >= served
        enough &= log.loc[~log["served"], "request_id"].nunique() >= shadow
        if labels is not None:
            enough &= len(store.read_labels(model, start=since)) >= labels
        return bool(enough)

    wait_until(arrived, f"{served} served requests of {model} in the log", timeout)


def read_artifacts(like: str) -> dict[str, dict]:
    """Prefect artifacts whose key contains ``like``, newest first per key."""
    from prefect.client.orchestration import get_client

    # Prefect 3.8's clients send nulls that its own /artifacts/filter rejects (422), so post the filter as is.
    body = {"artifacts": {"key": {"like_": like}}, "limit": 50, "offset": 0, "sort": "CREATED_DESC"}
    with get_client(sync_client=True) as client:
        found: dict[str, dict] = {}
        for artifact in client.request("POST", "/artifacts/filter", json=body).json():
            found.setdefault(artifact["key"], artifact)
        return found
