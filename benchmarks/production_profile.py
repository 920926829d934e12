"""Time `steward up --profile production` and `steward down`: a cold start (initdb) and warm restarts.

    uv run python benchmarks/production_profile.py [--replicas 2] [--rounds 3]

In a new home under /tmp (the `postgres` user must reach it): `steward init` writes the example spec;
the stores start cold (initdb, databases created); v1 is trained and validated through them; then
`rounds` times the whole profile comes up (every service healthy, both replicas ready) and goes down.
Prints one markdown row per step with the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

STEWARD = str(Path(sys.executable).parent / "steward")
STORES = ("postgres", "prefect", "mlflow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="steward-bench-production-", dir="/tmp"))
    root.chmod(0o711)
    home = root / "home"
    ports = {"postgres": free_port(), "prefect": free_port(), "mlflow": free_port(), "gateway": free_port(),
             "deployments": free_port()}  # replicas take --gateway-port and the ports after it
    env = {**os.environ, "STEWARD_HOME": str(home), "STEWARD_ADMIN_TOKEN": "benchmark-token",
           "STEWARD_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
           "STEWARD_PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
           "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api"}
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_HOME"):
        env.pop(variable, None)

    def steward(*command: str) -> float:
        started = time.monotonic()
        result = subprocess.run([STEWARD, *command], capture_output=True, text=True, env=env, cwd=root)
        if result.returncode != 0:
            raise SystemExit(f"steward {' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        return time.monotonic() - started

    def row(step: str, seconds: float) -> None:
        print(f"| {step} | {seconds:.1f} | {os.getloadavg()[0]:.1f} |", flush=True)

    steward("init", str(root))
    spec = str(root / "credit_default" / "spec.yaml")
    options = [arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))]
    up = ["up", spec, "--profile", "production", "--replicas", str(args.replicas), *options, "--timeout", "600"]
    print("| step | seconds | load avg (1 min) |\n| --- | --- | --- |")
    try:
        row("up, stores only, cold (initdb, databases)", steward(*up, *(a for s in STORES for a in ("--only", s))))
        row("train v1 through the stores", steward("train", spec, "--reason", "benchmark"))
        row("validate v1 (champion)", steward("validate", spec))
        row(f"up, the rest ({args.replicas} replicas, worker)", steward(*up))
        row("down", steward("down"))
        for round_ in range(1, args.rounds + 1):
            row(f"up, whole profile, warm (round {round_})", steward(*up))
            row(f"down (round {round_})", steward("down"))
    finally:
        subprocess.run([STEWARD, "down"], capture_output=True, env=env, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
