"""A rollback or promotion reaches every gateway before the command returns, on a busy machine.

Two real gateway processes (``steward serve``) serve one model from the session's MLflow store and
join the fleet; a CPU hog keeps both cores busy. After ``steward rollback`` (and ``steward promote``)
returns, the next request on each gateway is answered by the version the command made champion: the
command told the gateways and waited for their acknowledgement. The gateways poll the registry only
every minute here, so the test cannot pass on their poll.
A registered gateway that cannot answer is named, and the rollback stands.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from delivery_fixtures import launch_gateway, register, spec_document, traffic, train

from steward.registry.history import CHAMPION
from steward.serving.fleet import AckCode, Fleet, GatewayRecord
from steward.simulation.load import cpu_hog
from tests.support.gateway import free_port

pytestmark = pytest.mark.slow

REACHED, SILENT = "fleet-reached", "fleet-silent"
POLL_SECONDS = 60.0


def _first_row() -> dict:
    from steward.spec import parse_spec

    features = list(parse_spec(spec_document(REACHED)).feature_names)
    part = traffic().head(1)[features].astype(object)
    return part.where(part.notna(), None).to_dict(orient="records")[0]


def _served_version(url: str, model: str, row: dict) -> str:
    answer = httpx.post(f"{url}/v1/models/{model}/predict", json={"dataframe_records": [row]}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["version"]


def test_rollback_and_promote_are_served_by_every_gateway_when_the_command_returns_under_load(
    registry, example_frame, tmp_path, admin_token
):
    from typer.testing import CliRunner

    from steward.cli import app
    from tasks.common import services

    trained = train(example_frame.iloc[:4500])
    first = register(registry, REACHED, trained)
    registry.promote(REACHED, first, reason="fleet test: first champion")
    gateways = [launch_gateway([REACHED], tmp_path, poll_seconds=POLL_SECONDS) for _ in range(2)]
    try:
        for gateway in gateways:
            gateway.wait_ready()
        second = register(registry, REACHED, trained)
        registry.promote(REACHED, second, reason="fleet test: second champion")
        row = _first_row()
        for gateway in gateways:  # both serve v2 (and keep v1 warm): the state a rollback starts from
            with gateway.admin() as admin:
                assert admin.post(f"/admin/models/{REACHED}/refresh").status_code == 200
            assert _served_version(gateway.url, REACHED, row) == second
        assert len(services().fleet.gateways(REACHED)) == 2

        with cpu_hog():
            rolled_back = CliRunner().invoke(app, ["rollback", REACHED, "--reason", "fleet test: error surge"])
            after_rollback = [_served_version(g.url, REACHED, row) for g in gateways]
            promoted = CliRunner().invoke(app, ["promote", REACHED, second, "--reason", "fleet test: fixed"])
            after_promotion = [_served_version(g.url, REACHED, row) for g in gateways]

        assert rolled_back.exit_code == 0, rolled_back.output
        assert after_rollback == [first, first]  # the very next request on each gateway
        assert "2 gateway(s) acknowledged" in " ".join(rolled_back.output.split())
        assert promoted.exit_code == 0, promoted.output
        assert after_promotion == [second, second]
        assert "2 gateway(s) acknowledged" in " ".join(promoted.output.split())
    finally:
        for gateway in gateways:
            gateway.stop()
    assert services().fleet.gateways(REACHED) == []  # a stopped gateway withdraws


def test_a_gateway_that_does_not_answer_is_named_and_the_rollback_stands(registry, example_frame, admin_token):
    from flows.rollback import rollback
    from tasks.common import services

    trained = train(example_frame.iloc[:4500])
    first = register(registry, SILENT, trained)
    registry.promote(SILENT, first, reason="fleet test: first champion")
    second = register(registry, SILENT, trained)
    registry.promote(SILENT, second, reason="fleet test: second champion")
    now = datetime.now(UTC)
    dead = GatewayRecord("dead-gateway", f"http://127.0.0.1:{free_port()}", (SILENT,), True, now, now)
    fleet: Fleet = services().fleet
    fleet.register(dead)  # a gateway that died a moment ago, before its record expired
    try:
        outcome = rollback(model=SILENT, reason="fleet test: a gateway is down")
    finally:
        fleet.withdraw(dead)

    assert registry.alias_version(SILENT, CHAMPION) == first  # not undone
    reach = outcome.reach
    assert reach is not None and not reach.acknowledged
    assert [(a.gateway_id, a.code) for a in reach.missing] == [("dead-gateway", AckCode.UNREACHABLE)]
    assert "dead-gateway" in outcome.to_markdown()
