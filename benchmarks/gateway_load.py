"""Load benchmark: Steward's gateway against `mlflow models serve` and MLServer, on this machine, over 127.0.0.1.

Both servers serve the same 20-feature logistic regression (17 numeric, 3 categorical
features; Steward's tabular pipeline), trained here in a throw-away Steward home. wrk (Debian
package `wrk`) drives each with the same one-row requests, cycling through 64 distinct rows,
at 1 and 16 concurrent connections. Every run is bounded by --duration seconds and by
--max-requests per wrk thread, and only ever targets 127.0.0.1.

Every server is started first; then each of --repeats rounds runs every scenario once, in a
rotated order, after a 1 s warm-up (4 s before the first round), and the table shows the
medians. Interleaving the scenarios makes a change of background load during the run hit all
of them alike, so the ratios between scenarios hold on a shared machine.

Scenarios:

  mlflow           `mlflow models serve --env-manager local` (one uvicorn worker, its default)
  mlserver         MLServer 1.7 with its scikit-learn runtime (mlserver-sklearn), serving the champion's
                   pipeline (joblib) with predict_proba, V2 protocol, pandas content type; in a venv of its own
                   (its fastapi pin clashes with Prefect's), built by this script with uv; logs and splits nothing
  xgboost+log      gateway, 90/10 canary between two XGBoost versions (native flavor), every prediction logged
  lightgbm+log     gateway, the same with two LightGBM versions
  canary+log       gateway, 90/10 canary, every prediction logged (batched mode)
  champion+log     gateway, all traffic to the champion, logged (batched)
  canary,nolog     gateway, 90/10 canary, log off
  champion,nolog   gateway, all traffic to the champion, log off
  shadow+log       gateway, champion answers, challenger scores a copy of every request
  durable          gateway, 90/10 canary, durable log (fsynced WAL before each answer)
  switch           gateway under 16 connections while the plan and the champion alias change
                   every half second (admin API and registry); counts failed requests
  log-pairs        logging's cost measured in alternating 1 s slices, which a noisy machine's slow
                   swings hit alike: two logged and two unlogged gateways (90/10 canary) take
                   turns under 16 connections, --pair-steps times (spread
                   over --pair-rounds rounds of new processes: a process keeps its speed for life); each
                   step gives logged/unlogged req/s, and two identical gateways give the floor
                   (how far apart two processes of the same code measure: an A/A test). Also the
                   log writer thread's CPU per request under that load (from /metrics) and the
                   event-loop thread's added CPU per request (psutil, per thread)
  gc-pairs         the same alternation for the collector thresholds `steward serve` uses against
                   Python's defaults (`--no-gc-tuning`): two gateways a
                   side, all logging, --pair-steps times; throughput, CPU per request and p99
  log-cost         in this process, no wrk: the time the event loop spends per request on the log and
                   on scoring a batch for one arm or split between two, measured alone on real jobs
                   (see log_work_per_request); set beside the server CPU per request of the wrk
                   scenarios, it says what share of a request the log and the split take

Usage (wrk is a Debian package: `apt-get install -y wrk`; MLServer's venv needs uv and the package index):
    uv run python benchmarks/gateway_load.py                 # everything, about 13 minutes
    uv run python benchmarks/gateway_load.py --only mlflow mlserver canary+log xgboost+log lightgbm+log
    uv run python benchmarks/gateway_load.py --duration 5 --repeats 1
    uv run python benchmarks/gateway_load.py --only mlflow canary+log
    uv run python benchmarks/gateway_load.py --only log-pairs --pin 0:1   # wrk on CPU 0, every server on CPU 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml

HOST = "127.0.0.1"  # the only address this script sends traffic to
TOKEN = "benchmark-admin-token"
ROWS = 64
SCENARIOS = ("mlflow", "mlserver", "xgboost+log", "lightgbm+log", "canary+log", "champion+log", "canary,nolog", "champion,nolog", "shadow+log", "durable",
             "switch", "log-pairs", "gc-pairs", "log-cost")
WARM_UP_SECONDS = 4.0  # not counted: first requests, and the shadow child process starting
ROUND_WARM_UP_SECONDS = 1.0  # not counted: before each measurement, after a plan change
VENV_BIN = Path(sys.executable).parent
# --pin: where wrk and the servers may run (taskset CPU lists); empty means anywhere
PINNING = {"wrk": "", "servers": ""}


def pinned(command: list[str], who: str) -> list[str]:
    """The command under taskset when --pin gave `who` its own CPUs."""
    return ["taskset", "-c", PINNING[who], *command] if PINNING[who] else command


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    failed: int  # socket errors + timeouts + non-2xx answers
    cpu_seconds: float = 0.0  # CPU time the server (and its children) used during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        """The server's CPU per answered request: steadier than req/s when other work shares the cores."""
        return self.cpu_seconds / self.requests * 1e6 if self.requests else 0.0


# ---------------------------------------------------------------------- the model
def build_world(home: Path) -> tuple[str, list[str], list[str], list[list[object]]]:
    """Train and register two versions of the 20-feature model; v1 champion, v2 challenger."""
    os.environ["STEWARD_HOME"] = str(home)
    from steward.config import apply_environment, reset_settings

    reset_settings()
    settings = apply_environment(override=True)
    from steward.registry.adapter import Registry
    from steward.registry.history import CHALLENGER, ChangeKind
    from steward.simulation.examples import example_spec_text
    from steward.simulation.scenario import credit_default_scenario
    from steward.spec import parse_spec
    from steward.training.data import frame_sha256, split_train_holdout
    from steward.training.train import train_model

    scenario = credit_default_scenario(rows_per_day=1000, extra_numeric=9)
    frame = scenario.generate(scenario.start, scenario.start + __import__("pandas").Timedelta(days=8))
    frame = frame.drop(columns=["label_available_at"])
    document = yaml.safe_load(example_spec_text())
    document["name"] = "bench-lr20"
    document["features"] = [
        *[{"name": n, "type": "numeric", "nullable": True} for n in scenario.numeric_features],
        *[{"name": n, "type": "categorical"} for n in scenario.categorical_features],
    ]
    document["estimator"] = {
        "factory": "steward.estimators:tabular_pipeline",
        "params": {"estimator": "sklearn.linear_model.LogisticRegression", "max_iter": 500},
    }
    document["data"] = {"kind": "file", "path": "unused.parquet"}
    document["gates"]["slice_features"] = []
    spec = parse_spec(document)
    assert len(spec.features) == 20, len(spec.features)

    registry = Registry.from_settings(settings)
    versions = []
    for part in (frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :]):
        split = split_train_holdout(part, spec)
        trained = train_model(spec, split, data_sha256=frame_sha256(part), data_source="benchmark")
        info = registry.register_version(
            spec.name,
            trained.estimator,
            lineage=trained.lineage,
            metrics=trained.metrics,
            input_example=trained.holdout_frame[spec.feature_names].head(20),
            datasets={"holdout": trained.holdout_frame.head(100)},
        )
        registry.set_version_tags(spec.name, info.version, {"steward.validation.status": "passed"})
        versions.append(info.version)
    registry.promote(spec.name, versions[0], reason="benchmark champion")
    registry.set_alias(
        spec.name, CHALLENGER, versions[1], reason="benchmark challenger", kind=ChangeKind.ASSIGN
    )
    sample = frame[spec.feature_names].head(ROWS).astype(object)
    rows = sample.where(sample.notna(), None).values.tolist()
    return spec.name, versions, spec.feature_names, rows


BOOSTED = {"xgboost+log": "bench-xgb", "lightgbm+log": "bench-lgbm"}


def build_boosted(frame, spec, kind: str) -> str:
    """Two versions of an XGBoost or LightGBM classifier (native flavor) on the numeric features, registered
    with the lineage of the same data; v1 champion, v2 challenger at 10 %."""
    from steward.config import get_settings
    from steward.registry.adapter import Registry
    from steward.registry.history import CHALLENGER, ChangeKind
    from steward.training.data import frame_sha256, prepare_features, split_train_holdout
    from steward.training.evaluation import evaluate
    from steward.training.train import train_model

    name = BOOSTED[kind]
    document = spec.model_dump(mode="json", exclude_defaults=True)
    document["name"] = name
    document["features"] = [f for f in document["features"] if f["type"] == "numeric"]
    boosted_spec = type(spec).model_validate(document)
    registry = Registry.from_settings(get_settings())
    versions = []
    for seed, part in enumerate((frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :])):
        split = split_train_holdout(part, boosted_spec)
        baseline = train_model(boosted_spec, split, data_sha256=frame_sha256(part), data_source="benchmark")
        features = prepare_features(split.train, boosted_spec)
        if kind == "xgboost+log":
            import xgboost

            model = xgboost.XGBClassifier(n_estimators=100, max_depth=4, n_jobs=1, random_state=seed)
        else:
            import lightgbm

            model = lightgbm.LGBMClassifier(n_estimators=100, num_leaves=15, n_jobs=1, random_state=seed, verbose=-1)
        model.fit(features, split.train[boosted_spec.target])
        holdout = baseline.holdout_frame
        info = registry.register_version(
            name, model, lineage=baseline.lineage, metrics=evaluate(model, holdout, boosted_spec),
            input_example=holdout[boosted_spec.feature_names].head(20), datasets={"holdout": holdout.head(100)},
        )
        registry.set_version_tags(name, info.version, {"steward.validation.status": "passed"})
        versions.append(info.version)
    registry.promote(name, versions[0], reason="benchmark champion")
    registry.set_alias(name, CHALLENGER, versions[1], reason="benchmark challenger", kind=ChangeKind.ASSIGN)
    return name


# ---------------------------------------------------------------------- MLServer, in a venv of its own
MLSERVER_PACKAGES = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1")


def mlserver_venv(home: Path) -> Path:
    """A venv with MLServer and the scikit-learn, numpy and pandas versions of this one (the pickle must load)."""
    from importlib import metadata

    venv = home / "mlserver-venv"
    pins = [f"{name}=={metadata.version(name)}" for name in ("scikit-learn", "numpy", "pandas", "scipy")]
    subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                    *MLSERVER_PACKAGES, *pins], check=True)
    return venv


def start_mlserver(model: str, version: str, port: int, home: Path, log: Path,
                   probe: tuple[list[str], list[object]]) -> subprocess.Popen:
    """MLServer's scikit-learn runtime on the champion's own pipeline, answering predict_proba."""
    import joblib

    from steward.config import get_settings
    from steward.registry.adapter import Registry

    venv = mlserver_venv(home)
    folder = home / "mlserver-model"
    folder.mkdir(exist_ok=True)
    joblib.dump(Registry.from_settings(get_settings()).load_model(model, version).model, folder / "model.joblib")
    (folder / "model-settings.json").write_text(json.dumps({
        "name": model, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": version},
    }))
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "host": HOST,
        "parallel_workers": 0, "metrics_endpoint": None,
    }))
    env = {**environment(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = subprocess.Popen(pinned([str(venv / "bin" / "mlserver"), "start", str(folder)], "servers"), env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    wait_ready(f"http://{HOST}:{port}/v2/models/{model}/ready", process, timeout=300)
    check = httpx.post(f"http://{HOST}:{port}/v2/models/{model}/infer", content=v2_body(*probe), timeout=30)
    if check.status_code != 200:
        raise RuntimeError(f"MLServer refused the benchmark's request ({check.status_code}): {check.text[:300]}")
    return process


def v2_body(columns: list[str], row: list[object]) -> str:
    """One row as a V2 inference request MLServer decodes to a DataFrame, asking for predict_proba."""
    inputs = []
    for name, value in zip(columns, row, strict=True):
        if isinstance(value, str):
            inputs.append({"name": name, "datatype": "BYTES", "shape": [1], "data": [value]})
        else:
            # a missing value is null: MLServer's JSON parser refuses NaN; the pipeline's imputer takes None
            inputs.append({"name": name, "datatype": "FP64", "shape": [1],
                           "data": [None if value is None else float(value)]})
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": [{"name": "predict_proba"}]})


# ---------------------------------------------------------------------- servers
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready ({url})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} was not ready after {timeout:.0f}s")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # `mlflow models serve` execs uvicorn
    env["STEWARD_ADMIN_TOKEN"] = TOKEN
    return env


def start_mlflow(model: str, version: str, port: int, log: Path) -> subprocess.Popen:
    command = [
        str(VENV_BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{model}/{version}",
        "--env-manager",
        "local",
        "-h",
        HOST,
        "-p",
        str(port),
    ]
    process = subprocess.Popen(pinned(command, "servers"), env=environment(), stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    wait_ready(f"http://{HOST}:{port}/ping", process)
    return process


def start_gateway(model: str, port: int, log_mode: str, home: Path, log: Path, *extra: str) -> subprocess.Popen:
    command = [
        str(VENV_BIN / "steward"),
        "serve",
        model,
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-mode",
        log_mode,
        "--home",
        str(home),
        "--log-level",
        "warning",
        *extra,
    ]
    process = subprocess.Popen(pinned(command, "servers"), env=environment(), stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    wait_ready(f"http://{HOST}:{port}/readyz", process)
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def set_plan(port: int, model: str, plan: dict, reason: str) -> None:
    response = httpx.put(
        f"http://{HOST}:{port}/admin/models/{model}/traffic-plan",
        json={"plan": plan, "reason": reason},
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    response.raise_for_status()


# ---------------------------------------------------------------------- load
LUA = """
local bodies = {%(bodies)s}
local i = 0
local seen = 0
local limit = %(limit)d
request = function()
  i = (i %% #bodies) + 1
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, bodies[i])
end
response = function(status, headers, body)
  seen = seen + 1
  if seen >= limit then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%%d duration_us=%%d p50=%%d p95=%%d p99=%%d failed=%%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def write_lua(path: Path, url_path: str, columns: list[str], rows: list[list[object]], limit: int,
              v2: bool = False) -> None:
    bodies = [v2_body(columns, row) if v2 else json.dumps({"dataframe_split": {"columns": columns, "data": [row]}})
              for row in rows]
    path.write_text(
        LUA % {"bodies": ", ".join(f"[==[{b}]==]" for b in bodies), "path": url_path, "limit": limit}
    )


def cpu_seconds(server: psutil.Process | None) -> float:
    """User and system CPU of the server process and its children (uvicorn workers, the shadow process)."""
    if server is None:
        return 0.0
    total = 0.0
    for process in (server, *server.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def run_wrk(port: int, script: Path, connections: int, duration: float,
            server: psutil.Process | None = None) -> LoadResult:
    command = [
        "wrk",
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{duration:g}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://{HOST}:{port}",
    ]
    cpu_before = cpu_seconds(server)
    output = subprocess.run(pinned(command, "wrk"), capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    cpu_used = cpu_seconds(server) - cpu_before
    match = re.search(
        r"RESULT requests=(\d+) duration_us=(\d+) p50=(\d+) p95=(\d+) p99=(\d+) failed=(\d+)", output
    )
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    requests, duration_us, p50, p95, p99, failed = map(int, match.groups())
    return LoadResult(requests, duration_us / 1e6, p50 / 1000, p95 / 1000, p99 / 1000, failed, cpu_used)


def median_result(results: list[LoadResult]) -> LoadResult:
    requests = int(statistics.median(r.requests for r in results)) if results else 0
    return (
        LoadResult(
            requests,
            statistics.median(r.seconds for r in results),
            statistics.median(r.p50_ms for r in results),
            statistics.median(r.p95_ms for r in results),
            statistics.median(r.p99_ms for r in results),
            sum(r.failed for r in results),
            statistics.median(r.cpu_us for r in results) * requests / 1e6,  # so that cpu_us is the median
        )
        if results
        else LoadResult(0, 0, 0, 0, 0, 0)
    )


# ---------------------------------------------------------------------- the log's cost, in process
def log_work_per_request(home: Path, model: str, columns: list[str], rows: list[list[object]],
                         rounds: int) -> list[tuple[float, float, float, float]]:
    """µs of event-loop time per one-row request, each round: the log (per model call, per request),
    scoring a batch for the champion alone, and scoring a batch split 14/2 between the arms.

    What the loop does for the log after a model call, measured alone on real jobs: 16 one-row
    requests validated and scored by the champion (a batch at 16 connections), then handed to
    ``Gateway._scored`` as the batcher does, with a batched writer converting every 512 rows.
    The baseline is the same jobs logged one record per request (``prediction_batch``), as the
    gateway did before. Timed in process over 5 000 batches a round, it is steadier than any
    req/s difference on a shared machine.
    """
    from pydantic import SecretStr

    from steward.config import get_settings
    from steward.registry.adapter import Registry
    from steward.registry.traffic import Arm, Route
    from steward.serving.config import GatewayConfig
    from steward.serving.gateway import Gateway
    from steward.serving.inference import score_jobs
    from steward.serving.schema import parse_payload
    from steward.store.records import prediction_batch

    config = GatewayConfig(models=(model,), log_mode="batched", poll_interval=300, admin_token=SecretStr(TOKEN),
                           store_uri=str(home / "log-cost"))
    gateway = Gateway(config, registry=Registry.from_settings(get_settings()))
    gateway.start()
    try:
        deadline = time.monotonic() + 120
        while not gateway.pool.ready:
            if time.monotonic() > deadline:
                raise RuntimeError("the in-process gateway did not load its champion")
            time.sleep(0.1)
        deployment = gateway.pool.get(model)
        def batch(challengers: int) -> list:
            made = []
            for i in range(16):
                payload = parse_payload({"dataframe_split": {"columns": columns, "data": [rows[i % len(rows)]]}},
                                        max_rows=10)
                route = Route(Arm.CHALLENGER if i < challengers else Arm.CHAMPION)
                made.append(gateway._validated_job(deployment, route, [0], payload, frozenset(),
                                                   (f"request-{i:02d}", time.time_ns(), time.perf_counter(), None)))
            return made

        jobs, champion_only, split = batch(0), batch(0), batch(2)  # split: what a 90/10 canary's batch holds
        score_jobs(jobs)

        def per_request_records() -> None:
            """The baseline: one record per request, as the gateway logged before (prediction_batch + submit)."""
            for job in jobs:
                context = job.context
                gateway.prediction_log.writer.submit(prediction_batch(
                    context.request_id, context.time_ns, model, job.arm.version, context.arm, served=True,
                    status="ok", rows=context.rows, features=job.columns, numeric=job.arm.schema.numeric_names,
                    predictions=job.result.labels, scores=job.result.scores, latency_ms=1.0, entities=None,
                ))

        async def measure() -> list[tuple[float, float, float, float]]:  # on the loop, as in the gateway
            figures = []
            for _ in range(rounds):
                pair = []
                for work in (lambda: gateway._scored(jobs), per_request_records, lambda: score_jobs(champion_only),
                             lambda: score_jobs(split)):
                    started = time.perf_counter()
                    for _ in range(5_000):
                        work()
                    pair.append((time.perf_counter() - started) / (5_000 * len(jobs)) * 1e6)
                figures.append(tuple(pair))
            return figures

        return asyncio.run(measure())
    finally:
        gateway.stop()


# ---------------------------------------------------------------------- logging, in alternating slices
def writer_cpu_seconds(port: int) -> float:
    """The gateway's log writer thread CPU so far (``steward_log_writer_cpu_seconds_total``)."""
    text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=30).text
    found = re.search(r"^steward_log_writer_cpu_seconds_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def main_thread_cpu(process: psutil.Process) -> float:
    """CPU seconds of the process's main thread: the gateway's event loop."""
    for thread in process.threads():
        if thread.id == process.pid:
            return thread.user_time + thread.system_time
    return 0.0


@contextlib.contextmanager
def alternating_gateways(
    model: str, home: Path, script: Path, logs: Path, kinds: dict[str, tuple[str, tuple[str, ...]]], reason: str
) -> Iterator[dict[str, tuple[int, psutil.Process]]]:
    """Two gateways of each kind (name: log mode and extra `steward serve` arguments), as
    ``<kind>-1`` and ``<kind>-2`` with the kinds alternating, all on a 90/10 canary and warmed up."""
    processes: list[subprocess.Popen] = []
    cells: dict[str, tuple[int, psutil.Process]] = {}
    try:
        for index in (1, 2):
            for kind, (mode, extra) in kinds.items():
                name, port = f"{kind}-{index}", free_port()
                processes.append(start_gateway(model, port, mode, home, logs / f"{reason}-{name}.log", *extra))
                set_plan(port, model, {"mode": "canary", "challenger_percent": 10}, f"benchmark: {reason}")
                cells[name] = (port, psutil.Process(processes[-1].pid))
        for port, _ in cells.values():
            run_wrk(port, script, 16, WARM_UP_SECONDS)
        yield cells
    finally:
        for process in processes:
            stop(process)


def rotated(names: list[str], step: int) -> list[str]:
    """The slices' order in a step: rotated by one each step, so no gateway always follows another."""
    return names[step % len(names):] + names[:step % len(names)]


def cpu_per_request_ratio(side: list[LoadResult], other: list[LoadResult]) -> float:
    """How much more CPU per request one side's servers used than the other's (both summed), minus 1."""
    def per_request(results: list[LoadResult]) -> float:
        return sum(r.cpu_seconds for r in results) / sum(r.requests for r in results)
    return per_request(side) / per_request(other) - 1


def spread(values: list[float], sign: str = "") -> str:
    """Median and quartiles of per-step figures, as percentages."""
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    form = f"{sign}.1%"
    return (f"{statistics.median(values):{form}} (quartiles {quartiles[0]:{form}} to "
            f"{quartiles[2]:{form}})")


def log_pairs(model: str, home: Path, script: Path, logs: Path, steps: int, rounds: int) -> list[str]:
    """Logging's throughput cost from many short alternating slices, with an A/A floor beside it.

    Every step runs four 1 s slices back to back, in an order rotated each step: two gateways
    logging every prediction (batched) and two with the log off, all on a 90/10 canary. A step's
    cost is 1 - (logged req/s) / (unlogged req/s), summed over each pair of processes. The A/A
    figure is the same ratio between the two unlogged gateways: two processes of identical
    code, which says how small a cost this machine can show.

    The steps are spread over ``rounds``, each with four new processes: a process's speed
    (memory layout, hash seed) is fixed for its life, a bias no number of steps averages away
    (benchmarks/results/2026-12-02-gateway-logging-runs.md).
    """
    kinds = {"log": ("batched", ()), "off": ("off", ())}
    logged, floor, cpu, loop_added, per_round = [], [], [], [], []
    writer_seconds, logged_requests = 0.0, 0
    for round_index in range(rounds):
        round_steps = steps // rounds + (round_index < steps % rounds)
        with alternating_gateways(model, home, script, logs, kinds, f"log-pairs-{round_index}") as cells:
            names = list(cells)
            for step in range(round_steps):
                got: dict[str, LoadResult] = {}
                loop_us: dict[str, float] = {}
                for name in rotated(names, step):
                    port, process = cells[name]
                    writer_before = writer_cpu_seconds(port) if name.startswith("log") else 0.0
                    loop_before = main_thread_cpu(process)
                    got[name] = run_wrk(port, script, 16, 1.0, process)
                    loop_us[name] = (main_thread_cpu(process) - loop_before) / max(got[name].requests, 1) * 1e6
                    if name.startswith("log"):  # summed, not a median: the writer works in bursts, a flush every 2 s
                        writer_seconds += writer_cpu_seconds(port) - writer_before
                        logged_requests += got[name].requests
                loop_added.append((loop_us["log-1"] + loop_us["log-2"] - loop_us["off-1"] - loop_us["off-2"]) / 2)
                log_rps, off_rps = got["log-1"].rps + got["log-2"].rps, got["off-1"].rps + got["off-2"].rps
                logged.append(1 - log_rps / off_rps)
                floor.append(1 - got["off-2"].rps / got["off-1"].rps)
                cpu.append(cpu_per_request_ratio([got["log-1"], got["log-2"]], [got["off-1"], got["off-2"]]))
        per_round.append(statistics.median(logged[-round_steps:]))
        print(f"  log-pairs round {round_index + 1}/{rounds}: {per_round[-1]:.1%}", flush=True)

    notes = [
        f"logging cost in alternating 1 s slices, two processes a side, {steps} steps in {rounds} rounds of new "
        f"processes: {spread(logged)} of throughput (target <= 5%); A/A floor, two unlogged gateways: {spread(floor)}",
        "  each round's median: " + ", ".join(f"{cost:.1%}" for cost in per_round),
        f"  by the server's CPU per request: logged gateways use {spread(cpu)} more; their log writer thread used "
        f"{writer_seconds / max(logged_requests, 1) * 1e6:.1f} us per request (all slices) and their event-loop "
        f"thread {statistics.median(loop_added):+.1f} us per request (median of steps)",
    ]
    for note in notes:
        print(f"  {note}", flush=True)
    return notes


def gc_pairs(model: str, home: Path, script: Path, logs: Path, steps: int) -> list[str]:
    """The gateway's collector thresholds (``steward serve``'s default) against Python's, as log-pairs does it.

    Two gateways with the tuned collector and two with ``--no-gc-tuning``, all logging on a 90/10
    canary, take turns in 1 s slices under 16 connections, in an order rotated each step; a step's
    gain is tuned/default req/s with both processes of a side summed.
    """
    kinds = {"tuned": ("batched", ()), "default": ("batched", ("--no-gc-tuning",))}
    with alternating_gateways(model, home, script, logs, kinds, "gc-pairs") as cells:
        names = list(cells)
        gains, cpu, p99 = [], [], {"tuned": [], "default": []}
        for step in range(steps):
            got = {name: run_wrk(cells[name][0], script, 16, 1.0, cells[name][1]) for name in rotated(names, step)}
            side = {kind: [got[f"{kind}-1"], got[f"{kind}-2"]] for kind in kinds}
            gains.append(sum(r.rps for r in side["tuned"]) / sum(r.rps for r in side["default"]) - 1)
            cpu.append(cpu_per_request_ratio(side["tuned"], side["default"]))
            for kind, results in side.items():
                p99[kind] += [r.p99_ms for r in results]
    notes = [
        f"collector thresholds (GC_THRESHOLDS) vs Python's defaults, alternating 1 s slices, two processes a side, "
        f"{steps} steps: throughput {spread(gains, '+')}, CPU per request {statistics.median(cpu):+.1%}; p99 "
        f"{statistics.median(p99['tuned']):.2f} vs {statistics.median(p99['default']):.2f} ms (medians of slices)",
    ]
    print(f"  {notes[0]}", flush=True)
    return notes


# ---------------------------------------------------------------------- scenarios
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="Seconds per load run (default 8).")
    parser.add_argument(
        "--repeats", type=int, default=3, help="Runs per scenario; medians are shown (default 3)."
    )
    parser.add_argument("--max-requests", type=int, default=500_000, help="Cap on requests per run.")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--pair-steps", type=int, default=40,
                        help="Steps of four 1 s slices for log-pairs (default 40, about 3 minutes).")
    parser.add_argument("--pair-rounds", type=int, default=4,
                        help="log-pairs: rounds of new gateway processes the steps are spread over (default 4).")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary Steward home.")
    parser.add_argument("--pin", metavar="WRK:SERVERS",
                        help="CPU lists for taskset, e.g. 0:1 runs wrk on CPU 0 and every server on CPU 1, so the "
                             "load generator never takes the servers' core (default: no pinning).")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install wrk` (Debian) and run again", file=sys.stderr)
        return 2
    if (not 0 < args.duration <= 120 or not 1 <= args.repeats <= 15 or not 2 <= args.pair_steps <= 400
            or not 1 <= args.pair_rounds <= args.pair_steps // 2):
        print("keep --duration within (0, 120] seconds, --repeats within 1..15, --pair-steps within 2..400 and "
              "--pair-rounds within 1..pair-steps/2", file=sys.stderr)
        return 2

    if args.pin:
        wrk_cpus, _, server_cpus = args.pin.partition(":")
        if not wrk_cpus or not server_cpus or shutil.which("taskset") is None:
            print("--pin takes two taskset CPU lists, WRK:SERVERS (e.g. 0:1), and needs taskset (util-linux)",
                  file=sys.stderr)
            return 2
        PINNING.update(wrk=wrk_cpus, servers=server_cpus)

    home = Path(tempfile.mkdtemp(prefix="steward-bench-"))
    logs = home / "server-logs"
    logs.mkdir()
    print(f"training the 20-feature model in {home} ...", flush=True)
    model, versions, columns, rows = build_world(home)
    scripts = {}
    for name, path in (("mlflow", "/invocations"), ("gateway", f"/v1/models/{model}/predict")):
        scripts[name] = home / f"{name}.lua"
        write_lua(scripts[name], path, columns, rows, args.max_requests)
    scripts["mlserver"] = home / "mlserver.lua"
    write_lua(scripts["mlserver"], f"/v2/models/{model}/infer", columns, rows, args.max_requests, v2=True)
    boosted = [kind for kind in BOOSTED if kind in args.only]
    if boosted:
        import pandas as pd

        from steward.simulation.scenario import credit_default_scenario

        scenario = credit_default_scenario(rows_per_day=1000, extra_numeric=9)
        frame = scenario.generate(scenario.start, scenario.start + pd.Timedelta(days=8)).drop(
            columns=["label_available_at"])
        from steward.config import get_settings
        from steward.registry.adapter import Registry

        spec = Registry.from_settings(get_settings()).version_spec(model, versions[0])
        numeric = [f.name for f in spec.features if f.type.value == "numeric"]
        for kind in boosted:
            print(f"training the {kind.split('+')[0]} versions ...", flush=True)
            name = build_boosted(frame, spec, kind)
            scripts[kind] = home / f"{name}.lua"
            write_lua(scripts[kind], f"/v1/models/{name}/predict", numeric,
                      [[r[columns.index(c)] for c in numeric] for r in rows], args.max_requests)

    table: dict[tuple[str, int], LoadResult] = {}
    notes: list[str] = []
    loads: list[float] = []
    if "log-cost" in args.only:
        figures = log_work_per_request(home, model, columns, rows, max(args.repeats, 5))
        grouped, per_request = [f[0] for f in figures], [f[1] for f in figures]
        split_added = [f[3] - f[2] for f in figures]
        notes.append(
            f"the log's work on the event loop, in process: {statistics.median(grouped):.2f} us per one-row request "
            f"with one record per model call (rounds {min(grouped):.2f} to {max(grouped):.2f}) vs "
            f"{statistics.median(per_request):.2f} us with one record per request (rounds {min(per_request):.2f} to "
            f"{max(per_request):.2f}); medians of {len(figures)} rounds of 5 000 batches of 16"
        )
        print(f"  {notes[-1]}", flush=True)
        notes.append(
            f"scoring on the event loop, in process: a batch of 16 one-row requests costs "
            f"{statistics.median(f[2] for f in figures):.2f} us per request for the champion alone and "
            f"{statistics.median(f[3] for f in figures):.2f} us split 14/2 between champion and challenger: the split "
            f"adds {statistics.median(split_added):.2f} us (rounds {min(split_added):.2f} to {max(split_added):.2f})"
        )
        print(f"  {notes[-1]}", flush=True)
    if "log-pairs" in args.only:  # before the other scenarios: it sets the model's plan
        notes += log_pairs(model, home, scripts["gateway"], logs, args.pair_steps, args.pair_rounds)
    if "gc-pairs" in args.only:
        notes += gc_pairs(model, home, scripts["gateway"], logs, args.pair_steps)
    processes: list[subprocess.Popen] = []
    servers: dict[int, psutil.Process] = {}  # port -> server process, for its CPU time
    try:
        # Every server needed is started first, then each round runs every scenario once (in a
        # rotated order), so a change of background load during the run hits every scenario
        # alike and the ratios between them stay meaningful on a shared machine.
        cells: list[tuple[str, int, int, Path, dict | None]] = []  # label, connections, port, script, plan
        if "mlflow" in args.only:
            port = free_port()
            processes.append(start_mlflow(model, versions[0], port, logs / "mlflow.log"))
            servers[port] = psutil.Process(processes[-1].pid)
            cells += [("mlflow", c, port, scripts["mlflow"], None) for c in (1, 16)]
        if "mlserver" in args.only:
            port = free_port()
            print("building MLServer's venv and starting it ...", flush=True)
            processes.append(start_mlserver(model, versions[0], port, home, logs / "mlserver.log", (columns, rows[0])))
            servers[port] = psutil.Process(processes[-1].pid)
            cells += [("mlserver", c, port, scripts["mlserver"], None) for c in (1, 16)]
        for kind in boosted:
            port = free_port()
            processes.append(start_gateway(BOOSTED[kind], port, "batched", home, logs / f"gateway-{kind}.log"))
            servers[port] = psutil.Process(processes[-1].pid)
            set_plan(port, BOOSTED[kind], {"mode": "canary", "challenger_percent": 10}, "benchmark: 90/10")
            cells += [(kind, c, port, scripts[kind], None) for c in (1, 16)]
        gateways = {}
        for mode, labels in (("batched", ("canary+log", "champion+log", "shadow+log", "switch")),
                             ("off", ("canary,nolog", "champion,nolog")), ("durable", ("durable",))):
            if set(labels) & set(args.only):
                gateways[mode] = free_port()
                processes.append(start_gateway(model, gateways[mode], mode, home, logs / f"gateway-{mode}.log"))
                servers[gateways[mode]] = psutil.Process(processes[-1].pid)
        canary = {"mode": "canary", "challenger_percent": 10}
        champion = {"mode": "canary", "challenger_percent": 0}
        shadow = {"mode": "shadow", "challenger_percent": 100}
        wanted = [
            ("canary+log", (1, 16), "batched", canary), ("champion+log", (16,), "batched", champion),
            ("shadow+log", (16,), "batched", shadow), ("canary,nolog", (16,), "off", canary),
            ("champion,nolog", (1, 16), "off", champion), ("durable", (1, 16), "durable", canary),
        ]
        for label, connections, mode, plan in wanted:
            if label in args.only:
                cells += [(label, c, gateways[mode], scripts["gateway"], plan) for c in connections]

        # The plan lives in the registry, one per model, shared by every gateway here: set it
        # whenever a scenario needs another one than the last set, whichever gateway set that.
        # The others follow by polling (0.5 s) within the warm-up.
        registry_plan: dict | None = None
        results: dict[tuple[str, int], list[LoadResult]] = {}

        def prepare(port: int, plan: dict | None, warm_up: float, script: Path, c: int) -> None:
            nonlocal registry_plan
            if plan is not None and registry_plan != plan:
                set_plan(port, model, plan, f"benchmark: {plan}")
                registry_plan = plan
            run_wrk(port, script, c, warm_up)

        for _label, c, port, script, plan in cells:  # warm every scenario up once (the shadow child starts)
            prepare(port, plan, WARM_UP_SECONDS, script, c)
        for round_ in range(args.repeats if cells else 0):
            shift = round_ % len(cells)
            for label, c, port, script, plan in cells[shift:] + cells[:shift]:
                prepare(port, plan, ROUND_WARM_UP_SECONDS, script, c)
                results.setdefault((label, c), []).append(run_wrk(port, script, c, args.duration, servers.get(port)))
                loads.append(os.getloadavg()[0])
                if plan is not None and plan["mode"] == "shadow":
                    drain_shadow(port)  # its process scores the backlog on idle CPU: not during the next scenario
            print(f"  round {round_ + 1}/{args.repeats} done (load average {os.getloadavg()[0]:.1f})", flush=True)
        for label, c, *_ in cells:
            table[(label, c)] = r = median_result(results[(label, c)])
            print(
                f"  {label:<16} c={c:<3} {r.rps:8.0f} req/s  p50 {r.p50_ms:6.2f}  p95 {r.p95_ms:6.2f}  "
                f"p99 {r.p99_ms:6.2f} ms  failed {r.failed}  server CPU {r.cpu_us:6.1f} us/req",
                flush=True,
            )
        if "shadow+log" in args.only:
            notes.append(shadow_note(gateways["batched"]))
        if "switch" in args.only:  # last: it moves the champion alias
            notes.append(switch_under_load(gateways["batched"], model, versions, scripts["gateway"], args.duration,
                                           table))
        report(table, results, notes, args, loads)
    finally:
        for process in processes:
            stop(process)
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return 0


def shadow_note(port: int) -> str:
    """How many shadow copies the gateway scored and how many it skipped, from its metrics."""
    text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=30).text
    scored = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                 if line.startswith("steward_predicted_rows_total") and 'served="false"' in line)
    skipped = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("steward_shadow_skipped_total"))
    return f"shadow copies over the whole run (warm-ups included): {scored:.0f} scored, {skipped:.0f} skipped"


def drain_shadow(port: int, timeout: float = 60.0) -> None:
    """Wait until the gateway's shadow process has scored every queued copy (bounded)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=f"http://{HOST}:{port}", headers={"authorization": f"Bearer {TOKEN}"}) as admin:
        while time.monotonic() < deadline:
            if admin.get("/admin/status", timeout=30).json()["inference"]["shadow_queued"] == 0:
                time.sleep(0.5)  # the last batch sent is being scored
                return
            time.sleep(0.2)


def switch_under_load(
    port: int, model: str, versions: list[str], script: Path, duration: float, table: dict
) -> str:
    """Change the plan (admin API) and the champion alias (registry) while wrk runs at 16 connections.

    wrk counts failed requests; for each alias change, the time until the gateway serves the
    new champion (found by its poll) is measured through /admin/status.
    """
    from steward.config import get_settings
    from steward.registry.adapter import Registry
    from steward.registry.history import CHAMPION, ChangeKind

    registry = Registry.from_settings(get_settings())
    plans = [
        {"mode": "canary", "challenger_percent": 10},
        {"mode": "blue_green", "live": "challenger"},
        {"mode": "shadow", "challenger_percent": 50},
        {"mode": "ab", "challenger_percent": 50, "sticky_key": "field:age"},
        {"mode": "blue_green", "live": "champion"},
    ]
    results: list[LoadResult] = []
    load = threading.Thread(target=lambda: results.append(run_wrk(port, script, 16, duration)))
    load.start()
    plan_changes, propagation = 0, []
    admin = httpx.Client(
        base_url=f"http://{HOST}:{port}", headers={"authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    deadline = time.monotonic() + duration - 1.5
    while time.monotonic() < deadline:
        set_plan(port, model, plans[plan_changes % len(plans)], "benchmark: switch under load")
        plan_changes += 1
        if plan_changes % 3 == 0:
            current = registry.alias_version(model, CHAMPION)
            target = versions[1] if current == versions[0] else versions[0]
            changed = time.monotonic()
            registry.set_alias(
                model, CHAMPION, target, reason="benchmark: switch under load", kind=ChangeKind.PROMOTE
            )
            while admin.get("/admin/status").json()["models"][0]["champion"]["version"] != target:
                if time.monotonic() - changed > 10:
                    raise RuntimeError("the gateway did not follow an alias change within 10 s")
                time.sleep(0.01)
            propagation.append(time.monotonic() - changed)
        time.sleep(0.3)
    admin.close()
    load.join()
    table[("switch", 16)] = results[0]
    r = results[0]
    note = (
        f"switch under load: {plan_changes} plan changes and {len(propagation)} champion alias changes during "
        f"{r.requests} requests, {r.failed} failed; alias change to new champion serving: median "
        f"{statistics.median(propagation) * 1000:.0f} ms, max {max(propagation) * 1000:.0f} ms (poll 0.5 s)"
        if propagation
        else f"switch under load: {plan_changes} plan changes, {r.failed} failed"
    )
    print(f"  {note}", flush=True)
    return note


def paired(
    results: dict[tuple[str, int], list[LoadResult]], a: tuple[str, int], b: tuple[str, int], measure: str
) -> tuple[float, float, float] | None:
    """Median, min and max over rounds of ``a``'s measure divided by ``b``'s in the same round.

    Scenarios of one round run back to back, so a round's ratio sees the same background load
    on both sides; the median of those ratios is steadier on a shared machine than the ratio
    of two medians taken over different moments.
    """
    if a not in results or b not in results:
        return None
    ratios = [getattr(x, measure) / getattr(y, measure) for x, y in zip(results[a], results[b], strict=False)
              if getattr(y, measure)]
    return (statistics.median(ratios), min(ratios), max(ratios)) if ratios else None


def report(
    table: dict[tuple[str, int], LoadResult], results: dict[tuple[str, int], list[LoadResult]], notes: list[str],
    args: argparse.Namespace, loads: list[float],
) -> None:
    spread = (f"load average {min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f}) during "
              "the measurements" if loads else "")
    print(
        f"\nmedians of {args.repeats} rounds x {args.duration:g}s (scenarios interleaved), one-row requests, wrk -t1, "
        f"on {HOST}; {os.cpu_count()} cores, {spread} (other processes skew the figures)"
    )
    print(
        f"{'scenario':<16} {'conn':>4} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'failed':>7}"
        f" {'CPU us/req':>11}"
    )
    for (label, c), r in table.items():
        print(
            f"{label:<16} {c:>4} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p95_ms:>8.2f} {r.p99_ms:>8.2f} {r.failed:>7}"
            f" {r.cpu_us:>11.1f}"
        )

    def ratio(a: tuple[str, int], b: tuple[str, int]) -> str:
        if a in table and b in table and table[b].rps:
            return f"{table[a].rps / table[b].rps:.2f}x"
        return "n/a"

    print("\ntargets")
    print(
        f"  gateway (canary+log) / mlflow at 16 conn: {ratio(('canary+log', 16), ('mlflow', 16))} (target >= 5x)"
    )
    if ("canary+log", 16) in table:
        print(f"  gateway p99 at 16 conn: {table[('canary+log', 16)].p99_ms:.2f} ms (target < 25 ms)")
    print(
        f"  gateway (canary+log) / MLServer at 16 conn: {ratio(('canary+log', 16), ('mlserver', 16))} (target >= 2x)"
    )
    if ("canary+log", 16) in table and ("mlserver", 16) in table:
        print(f"  p99 at 16 conn: gateway {table[('canary+log', 16)].p99_ms:.2f} ms, MLServer "
              f"{table[('mlserver', 16)].p99_ms:.2f} ms (target: the gateway's no worse)")
    def cost(a: tuple[str, int], b: tuple[str, int]) -> str:
        found = paired(results, a, b, "rps")
        if found is None:
            return "n/a"
        middle, low, high = found
        return f"{1 - middle:.1%} (median of per-round costs; rounds {1 - high:.1%} to {1 - low:.1%})"

    def cpu_cost(a: tuple[str, int], b: tuple[str, int]) -> str:
        found = paired(results, b, a, "cpu_us")  # b's CPU per request over a's: the throughput a keeps
        if found is None:
            return "n/a"
        middle, low, high = found
        return f"{1 - middle:.1%} (rounds {1 - high:.1%} to {1 - low:.1%})"

    print(f"  logging cost (canary+log vs canary,nolog): {cost(('canary+log', 16), ('canary,nolog', 16))} of throughput"
          " (target <= 5%)")
    print(f"    by the server's CPU per request: {cpu_cost(('canary+log', 16), ('canary,nolog', 16))}")
    print(f"  splitting cost (canary,nolog vs champion,nolog): {cost(('canary,nolog', 16), ('champion,nolog', 16))}"
          " (target <= 5%)")
    print(f"    by the server's CPU per request: {cpu_cost(('canary,nolog', 16), ('champion,nolog', 16))}")
    print(f"  logging + splitting (canary+log vs champion,nolog): {cost(('canary+log', 16), ('champion,nolog', 16))}")
    found = paired(results, ("shadow+log", 16), ("champion+log", 16), "p99_ms")
    if found is not None:
        middle, low, high = found
        print(f"  shadow p99 rise over champion-only: {middle - 1:+.1%} (median of per-round rises; rounds "
              f"{low - 1:+.1%} to {high - 1:+.1%}; target <= 10%)")
        print(f"  shadow throughput cost: {cost(('shadow+log', 16), ('champion+log', 16))}")
        print(f"    by the server's CPU per request (the shadow process's included): "
              f"{cpu_cost(('shadow+log', 16), ('champion+log', 16))}")
    if ("durable", 16) in table and ("canary+log", 16) in table:
        cost = 1 - table[("durable", 16)].rps / table[("canary+log", 16)].rps
        print(f"  durable log cost vs batched at 16 conn: {cost:.1%} of throughput")
    for note in notes:
        print(f"  {note}")


if __name__ == "__main__":
    sys.exit(main())
