#!/usr/bin/env bash
# Set up and run the gateway on embedded defaults: a simulated provider, a demo vault and key,
# the gateway (base-URL mode on :8080, forward-proxy mode on :8081) and the dashboard (:8501).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/codexgate demo "$@"
