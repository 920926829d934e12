"""Taking over a model version that plain MLflow code registered: the decisions, without MLflow.

Adoption checks the version's signature against the spec (or writes a spec from the signature), checks the
reference and hold-out sets against the spec, refuses alias names the team already uses, and records the
lineage MLflow holds with what is missing. Everything here is pure; ``Registry`` reads and writes MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd

from steward.registry.errors import RegistryError
from steward.registry.history import CHALLENGER, CHAMPION

MANAGED_TAG = "steward.managed"
ALIAS_TAG_PREFIX = "steward.alias."  # registered-model tags: steward.alias.champion = <the MLflow alias name>


class AdoptionCode(StrEnum):
    """Why a version cannot be adopted (each refusal leaves the registry as it was)."""

    NO_SIGNATURE = "no_signature"
    SIGNATURE_MISMATCH = "signature_mismatch"
    UNLOADABLE = "unloadable"
    DATA_MISMATCH = "data_mismatch"
    ALIAS_CLASH = "alias_clash"
    ALREADY_MANAGED = "already_managed"
    NAME_MISMATCH = "name_mismatch"
    NO_SUCH_VERSION = "no_such_version"
    NO_SCORES = "no_scores"


class AdoptionError(RegistryError):
    """A version that cannot be adopted as asked; ``code`` says which check refused it."""

    def __init__(self, code: AdoptionCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------- alias names
@dataclass(frozen=True)
class AliasNames:
    """The MLflow alias names that carry Steward's two roles for one model (default: the roles' own names)."""

    champion: str = CHAMPION
    challenger: str = CHALLENGER

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> AliasNames:
        return cls(tags.get(ALIAS_TAG_PREFIX + CHAMPION) or CHAMPION, tags.get(ALIAS_TAG_PREFIX + CHALLENGER) or CHALLENGER)

    def as_tags(self) -> dict[str, str]:
        return {ALIAS_TAG_PREFIX + CHAMPION: self.champion, ALIAS_TAG_PREFIX + CHALLENGER: self.challenger}

    def to_mlflow(self, role: str) -> str:
        """The MLflow alias for a Steward role; any other alias name is used as it is."""
        return {CHAMPION: self.champion, CHALLENGER: self.challenger}.get(role, role)

    def roles(self, mlflow_aliases: Mapping[str, Any]) -> dict[str, str]:
        """Steward's roles and the versions they point at, from the model's MLflow aliases."""
        found = {}
        for role in (CHAMPION, CHALLENGER):
            version = mlflow_aliases.get(self.to_mlflow(role))
            if version is not None:
                found[role] = str(version)
        return found

    def describe(self, mlflow_alias: str) -> str:
        """How a version's MLflow alias is shown: a Steward role by its role's name, a team alias as it is."""
        for role in (CHAMPION, CHALLENGER):
            if mlflow_alias == self.to_mlflow(role):
                return role
        return f"{mlflow_alias} (team)" if mlflow_alias in (CHAMPION, CHALLENGER) else mlflow_alias


def alias_clashes(existing: Mapping[str, Any], names: AliasNames, *, managed: bool) -> list[str]:
    """Refusals for alias names Steward would move that the team already uses on this model.

    A model Steward already manages owns its alias names; on a model it does not, any existing alias with
    one of Steward's names belongs to the team, and moving it would change what the team's code loads.
    """
    if managed:
        return []
    return [
        f"the model already has an alias {name!r} (on v{existing[name]}) that Steward would move as its {role}; "
        f"set registry.{role}_alias in the spec to a name the team does not use (e.g. 'steward-{role}')"
        for role, name in ((CHAMPION, names.champion), (CHALLENGER, names.challenger)) if name in existing
    ]


# ---------------------------------------------------------------------------------------------- signature
@dataclass(frozen=True)
class SignatureColumn:
    """One input column of an MLflow signature: its name, its MLflow type (double, long, string, ...)."""

    name: str
    type: str
    required: bool = True


NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
TEXT_TYPES = frozenset({"string", "binary"})


def spec_type_fits(feature_type: str, signature_type: str) -> bool:
    """Whether a spec feature type accepts what the signature declares."""
    if feature_type in ("numeric", "integer"):
        return signature_type in NUMERIC_TYPES
    if feature_type == "boolean":
        return signature_type in ("boolean", *TEXT_TYPES)
    return signature_type in TEXT_TYPES or signature_type in ("long", "integer")  # coded categories


def signature_mismatches(columns: Sequence[SignatureColumn], features: Mapping[str, str]) -> list[str]:
    """Where a signature and the spec's features (``name -> type``) disagree, one line each."""
    declared = {column.name: column for column in columns}
    problems = [f"the spec's feature {name!r} is not an input of the model's signature"
                for name in features if name not in declared]
    problems += [f"the model's signature requires {column.name!r} ({column.type}), which the spec does not list"
                 for column in columns if column.required and column.name not in features]
    problems += [
        f"{name!r} is {kind} in the spec but {declared[name].type} in the model's signature"
        for name, kind in features.items() if name in declared and not spec_type_fits(kind, declared[name].type)
    ]
    return problems


def feature_type_of(signature_type: str) -> str:
    if signature_type in ("double", "float"):
        return "numeric"
    if signature_type in ("long", "integer"):
        return "integer"
    if signature_type == "boolean":
        return "boolean"
    return "categorical"


def spec_document_from_signature(
    name: str, columns: Sequence[SignatureColumn], *, target: str, task: str, data_path: str | None = None,
    score_column: str | None = None, champion_alias: str = CHAMPION, challenger_alias: str = CHALLENGER,
) -> dict[str, Any]:
    """A spec for a model, written from its signature for the user to review (``steward init --from-model``).

    The signature says the inputs; the target and the task it cannot say, so they are asked for.
    """
    if not columns:
        raise AdoptionError(AdoptionCode.NO_SIGNATURE, f"{name} has no input signature to write a spec from; "
                                                       "write the spec's features by hand")
    features = []
    for column in columns:
        feature: dict[str, Any] = {"name": column.name, "type": feature_type_of(column.type)}
        if not column.required:
            feature["nullable"] = True
        features.append(feature)
    document: dict[str, Any] = {
        "name": name, "task": task, "target": target, "features": features,
        "data": {"kind": "file", "path": data_path or "REPLACE: training data (Parquet or CSV, any fsspec URL)"},
    }
    if score_column:
        document["estimator"] = {"score_column": score_column}
    if (champion_alias, challenger_alias) != (CHAMPION, CHALLENGER):
        document["registry"] = {"champion_alias": champion_alias, "challenger_alias": challenger_alias}
    return document


# ---------------------------------------------------------------------------------------------- data
def frame_problems(frame: pd.DataFrame, required: Sequence[str], role: str, source: str) -> list[str]:
    """What keeps a reference or hold-out set from being used: missing columns, no rows."""
    missing = [column for column in required if column not in frame.columns]
    problems = []
    if missing:
        problems.append(f"the {role} set at {source} lacks the columns {missing} that the spec requires")
    if frame.empty:
        problems.append(f"the {role} set at {source} has no rows")
    return problems


# ---------------------------------------------------------------------------------------------- lineage
LINEAGE_FACTS = ("source run", "parameters", "metrics", "dataset inputs", "code version", "signature")


@dataclass(frozen=True)
class AdoptedLineage:
    """What MLflow already knows about where an adopted version came from, and what it does not."""

    source_run_id: str | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()  # "name (digest, source)" of each dataset input of the run
    code_version: str | None = None  # the run's git commit, where MLflow recorded one
    has_signature: bool = True

    @property
    def missing(self) -> tuple[str, ...]:
        present = {
            "source run": self.source_run_id is not None, "parameters": bool(self.params),
            "metrics": bool(self.metrics), "dataset inputs": bool(self.datasets),
            "code version": self.code_version is not None, "signature": self.has_signature,
        }
        return tuple(fact for fact in LINEAGE_FACTS if not present[fact])

    def as_tags(self) -> dict[str, str]:
        import json

        return {
            "steward.adopted.source_run": self.source_run_id or "",
            "steward.adopted.params": json.dumps(self.params, sort_keys=True),
            "steward.adopted.metrics": json.dumps(self.metrics, sort_keys=True),
            "steward.adopted.datasets": json.dumps(list(self.datasets)),
            "steward.adopted.missing": ", ".join(self.missing) or "nothing",
            "steward.code_version": self.code_version or "unknown (not recorded by the team's run)",
        }

    def describe(self) -> str:
        known = f"run {self.source_run_id}" if self.source_run_id else "no source run"
        return (f"{known}; {len(self.params)} parameters, {len(self.metrics)} metrics, "
                f"{len(self.datasets)} dataset inputs; missing: {', '.join(self.missing) or 'nothing'}")
