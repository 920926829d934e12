"""The models a gateway serves, loaded by alias, and the swap that changes them.

Each model's live state is one immutable ``Deployment`` (plan plus loaded arms). A request
takes the current deployment once and uses it to the end, so a swap never disturbs a request
in flight. A refresh reads the registry, loads (and digest-verifies) any version it does not
hold yet while the old deployment keeps serving, and only then replaces the reference.
"""

from __future__ import annotations

import collections
import functools
import gc
import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from steward.delivery.traffic import DEFAULT_PLAN, Arm, TrafficPlan
from steward.serving.fastpath import (
    CompiledPipeline,
    Unsupported,
    compile_pipeline,
    default_output,
    stack_columns,
    verify,
)
from steward.serving.schema import InputSchema
from steward.spec import FeatureType, ModelSpec, OutOfRangePolicy, Task
from steward.store.records import label_text
from steward.training.data import feature_dtypes, prepare_arrays, prepare_features

if TYPE_CHECKING:
    from steward.registry.adapter import Registry

log = logging.getLogger(__name__)

RETRY_FAILED_LOAD_SECONDS = 30.0


@dataclass(frozen=True)
class Scored:
    """Model output for a batch of rows, ready for the response and the log."""

    predictions: list[Any]  # JSON-native: class labels or regression values
    labels: list[str]  # the same as text, for the log
    scores: list[float] | None  # P(positive class), or the regression value
    probabilities: list[list[float]] | None  # per class, multiclass only

    def slice(self, start: int, stop: int) -> Scored:
        return Scored(
            self.predictions[start:stop],
            self.labels[start:stop],
            self.scores[start:stop] if self.scores is not None else None,
            self.probabilities[start:stop] if self.probabilities is not None else None,
        )


class ModelInput:
    """Validated rows as a model's input, prepared once and shared by every version with the same features.

    Two forms, each built on first use: ``arrays`` (``prepare_arrays``: one numpy array per
    feature, and ``block(names, dtype)``, the 2-D blocks of them a compiled pipeline's
    transformers take) for versions whose pipeline is compiled, and ``frame``
    (``prepare_features``) for the others. ``rows(start, stop)`` is a slice that shares them.
    """

    __slots__ = ("_arrays", "_blocks", "_frame", "_source", "columns", "size", "spec", "start", "stop")

    def __init__(self, columns: dict[str, list[Any]], spec: ModelSpec, size: int | None = None) -> None:
        self.columns = columns
        self.spec = spec
        self.size = size if size is not None else (len(next(iter(columns.values()))) if columns else 0)
        self.start, self.stop = 0, self.size
        self._source: ModelInput | None = None
        self._arrays: dict[str, np.ndarray] | None = None
        self._blocks: dict[Any, np.ndarray] = {}
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return self.stop - self.start

    def rows(self, start: int, stop: int) -> ModelInput:
        if start == self.start and stop == self.stop:
            return self
        part = ModelInput.__new__(ModelInput)
        part.columns, part.spec, part.size = self.columns, self.spec, self.size
        part.start, part.stop = self.start + start, self.start + stop
        part._source = self._source or self
        part._arrays = part._frame = None
        part._blocks = {}
        return part

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            source = self._source
            if source is None:
                self._arrays = prepare_arrays(self.columns, self.spec)
            else:
                self._arrays = {name: a[self.start:self.stop] for name, a in source.arrays.items()}
        return self._arrays

    def block(self, names: tuple[str, ...], dtype: np.dtype) -> np.ndarray:
        source = self._source
        if source is not None:  # the whole batch's block, built once for every version scoring it
            return source.block(names, dtype)[self.start:self.stop]
        found = self._blocks.get((names, dtype))
        if found is None:
            found = self._blocks[(names, dtype)] = stack_columns(self.arrays, names, dtype)
        return found

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            source = self._source
            if source is None:
                self._frame = prepare_features(pd.DataFrame(self.columns), self.spec)
            else:
                self._frame = source.frame.iloc[self.start:self.stop]
        return self._frame


@dataclass(frozen=True, eq=False)
class LoadedArm:
    """One digest-verified model version, ready to score."""

    model: str
    version: str
    digest: str
    estimator: Any
    spec: ModelSpec
    schema: InputSchema
    loaded_at: datetime
    load_seconds: float
    classes: tuple[Any, ...] | None
    compiled: CompiledPipeline | None = None  # the same pipeline on numpy arrays (``fastpath``), when it applies
    plain_reason: str | None = None  # why it is scored through the pipeline itself, when it is
    call_seconds: float | None = None  # one model call on a batch of CALL_PROBE_ROWS rows, measured at load

    @functools.cached_property
    def feature_key(self) -> str:
        """The spec's features as one string: versions with equal keys share a ``ModelInput``."""
        return json.dumps([f.model_dump(mode="json") for f in self.spec.features])

    def prepare(self, columns: dict[str, list[Any]]) -> ModelInput:
        """Validated columns as the model's input; prepared like in training (``prepare_features``)."""
        return ModelInput(columns, self.spec)

    def predict(self, prepared: ModelInput) -> Scored:
        compiled = self.compiled if self.compiled is not None and default_output() else None
        if self.classes is None:
            raw = compiled.predict(prepared) if compiled else self.estimator.predict(prepared.frame)
            values = np.asarray(raw, dtype="float64").tolist()
            return Scored(values, [label_text(v) for v in values], values, None)
        # The class with the highest probability is the prediction, so prediction and score
        # always agree and the model runs once per batch.
        raw = compiled.predict_proba(prepared) if compiled else self.estimator.predict_proba(prepared.frame)
        probabilities = np.asarray(raw, dtype="float64")
        classes = self.classes
        picked = [classes[i] for i in probabilities.argmax(axis=1).tolist()]
        if len(classes) == 2:
            return Scored(picked, [label_text(c) for c in picked], probabilities[:, 1].tolist(), None)
        return Scored(picked, [label_text(c) for c in picked], probabilities.max(axis=1).tolist(), probabilities.tolist())

    def score(self, columns: dict[str, list[Any]]) -> Scored:
        return self.predict(self.prepare(columns))

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "digest": self.digest,
            "loaded_at": self.loaded_at.isoformat(),
            "load_seconds": round(self.load_seconds, 3),
            "schema_fingerprint": self.spec.schema_fingerprint(),
            "scoring": "compiled" if self.compiled else f"pipeline ({self.plain_reason})",
            "call_ms": round(self.call_seconds * 1000, 3) if self.call_seconds is not None else None,
        }


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


def probe_row(spec: ModelSpec) -> dict[str, list[Any]]:
    """One row the schema admits (mid-range numbers, first categories), to check a version answers."""
    row: dict[str, list[Any]] = {}
    for feature in spec.features:
        if feature.is_numeric:
            low, high = feature.min, feature.max
            value = (low + high) / 2 if low is not None and high is not None else low if low is not None else high
            row[feature.name] = [float(round(value)) if value is not None else 0.0]
        elif feature.type is FeatureType.BOOLEAN:
            row[feature.name] = ["false"]
        else:
            row[feature.name] = [feature.categories[0] if feature.categories else "unknown"]
    return row


def check_rows(spec: ModelSpec) -> dict[str, list[Any]]:
    """Rows that cover what requests can carry: each feature's bounds, missing values, every
    category and an unseen one; for comparing a compiled pipeline with the pipeline itself."""
    values: dict[str, list[Any]] = {}
    for feature in spec.features:
        if feature.is_numeric:
            low, high = feature.min, feature.max
            middle = probe_row(spec)[feature.name][0]
            options = [middle, 0.0, 1.0, -1.5, 123456.789, 1e-9]
            options = [v for v in options if (low is None or v >= low) and (high is None or v <= high)]
            options += [float(v) for v in (low, high) if v is not None]
            if feature.type is FeatureType.INTEGER:
                options = [float(round(v)) for v in options]
        elif feature.type is FeatureType.BOOLEAN:
            options = ["true", "false"]
        else:
            options = [*(feature.categories or []), "unknown", "__steward_unseen__"]
        if feature.nullable:
            options.append(None)
        values[feature.name] = options or [None]
    n = max(len(options) for options in values.values())
    return {name: [options[i % len(options)] for i in range(n)] for name, options in values.items()}


CALL_PROBE_ROWS = 16  # a batch's size at 16 connections
CALL_PROBE_REPEATS = 7


def measure_call_seconds(arm: LoadedArm) -> float:
    """How long one model call takes on a batch of ``CALL_PROBE_ROWS`` probe rows (the fastest of a few).

    The gateway decides from it where a challenger's shadow copies are scored (see
    ``steward.serving.shadow``): the fastest of several calls, so that a busy moment at load
    time does not make a quick version look slow.
    """
    columns = {name: values * CALL_PROBE_ROWS for name, values in probe_row(arm.spec).items()}
    best = float("inf")
    for _ in range(CALL_PROBE_REPEATS):
        started = time.perf_counter()
        arm.score(columns)
        best = min(best, time.perf_counter() - started)
    return best


def compile_arm(estimator: Any, spec: ModelSpec) -> tuple[CompiledPipeline | None, str | None]:
    """The compiled pipeline of a version, if it gives the same bits as the pipeline on ``check_rows``."""
    try:
        compiled = compile_pipeline(estimator, feature_dtypes(spec))
    except Unsupported as reason:
        return None, str(reason)
    rows = check_rows(spec)
    problem = None
    for columns in (rows, {name: values[:1] for name, values in rows.items()}):
        problem = verify(compiled, estimator, prepare_features(pd.DataFrame(columns), spec),
                         prepare_arrays(columns, spec))
        if problem:
            return None, f"compiled path disagrees with the pipeline: {problem}"
    return compiled, None


def loaded_arm(
    model: str, version: str, digest: str, estimator: Any, spec: ModelSpec, schema: InputSchema,
    *, started: float | None = None,
) -> LoadedArm:
    """A version ready to score: its classes read and its pipeline compiled when that gives the same bits."""
    classes = _classes(estimator, spec.task)
    compiled, plain_reason = compile_arm(estimator, spec)
    seconds = time.perf_counter() - started if started is not None else 0.0
    return LoadedArm(model, version, digest, estimator, spec, schema, datetime.now(UTC), seconds, classes,
                     compiled, plain_reason)


def _classes(estimator: Any, task: Task) -> tuple[Any, ...] | None:
    if not task.is_classification:
        return None
    classes = getattr(estimator, "classes_", None)
    if classes is None or not hasattr(estimator, "predict_proba"):
        raise TypeError("a classification model must have classes_ and predict_proba to report scores")
    return tuple(c.item() if hasattr(c, "item") else c for c in classes)


class ModelPool:
    """Loads model versions by alias from the registry and swaps deployments atomically."""

    def __init__(
        self,
        registry: Registry,
        models: tuple[str, ...],
        *,
        out_of_range: OutOfRangePolicy = OutOfRangePolicy.REJECT,
        warm_versions: int = 2,
    ) -> None:
        self.registry = registry
        self.models = models
        self.out_of_range = out_of_range
        self.warm_versions = warm_versions
        self._states = {model: _ModelState() for model in models}
        self._deployments: dict[str, Deployment] = {}
        self._cache: collections.OrderedDict[tuple[str, str], LoadedArm] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.last_refresh: datetime | None = None
        self.last_error: str | None = None

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
        with self._lock:
            for name in targets:
                started = time.perf_counter()
                try:
                    results.append(self._refresh_one(name, started))
                except Exception as error:  # registry unreachable: keep serving what is loaded
                    self.last_error = f"{name}: {type(error).__name__}: {error}"
                    log.error("refresh of %s failed: %s", name, error, extra={"event": "refresh_failed", "model": name})
                    current = self._deployments.get(name)
                    results.append(
                        RefreshResult(name, False, current.generation if current else 0, (self.last_error,),
                                      time.perf_counter() - started)
                    )
            self.last_refresh = datetime.now(UTC)
        return results

    def _refresh_one(self, model: str, started: float) -> RefreshResult:
        state = self.registry.serving_state(model)
        current = self._deployments.get(model)
        problems: list[str] = []
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
        # of the collector's reach. A full collection over MLflow's and scikit-learn's objects
        # takes 100-300 ms here and showed up as the gateway's p99 latency.
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


class Poller:
    """Refreshes the pool every ``interval`` seconds in a background thread."""

    def __init__(self, pool: ModelPool, interval: float) -> None:
        self.pool = pool
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="steward-registry-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.pool.refresh()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
