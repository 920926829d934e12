"""Names of the events Steward emits; plain strings so the library stays free of Prefect."""

from __future__ import annotations

CANDIDATE_VALIDATED = "steward.model.candidate-validated"
CANDIDATE_REJECTED = "steward.model.candidate-rejected"
PROMOTED = "steward.model.promoted"
ROLLED_BACK = "steward.model.rolled-back"
DRIFT_DETECTED = "steward.model.drift-detected"
HEALTH_DEGRADED = "steward.model.health-degraded"


def resource_id(model: str) -> str:
    """The Prefect resource id every event about ``model`` carries."""
    return f"steward.model.{model}"
