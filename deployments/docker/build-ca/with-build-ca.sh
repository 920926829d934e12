#!/bin/sh
# Run a build step trusting the CA bundle that `steward images build` placed beside this script,
# when there is one (a proxy that inspects TLS); otherwise the base image's own trust store.
set -eu
bundle="$(dirname "$0")/ca-certificates.crt"
if [ -s "$bundle" ]; then
    export SSL_CERT_FILE="$bundle" PIP_CERT="$bundle" REQUESTS_CA_BUNDLE="$bundle"
fi
exec "$@"
