"""The services tasks read: built once from the settings, replaceable as a whole."""

from __future__ import annotations

import pytest

import tasks.common as common
from steward.monitoring.ledger import Ledger
from steward.services import Services
from steward.store.reader import PredictionStore
from tests.support.fakes import InMemoryRegistry, in_memory_services


@pytest.fixture
def no_built_services():
    """Start and end without process-wide services, so the test sees them being built."""
    common.reset_services()
    yield
    common.reset_services()


def test_from_settings_puts_the_log_and_the_ledger_under_the_store_uri(settings, monkeypatch):
    from steward.registry.adapter import Registry

    built = []
    monkeypatch.setattr(Registry, "from_settings", classmethod(lambda cls, s: built.append(s) or "registry"))
    services = Services.from_settings(settings)
    assert services.registry == "registry" and built == [settings]
    assert isinstance(services.store, PredictionStore) and services.store.uri == settings.resolved_store_uri
    assert isinstance(services.ledger, Ledger)
    assert services.ledger.root == settings.resolved_store_uri.rstrip("/") + "/ledger"


def test_services_are_built_once_per_process(no_built_services, monkeypatch):
    made = []
    monkeypatch.setattr(Services, "from_settings", classmethod(lambda cls, s: made.append(s) or in_memory_services()))
    first = common.services()
    assert common.services() is first and len(made) == 1
    assert (common.registry(), common.store(), common.ledger()) == (first.registry, first.store, first.ledger)
    common.reset_services()
    assert common.services() is not first and len(made) == 2


def test_use_services_hands_tasks_the_replacement_and_restores_what_was_there(no_built_services, monkeypatch):
    outer, inner, from_settings = in_memory_services(), in_memory_services(), in_memory_services()
    monkeypatch.setattr(Services, "from_settings", classmethod(lambda cls, s: from_settings))
    with common.use_services(outer):
        assert common.registry() is outer.registry and common.store() is outer.store
        with common.use_services(inner):
            assert common.ledger() is inner.ledger
        assert common.services() is outer
    with pytest.raises(RuntimeError), common.use_services(inner):
        raise RuntimeError("a failing test")
    assert common.services() is from_settings  # nothing was installed before, so the settings' are built


def test_the_fake_registry_is_a_registry_and_the_fake_log_lives_in_memory():
    services = in_memory_services()
    assert isinstance(services.registry, InMemoryRegistry)
    assert services.store.uri.startswith("memory://") and not services.store.local
    assert services.ledger.root == services.store.uri + "/ledger"
    assert in_memory_services().store.uri != services.store.uri
