"""How long a promotion or rollback takes to reach every gateway: told and acknowledged, against the poll alone.

Two ``steward serve`` processes (poll every 0.5 s, the default) serve one model with two versions
(both kept warm, as after any promotion) from a throw-away Steward home, each under light request
traffic. Each round moves the champion alias to the other version (``Registry.promote``), then:

* ``told``: ``tell_gateways`` (what the rollback and promotion procedures do) until both acknowledge;
* ``poll``: nothing more (the procedures before the fleet returned here).

A watcher per gateway reads its ``/admin/status`` every 10 ms from before the change; the reach runs
from the start of the registry write to the last gateway serving the new version. What matters to
an operator is the last column: for how long, after the procedure returned, a gateway still served
the old version. Rounds alternate the two modes; the whole set runs
quiet, then under a CPU hog keeping every core busy (``steward.simulation.load.cpu_hog``).

    uv run python benchmarks/rollout_reach.py --rounds 10      # about 3 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

HOST = "127.0.0.1"
TOKEN = "reach-benchmark-token"
VENV_BIN = Path(sys.executable).parent


def build_world(home: Path) -> tuple[str, list[str], list[dict]]:
    """Two versions of the example model (logistic regression) registered; v1 champion; sample rows."""
    os.environ["STEWARD_HOME"] = str(home)
    os.environ["STEWARD_ADMIN_TOKEN"] = TOKEN
    from steward.config import apply_environment, reset_settings

    reset_settings()
    settings = apply_environment(override=True)
    import pandas as pd

    from steward.registry.adapter import Registry
    from steward.simulation.examples import example_spec_text
    from steward.simulation.scenario import credit_default_scenario
    from steward.spec import parse_spec
    from steward.training.data import frame_sha256, split_train_holdout
    from steward.training.train import train_model

    scenario = credit_default_scenario(rows_per_day=600)
    frame = scenario.generate(scenario.start, scenario.start + pd.Timedelta(days=6)).drop(columns=["label_available_at"])
    document = yaml.safe_load(example_spec_text())
    document["name"] = "reach-bench"
    document["estimator"] = {"factory": "steward.estimators:tabular_pipeline",
                             "params": {"estimator": "sklearn.linear_model.LogisticRegression", "max_iter": 300}}
    document["data"] = {"kind": "file", "path": "unused.parquet"}
    spec = parse_spec(document)
    registry = Registry.from_settings(settings)
    versions = []
    for part in (frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2:]):
        trained = train_model(spec, split_train_holdout(part, spec), data_sha256=frame_sha256(part),
                              data_source="benchmark")
        info = registry.register_version(spec.name, trained.estimator, lineage=trained.lineage,
                                         metrics=trained.metrics,
                                         input_example=trained.holdout_frame[spec.feature_names].head(20),
                                         datasets={"holdout": trained.holdout_frame.head(100)})
        registry.set_version_tags(spec.name, info.version, {"steward.validation.status": "passed"})
        versions.append(info.version)
    registry.promote(spec.name, versions[0], reason="benchmark: first champion")
    sample = frame[list(spec.feature_names)].head(32).astype(object)
    return spec.name, versions, sample.where(sample.notna(), None).to_dict(orient="records")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_gateway(model: str, home: Path, log: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    command = [str(VENV_BIN / "steward"), "serve", model, "--host", HOST, "--port", str(port), "--home", str(home),
               "--log-mode", "off", "--log-level", "warning"]
    process = subprocess.Popen(command, env={**os.environ, "STEWARD_ADMIN_TOKEN": TOKEN}, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 300  # a busy machine took over 120 s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited ({process.returncode}); see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.terminate()
    raise RuntimeError(f"{url} was not ready after 300 s")


class Traffic:
    """One thread per gateway sending one-row requests back to back, so the gateways are serving."""

    def __init__(self, urls: list[str], model: str, rows: list[dict]) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(url, model, rows), daemon=True) for url in urls]

    def _send(self, url: str, model: str, rows: list[dict]) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                client.post(f"/v1/models/{model}/predict", json={"dataframe_records": [rows[i % len(rows)]]})
                i += 1

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


@dataclass(frozen=True)
class Change:
    written: float  # the registry write (Registry.promote), from its start
    reach: float  # from the start of the write until the last gateway served the new version
    returned: float  # when the procedure returned: after the write (poll only) or after the last acknowledgement

    @property
    def stale_after_return(self) -> float:
        """How long a gateway still served the old version after the procedure returned."""
        return max(0.0, self.reach - self.returned)


class Watcher:
    """Reads a gateway's /admin/status every 10 ms from before a change; when it first served ``version``."""

    def __init__(self, url: str, model: str, version: str, started: float) -> None:
        self.seen: float | None = None
        self._args = (url, model, version, started)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        url, model, version, started = self._args
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            while True:
                models = {m["model"]: m for m in client.get("/admin/status").json()["models"]}
                if (models[model].get("champion") or {}).get("version") == version:
                    self.seen = time.monotonic() - started
                    return
                time.sleep(0.01)

    def wait(self) -> float:
        self._thread.join(timeout=120)
        assert self.seen is not None, "the gateway never served the new version"
        return self.seen


def one_change(registry, fleet, model: str, version: str, urls: list[str], told: bool) -> Change:
    from steward.config import get_settings
    from steward.serving.fleet import ServingTarget, tell_gateways

    started = time.monotonic()
    watchers = [Watcher(url, model, version, started) for url in urls]
    registry.promote(model, version, reason="benchmark: alias change")
    written = time.monotonic() - started
    returned = written
    if told:
        reach = tell_gateways(fleet, model, ServingTarget.of(registry.serving_state(model)), get_settings().admin_token)
        if not reach.acknowledged:
            raise RuntimeError(reach.describe())
        returned = time.monotonic() - started
    return Change(written, max(w.wait() for w in watchers), returned)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="alias changes per mode and condition")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="steward-reach-"))
    model, versions, rows = build_world(home)
    from steward.config import get_settings
    from steward.registry.adapter import Registry
    from steward.serving.fleet import Fleet
    from steward.simulation.load import cpu_hog

    settings = get_settings()
    registry = Registry.from_settings(settings)
    fleet = Fleet(settings.resolved_store_uri)
    gateways: list[tuple[str, subprocess.Popen]] = []
    results: dict[tuple[str, str], list[Change]] = {}
    loads: dict[str, list[float]] = {}
    try:
        for i in range(2):
            gateways.append(start_gateway(model, home, home / f"gateway-{i}.log"))
        urls = [url for url, _ in gateways]
        assert len(fleet.gateways(model)) == 2, "both gateways should have joined the fleet"
        # Both versions loaded once in each gateway (kept warm afterwards), as after any promotion.
        registry.promote(model, versions[1], reason="benchmark: warm both versions")
        time.sleep(2)
        current = 1
        with Traffic(urls, model, rows):
            for condition in ("quiet", "cpu hog"):
                with cpu_hog() if condition == "cpu hog" else contextlib.nullcontext():
                    time.sleep(1.0)
                    loads[condition] = []
                    for round_ in range(args.rounds):
                        for told in ((True, False) if round_ % 2 == 0 else (False, True)):
                            current = 1 - current
                            mode = "told + acknowledged" if told else "poll only (0.5 s)"
                            results.setdefault((condition, mode), []).append(
                                one_change(registry, fleet, model, versions[current], urls, told))
                            loads[condition].append(os.getloadavg()[0])
                            time.sleep(0.3)
    finally:
        for _, process in gateways:
            process.terminate()
            process.wait(timeout=60)
    print("| condition | mode | changes | registry write (s) | reach from the write's start (s) | procedure "
          "returned after (s) | old version served after it returned: changes, longest (s) | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (condition, mode), changes in results.items():
        stale = [c.stale_after_return for c in changes if c.stale_after_return > 0]
        median = statistics.median
        print(f"| {condition} | {mode} | {len(changes)} | {median(c.written for c in changes):.2f} | "
              f"{median(c.reach for c in changes):.2f} (max {max(c.reach for c in changes):.2f}) | "
              f"{median(c.returned for c in changes):.2f} | {len(stale)}, {max(stale, default=0.0):.2f} | "
              f"{median(loads[condition]):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
