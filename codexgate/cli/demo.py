"""``codexgate demo``: the gateway on embedded defaults, nothing external needed.

Starts, on loopback: the simulated provider, the gateway (base-URL mode and forward-proxy
mode) with a demo vault whose providers point at the simulator, a short sample agent
session through the gateway so there is something to look at, and the dashboard.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from codexgate.cli import CliError
from codexgate.cli.demo_setup import DemoVault, create_demo_vault
from codexgate.core.vault import Vault, VaultError

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_SCRIPT = ROOT / "addons" / "gateway.py"
DASHBOARD_APP = ROOT / "dashboard" / "app.py"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the gateway on embedded defaults (simulated provider, demo key, dashboard)"
    )
    p.add_argument("--data", default="codexgate-data", help="directory for the demo vault, keys and traces")
    p.add_argument("--port", type=int, default=8080, help="gateway, base-URL mode")
    p.add_argument("--proxy-port", type=int, default=8081, help="gateway, forward-proxy mode")
    p.add_argument("--sim-port", type=int, default=8090, help="simulated provider")
    p.add_argument("--dashboard-port", type=int, default=8501)
    p.add_argument("--no-dashboard", action="store_true")
    p.add_argument(
        "--check", action="store_true", help="start, send the sample session, verify its traces, stop"
    )
    p.set_defaults(func=run)


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CliError(f"{what} exited with status {proc.returncode} (is port {port} free?)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise CliError(f"{what} did not start listening on port {port}")


def _prepare_vault(data: Path, sim_url: str) -> tuple[DemoVault, str, str]:
    keys_file = data / "secrets" / "demo-keys.json"
    vault_path, key_file = data / "vault" / "vault.enc", data / "secrets" / "vault.key"
    if not vault_path.exists():
        openai_key, anthropic_key = "sk-sim-" + secrets.token_hex(16), "sk-ant-sim-" + secrets.token_hex(16)
        demo = create_demo_vault(data, sim_url, openai_key, anthropic_key)
        keys_file.write_text(json.dumps({"keys": demo.keys, "key_ids": demo.key_ids}))
        keys_file.chmod(0o600)
        return demo, openai_key, anthropic_key
    secret = key_file.read_bytes()
    try:
        vault = Vault.load(vault_path, secret)
    except VaultError as exc:
        raise CliError(f"{exc} (delete {data} to start the demo afresh)") from None
    for p in vault.providers.values():  # the simulator may listen on another port this time
        p.base_url = f"{sim_url}/v1"
    vault.save(vault_path, secret)
    saved = json.loads(keys_file.read_text()) if keys_file.exists() else {"keys": {}, "key_ids": {}}
    demo = DemoVault(vault_path, key_file, secret, saved["keys"], saved["key_ids"])
    return demo, vault.providers["openai"].api_key, vault.providers["anthropic"].api_key


def _post(url: str, key: str, body: dict, headers: dict[str, str]) -> dict:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json", **headers},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def sample_session(gateway_url: str, key: str) -> str:
    """A small agent loop like Codex's: the model asks for tool runs, we answer with outputs."""
    session = str(uuid.uuid4())
    items: list[dict] = [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "You are a coding agent."}],
        },
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "RUN: ls\nRUN: cat README.md"}],
        },
    ]
    for turn_call in range(6):
        meta = json.dumps({"session_id": session, "turn_id": "turn-1", "request_kind": "turn"})
        resp = _post(
            f"{gateway_url}/v1/responses",
            key,
            {"model": "gpt-5-codex", "input": items, "stream": False, "prompt_cache_key": session},
            {"session-id": session, "x-codex-turn-metadata": meta, "originator": "codexgate_demo"},
        )
        calls = [o for o in resp.get("output", []) if o.get("type") in ("function_call", "custom_tool_call")]
        items.extend(resp.get("output", []))
        if not calls:
            break
        for c in calls:
            out_type = "function_call_output" if c["type"] == "function_call" else "custom_tool_call_output"
            items.append(
                {"type": out_type, "call_id": c["call_id"], "output": f"(demo output of call {turn_call})"}
            )
    return session


def run(args: argparse.Namespace) -> int:
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    sim_url = f"http://127.0.0.1:{args.sim_port}"
    demo, openai_key, anthropic_key = _prepare_vault(data, sim_url)
    procs: list[tuple[str, subprocess.Popen]] = []
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}

    def stop(*_: object) -> None:
        for _name, proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for _name, proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "codexgate.simprovider",
                "--host",
                "127.0.0.1",
                "--port",
                str(args.sim_port),
            ],
            env={**env, "SIM_OPENAI_KEY": openai_key, "SIM_ANTHROPIC_KEY": anthropic_key},
            stdout=subprocess.DEVNULL,
        )
        procs.append(("simulated provider", sim))
        _wait_port(args.sim_port, sim, "simulated provider")
        traces = data / "traces"
        gateway = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mitmdump")),
                "-q",
                "-s",
                str(GATEWAY_SCRIPT),
                "--listen-host",
                "127.0.0.1",
                "--mode",
                f"reverse:{sim_url}@{args.port}",
                "--mode",
                f"regular@{args.proxy_port}",
                "--set",
                "connection_strategy=lazy",
                "--set",
                f"confdir={data / 'mitmproxy'}",
                "--set",
                f"codexgate_vault={demo.path}",
                "--set",
                f"codexgate_vault_key_file={demo.key_file}",
                "--set",
                f"codexgate_traces={traces}",
                "--set",
                "codexgate_flush_seconds=1",
            ],
            env=env,
        )
        procs.append(("gateway", gateway))
        _wait_port(args.port, gateway, "gateway")
        gateway_url = f"http://127.0.0.1:{args.port}"
        key = demo.keys.get("alice")
        session = sample_session(gateway_url, key) if key else None
        admin_token = secrets.token_urlsafe(18)
        if not args.no_dashboard and not args.check:
            dash = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamlit",
                    "run",
                    str(DASHBOARD_APP),
                    "--server.headless",
                    "true",
                    "--server.address",
                    "127.0.0.1",
                    "--server.port",
                    str(args.dashboard_port),
                    "--browser.gatherUsageStats",
                    "false",
                ],
                env={
                    **env,
                    "CODEXGATE_TRACES": str(traces),
                    "CODEXGATE_VAULT": str(demo.path),
                    "CODEXGATE_VAULT_KEY_FILE": str(demo.key_file),
                    "CODEXGATE_ADMIN_TOKEN": admin_token,
                    "CODEXGATE_GATEWAY_URL": f"{gateway_url}/v1",
                },
                stdout=subprocess.DEVNULL,
            )
            procs.append(("dashboard", dash))
        if args.check:
            return _check(traces, session)
        _banner(args, data, demo, admin_token, session)
        while all(p.poll() is None for _n, p in procs):
            time.sleep(0.5)
        dead = [n for n, p in procs if p.poll() is not None]
        raise CliError(f"{', '.join(dead)} stopped unexpectedly")
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


def _check(traces: Path, session: str | None) -> int:
    import duckdb

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if list(traces.glob("**/*.parquet")):
            con = duckdb.connect()
            n = con.sql(
                f"select count(*) from read_parquet('{traces}/**/*.parquet', hive_partitioning = true, union_by_name = true) "
                "where session_id = ?",
                params=[session],
            ).fetchall()[0][0]
            if n:
                print(f"demo check: ok, session {session} recorded as {n} trace rows under {traces}")
                return 0
        time.sleep(0.5)
    raise CliError(f"demo check: no trace rows appeared under {traces}")


def _banner(
    args: argparse.Namespace, data: Path, demo: DemoVault, admin_token: str, session: str | None
) -> None:
    keys_file = data / "secrets" / "demo-keys.json"  # mode 0600; the key itself is never printed here
    print(
        f"""
codexgate demo is running (Ctrl-C stops everything)
  gateway, base-URL mode : http://127.0.0.1:{args.port}/v1
  gateway, forward proxy : http://127.0.0.1:{args.proxy_port}   (CA: {data / "mitmproxy" / "mitmproxy-ca-cert.pem"})
  simulated provider     : http://127.0.0.1:{args.sim_port}
  dashboard              : {"off" if args.no_dashboard else f"http://127.0.0.1:{args.dashboard_port}   (admin token: {admin_token})"}
  traces (Parquet)       : {data / "traces"}
  vault                  : {demo.path}   (key file: {demo.key_file})
  sample session         : {session}

Developer key for alice (kept in {keys_file}, mode 0600; real keys are printed once by `codexgate key create`):
  export CODEXGATE_KEY=$({sys.executable} -c 'import json,sys; print(json.load(open(sys.argv[1]))["keys"]["alice"])' {keys_file})

Codex config ($CODEX_HOME/config.toml):
  model = "gpt-5-codex"
  model_provider = "codexgate"
  [model_providers.codexgate]
  name = "codexgate"
  base_url = "http://127.0.0.1:{args.port}/v1"
  env_key = "CODEXGATE_KEY"
  wire_api = "responses"

Try:  codex exec --skip-git-repo-check "RUN: echo hello from codexgate" < /dev/null
      codexgate report spend --traces {data / "traces"} --by team,model
""",
        flush=True,
    )
