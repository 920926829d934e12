"""Helpers of the experiment flow tests: models registered as champion and challenger, a real gateway on
loopback writing the session's prediction log (the one the flows read), and waits on what arrives
asynchronously (the gateway following a plan, the log's flushes)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml
from delivery_fixtures import ADMIN_TOKEN  # the flows' token too (the ``admin_token`` fixture sets it)

from tests.support.gateway import RunningGateway
from tests.support.gateway import start_gateway as start_gateway_on
from tests.support.models import register_trained, set_champion_and_challenger, train_spec
from tests.support.polling import wait_until


def start_gateway(registry, models: list[str], **options) -> RunningGateway:
    """A gateway in this process, logging where the flows read (the session's store)."""
    from steward.config import get_settings

    return start_gateway_on(registry, models, store_uri=get_settings().resolved_store_uri, admin_token=ADMIN_TOKEN,
                            **options)


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

    return train_spec(load_spec(spec_path), frame, str(spec_path))


def register(registry, spec_path: Path, trained) -> str:
    """Register a trained model as a version that passed validation; returns its version."""
    from steward.spec import load_spec

    return register_trained(registry, load_spec(spec_path), trained, validated=True).version


def champion_and_challenger(registry, spec_path: Path, champion, challenger, *,
                            challenger_spec: Path | None = None) -> tuple[str, str]:
    """Register both (the challenger with its own spec if given) and set the aliases."""
    from steward.spec import load_spec

    name = load_spec(spec_path).name
    first, second = register(registry, spec_path, champion), register(registry, challenger_spec or spec_path, challenger)
    set_champion_and_challenger(registry, name, first, second, why="experiment tests:")
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

    wait_until(arrived, f"{served} served requests of {model} in the log", timeout, every=0.05)


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
