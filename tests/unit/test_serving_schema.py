"""Request validation: the quick pass for plain numbers gives what the full check gives."""

from __future__ import annotations

import itertools
import math

import pytest

from steward.serving.schema import InputSchema, Payload, RequestError
from steward.spec import OutOfRangePolicy, parse_spec

SPEC = parse_spec({
    "name": "validation-test",
    "task": "binary_classification",
    "target": "y",
    "features": [
        {"name": "ratio", "type": "numeric", "min": 0, "max": 5, "nullable": True},
        {"name": "count", "type": "integer", "min": 0, "max": 50},
        {"name": "free", "type": "numeric"},
    ],
    "data": {"kind": "file", "path": "unused.parquet"},
    "estimator": {"factory": "steward.estimators:tabular_pipeline"},
})

VALUES = [0.0, 2.5, 5.0, -0.0, 3, 7, 50, 51, -1, 1.5, 10**400, 2**60, float("nan"), math.inf, -math.inf, None,
          True, "4", 1e308, -1e308]


def outcome(schema: InputSchema, columns: dict) -> tuple:
    payload = Payload(columns, len(next(iter(columns.values()))))
    try:
        values = schema.validate(payload)
    except RequestError as error:
        return ("refused", error.message)
    return ("accepted", {k: [repr(v) for v in column] for k, column in values.items()})


@pytest.mark.parametrize("policy", list(OutOfRangePolicy))
def test_the_quick_pass_agrees_with_the_full_check(policy, monkeypatch):
    schema = InputSchema(SPEC, out_of_range=policy)
    cases = [{"ratio": [a], "count": [b], "free": [c]} for a, b, c in itertools.product(VALUES, VALUES[:12], VALUES)]
    cases += [{"ratio": VALUES[:4], "count": [1, 2.0, 3, 4], "free": [1e9, -1e9, 0.5, 2]}]
    quick = [outcome(schema, case) for case in cases]
    monkeypatch.setattr(InputSchema, "_plain_numbers", lambda self, rule, column: None)
    full = [outcome(schema, case) for case in cases]
    assert quick == full
    assert sum(1 for verdict, _ in quick if verdict == "accepted") > 50
