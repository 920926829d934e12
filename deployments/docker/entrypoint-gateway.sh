#!/bin/sh
# Gateway entry point: refuse to take traffic unless every model's champion loads and
# matches its recorded artifact digest; then hand the process over to the gateway.
#   STEWARD_MODELS   space-separated model names to serve (required)
#   STEWARD_TRACKING_URI, STEWARD_ARTIFACT_ROOT, STEWARD_STORE_URI, STEWARD_ADMIN_TOKEN: see README
set -eu

if [ -z "${STEWARD_MODELS:-}" ]; then
    echo "entrypoint: set STEWARD_MODELS to the model names to serve, e.g. STEWARD_MODELS=credit-default" >&2
    exit 64
fi

if [ "${STEWARD_SKIP_PREFLIGHT:-false}" != "true" ]; then
    # shellcheck disable=SC2086  # word splitting of the model list is intended
    python -m deployments.preflight ${STEWARD_MODELS}
fi

# shellcheck disable=SC2086
exec steward serve ${STEWARD_MODELS} --host 0.0.0.0 --port "${STEWARD_GATEWAY_PORT:-8080}" "$@"
