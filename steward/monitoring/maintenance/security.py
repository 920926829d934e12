"""The monthly security audit: the admin token, artifact digests, stale aliases, versions past retention."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from steward.findings import CheckStatus, Finding, MaintenanceKind, Priority
from steward.registry.adapter import RegistryError, VersionInfo
from steward.registry.history import CHALLENGER, CHAMPION, AuditEntry, ChangeKind, select_for_archive

TOKEN_ISSUED_ENV = "STEWARD_ADMIN_TOKEN_ISSUED_AT"
MAX_TOKEN_AGE_DAYS = 90
MIN_TOKEN_CHARS = 32
STALE_CHALLENGER_DAYS = 14


@dataclass(frozen=True)
class AuditCheck:
    name: str
    status: CheckStatus
    detail: str
    findings: tuple[Finding, ...] = ()


def audit_admin_token(token: str | None, issued_at: str | None, now: datetime) -> list[AuditCheck]:
    """Admin authentication configured and strong enough, and the token's age if it is recorded."""
    source = "security-audit"
    if token is None:
        return [
            AuditCheck("admin authentication", CheckStatus.FAILED, "no admin token is configured", (Finding(
                "no admin token configured",
                "STEWARD_ADMIN_TOKEN is not set, so the gateway refuses every admin call: traffic plans, "
                "refreshes and forced arms cannot be used by the canary and rollback procedures. Set it from a "
                "secrets manager (never in the spec or an image).",
                MaintenanceKind.CORRECTIVE, Priority.MEDIUM, source, "security:admin-token",
            ),)),
            AuditCheck("admin token age", CheckStatus.NOT_MEASURABLE, "no token"),
        ]
    checks = []
    if len(token) < MIN_TOKEN_CHARS:
        checks.append(AuditCheck("admin authentication", CheckStatus.FAILED, f"token has {len(token)} characters", (
            Finding(
                "admin token is short",
                f"The admin token has {len(token)} characters (at least {MIN_TOKEN_CHARS} expected). Replace it "
                "with a random one, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.",
                MaintenanceKind.CORRECTIVE, Priority.HIGH, source, "security:admin-token-strength",
            ),
        )))
    else:
        checks.append(AuditCheck("admin authentication", CheckStatus.PASSED, f"token set ({len(token)} characters)"))
    if not issued_at:
        checks.append(AuditCheck(
            "admin token age", CheckStatus.NOT_MEASURABLE,
            f"when the token was issued is not recorded: set {TOKEN_ISSUED_ENV} (ISO date) beside the token",
        ))
        return checks
    try:
        issued = datetime.fromisoformat(issued_at)
    except ValueError:
        checks.append(AuditCheck("admin token age", CheckStatus.FAILED, f"{TOKEN_ISSUED_ENV}={issued_at!r}", (Finding(
            f"{TOKEN_ISSUED_ENV} is not a date",
            f"{TOKEN_ISSUED_ENV}={issued_at!r} is not an ISO date (2026-01-31 or 2026-01-31T12:00:00+00:00).",
            MaintenanceKind.CORRECTIVE, Priority.LOW, source, "security:token-date",
        ),)))
        return checks
    issued = issued if issued.tzinfo else issued.replace(tzinfo=UTC)
    age = (now - issued).days
    if age > MAX_TOKEN_AGE_DAYS:
        checks.append(AuditCheck("admin token age", CheckStatus.FAILED, f"{age} days", (Finding(
            f"admin token is {age} days old",
            f"Issued {issued:%Y-%m-%d}; rotate it every {MAX_TOKEN_AGE_DAYS} days: set a new STEWARD_ADMIN_TOKEN "
            f"and {TOKEN_ISSUED_ENV}, then restart the gateways.",
            MaintenanceKind.PREVENTIVE, Priority.HIGH, source, "security:token-age",
        ),)))
    else:
        checks.append(AuditCheck("admin token age", CheckStatus.PASSED, f"{age} days (limit {MAX_TOKEN_AGE_DAYS})"))
    return checks


def audit_digests(model: str, results: Mapping[str, tuple[str, str | None]]) -> list[AuditCheck]:
    """``results``: role (champion, challenger, rollback target) -> (version, error or None)."""
    checks = []
    for role, (version, error) in results.items():
        if error is None:
            checks.append(AuditCheck(f"artifact digest of {role} v{version}", CheckStatus.PASSED, "matches"))
            continue
        critical = role == CHAMPION
        checks.append(AuditCheck(f"artifact digest of {role} v{version}", CheckStatus.FAILED, error, (Finding(
            f"{role} v{version} failed its artifact digest check",
            f"{error} The stored model files of {model} v{version} no longer match what was registered: "
            + ("roll back (`steward rollback`) and investigate who changed the artifact store."
               if critical else "do not promote or roll back to it; re-register it from its run."),
            MaintenanceKind.CORRECTIVE, Priority.CRITICAL if critical else Priority.HIGH, "security-audit",
            f"security:digest:{version}", incident=critical,
        ),)))
    return checks


def find_stale_aliases(
    versions: Sequence[VersionInfo],
    history: Sequence[AuditEntry],
    active_versions: Iterable[str],
    now: datetime,
) -> AuditCheck:
    """Aliases that point somewhere they should not.

    Stale: an alias on an archived, rejected or rolled-back version; or a challenger assigned more
    than ``STALE_CHALLENGER_DAYS`` ago that took no traffic (served or shadow) in that time
    (``active_versions``: versions seen in the log over those days).
    """
    active = set(active_versions)
    problems: list[Finding] = []
    notes = []
    for info in versions:
        for alias in info.aliases:
            bad = "archived" if info.archived else info.stage if info.stage in ("rejected", "rolled_back") else None
            if bad:
                problems.append(Finding(
                    f"alias {alias} points at {bad} v{info.version}",
                    f"{info.model} v{info.version} is {bad} but still holds '{alias}'. Promote or assign a "
                    "current version, or clear the alias.",
                    MaintenanceKind.CORRECTIVE, Priority.HIGH, "security-audit", f"stale-alias:{alias}:{info.version}",
                ))
            notes.append(f"{alias} -> v{info.version}")
            if alias == CHALLENGER and not bad:
                moves = [e for e in history if e.alias == CHALLENGER and e.to_version == info.version]
                since = max((e.time for e in moves), default=info.created)
                idle = (now - since) > timedelta(days=STALE_CHALLENGER_DAYS)
                if idle and info.version not in active:
                    problems.append(Finding(
                        f"challenger v{info.version} is idle",
                        f"v{info.version} has been challenger since {since:%Y-%m-%d} and took no traffic in the "
                        f"last {STALE_CHALLENGER_DAYS} days. Start a canary or shadow run, or clear the alias.",
                        MaintenanceKind.PREVENTIVE, Priority.MEDIUM, "security-audit",
                        f"stale-alias:challenger:{info.version}",
                    ))
    detail = ", ".join(notes) or "no aliases"
    status = CheckStatus.FAILED if problems else CheckStatus.PASSED
    return AuditCheck("stale aliases", status, detail, tuple(problems))


def audit_retention(
    versions: Sequence[VersionInfo], history: Sequence[AuditEntry], *, keep_champions: int = 3, keep_recent: int = 3
) -> AuditCheck:
    """Versions that the retention policy would archive but are not archived yet."""
    live = [v for v in versions if not v.archived]
    decision = select_for_archive(
        [v.version for v in live], history, {v.version for v in live if v.aliases},
        keep_champions=keep_champions, keep_recent=keep_recent,
    )
    if not decision.archive:
        return AuditCheck("versions past retention", CheckStatus.PASSED, f"{len(live)} live versions, none past retention")
    listed = ", ".join(f"v{v}" for v in decision.archive)
    return AuditCheck("versions past retention", CheckStatus.FAILED, f"not archived: {listed}", (Finding(
        f"{len(decision.archive)} version(s) past retention not archived",
        f"{listed}: {decision.reasons[decision.archive[0]]}. Archived versions cannot take an alias by mistake.",
        MaintenanceKind.PREVENTIVE, Priority.LOW, "security-audit", "security:retention",
    ),))


def verify_digests(registry: Any, model: str) -> dict[str, tuple[str, str | None]]:
    """Role -> (version, error or None) for every version a rollback or promotion could reach, each checked once."""
    roles = {
        CHAMPION: registry.alias_version(model, CHAMPION),
        CHALLENGER: registry.alias_version(model, CHALLENGER),
        "rollback target": registry.rollback_target(model),
    }
    digests: dict[str, tuple[str, str | None]] = {}
    for role, version in roles.items():
        if version is None or any(v == version for v, _ in digests.values()):
            continue
        try:
            registry.verify_version(model, version)
            digests[role] = (version, None)
        except RegistryError as error:
            digests[role] = (version, str(error))
    return digests


def rollback_findings(history: Iterable[AuditEntry], since: datetime, until: datetime) -> list[Finding]:
    """Every rollback recorded in the registry's history in ``[since, until)`` is an incident."""
    return [
        Finding(
            f"rollback from v{e.from_version} to v{e.to_version}",
            f"{e.time:%Y-%m-%d %H:%M} UTC by {e.actor}: {e.reason}. Find the cause before promoting "
            f"v{e.from_version} (or a fix) again.",
            MaintenanceKind.CORRECTIVE, Priority.HIGH, "incident-review", f"incident:rollback:{e.sequence}",
            incident=True,
        )
        for e in history
        if e.kind is ChangeKind.ROLLBACK and since <= e.time < until
    ]
