"""Names of the events Steward emits; plain strings so the library stays free of Prefect."""

from __future__ import annotations

CANDIDATE_REGISTERED = "steward.model.candidate-registered"
CANDIDATE_VALIDATED = "steward.model.candidate-validated"
AB_TEST_CONCLUDED = "steward.model.ab-test-concluded"
CANDIDATE_REJECTED = "steward.model.candidate-rejected"
PROMOTED = "steward.model.promoted"
ROLLED_BACK = "steward.model.rolled-back"
DRIFT_DETECTED = "steward.model.drift-detected"
HEALTH_DEGRADED = "steward.model.health-degraded"

# Resource label of health-degraded events: the degraded areas, comma-separated, so a trigger
# (which can match labels but not the payload) can react to accuracy alone.
HEALTH_AREAS_LABEL = "steward.health.degraded-areas"

# Resource label of every event that can call for a retrain (drift-detected, health-degraded):
# "wanted" when it does (drift; degraded accuracy), "not-needed" otherwise. One trigger matches it
# for both events, so drift and an accuracy loss found by the same maintenance run share one
# debounce bucket and start one retrain.
RETRAIN_LABEL = "steward.retrain"


def retrain_label(wanted: bool) -> dict[str, str]:
    return {RETRAIN_LABEL: "wanted" if wanted else "not-needed"}


def resource_id(model: str) -> str:
    """The Prefect resource id every event about ``model`` carries."""
    return f"steward.model.{model}"
