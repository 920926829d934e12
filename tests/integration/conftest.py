"""A real gateway on a free loopback port, serving real models from the session's MLflow store."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.gateway import RunningGateway, start_gateway
from tests.support.models import mark_validated, set_champion_and_challenger

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(name="start_gateway")
def start_gateway_fixture(registry, tmp_path: Path) -> Iterator[Callable[..., RunningGateway]]:
    """Start gateways logging under tmp_path (options are GatewayConfig fields); all are stopped after the test."""
    running: list[RunningGateway] = []

    def start(models: list[str], **options) -> RunningGateway:
        options = {"store_uri": str(tmp_path / "prediction-log"), "admin_token": ADMIN_TOKEN, **options}
        handle = start_gateway(registry, models, **options)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if handle.thread.is_alive():
            handle.stop()


@pytest.fixture
def two_versions(registry, write_spec, register_version, example_frame, model_name):
    """A model with a champion (v1) and a challenger (v2) trained on different data, so they disagree."""
    spec_path = write_spec()
    first = register_version(spec_path, example_frame.iloc[:3000], max_iter=15)
    second = register_version(spec_path, example_frame.iloc[3000:], max_iter=30)
    mark_validated(registry, model_name, first.version, second.version)
    set_champion_and_challenger(registry, model_name, first.version, second.version)
    return model_name, first.version, second.version


@pytest.fixture
def production_home():
    """A home the `postgres` user can reach (pytest's temp folders are root-only)."""
    home = Path(tempfile.mkdtemp(prefix="steward-production-", dir="/tmp"))
    home.chmod(0o711)
    yield home / "home"
    shutil.rmtree(home, ignore_errors=True)
