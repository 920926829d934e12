"""Shared fixtures.

One Steward home per test session: creating an MLflow SQLite store takes seconds, so
the whole session shares one, and tests stay independent by using their own model
names (``model_name`` fixture). The environment is set in ``pytest_configure``, before
any test module imports MLflow or Prefect, because both read it at import.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support import leftovers

_SESSION_HOME = Path(tempfile.mkdtemp(prefix=leftovers.HOME_PREFIX))
_names = itertools.count(1)
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1 ... under pytest-xdist: names unique across workers
_SWEPT = pytest.StashKey[leftovers.Swept]()


def pytest_configure(config: pytest.Config) -> None:
    # What a killed earlier session left (servers, homes) slows this one; what this one starts is marked.
    config.stash[_SWEPT] = leftovers.sweep(_SESSION_HOME.parent)
    leftovers.claim(_SESSION_HOME)
    # One OpenMP thread: on 2 shared cores, spinning OpenMP pools make tree models 10x slower.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["STEWARD_HOME"] = str(_SESSION_HOME / "home")
    os.environ.pop("STEWARD_CONFIG", None)
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_API_URL", "PREFECT_HOME"):
        os.environ.pop(variable, None)
    from steward.config import apply_environment, reset_settings

    reset_settings()
    apply_environment(override=True)
    if hasattr(config.option, "loadscopereorder"):  # xdist would queue files by test count, not by our order
        config.option.loadscopereorder = False


def pytest_report_header(config: pytest.Config) -> str:
    return config.stash[_SWEPT].describe()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Longest first, so the two xdist workers (--dist loadfile, in this order: see pytest_configure) finish
    # together: the whole-stack tests, then the Docker tests (their images build beside the first minutes of
    # the suite, .ci/run), then the rest in their usual order.
    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("whole_stack") is not None:
            return 0
        return 1 if item.get_closest_marker("docker") is not None else 2

    items.sort(key=rank)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def settings():
    from steward.config import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def registry(settings):
    from steward.registry.adapter import Registry

    return Registry.from_settings(settings)


@pytest.fixture
def model_name() -> str:
    """A model name no other test uses, so tests share the MLflow store without sharing state."""
    return f"test-model-{_WORKER}{next(_names)}"


@pytest.fixture(scope="session")
def example_frame() -> pd.DataFrame:
    """20 clean days of the simulated credit world, 300 rows a day."""
    from steward.simulation.examples import example_training_frame

    return example_training_frame(days=20, rows_per_day=300)


@pytest.fixture(scope="session")
def example_spec():
    """The example spec (``credit-default``) as a ModelSpec, its data at ``train.parquet``."""
    from steward.simulation.examples import example_spec_text
    from steward.spec import parse_spec

    document = yaml.safe_load(example_spec_text())
    document["data"]["path"] = "train.parquet"
    return parse_spec(document)


@pytest.fixture(scope="session")
def quick_spec(example_spec):
    """The example spec with a small model (15 boosting rounds), for tests that need a real fitted model fast."""
    from tests.support.models import with_estimator_params

    return with_estimator_params(example_spec, max_iter=15)


@pytest.fixture(scope="session")
def quick_model(quick_spec, example_frame):
    """``quick_spec``'s model fitted once per session on the example frame (a TrainedModel)."""
    from tests.support.models import train_spec

    return train_spec(quick_spec, example_frame, "tests: the example frame")


@pytest.fixture
def write_spec(tmp_path: Path, example_frame: pd.DataFrame, model_name: str):
    """Write the example spec (with overrides) and its data under tmp_path; returns the spec path."""
    from steward.simulation.examples import example_spec_text

    def write(frame: pd.DataFrame | None = None, name: str | None = None, **overrides) -> Path:
        document = yaml.safe_load(example_spec_text())
        document["name"] = name or model_name
        document["data"]["path"] = "train.parquet"
        document["data_validation"]["min_rows"] = 500
        for dotted, value in overrides.items():
            section, _, field = dotted.partition("__")
            if field:
                document.setdefault(section, {})[field] = value
            else:
                document[section] = value
        (frame if frame is not None else example_frame).to_parquet(tmp_path / "train.parquet", index=False)
        path = tmp_path / f"{document['name']}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    return write


@pytest.fixture
def register_version(registry):
    """Train a spec's model on a frame and register it without Prefect; returns the VersionInfo."""
    from steward.spec import load_spec
    from tests.support.models import register_trained, train_spec, with_estimator_params

    def register(spec_path: Path, frame: pd.DataFrame, **estimator_params):
        spec = with_estimator_params(load_spec(spec_path), **estimator_params)
        return register_trained(registry, spec, train_spec(spec, frame, str(spec_path)))

    return register


@pytest.fixture
def fake_services():
    """Tasks read an in-memory registry, prediction log and ledger during the test (tests/support/fakes.py)."""
    from tasks.common import use_services
    from tests.support.fakes import forget, in_memory_services

    services = in_memory_services()
    with use_services(services):
        yield services
    forget(services)
