"""The fleet of gateways: records, heartbeats and expiry on a real (memory://) record store, and telling
gateways that cannot answer. Gateways that do answer are in tests/integration/test_gateway.py and
tests/flows/test_fleet_reach.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from steward.registry.traffic import DEFAULT_PLAN, Arm, TrafficMode, TrafficPlan
from steward.serving.fleet import (
    FORGET_AFTER_SECONDS,
    AckCode,
    Fleet,
    FleetError,
    GatewayRecord,
    Membership,
    ServingTarget,
    tell_gateways,
)
from tests.support.gateway import free_port

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TOKEN = SecretStr("fleet-token")


@pytest.fixture
def fleet() -> Fleet:
    return Fleet(f"memory://fleet-tests/{uuid.uuid4().hex}")


def record(name: str, *, models=("m",), heartbeat: datetime = NOW, admin_api: bool = True,
           url: str | None = None) -> GatewayRecord:
    return GatewayRecord(name, url or f"http://127.0.0.1:{free_port()}", tuple(models), admin_api, NOW, heartbeat)


def test_a_gateway_is_listed_under_each_model_it_serves_until_it_withdraws(fleet):
    both = record("gw-1", models=("m", "n"))
    fleet.register(both)
    fleet.register(record("gw-2", models=("n",)))
    assert [g.gateway_id for g in fleet.gateways("m", NOW)] == ["gw-1"]
    assert [g.gateway_id for g in fleet.gateways("n", NOW)] == ["gw-1", "gw-2"]
    assert fleet.gateways("m", NOW)[0] == both  # the record round-trips whole
    fleet.withdraw(both)
    assert fleet.gateways("m", NOW) == [] and [g.gateway_id for g in fleet.gateways("n", NOW)] == ["gw-2"]


def test_a_gateway_without_a_recent_heartbeat_is_not_live_and_is_forgotten_much_later(fleet):
    fleet.register(record("fresh"))
    fleet.register(record("silent", heartbeat=NOW - timedelta(seconds=60)))
    fleet.register(record("dead", heartbeat=NOW - timedelta(seconds=FORGET_AFTER_SECONDS + 1)))
    assert [g.gateway_id for g in fleet.gateways("m", NOW)] == ["fresh"]
    fleet.register(record("silent", heartbeat=NOW))  # it beats again: live again
    assert [g.gateway_id for g in fleet.gateways("m", NOW)] == ["fresh", "silent"]
    keys = [key for key, _ in fleet._records.texts("m")]
    assert "dead" not in keys and "silent" in keys


def test_an_unreadable_record_names_its_file(fleet):
    fleet._records.put("m", "broken", "{not json")
    with pytest.raises(FleetError, match="m/broken"):
        fleet.gateways("m", NOW)


def test_membership_registers_beats_and_withdraws(fleet):
    member = Membership(fleet, record("gw", heartbeat=datetime.now(UTC)), heartbeat_seconds=0.01)
    member.start()
    try:
        assert [g.gateway_id for g in fleet.gateways("m")] == ["gw"]
    finally:
        member.stop()
    assert member.record.heartbeat >= member.record.started
    assert fleet.gateways("m") == []


def test_serving_target_compares_versions_and_plan():
    canary = TrafficPlan(mode=TrafficMode.CANARY, challenger_percent=5)
    target = ServingTarget("2", None, DEFAULT_PLAN)
    served = {"champion": {"version": "2"}, "challenger": None, "plan": DEFAULT_PLAN.model_dump(mode="json")}
    assert target.met_by(served)
    assert not target.met_by({**served, "champion": {"version": "1"}})
    assert not target.met_by({**served, "plan": canary.model_dump(mode="json")})
    assert ServingTarget("2", None, None).met_by({**served, "plan": canary.model_dump(mode="json")})  # plan unread
    blue_green = TrafficPlan(mode=TrafficMode.BLUE_GREEN, live=Arm.CHALLENGER)
    assert not ServingTarget("2", "3", blue_green).met_by(served)


def test_a_target_travels_as_a_document_and_a_bad_one_says_what_is_wrong():
    target = ServingTarget("2", "3", TrafficPlan(mode=TrafficMode.CANARY, challenger_percent=5))
    assert ServingTarget.from_document(target.to_document()) == target
    assert ServingTarget.from_document(ServingTarget("2", None, None).to_document()) == ServingTarget("2", None, None)
    with pytest.raises(ValueError, match="champion"):
        ServingTarget.from_document({"champion": "2"})
    with pytest.raises(ValueError, match="version strings"):
        ServingTarget.from_document({"champion": 2, "challenger": None, "plan": None})


def test_no_gateway_registered_is_trivially_acknowledged(fleet):
    reach = tell_gateways(fleet, "m", ServingTarget("1", None, DEFAULT_PLAN), TOKEN)
    assert reach.acknowledged and reach.acks == () and reach.seconds == 0.0
    assert "no live gateway" in reach.describe()


def test_gateways_that_cannot_be_told_are_named_with_their_code(fleet):
    now = datetime.now(UTC)
    fleet.register(record("down", heartbeat=now))  # its port has no listener: it died without withdrawing
    fleet.register(record("tokenless", heartbeat=now, admin_api=False))
    reach = tell_gateways(fleet, "m", ServingTarget("1", None, DEFAULT_PLAN), TOKEN, deadline_seconds=0.3)
    assert not reach.acknowledged
    assert {a.gateway_id: a.code for a in reach.missing} == {"down": AckCode.UNREACHABLE,
                                                            "tokenless": AckCode.NO_ADMIN_API}
    assert "down" in reach.describe() and "the change stands" in reach.describe()


def test_without_an_admin_token_no_gateway_is_told(fleet):
    fleet.register(record("gw", heartbeat=datetime.now(UTC)))
    reach = tell_gateways(fleet, "m", ServingTarget("1", None, DEFAULT_PLAN), None)
    assert [a.code for a in reach.acks] == [AckCode.NO_TOKEN]
