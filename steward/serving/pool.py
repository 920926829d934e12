"""The models a gateway serves, loaded by alias, and the swap that changes them.

Each model's live state is one immutable ``Deployment`` (plan plus loaded arms). A request
takes the current deployment once and uses it to the end, so a swap never disturbs a request
in flight. A refresh reads the registry, loads (and digest-verifies) any version it does not
hold yet while the old deployment keeps serving, and only then replaces the reference.
"""

from __future__ import annotations

import collections
import gc
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from steward.registry.traffic import DEFAULT_PLAN, Arm, ServingState, TrafficPlan
from steward.serving.arms import LoadedArm, loaded_arm, measure_call_seconds, probe_row
from steward.serving.control import ControlVerifier
from steward.serving.schema import InputSchema
from steward.spec import OutOfRangePolicy

if TYPE_CHECKING:
    from steward.registry.adapter import Registry

log = logging.getLogger(__name__)

RETRY_FAILED_LOAD_SECONDS = 30.0


@dataclass(frozen=True)
class Deployment:
    """What serves one model right now; replaced as a whole, never changed in place."""

    model: str
    plan: TrafficPlan
    champion: LoadedArm | None
    challenger: LoadedArm | None
    generation: int
    since: datetime
    problems: tuple[str, ...] = ()

    def arm(self, arm: Arm) -> LoadedArm | None:
        return self.champion if arm is Arm.CHAMPION else self.challenger

    @property
    def ready(self) -> bool:
        """The champion is loaded, and so is the challenger when the plan sends it traffic."""
        if self.champion is None:
            return False
        return not self.plan.needs_challenger or self.challenger is not None

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ready": self.ready,
            "generation": self.generation,
            "since": self.since.isoformat(),
            "plan": self.plan.model_dump(mode="json"),
            "plan_summary": self.plan.describe(),
            "champion": self.champion.describe() if self.champion else None,
            "challenger": self.challenger.describe() if self.challenger else None,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class RefreshResult:
    model: str
    changed: bool
    generation: int
    problems: tuple[str, ...]
    seconds: float


@dataclass
class _FailedLoad:
    error: str
    at: float


@dataclass
class _ModelState:
    deployment: Deployment | None = None
    failed: dict[str, _FailedLoad] = field(default_factory=dict)


class ModelPool:
    """Loads model versions by alias from the registry and swaps deployments atomically."""

    def __init__(
        self,
        registry: Registry,
        models: tuple[str, ...],
        *,
        out_of_range: OutOfRangePolicy = OutOfRangePolicy.REJECT,
        warm_versions: int = 2,
        control: ControlVerifier | None = None,
    ) -> None:
        self.registry = registry
        self.control = control  # with a control key: follow only what Steward signed
        self.models = models
        self.out_of_range = out_of_range
        self.warm_versions = warm_versions
        self._states = {model: _ModelState() for model in models}
        self._deployments: dict[str, Deployment] = {}
        self._cache: collections.OrderedDict[tuple[str, str], LoadedArm] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.last_refresh: datetime | None = None
        self.last_error: str | None = None
        self.view_read_at: datetime | None = None  # start of the last refresh that read every model's state

    def get(self, model: str) -> Deployment | None:
        return self._deployments.get(model)

    @property
    def ready(self) -> bool:
        return all((d := self._deployments.get(m)) is not None and d.ready for m in self.models)

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for model in self.models:
            deployment = self._deployments.get(model)
            if deployment is None:
                failed = self._states[model].failed
                out.append({"model": model, "ready": False, "problems": [f.error for f in failed.values()]
                            or ["not loaded yet"]})
            else:
                out.append(deployment.describe())
        return out

    def refresh(self, model: str | None = None) -> list[RefreshResult]:
        """Bring one model (or all) in line with the registry; safe to call from any thread."""
        targets = (model,) if model else self.models
        results = []
        read_at = datetime.now(UTC)
        failed = False
        with self._lock:
            for name in targets:
                started = time.perf_counter()
                try:
                    results.append(self._refresh_one(name, started))
                except Exception as error:  # registry unreachable: keep serving what is loaded
                    failed = True
                    self.last_error = f"{name}: {type(error).__name__}: {error}"
                    log.error("refresh of %s failed: %s", name, error, extra={"event": "refresh_failed", "model": name})
                    current = self._deployments.get(name)
                    results.append(
                        RefreshResult(name, False, current.generation if current else 0, (self.last_error,),
                                      time.perf_counter() - started)
                    )
            self.last_refresh = datetime.now(UTC)
            if not failed and model is None:
                self.view_read_at = read_at
        return results

    def _refresh_one(self, model: str, started: float) -> RefreshResult:
        state = self.registry.serving_state(model)
        current = self._deployments.get(model)
        problems: list[str] = []
        if self.control is not None:
            screened, refused = self.control.screen(model, state)
            if screened is None:  # not Steward's change: keep serving the last verified state
                problems.append(refused)
                state = ServingState(current.champion.version if current and current.champion else None,
                                     current.challenger.version if current and current.challenger else None,
                                     current.plan if current else DEFAULT_PLAN)
        plan = state.plan
        if plan is None:
            plan = current.plan if current else DEFAULT_PLAN
            problems.append(f"stored plan ignored, still applying {plan.describe()!r}: {state.plan_error}")
        champion = self._arm(model, Arm.CHAMPION, state.champion, current, problems)
        challenger = self._arm(model, Arm.CHALLENGER, state.challenger, current, problems)
        if champion is None and state.champion is None:
            problems.append("the registry has no champion for this model: promote a version (`steward promote`)")
        if plan.needs_challenger and challenger is None:
            problems.append(f"the plan ({plan.describe()}) needs a challenger but none is loaded: all traffic goes to the champion")
        unchanged = (
            current is not None and current.plan == plan and current.champion is champion
            and current.challenger is challenger and current.problems == tuple(problems)
        )
        if unchanged:
            return RefreshResult(model, False, current.generation, current.problems, time.perf_counter() - started)
        deployment = Deployment(
            model, plan, champion, challenger, (current.generation if current else 0) + 1, datetime.now(UTC),
            tuple(problems),
        )
        self._deployments[model] = deployment  # the swap: one reference assignment
        self._trim_cache()
        log.info(
            "%s now serves champion %s, challenger %s, %s", model,
            f"v{champion.version}" if champion else "none", f"v{challenger.version}" if challenger else "none",
            plan.describe(),
            extra={"event": "deployment_changed", "model": model, "generation": deployment.generation,
                   "champion": champion.version if champion else None,
                   "challenger": challenger.version if challenger else None,
                   "plan": plan.model_dump(mode="json"), "problems": problems},
        )
        return RefreshResult(model, True, deployment.generation, deployment.problems, time.perf_counter() - started)

    def _arm(
        self, model: str, arm: Arm, version: str | None, current: Deployment | None, problems: list[str]
    ) -> LoadedArm | None:
        """The loaded arm for the version an alias names; on a failed load, what served before."""
        previous = current.arm(arm) if current else None
        if version is None:
            return None
        cached = self._cache.get((model, version))
        if cached is not None:
            self._cache.move_to_end((model, version))
            return cached
        failed = self._states[model].failed.get(version)
        if failed is None or time.monotonic() - failed.at >= RETRY_FAILED_LOAD_SECONDS:
            try:
                loaded = self._load(model, version)
            except Exception as error:
                failed = _FailedLoad(f"{type(error).__name__}: {error}", time.monotonic())
                self._states[model].failed[version] = failed
                log.error("cannot load %s v%s: %s", model, version, error,
                          extra={"event": "load_failed", "model": model, "version": version})
            else:
                self._states[model].failed.pop(version, None)
                self._cache[(model, version)] = loaded
                return loaded
        keep = f"still serving v{previous.version}" if previous else "nothing to serve instead"
        problems.append(f"{arm} alias points at v{version}, which failed to load ({failed.error}); {keep}")
        return previous

    def _load(self, model: str, version: str) -> LoadedArm:
        started = time.perf_counter()
        loaded = self.registry.load_model(model, version)  # verifies the artifact digest
        if self.control is not None:
            self.control.check_version(model, version, loaded.version.tags)
        spec = self.registry.version_spec(model, version)
        label = f"{model} v{version}"
        schema = InputSchema.for_version(spec, loaded.version.input_schema, out_of_range=self.out_of_range, label=label)
        arm = loaded_arm(model, version, loaded.digest, loaded.model, spec, schema, started=started)
        if arm.compiled is None:
            log.info("%s is scored through its pipeline: %s", label, arm.plain_reason,
                     extra={"event": "pipeline_not_compiled", "model": model, "version": version})
        arm.score(probe_row(spec))  # a version that cannot answer a valid row never takes traffic
        arm = replace(arm, call_seconds=measure_call_seconds(arm))
        # A loaded model lives for many requests: move it (and everything imported so far) out
        # of the collector's reach, where full collections over it showed in the gateway's p99.
        gc.freeze()
        log.info("loaded %s (digest %s…) in %.2fs", label, loaded.digest[:12], arm.load_seconds,
                 extra={"event": "model_loaded", "model": model, "version": version, "digest": loaded.digest})
        return arm

    def _trim_cache(self) -> None:
        """Keep the serving arms plus the most recent ``warm_versions`` others (a rollback is then instant)."""
        active = {id(a) for d in self._deployments.values() for a in (d.champion, d.challenger) if a}
        spare = [key for key, arm in self._cache.items() if id(arm) not in active]
        for key in spare[: max(0, len(spare) - self.warm_versions * len(self.models))]:
            del self._cache[key]


@dataclass(frozen=True)
class RegistryView:
    """How current the gateway's view of the registry is: what /readyz, /admin/status and /metrics report."""

    read_at: datetime | None  # None: never read
    age_seconds: float | None
    stale: bool
    last_error: str | None
    stalled_polls: int

    def describe(self) -> dict[str, Any]:
        return {"read_at": self.read_at.isoformat() if self.read_at else None, "age_seconds": self.age_seconds,
                "stale": self.stale, "last_error": self.last_error, "stalled_polls": self.stalled_polls}


class Poller:
    """Refreshes the pool every ``interval`` seconds in a background thread.

    Each poll runs in a thread of its own and is given ``timeout`` seconds: MLflow's HTTP
    client can retry for minutes, and a poll hung inside it must show as a stalled, aging view
    rather than as a frozen one. A stalled poll is waited for, not duplicated.
    """

    def __init__(self, pool: ModelPool, interval: float, timeout: float = 5.0, stale_after: float = 30.0) -> None:
        self.pool = pool
        self.interval = interval
        self.timeout = timeout
        self.stale_after = stale_after
        self.started_at = datetime.now(UTC)
        self.last_error: str | None = None
        self.stalled_polls = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.started_at = datetime.now(UTC)
        self._thread = threading.Thread(target=self._run, name="steward-registry-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = datetime.now(UTC)
            attempt = threading.Thread(target=self.pool.refresh, name="steward-registry-poll", daemon=True)
            attempt.start()
            attempt.join(self.timeout)
            if attempt.is_alive():
                self.stalled_polls += 1
                self.last_error = (f"a registry poll has run for more than {self.timeout:g}s (the registry is not "
                                   f"answering, or a version is still loading); serving the view read {self._age_text()}")
                log.error("registry poll stalled: %s", self.last_error, extra={"event": "registry_poll_stalled"})
                while attempt.is_alive() and not self._stop.is_set():
                    attempt.join(self.interval)
            if not attempt.is_alive():
                read = self.pool.view_read_at
                self.last_error = None if read is not None and read >= started else self.pool.last_error
            self._stop.wait(self.interval)

    def _age_text(self) -> str:
        age = self.view().age_seconds
        return "never" if age is None else f"{age:.0f}s ago"

    def view(self) -> RegistryView:
        read_at = self.pool.view_read_at
        since = read_at or self.started_at
        age = (datetime.now(UTC) - since).total_seconds()
        return RegistryView(read_at, round(age, 3) if read_at else None, age > self.stale_after, self.last_error,
                            self.stalled_polls)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
