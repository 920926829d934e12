"""The ``champion`` and ``challenger`` aliases, the traffic plan, and the audit history MLflow does not keep.

MLflow keeps only an alias's current value, so every change is also an audit entry: one run per change
in the ``steward-audit`` experiment, which survives restarts, is shared by every process that uses the
same tracking server, and is searchable in the MLflow UI. Retention archives by tag, never by deleting.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from steward.registry.adoption import MANAGED_TAG, AliasNames
from steward.registry.errors import RegistryError
from steward.registry.history import (
    CHALLENGER,
    CHAMPION,
    AuditEntry,
    ChangeKind,
    RetentionDecision,
    rollback_target,
    select_for_archive,
)
from steward.registry.registration import truncate_tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from steward.registry.traffic import ServingState, TrafficPlan

AUDIT_EXPERIMENT = "steward-audit"
TRAFFIC_PLAN_TAG = "steward.traffic_plan"


class AliasMixin:
    """The alias half of :class:`~steward.registry.adapter.Registry` (it provides the client and reads)."""

    _client: MlflowClient
    _mlflow: Any
    actor: str

    def _record(self, entry: AuditEntry) -> AuditEntry:
        tags = {
            "steward.model": entry.model,
            "steward.kind": entry.kind.value,
            "steward.actor": entry.actor,
            "steward.reason": truncate_tag(entry.reason),
            "steward.alias": entry.alias or "",
            "steward.from_version": entry.from_version or "",
            "steward.to_version": entry.to_version or "",
            "steward.time": entry.time.isoformat(),
            "steward.sequence": str(entry.sequence),
            "steward.details": truncate_tag(json.dumps(entry.details, sort_keys=True)),
        }
        title = f"{entry.model}: {entry.kind.value}" + (f" {entry.alias} -> v{entry.to_version}" if entry.alias else "")
        run = self._client.create_run(self._experiment_id(AUDIT_EXPERIMENT), run_name=title, tags=tags)
        self._client.set_terminated(run.info.run_id)
        if entry.alias or entry.kind is ChangeKind.TRAFFIC_PLAN:
            self._seal_serving_state(entry.model, entry.sequence)
        return entry

    def _seal_serving_state(self, model: str, sequence: int) -> None:
        """Sign what now serves, tied to the audit entry's sequence, so gateways can tell it was Steward."""
        from steward.control import SEAL_TAG, seal

        key = getattr(self, "control_key", None)
        if not key:
            return
        aliases, tags = self._model_state(model)
        self._set_model_tag(model, SEAL_TAG, seal(key, model, aliases.get(CHAMPION), aliases.get(CHALLENGER),
                                                  tags.get(TRAFFIC_PLAN_TAG, ""), sequence))

    # Storage primitives: the only alias-side calls that touch MLflow, so a fake overrides these and keeps the policy.
    # Steward's roles (champion, challenger) are translated to the model's MLflow alias names here and in
    # ``Registry.alias_version`` / ``_info`` only: the rest of Steward speaks in roles.
    def _raw_model_state(self, model: str) -> tuple[dict[str, str], dict[str, str]]:
        """The model's MLflow aliases (as MLflow names them) and tags, from one registry read."""
        try:
            registered = self._client.get_registered_model(model)
        except self._mlflow.exceptions.MlflowException:
            raise RegistryError(f"no model named {model!r} in the registry; train one with `steward train`") from None
        return {alias: str(version) for alias, version in (registered.aliases or {}).items()}, dict(registered.tags or {})

    def _model_state(self, model: str) -> tuple[dict[str, str], dict[str, str]]:
        """Steward's roles and the versions they name, and the model's tags, from one registry read.

        A model Steward does not maintain has no roles: a team's own ``champion`` alias is not Steward's.
        """
        aliases, tags = self._raw_model_state(model)
        return (AliasNames.from_tags(tags).roles(aliases) if tags.get(MANAGED_TAG) == "true" else {}), tags

    def _refuse_unmanaged(self, model: str, tags: dict[str, str], change: str) -> None:
        if tags.get(MANAGED_TAG) != "true":
            raise RegistryError(f"{model} is not maintained by Steward, so Steward does not {change}; bring it under "
                                f"maintenance first with `steward adopt {model} --spec ...`")

    def alias_names(self, model: str) -> AliasNames:
        """The MLflow alias names of Steward's roles on ``model`` (recorded when Steward took it over)."""
        return AliasNames.from_tags(self._raw_model_state(model)[1])

    def _set_model_tag(self, model: str, key: str, value: str) -> None:
        self._refuse_unmanaged(model, self._raw_model_state(model)[1], f"set its {key}")
        self._client.set_registered_model_tag(model, key, value)

    def _write_alias(self, model: str, alias: str, version: str) -> None:
        tags = self._raw_model_state(model)[1]
        self._refuse_unmanaged(model, tags, f"move its {alias} alias")
        self._client.set_registered_model_alias(model, AliasNames.from_tags(tags).to_mlflow(alias), version)

    def _delete_alias(self, model: str, alias: str) -> None:
        tags = self._raw_model_state(model)[1]
        self._refuse_unmanaged(model, tags, f"clear its {alias} alias")
        self._client.delete_registered_model_alias(model, AliasNames.from_tags(tags).to_mlflow(alias))

    def record(
        self,
        model: str,
        kind: ChangeKind,
        reason: str,
        *,
        actor: str | None = None,
        alias: str | None = None,
        from_version: str | None = None,
        to_version: str | None = None,
        details: dict[str, str] | None = None,
    ) -> AuditEntry:
        """Append an entry to the model's audit history."""
        return self._record(
            AuditEntry(
                time=datetime.now(UTC), model=model, kind=kind, actor=actor or self.actor, reason=reason,
                alias=alias, from_version=from_version, to_version=to_version, details=details or {},
                sequence=time.time_ns(),
            )
        )

    def history(self, model: str) -> list[AuditEntry]:
        """Every recorded change of the model, oldest first."""
        experiment = self._client.get_experiment_by_name(AUDIT_EXPERIMENT)
        if experiment is None:
            return []
        entries, token = [], None
        while True:
            page = self._client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`steward.model` = '{model}'",
                max_results=1000, page_token=token,
            )
            for run in page:
                tags = run.data.tags
                entries.append(
                    AuditEntry(
                        time=datetime.fromisoformat(tags["steward.time"]),
                        model=model,
                        kind=ChangeKind(tags["steward.kind"]),
                        actor=tags.get("steward.actor", ""),
                        reason=tags.get("steward.reason", ""),
                        alias=tags.get("steward.alias") or None,
                        from_version=tags.get("steward.from_version") or None,
                        to_version=tags.get("steward.to_version") or None,
                        details=json.loads(tags.get("steward.details", "{}")),
                        sequence=int(tags.get("steward.sequence", "0")),
                    )
                )
            token = page.token
            if not token:
                break
        return sorted(entries, key=lambda e: e.sequence)

    def set_alias(
        self, model: str, alias: str, version: str, *, reason: str, kind: ChangeKind, actor: str | None = None
    ) -> AuditEntry:
        """Point ``alias`` at ``version`` and record who did it and why."""
        info = self.get_version(model, version)
        if info.archived:
            raise RegistryError(
                f"{model} v{version} is archived ({info.tags.get('steward.archived_reason', 'no reason recorded')}); "
                "an archived version cannot take an alias"
            )
        previous = self.alias_version(model, alias)
        self._write_alias(model, alias, str(version))
        return self.record(model, kind, reason, actor=actor, alias=alias, from_version=previous, to_version=str(version))

    def clear_alias(self, model: str, alias: str, *, reason: str, actor: str | None = None) -> AuditEntry | None:
        previous = self.alias_version(model, alias)
        if previous is None:
            return None
        self._delete_alias(model, alias)
        return self.record(model, ChangeKind.ASSIGN, reason, actor=actor, alias=alias, from_version=previous)

    def promote(self, model: str, version: str, *, reason: str, actor: str | None = None) -> AuditEntry:
        """Make ``version`` the champion; the old champion stays loadable as the rollback target."""
        info = self.get_version(model, version)
        if info.tags.get("steward.validation.status") != "passed":
            raise RegistryError(
                f"{model} v{version} has not passed validation "
                f"(status: {info.tags.get('steward.validation.status', 'never validated')}); "
                f"run `steward validate --version {version}` first"
            )
        current = self.alias_version(model, CHAMPION)
        if current == str(version):
            raise RegistryError(f"{model} v{version} is already the champion")
        kind = ChangeKind.BOOTSTRAP if current is None else ChangeKind.PROMOTE
        entry = self.set_alias(model, CHAMPION, version, reason=reason, kind=kind, actor=actor)
        if current is not None:
            self.set_version_tags(model, current, {"steward.stage": "retired"})
        if self.alias_version(model, CHALLENGER) == str(version):
            self.clear_alias(model, CHALLENGER, reason=f"v{version} became champion", actor=actor)
        self.set_version_tags(model, version, {"steward.stage": "champion"})
        return entry

    def rollback_target(self, model: str) -> str | None:
        unavailable = {v.version for v in self.list_versions(model) if v.archived or v.stage == "rejected"}
        return rollback_target(self.history(model), unavailable)

    def rollback(self, model: str, *, reason: str, actor: str | None = None) -> AuditEntry:
        """Return the champion alias to the previous champion, in one step."""
        current = self.alias_version(model, CHAMPION)
        if current is None:
            raise RegistryError(f"{model!r} has no champion, so there is nothing to roll back")
        target = self.rollback_target(model)
        if target is None:
            raise RegistryError(
                f"{model} has no earlier champion to roll back to (champion is v{current}); "
                "promote a specific version with `steward promote` instead"
            )
        self.verify_version(model, target)
        entry = self.set_alias(model, CHAMPION, target, reason=reason, kind=ChangeKind.ROLLBACK, actor=actor)
        self.set_version_tags(model, current, {"steward.stage": "rolled_back", "steward.rolled_back_reason": reason})
        self.set_version_tags(model, target, {"steward.stage": "champion"})
        return entry

    def apply_retention(self, model: str, *, keep_champions: int = 3, keep_recent: int = 3) -> RetentionDecision:
        """Tag old versions archived; aliased versions and the rollback path are never touched, nor are the
        versions of a model Steward does not maintain."""
        self._refuse_unmanaged(model, self._model_state(model)[1], "archive its versions")
        versions = [v for v in self.list_versions(model) if not v.archived]
        protected = {v.version for v in versions if v.aliases}
        decision = select_for_archive(
            [v.version for v in versions], self.history(model), protected,
            keep_champions=keep_champions, keep_recent=keep_recent,
        )
        for version in decision.archive:
            reason = decision.reasons[version]
            self.set_version_tags(model, version, {"steward.archived": "true", "steward.archived_reason": reason})
            self.record(model, ChangeKind.ARCHIVE, reason, to_version=version)
        return decision

    # The gateway's view of a model: its aliases and traffic plan, read in one call so that every
    # replica polling the registry sees a consistent pair. The plan is stored as a registered-model
    # tag; each change is an audit entry like an alias move.
    def get_traffic_plan(self, model: str) -> TrafficPlan:
        """The model's stored traffic plan; the default (all to the champion) when none is set."""
        from steward.registry.traffic import DEFAULT_PLAN, parse_plan

        text = self._model_state(model)[1].get(TRAFFIC_PLAN_TAG)
        return parse_plan(text, source=f"{model}'s stored traffic plan") if text else DEFAULT_PLAN

    def set_traffic_plan(
        self, model: str, plan: TrafficPlan, *, reason: str, actor: str | None = None
    ) -> AuditEntry:
        """Store ``plan`` for ``model`` and record who changed it and why; gateways follow it."""
        from steward.registry.traffic import TrafficMode

        previous = self.get_traffic_plan(model)
        challenger = self.alias_version(model, CHALLENGER)
        if plan.needs_challenger and challenger is None:
            raise RegistryError(
                f"{model} has no challenger, so a plan that sends traffic to one cannot apply "
                f"({plan.describe()}); validate a candidate first (`steward validate`), which makes it the challenger"
            )
        document = plan.model_dump_json()
        self._set_model_tag(model, TRAFFIC_PLAN_TAG, document)
        return self.record(
            model, ChangeKind.TRAFFIC_PLAN, reason, actor=actor,
            from_version=self.alias_version(model, CHAMPION),
            to_version=challenger if plan.needs_challenger or plan.mode is TrafficMode.SHADOW else None,
            details={"plan": document, "previous": previous.model_dump_json(), "summary": plan.describe()},
        )

    def serving_state(self, model: str) -> ServingState:
        """Aliases and traffic plan of ``model`` from a single registry read."""
        from steward.registry.traffic import DEFAULT_PLAN, ServingState, TrafficError, parse_plan

        aliases, tags = self._model_state(model)
        text = tags.get(TRAFFIC_PLAN_TAG)
        plan, plan_error = DEFAULT_PLAN, None
        if text:
            try:
                plan = parse_plan(text, source=f"{model}'s stored traffic plan")
            except TrafficError as error:
                plan, plan_error = None, str(error)
        return ServingState(aliases.get(CHAMPION), aliases.get(CHALLENGER), plan, plan_error,
                            plan_text=text or "", seal=tags.get("steward.serving_seal"))
