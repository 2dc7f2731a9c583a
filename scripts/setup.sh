#!/usr/bin/env bash
# Create .venv with the project (and, with --test, the test tools: SDKs, the Codex CLI, Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "codexgate needs Python 3.11+ ($PY is $("$PY" --version 2>&1))" >&2; exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip uv >/dev/null
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as here) every process would otherwise
# recompile every imported module (~2 s per start of polars/duckdb/mitmproxy)
.venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python -e ".${extras}"
.venv/bin/python -m compileall -q codexgate addons analytics dashboard >/dev/null
if [ "${1:-}" = "--test" ]; then
  # The real Codex CLI for the end-to-end tests (its Linux binary arrives as an optional dependency).
  if [ ! -x .tools/codex/node_modules/.bin/codex ] && command -v npm >/dev/null; then
    npm install --silent --no-fund --no-audit --prefix .tools/codex @openai/codex >/dev/null 2>&1 \
      || echo "warning: npm install @openai/codex failed; Codex tests will be skipped" >&2
  fi
  # Headless Chromium for the dashboard's browser test.
  if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser test will be skipped" >&2
  fi
  # redis-server and haproxy for the multi-instance limits tests (started by the tests on loopback).
  need=""
  command -v redis-server >/dev/null || need="redis-server"
  { command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null || need="$need haproxy"
  if [ -n "$need" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    # shellcheck disable=SC2086  # $need is a word list
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null) \
      || echo "warning: could not install$need; the Redis/HAProxy limits tests will be skipped" >&2
  fi
fi
