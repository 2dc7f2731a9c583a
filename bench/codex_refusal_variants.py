"""How the real Codex CLI treats each refusal a gateway could send (the table in docs/LIMITS.md).

A loopback stub answers every ``POST /v1/responses`` with one variant (status, body, headers);
``codex exec --json`` runs against it with Codex's default retry settings. Prints per variant:
exit code, seconds, how many requests Codex made, and the message it showed (``turn.failed``).
Not a test (Codex versions change this behaviour): re-run it after upgrading Codex.

    .venv/bin/python bench/codex_refusal_variants.py [NAME ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODEX = ROOT / ".tools" / "codex" / "node_modules" / ".bin" / "codex"
MSG = "codexgate: the day budget of key abc (0.01 USD) is spent; resets at 2026-12-02T00:00:00+00:00"


def variants() -> dict[str, tuple[int, Any, dict[str, str]]]:
    reset = int(time.time()) + 3600
    err = {"message": MSG}
    return {
        "429 usage_limit_reached + resets_at": (
            429, {"error": {**err, "type": "usage_limit_reached", "resets_at": reset, "resets_in_seconds": 3600}}, {}
        ),
        "429 usage_limit_reached": (429, {"error": {**err, "type": "usage_limit_reached"}}, {}),
        "429 insufficient_quota": (429, {"error": {**err, "type": "insufficient_quota", "code": "insufficient_quota"}}, {}),
        "429 usage_not_included": (429, {"error": {**err, "type": "usage_not_included"}}, {}),
        "429 other type, no Retry-After": (429, {"error": {**err, "type": "budget_exceeded"}}, {}),
        "429 other type, Retry-After 2": (429, {"error": {**err, "type": "requests"}}, {"retry-after": "2"}),
        "402 JSON": (402, {"error": {**err, "type": "budget_exceeded"}}, {}),
        "403 JSON": (403, {"error": {**err, "type": "budget_exceeded"}}, {}),
        "400 JSON": (400, {"error": {**err, "type": "budget_exceeded"}}, {}),
        "400 text/plain": (400, MSG, {"content-type": "text/plain"}),
    }


class Stub:
    """Answers every POST with the current variant and counts requests."""

    def __init__(self) -> None:
        self.variant: tuple[int, Any, dict[str, str]] = (500, {}, {})
        self.hits = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                self.rfile.read(int(self.headers.get("content-length", 0)))
                stub.hits += 1
                status, body, headers = stub.variant
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                headers = {"content-type": "application/json", **headers}
                for k, v in {**headers, "content-length": str(len(data))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def run_codex(tmp: Path, url: str, timeout: float = 60) -> tuple[str, float, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        'model = "gpt-5-codex"\nmodel_provider = "stub"\n[model_providers.stub]\nname = "stub"\n'
        f'base_url = "{url}"\nenv_key = "STUB_KEY"\nwire_api = "responses"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(CODEX_HOME=str(home), STUB_KEY="x", HOME=str(tmp), NO_COLOR="1")
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            [str(CODEX), "exec", "--skip-git-repo-check", "--json", "-c", "analytics.enabled=false",
             "-c", "features.plugins=false", "say hi"],
            cwd=tmp, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return "timeout", timeout, ""
    shown = ""
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("type") == "turn.failed":
                shown = event.get("error", {}).get("message", "")
    return str(p.returncode), time.monotonic() - t0, shown


def main() -> None:
    if not CODEX.exists():
        sys.exit("the Codex CLI is not installed (scripts/setup.sh --test)")
    only = set(sys.argv[1:])
    stub = Stub()
    version = subprocess.run([str(CODEX), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}; default request/stream retries")
    print(f"{'variant':<38} {'exit':>4} {'secs':>5} {'requests':>8}  shown")
    with tempfile.TemporaryDirectory() as d:
        for name, variant in variants().items():
            if only and name not in only:
                continue
            stub.variant, stub.hits = variant, 0
            rc, secs, shown = run_codex(Path(d), stub.url)
            print(f"{name:<38} {rc:>4} {secs:5.1f} {stub.hits:>8}  {shown[:150]}")
    stub.server.shutdown()


if __name__ == "__main__":
    main()
