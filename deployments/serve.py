"""Serve every deployment of the given models from one process (the embedded mode).

    uv run python -m deployments.serve examples/credit_default/spec.yaml [more specs...]
    uv run steward deployments examples/credit_default/spec.yaml     # the same, through the CLI

The deployments, schedules and triggers are registered with the Prefect server named by
``PREFECT_API_URL`` (``steward up`` starts one) and their runs execute in this process.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from steward.config import apply_environment

logger = logging.getLogger("steward.deployments")


def serve(spec_paths: Sequence[str], procedures: Sequence[str] | None = None, limit: int | None = None,
          gateway_url: str | None = None) -> None:
    """Register and serve the catalog's deployments; blocks until interrupted."""
    apply_environment()
    from prefect import serve as prefect_serve

    from deployments.catalog import plan_deployments, runner_deployments

    plans = plan_deployments(spec_paths, procedures, gateway_url=gateway_url)
    deployments, problems = runner_deployments(plans, skip_unavailable=True)
    for problem in problems:
        logger.warning("not served: %s", problem)
    if not deployments:
        raise SystemExit("no deployment could be built: " + "; ".join(problems))
    prefect_serve(*deployments, limit=limit, print_starting_message=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("specs", nargs="+", help="model spec paths")
    parser.add_argument("--procedure", action="append", dest="procedures", help="serve only these (repeatable)")
    parser.add_argument("--limit", type=int, default=None, help="most flow runs at once")
    parser.add_argument("--gateway-url", default=None, help="default gateway_url of the procedures that use it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(args.specs, args.procedures, args.limit, args.gateway_url)


if __name__ == "__main__":
    main()
