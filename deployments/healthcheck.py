"""Container health checks (used by the HEALTHCHECK of deployments/docker/Dockerfile.worker).

    python -m deployments.healthcheck worker

``worker``: the Prefect worker's own health endpoint answers (it polls its work pool) and the
MLflow registry answers a search, so the flows it would run can load their models.
Exit 0 when healthy, 1 with the reason on stderr otherwise. Standard library plus httpx only.
"""

from __future__ import annotations

import os
import sys

import httpx


def worker_problems() -> list[str]:
    problems = []
    port = os.environ.get("PREFECT_WORKER_WEBSERVER_PORT", "8080")
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        if response.status_code != 200:
            problems.append(f"prefect worker /health answered {response.status_code}")
    except httpx.HTTPError as error:
        problems.append(f"prefect worker /health: {error}")
    tracking = os.environ.get("STEWARD_TRACKING_URI", "")
    if tracking.startswith("http"):
        try:
            response = httpx.get(f"{tracking.rstrip('/')}/health", timeout=5)
            if response.status_code != 200:
                problems.append(f"MLflow {tracking}/health answered {response.status_code}")
        except httpx.HTTPError as error:
            problems.append(f"MLflow {tracking}: {error}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args != ["worker"]:
        print("usage: python -m deployments.healthcheck worker", file=sys.stderr)
        return 2
    problems = worker_problems()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
