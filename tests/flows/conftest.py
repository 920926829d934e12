"""Flow tests run against one temporary Prefect server for the whole session."""

from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):  # a busy machine's start took over 120 s
        yield


@pytest.fixture
def model_events():
    """Events about a model, read back from the Prefect server (they arrive asynchronously)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventOccurredFilter, EventResourceFilter

    from steward.events import resource_id

    def read(model: str, expected: int = 1, timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        events: list = []
        since = EventOccurredFilter(since=__import__("datetime").datetime(2000, 1, 1))
        while time.monotonic() < deadline:
            with get_client(sync_client=True) as client:
                page = client.read_events(
                    EventFilter(occurred=since, resource=EventResourceFilter(id=[resource_id(model)])), limit=50
                )
            events = sorted(page.events, key=lambda e: e.occurred)
            if len(events) >= expected:
                return events
            time.sleep(0.5)
        return events

    return read


@pytest.fixture
def admin_token(monkeypatch):
    """The flows reach the gateway's admin API (smoke tests, telling the fleet) with the token from the settings."""
    from delivery_fixtures import ADMIN_TOKEN

    from steward.config import reset_settings

    monkeypatch.setenv("STEWARD_ADMIN_TOKEN", ADMIN_TOKEN)
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()
