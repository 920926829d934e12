"""Before a gateway takes traffic: every model's champion loads and matches its recorded digest.

    python -m deployments.preflight credit-default [fraud ...]

Exit status 0 when all load; 1 with one line per problem otherwise (the container then
stops instead of serving a model it cannot load). Used by deployments/docker/entrypoint-gateway.sh.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from steward.config import apply_environment


def check_models(models: Sequence[str]) -> list[str]:
    """Problems found loading each model's champion; empty when every one loads."""
    from steward.registry.adapter import Registry

    registry = Registry.from_settings(apply_environment())
    problems = []
    for model in models:
        try:
            champion = registry.champion(model) if registry.model_exists(model) else None
            if champion is None:
                problems.append(f"{model}: no champion in {registry_uri(registry)}; promote a validated version first")
                continue
            registry.load_model(model, champion.version)
        except Exception as error:  # any failure means: do not take traffic; say which and why
            problems.append(f"{model}: the champion does not load: {type(error).__name__}: {error}")
    return problems


def registry_uri(registry: object) -> str:
    return str(getattr(registry, "tracking_uri", "the registry"))


def main(argv: Sequence[str] | None = None) -> int:
    models = list(argv if argv is not None else sys.argv[1:])
    if not models:
        print("preflight: name the models to check", file=sys.stderr)
        return 2
    problems = check_models(models)
    for problem in problems:
        print(f"preflight: {problem}", file=sys.stderr)
    if not problems:
        print(f"preflight: {', '.join(models)}: champion loaded and digest verified")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
