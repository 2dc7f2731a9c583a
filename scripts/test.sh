#!/usr/bin/env bash
# Set up everything the tests need, then run lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/lint-imports  # the layers contract in pyproject.toml: no module imports upward
# The gateway must keep working on mitmproxy 12.x too (Python 3.12+ gets 12.x; 3.11 gets 11.0.x):
# when a Python 3.12 is on the machine, run the gateway's end-to-end tests under it first.
PY312=""
for candidate in python3.12 python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python3 "$HOME"/.pyenv/versions/3.13*/bin/python3; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
    PY312=$candidate
    break
  fi
done
if [ -n "$PY312" ] && [ "${CODEXGATE_SKIP_MITM12:-}" != 1 ]; then
  [ -x .venv312/bin/python ] || "$PY312" -m venv .venv312
  .venv312/bin/python -m pip install -q --upgrade pip uv >/dev/null
  .venv312/bin/uv pip install -q --compile-bytecode --python .venv312/bin/python -e ".[test]"
  .venv312/bin/python -m compileall -q codexgate addons analytics dashboard >/dev/null
  echo "== gateway end-to-end tests on mitmproxy $(.venv312/bin/python -c 'import mitmproxy.version as v; print(v.VERSION)') =="
  .venv312/bin/python -m pytest -q -p no:cacheprovider tests/test_gateway_sdk.py tests/test_gateway_forward.py \
    tests/test_gateway_vault_live.py tests/test_traces_e2e.py tests/test_failclosed.py tests/test_fuzz_gateway.py tests/gateway
fi
echo "== full suite on mitmproxy $(.venv/bin/python -c 'import mitmproxy.version as v; print(v.VERSION)') =="
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
