#!/usr/bin/env bash
# Set up and run the gateway on embedded defaults: a simulated provider, a demo vault and keys,
# the gateway (base-URL mode on :8080, forward-proxy mode on :8081) and the dashboard (:8501).
# It records a 10-step agent session with tool calls (the Codex CLI when installed, else a built-in
# agent loop), a few refusals and failures, and writes a labelled synthetic history to its own folder;
# the banner ends with the three dashboard URLs to open first. `--check` verifies all that and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/codexgate demo "$@"
