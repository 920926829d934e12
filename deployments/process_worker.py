"""The production profile's worker: the catalog's deployments on a process work pool, and a worker polling it.

    uv run steward worker examples/credit_default/spec.yaml --pool steward-pool    # `steward up --profile production`

Creates the work pool (type ``process``) when it does not exist, registers every deployment of the
given models with it (schedules and triggers included), then becomes ``prefect worker start`` on that
pool: each flow run executes in a child process of the worker, in this installation's source folder.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from steward.config import apply_environment

logger = logging.getLogger("steward.deployments")

SOURCE_ROOT = Path(__file__).resolve().parents[1]  # holds flows/ and deployments/, as the entry points name them


def ensure_process_pool(name: str) -> bool:
    """Create the process work pool ``name`` with Prefect's default job template; True if created now."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(
                name=name, type=ProcessWorker.type,
                base_job_template=ProcessWorker.get_default_base_job_template()))
            return True
    if pool.type != ProcessWorker.type:
        raise SystemExit(f"the work pool {name!r} exists with type {pool.type!r}, not {ProcessWorker.type!r}: "
                         f"give the process worker another pool (--pool) or delete that one")
    return False


def apply_deployments(spec_paths: Sequence[str], pool: str, gateway_url: str | None = None) -> list[str]:
    """Register the catalog's deployments of these models with the pool; the names registered."""
    from deployments.catalog import plan_deployments, runner_deployments

    plans = plan_deployments(spec_paths, gateway_url=gateway_url)
    deployments, problems = runner_deployments(plans, skip_unavailable=True)
    for problem in problems:
        logger.warning("not deployed: %s", problem)
    if not deployments:
        raise SystemExit("no deployment could be built: " + "; ".join(problems))
    names = []
    for deployment in deployments:
        deployment.job_variables = {**deployment.job_variables, "working_dir": str(SOURCE_ROOT)}
        deployment.apply(work_pool_name=pool)
        names.append(deployment.full_name)
    return names


def run(spec_paths: Sequence[str], pool: str, gateway_url: str | None = None, limit: int | None = None) -> None:
    """Deploy to the pool, then replace this process with ``prefect worker start`` (same pid, so the
    stack's pid file and process group stay valid)."""
    apply_environment()
    if ensure_process_pool(pool):
        print(f"created the process work pool {pool}")
    names = apply_deployments(spec_paths, pool, gateway_url)
    print(f"registered {len(names)} deployments with the work pool {pool}: {', '.join(names)}")
    prefect = str(Path(sys.executable).parent / "prefect")
    command = [prefect, "worker", "start", "--pool", pool, "--type", "process", "--with-healthcheck"]
    if limit is not None:
        command += ["--limit", str(limit)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(SOURCE_ROOT)
    os.execv(prefect, command)
