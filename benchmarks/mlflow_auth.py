"""What MLflow's basic-auth app costs per request, with and without its credential cache.

    uv run python benchmarks/mlflow_auth.py --requests 100 --rounds 3

Every authenticated request makes MLflow check the password against its stored hash (werkzeug's scrypt,
about 0.1 s of CPU by design). The auth config's ``auth_cache_ttl_seconds`` caches a successful check.
This starts ``mlflow server --app-name basic-auth`` (one worker, SQLite stores in a temporary folder) once
per arm, then sends the same sequence of authenticated registry reads, and does this for several rounds
with the arms alternating. It reports the median latency and the throughput of each arm, and the ratio
between them. The baseline is the cache off, which is MLflow's default.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steward.processes import healthy  # noqa: E402
from tests.support.gateway import free_port  # noqa: E402
from tests.support.polling import wait_until  # noqa: E402

USER = "steward"


def _serve(folder: Path, cache_ttl: int, password: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = folder / f"auth-{cache_ttl}.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{folder / f'auth-{cache_ttl}.db'}\nadmin_username = {USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {cache_ttl}\n"
    )
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_USERNAME": USER,
           "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
           "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{folder / f'mlflow-{cache_ttl}.db'}",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--artifacts-destination", str(folder / "artifacts")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(f"{url}/health")[0], f"mlflow server on {url} to answer /health", timeout=180)
    except AssertionError:
        process.kill()
        raise
    return process, url


def _timed(url: str, password: str, requests: int) -> list[float]:
    seconds = []
    with httpx.Client(auth=(USER, password), timeout=30) as client:
        for _ in range(requests):
            started = time.perf_counter()
            client.get(f"{url}/api/2.0/mlflow/registered-models/search").raise_for_status()
            seconds.append(time.perf_counter() - started)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="authenticated requests per arm and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-ttl", type=int, default=60, help="auth_cache_ttl_seconds of the cached arm")
    args = parser.parse_args()
    password = secrets.token_urlsafe(24)
    arms = {"cache off (MLflow's default)": 0, f"cache {args.cache_ttl} s": args.cache_ttl}
    latencies: dict[str, list[float]] = {name: [] for name in arms}
    throughput: dict[str, list[float]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {name: _serve(Path(tmp), ttl, password) for name, ttl in arms.items()}
        try:
            for _, url in servers.values():  # warm both: imports, the first check, SQLite
                _timed(url, password, 3)
            for round_ in range(args.rounds):
                order = list(arms) if round_ % 2 == 0 else list(reversed(arms))
                for name in order:
                    started = time.perf_counter()
                    found = _timed(servers[name][1], password, args.requests)
                    throughput[name].append(args.requests / (time.perf_counter() - started))
                    latencies[name].extend(found)
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=30)
    baseline, cached = arms
    print(f"{args.requests} authenticated GET registered-models/search per arm, {args.rounds} rounds, alternating; "
          f"one MLflow worker each; load average {os.getloadavg()[0]:.1f}")
    print("| arm | median latency (ms) | p90 (ms) | median throughput (req/s) |")
    print("| --- | --- | --- | --- |")
    for name in arms:
        ordered = sorted(latencies[name])
        print(f"| {name} | {statistics.median(ordered) * 1000:.1f} | {ordered[int(len(ordered) * 0.9)] * 1000:.1f} | "
              f"{statistics.median(throughput[name]):.1f} |")
    ratio = statistics.median(latencies[baseline]) / statistics.median(latencies[cached])
    print(f"median latency ratio, {baseline} / {cached}: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
