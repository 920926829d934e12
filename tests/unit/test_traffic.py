"""Traffic plans: validation with messages that say what to change, and deterministic arm assignment."""

from __future__ import annotations

import random

import pytest

from steward.registry.traffic import (
    DEFAULT_PLAN,
    Arm,
    StickyKey,
    TrafficError,
    TrafficMode,
    TrafficPlan,
    parse_forced_arm,
    parse_plan,
    route_entity,
    route_forced,
    route_request,
    sticky_arm,
    sticky_draw,
    weighted_arm,
)


def test_default_plan_sends_everything_to_the_champion():
    assert DEFAULT_PLAN.mode is TrafficMode.CANARY
    assert not DEFAULT_PLAN.needs_challenger
    assert all(route_request(DEFAULT_PLAN, draw).answer is Arm.CHAMPION for draw in (0.0, 0.5, 0.999))
    assert DEFAULT_PLAN.describe() == "canary: all traffic to the champion"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"mode": "ab", "challenger_percent": 50}, "sticky_key: an ab plan needs one"),
        ({"mode": "ab", "challenger_percent": 0, "sticky_key": "field:entity_id"}, "strictly between 0 and 100"),
        ({"mode": "canary", "challenger_percent": 10, "sticky_key": "field:x"}, "use mode 'ab' for sticky arms"),
        ({"mode": "shadow", "challenger_percent": 0}, "copies this share of requests"),
        ({"mode": "blue_green", "challenger_percent": 10}, "leave it at 0"),
        ({"mode": "canary", "live": "challenger"}, "only a blue_green plan"),
        ({"mode": "ab", "challenger_percent": 50, "sticky_key": "entity_id"}, "write it as 'field:<column>'"),
        ({"mode": "canary", "challenger_percent": 120}, "challenger_percent"),
        ({"mode": "rainbow"}, "mode"),
        ({"mode": "canary", "weights": {"a": 1}}, "weights"),
    ],
)
def test_invalid_plans_name_the_field_and_the_fix(document, message):
    with pytest.raises(TrafficError, match="traffic plan is not valid") as caught:
        parse_plan(document)
    assert message in str(caught.value)


def test_plan_round_trips_through_json_and_normalises_header_keys():
    plan = parse_plan({"mode": "ab", "challenger_percent": 20, "sticky_key": "header: X-Customer-Id", "salt": "exp-7"})
    assert plan.sticky_key == "header:x-customer-id"
    assert plan.key == StickyKey("header", "x-customer-id")
    assert parse_plan(plan.model_dump_json()) == plan
    assert plan.needs_challenger


def test_blue_green_needs_a_challenger_only_when_it_is_live():
    assert not TrafficPlan(mode=TrafficMode.BLUE_GREEN).needs_challenger
    green = TrafficPlan(mode=TrafficMode.BLUE_GREEN, live=Arm.CHALLENGER)
    assert green.needs_challenger
    assert route_request(green, 0.3) == route_request(green, 0.9)
    assert route_request(green, 0.3).answer is Arm.CHALLENGER


def test_weighted_arm_boundaries():
    assert weighted_arm(10, 0.0999) is Arm.CHALLENGER
    assert weighted_arm(10, 0.1) is Arm.CHAMPION
    assert weighted_arm(0, 0.0) is Arm.CHAMPION
    assert weighted_arm(100, 0.99999) is Arm.CHALLENGER


def test_canary_split_matches_the_weight_within_statistical_tolerance():
    plan = TrafficPlan(challenger_percent=10)
    rng = random.Random(3)
    n = 20_000
    share = sum(route_request(plan, rng.random()).answer is Arm.CHALLENGER for _ in range(n)) / n
    assert abs(share - 0.10) < 4 * (0.1 * 0.9 / n) ** 0.5


def test_sticky_assignment_is_deterministic_balanced_and_salted():
    entities = [f"cust-{i}" for i in range(20_000)]
    arms = [sticky_arm(e, 30) for e in entities]
    assert arms == [sticky_arm(e, 30) for e in entities]  # same entity, same arm, every call
    share = arms.count(Arm.CHALLENGER) / len(arms)
    assert abs(share - 0.30) < 4 * (0.3 * 0.7 / len(arms)) ** 0.5
    assert 0 <= sticky_draw("x") < 1
    reshuffled = [sticky_arm(e, 30, salt="second-test") for e in entities]
    assert reshuffled != arms


def test_raising_the_ab_share_only_moves_entities_to_the_challenger():
    entities = [f"e{i}" for i in range(5_000)]
    at_10 = {e for e in entities if sticky_arm(e, 10) is Arm.CHALLENGER}
    at_50 = {e for e in entities if sticky_arm(e, 50) is Arm.CHALLENGER}
    assert at_10 <= at_50


def test_ab_routing_sends_keyless_requests_and_missing_challengers_to_the_champion():
    plan = TrafficPlan(mode=TrafficMode.AB, challenger_percent=50, sticky_key="field:entity_id")
    assert route_entity(plan, None).answer is Arm.CHAMPION
    challenger_entity = next(f"c{i}" for i in range(100) if sticky_arm(f"c{i}", 50) is Arm.CHALLENGER)
    assert route_entity(plan, challenger_entity).answer is Arm.CHALLENGER
    assert route_entity(plan, challenger_entity, challenger_available=False).answer is Arm.CHAMPION
    with pytest.raises(TrafficError, match="route_entity"):
        route_request(plan, 0.5)


def test_shadow_copies_the_given_share_and_the_champion_always_answers():
    plan = TrafficPlan(mode=TrafficMode.SHADOW, challenger_percent=25)
    routes = [route_request(plan, i / 1000) for i in range(1000)]
    assert all(r.answer is Arm.CHAMPION for r in routes)
    assert sum(r.shadow is Arm.CHALLENGER for r in routes) == 250
    assert route_request(plan, 0.0, challenger_available=False).shadow is None


def test_forced_arm():
    assert parse_forced_arm(" Challenger ") is Arm.CHALLENGER
    with pytest.raises(TrafficError, match="use 'champion' or 'challenger'"):
        parse_forced_arm("blue")
    assert route_forced(Arm.CHALLENGER, challenger_available=True).forced
    with pytest.raises(TrafficError, match="no challenger loaded"):
        route_forced(Arm.CHALLENGER, challenger_available=False)
