"""Signatures that let a gateway tell Steward's own registry changes from anyone else's.

MLflow's users can write aliases and tags; they do not hold the control key (``STEWARD_CONTROL_KEY``),
which only Steward's processes get from their environment. With it, every change Steward makes to
what serves (an alias move or a traffic plan, each with its audit entry) writes a *seal*: an HMAC
over the model's champion, challenger, plan and the audit entry's sequence. Every validation
record that passes is signed over the model, version, status and artifact digest. A gateway
holding the key follows a serving state only when its seal verifies and is not older than the one
it follows, and loads only versions whose validation signature verifies. Pure: no MLflow here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import StrEnum

SEAL_TAG = "steward.serving_seal"
VALIDATION_STATUS_TAG = "steward.validation.status"
VALIDATION_SIGNATURE_TAG = "steward.validation.signature"
DIGEST_TAG = "steward.artifact_digest"


class SealCheck(StrEnum):
    VERIFIED = "verified"
    MISSING = "missing"  # no seal: written by something without the key
    FORGED = "forged"  # a seal whose signature does not verify
    MISMATCH = "mismatch"  # a valid seal of another state: the aliases or plan were changed after it
    REPLAYED = "replayed"  # a valid seal older than the one the gateway follows


def _mac(key: str, *parts: str) -> str:
    return hmac.new(key.encode(), "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def _state_mac(key: str, model: str, champion: str | None, challenger: str | None, plan: str, sequence: int) -> str:
    return _mac(key, "serving", model, champion or "", challenger or "", plan, str(sequence))


def seal(key: str, model: str, champion: str | None, challenger: str | None, plan: str, sequence: int) -> str:
    """The seal tag's value for this serving state (``plan``: the stored plan tag's text, "" for none)."""
    return json.dumps({"champion": champion, "challenger": challenger, "plan_sha256": hashlib.sha256(plan.encode()).hexdigest(),
                       "sequence": sequence, "mac": _state_mac(key, model, champion, challenger, plan, sequence)},
                      sort_keys=True)


@dataclass(frozen=True)
class SealResult:
    check: SealCheck
    sequence: int = 0

    @property
    def verified(self) -> bool:
        return self.check is SealCheck.VERIFIED


def verify_seal(key: str, model: str, champion: str | None, challenger: str | None, plan: str,
                seal_text: str | None, *, followed_sequence: int = 0) -> SealResult:
    """Whether the seal was written by a holder of ``key`` for exactly this state, and is not older than followed."""
    if not seal_text:
        return SealResult(SealCheck.MISSING)
    try:
        document = json.loads(seal_text)
        sequence = int(document["sequence"])
        mac = str(document["mac"])
        sealed = (document["champion"], document["challenger"], str(document["plan_sha256"]))
    except (ValueError, KeyError, TypeError):
        return SealResult(SealCheck.FORGED)
    if sealed != (champion, challenger, hashlib.sha256(plan.encode()).hexdigest()):
        return SealResult(SealCheck.MISMATCH, sequence)
    if not hmac.compare_digest(mac, _state_mac(key, model, champion, challenger, plan, sequence)):
        return SealResult(SealCheck.FORGED, sequence)
    if sequence < followed_sequence:
        return SealResult(SealCheck.REPLAYED, sequence)
    return SealResult(SealCheck.VERIFIED, sequence)


def sign_validation(key: str, model: str, version: str, status: str, digest: str) -> str:
    return _mac(key, "validation", model, str(version), status, digest)


def validation_verifies(key: str, model: str, version: str, tags: dict[str, str]) -> bool:
    """A passed validation record signed by a holder of the key for this very version and artifact."""
    status, digest = tags.get(VALIDATION_STATUS_TAG), tags.get(DIGEST_TAG)
    signature = tags.get(VALIDATION_SIGNATURE_TAG, "")
    if status != "passed" or not digest:
        return False
    return hmac.compare_digest(signature, sign_validation(key, model, version, status, digest))
