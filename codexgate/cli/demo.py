"""``codexgate demo``: the gateway on embedded defaults, nothing external needed.

Starts, on loopback: the simulated provider, the gateway (base-URL mode and forward-proxy
mode) with a demo vault whose providers point at the simulator, and the dashboard. Then it
records, through the gateway, what the product is for:

- one multi-step agent session with tool calls (10 shell commands that find and fix a bug in a
  scratch folder): with the real Codex CLI when it is installed at
  ``.tools/codex/node_modules/.bin/codex``, otherwise with a small built-in loop that offers
  Codex's ``exec_command`` tool, runs the simulated model's tool calls in the scratch folder and
  sends the outputs back the way Codex does;
- a few calls from the other developers, refusals (a bad key, an out-of-scope model, a provider
  outside a key's scope, a team budget, a banned term), a guardrail redaction (an AWS key in a
  prompt), a fallback (gpt-5 to Claude while OpenAI returns 503) and upstream failures (a 500 and
  a 429 from the simulator);
- a labelled synthetic history (``analytics.synth``: 1,500 calls over 14 days, 2 orgs, 6 teams, 30 developers,
  6 models, errors, refusals, fallbacks, guardrail findings) in its OWN folder
  ``DATA/synthetic/traces`` with ``DATA/synthetic/SYNTHETIC.json`` beside it. The dashboard shows
  it next to the live folder with a "synthetic data" badge; it is never written to the live
  traces folder ``DATA/traces``.

``--check`` records the same, then asserts: the recorded session has >= 10 steps with tool calls,
the synthetic folder is labelled, and no live trace row comes from the synthetic history.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from codexgate.cli import CliError
from codexgate.cli.demo_setup import DemoVault, create_demo_vault
from codexgate.cli.launch import listening
from codexgate.core.vault import Route, RouteTarget, Team, Vault, VaultError

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_SCRIPT = ROOT / "addons" / "gateway.py"
DASHBOARD_APP = ROOT / "dashboard" / "app.py"
CODEX = ROOT / ".tools" / "codex" / "node_modules" / ".bin" / "codex"
SYNTHETIC_LABEL = "SYNTHETIC.json"
SYNTHETIC_DAYS, SYNTHETIC_CALLS, SYNTHETIC_SEED = 14, 1500, 14
MIN_TOOL_STEPS = 10

# The story the recorded session tells: a bug found by a test, fixed, and the test passing.
STORY_TASK = "Fix add() in calc.py so that its test passes."
STORY_COMMANDS = [
    "printf 'def add(a, b):\\n    return a - b\\n' > calc.py",
    "printf 'from calc import add\\n\\nassert add(2, 3) == 5, add(2, 3)\\nprint(\"1 passed\")\\n' > test_calc.py",
    "ls -l",
    "cat calc.py",
    "python3 test_calc.py 2>&1 || true",
    "grep -n 'return' calc.py",
    "sed -i 's/a - b/a + b/' calc.py",
    "cat calc.py",
    "python3 test_calc.py",
    "wc -l calc.py test_calc.py",
]


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
        "--agent",
        choices=("auto", "codex", "builtin"),
        default="auto",
        help="who records the agent session: the real Codex CLI (auto: when installed) or a built-in loop",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="start, record the demo traffic, verify the session and the synthetic folder, stop",
    )
    p.set_defaults(func=run)


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CliError(f"{what} exited with status {proc.returncode} (is port {port} free?)")
        if listening(port):
            return
        time.sleep(0.1)
    raise CliError(f"{what} did not start listening on port {port}")


def _prepare_vault(data: Path, sim_url: str) -> tuple[DemoVault, str, str]:
    keys_file = data / "secrets" / "demo-keys.json"
    vault_path, key_file = data / "vault" / "vault.enc", data / "secrets" / "vault.key"
    if not vault_path.exists():
        openai_key, anthropic_key = "sk-sim-" + secrets.token_hex(16), "sk-ant-sim-" + secrets.token_hex(16)
        demo = create_demo_vault(data, sim_url, openai_key, anthropic_key)
        vault = demo.load()  # team budgets, so Attribution and Overview show a burn-down
        for path, amount in (("acme/platform", 2.0), ("acme/mobile", 0.5)):
            vault.teams[path].budget_usd, vault.teams[path].budget_period = amount, "day"
        # a team whose daily budget is a fraction of a cent: its calls meet the budget refusal
        vault.teams["acme/interns"] = Team(org="acme", name="interns", budget_usd=0.0005, budget_period="day")
        entry, plain = vault.create_key(org="acme", team="interns", project="codexgate", developer="dave")
        demo.keys["dave"], demo.key_ids["dave"] = plain, entry.key_id
        # gpt-5 falls back to Claude (translated) when OpenAI fails; guardrails redact secrets and
        # block a banned code name for the whole org
        vault.routes.insert(
            0,
            Route(
                model="gpt-5",
                provider="openai",
                targets=[RouteTarget("openai"), RouteTarget("anthropic", model="claude-sonnet-4-5")],
            ),
        )
        vault.sections["guardrail_policies"] = {
            "version": 1,
            "scopes": {
                "org:acme": {
                    "detectors": {"secrets": {"action": "redact"}, "banned": {"action": "block"}},
                    "banned_terms": ["project-aurora"],
                }
            },
        }
        demo.save(vault)
        keys_file.write_text(json.dumps({"keys": demo.keys, "key_ids": demo.key_ids}))
        keys_file.chmod(0o600)
        return demo, openai_key, anthropic_key
    secret = key_file.read_bytes()
    try:
        vault = Vault.load(vault_path, secret)
    except VaultError as exc:
        raise CliError(f"{exc} (delete {data} to start the demo afresh)") from None
    for p in vault.providers.values():  # the simulator may listen on another port this time
        p.base_url = f"{sim_url}/openai/v1" if p.kind == "azure" else f"{sim_url}/v1"
    vault.save(vault_path, secret)
    saved = json.loads(keys_file.read_text()) if keys_file.exists() else {"keys": {}, "key_ids": {}}
    demo = DemoVault(vault_path, key_file, secret, saved["keys"], saved["key_ids"])
    return demo, vault.providers["openai"].api_key, vault.providers["anthropic"].api_key


def _post(url: str, key: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    """POST JSON; the HTTP status and the JSON answer (error answers included). A 503 whose code ends
    in ``_unavailable`` (a gateway part still starting, e.g. the limits ledger) is retried for up to
    15 s."""
    deadline = time.monotonic() + 15
    while True:
        status, answer = _post_once(url, key, body, headers)
        code = str((answer.get("error") or {}).get("code") or "") if isinstance(answer, dict) else ""
        if status != 503 or not code.endswith("_unavailable") or time.monotonic() > deadline:
            return status, answer
        time.sleep(0.3)


def _post_once(url: str, key: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {}


# Codex's exec_command tool, as Codex 0.171 offers it (see codexgate/simprovider.py)
EXEC_COMMAND_TOOL = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command in a PTY, returning output or a session ID for ongoing interaction.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {
            "cmd": {"type": "string", "description": "Shell command to execute."},
            "workdir": {"type": "string", "description": "Optional working directory."},
            "yield_time_ms": {"type": "number"},
            "max_output_tokens": {"type": "number"},
        },
        "required": ["cmd"],
        "additionalProperties": False,
    },
}


def run_shell(command: str, workdir: Path, timeout: float = 20) -> str:
    """Run one tool call's command in ``workdir`` the way Codex does (``bash -lc``) and wrap its output
    as Codex reports it to the model."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", "-lc", command],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired:
        output, code = f"command timed out after {timeout:.0f} s\n", 124
    wall = time.monotonic() - started
    return (
        f"Chunk ID: {secrets.token_hex(3)}\nWall time: {wall:.4f} seconds\nProcess exited with code {code}\n"
        f"Original token count: {max(1, len(output) // 4)}\nOutput:\n{output}"
    )


def story_prompt() -> str:
    return STORY_TASK + "\n" + "\n".join(f"RUN: {c}" for c in STORY_COMMANDS)


def builtin_agent_session(gateway_url: str, key: str, workdir: Path, max_calls: int = 40) -> str:
    """A small agent loop like Codex's: each call sends the whole conversation with Codex's headers,
    reasoning and the ``exec_command`` tool; every tool call the model makes is run in ``workdir``
    and its output appended; it stops when the model answers without a tool call."""
    workdir.mkdir(parents=True, exist_ok=True)
    session = str(uuid.uuid4())
    items: list[dict] = [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": f"<environment_context>cwd: {workdir}</environment_context>"}
            ],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": story_prompt()}]},
    ]
    for _ in range(max_calls):
        meta = json.dumps({"session_id": session, "turn_id": "turn-1", "request_kind": "turn"})
        status, resp = _post(
            f"{gateway_url}/v1/responses",
            key,
            {
                "model": "gpt-5-codex",
                "instructions": "You are Codex, a coding agent. Use exec_command to run shell commands.",
                "input": items,
                "tools": [EXEC_COMMAND_TOOL],
                "tool_choice": "auto",
                "parallel_tool_calls": False,
                "reasoning": {"effort": "medium", "summary": "auto"},
                "include": ["reasoning.encrypted_content"],
                "store": False,
                "stream": False,
                "prompt_cache_key": session,
            },
            {"session-id": session, "x-codex-turn-metadata": meta, "originator": "codexgate_demo"},
        )
        if status != 200:
            raise CliError(f"demo: the agent session's call failed with HTTP {status}: {resp.get('error')}")
        output = resp.get("output", [])
        items.extend(o for o in output if o.get("type") != "reasoning")
        calls = [o for o in output if o.get("type") == "function_call"]
        if not calls:
            break
        for c in calls:
            try:
                command = json.loads(c.get("arguments") or "{}").get("cmd", "")
            except ValueError:
                command = ""
            result = run_shell(command, workdir) if command else "error: no cmd argument"
            items.append({"type": "function_call_output", "call_id": c["call_id"], "output": result})
    return session


def codex_agent_session(gateway_url: str, key: str, workdir: Path, timeout: float = 240) -> str | None:
    """The same story with the real Codex CLI (``codex exec``) through the gateway; its thread id (the
    session id in the traces), or None when Codex is not installed or did not start a thread."""
    if not CODEX.exists() or shutil.which("node") is None:
        return None
    home = workdir.parent / "codex-home"
    home.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        'model = "gpt-5-codex"\nmodel_provider = "codexgate"\n[model_providers.codexgate]\n'
        f'name = "codexgate"\nbase_url = "{gateway_url}/v1"\nenv_key = "CODEXGATE_KEY"\n'
        'wire_api = "responses"\nrequest_max_retries = 0\nstream_max_retries = 0\n'
    )
    drop = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME")
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and k not in drop}
    env.update({"CODEX_HOME": str(home), "CODEXGATE_KEY": key, "HOME": str(workdir.parent), "NO_COLOR": "1"})
    cmd = [str(CODEX), "exec", "--skip-git-repo-check", "-s", "workspace-write", "--json"]
    cmd += ["-c", "analytics.enabled=false", "-c", "features.plugins=false", story_prompt()]
    try:
        proc = subprocess.run(
            cmd,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in proc.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "thread.started" and event.get("thread_id"):
            return str(event["thread_id"])
    return None


@dataclass
class Recorded:
    """What the demo sent through the gateway (for the banner and ``--check``)."""

    session: str
    agent: str  # "codex" | "builtin"
    extra: dict[str, int] = field(default_factory=dict)  # what -> HTTP status


def _chat(gateway_url: str, key: str, model: str, text: str, fault: str | None = None) -> int:
    headers = {"originator": "codexgate_demo"} | ({"x-sim-fault": fault} if fault else {})
    body = {"model": model, "input": text, "stream": False}
    return _post(f"{gateway_url}/v1/responses", key, body, headers)[0]


def _sim_faults(sim_url: str, fault: dict | None) -> None:
    """Queue a fault in the simulated provider (None: clear the queue)."""
    req = urllib.request.Request(
        f"{sim_url}/_sim/faults",
        data=json.dumps(fault).encode() if fault else None,
        method="POST" if fault else "DELETE",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10):
        pass


def other_traffic(gateway_url: str, demo: DemoVault, sim_url: str | None = None) -> dict[str, int]:
    """Short calls from the other developers, refusals and upstream failures (HTTP status of each)."""
    keys = demo.keys
    out: dict[str, int] = {}
    if "bob" in keys:
        out["bob: gpt-4.1-mini"] = _chat(
            gateway_url, keys["bob"], "gpt-4.1-mini", "Summarise the release notes"
        )
        out["bob: gpt-4.1-mini (upstream 500)"] = _chat(
            gateway_url, keys["bob"], "gpt-4.1-mini", "Plan the sprint", "status=500"
        )
        out["bob: o3 (out of his key's model scope)"] = _chat(gateway_url, keys["bob"], "o3", "Prove P != NP")
    if "carol" in keys:
        out["carol: gpt-5-codex (outside her key's providers)"] = _chat(
            gateway_url, keys["carol"], "gpt-5-codex", "Write a haiku"
        )
    if "alice" in keys:
        out["alice: gpt-5-codex (upstream 429)"] = _chat(
            gateway_url, keys["alice"], "gpt-5-codex", "Explain the diff", "status=429;retry_after=1"
        )
        out["alice: gpt-5-codex"] = _chat(gateway_url, keys["alice"], "gpt-5-codex", "Explain the diff")
    if "dave" in keys:  # a team budget of $0.0005/day: the limits step refuses (budget_exceeded)
        for i in range(3):
            out[f"dave: gpt-5-codex #{i + 1} (team acme/interns: $0.0005/day budget)"] = _chat(
                gateway_url, keys["dave"], "gpt-5-codex", "Refactor the whole monorepo " * 40
            )
    if "alice" in keys:
        out["alice: a prompt with an AWS key (guardrail: redacted)"] = _chat(
            gateway_url, keys["alice"], "gpt-5-codex", "Why does AKIAIOSFODNN7EXAMPLE fail to authenticate?"
        )
        out["alice: a prompt naming project-aurora (guardrail: blocked)"] = _chat(
            gateway_url, keys["alice"], "gpt-5-codex", "Write the launch plan for project-aurora"
        )
        if sim_url:  # OpenAI fails for a moment: gpt-5 falls back to Claude
            fault = {"spec": "status=503", "times": 6, "match_path": "/responses"}
            _sim_faults(sim_url, fault)
            try:
                out["alice: gpt-5 while OpenAI returns 503 (fallback to Claude)"] = _chat(
                    gateway_url, keys["alice"], "gpt-5", "Summarise the incident"
                )
            finally:
                _sim_faults(sim_url, None)
    out["unknown key"] = _chat(gateway_url, "cgk_demo0000.not-a-real-key", "gpt-5-codex", "hello")
    return out


def record_demo_traffic(
    gateway_url: str, demo: DemoVault, data: Path, agent: str, sim_url: str | None = None
) -> Recorded:
    """The demo's live traffic: the agent session (Codex when asked or available, else built in)
    and the other calls."""
    key = demo.keys.get("alice")
    if not key:
        raise CliError(f"demo: no key for alice in {data / 'secrets' / 'demo-keys.json'} (delete {data})")
    scratch = data / "demo-work" / time.strftime("%Y%m%d-%H%M%S")
    session, used = None, "builtin"
    if agent in ("auto", "codex"):
        session, used = codex_agent_session(gateway_url, key, scratch / "work"), "codex"
        if session is None and agent == "codex":
            raise CliError(f"demo: the Codex CLI at {CODEX} did not run a session (try --agent builtin)")
    if session is None:
        session, used = builtin_agent_session(gateway_url, key, scratch / "work"), "builtin"
    return Recorded(session, used, other_traffic(gateway_url, demo, sim_url))


# ---------------------------------------------------------------------------------------------
# the synthetic history: its own folder, labelled
# ---------------------------------------------------------------------------------------------


def _nice(amount: float) -> float:
    """A budget a person would set: two significant digits."""
    if amount <= 0:
        return 1.0
    digits = 10 ** (len(str(int(amount))) - 2) if amount >= 100 else 1
    return float(max(1, round(amount / digits)) * digits)


def write_synthetic_history(folder: Path) -> Path:
    """Generate the labelled synthetic history into ``folder/traces`` (once; kept across restarts)
    with ``folder/SYNTHETIC.json``: what it is, how it was made, and weekly team budgets sized from
    its own spend so the burn-down shows teams on track and at risk. Returns the traces folder."""
    from analytics.access import ViewerScope
    from analytics.db import TraceStore
    from analytics.queries import spend
    from analytics.synth import write_dataset

    traces, label = folder / "traces", folder / SYNTHETIC_LABEL
    if label.exists() and list(traces.glob("date=*/*.parquet")):
        return traces
    folder.mkdir(parents=True, exist_ok=True)
    write_dataset(traces, SYNTHETIC_CALLS, seed=SYNTHETIC_SEED, bodies=True, days=SYNTHETIC_DAYS)
    by_team = spend(TraceStore(traces), by=("org", "team"), scope=ViewerScope())
    factors = [0.6, 1.5, 2.5, 0.9, 1.8, 3.0]
    budgets = []
    for i, row in enumerate(by_team.sort("org", "team").iter_rows(named=True)):
        if not row["team"] or not row["cost_usd"]:
            continue
        weekly = row["cost_usd"] / SYNTHETIC_DAYS * 7
        budgets.append(
            {
                "scope_kind": "team",
                "name": f"{row['org']}/{row['team']}",
                "amount_usd": _nice(weekly * factors[i % len(factors)]),
                "period": "week",
            }
        )
    label.write_text(
        json.dumps(
            {
                "synthetic": True,
                "description": "Generated by analytics.synth for the demo. NOT real traffic; "
                "kept apart from the live traces folder.",
                "generator": "analytics.synth.write_dataset",
                "calls": SYNTHETIC_CALLS,
                "days": SYNTHETIC_DAYS,
                "seed": SYNTHETIC_SEED,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "budgets": budgets,
            },
            indent=2,
        )
        + "\n"
    )
    return traces


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
                "onboarding=false",
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
        _wait_port(args.proxy_port, gateway, "gateway (forward proxy)")
        gateway_url = f"http://127.0.0.1:{args.port}"
        print("codexgate demo: writing the synthetic history (first start only) ...", flush=True)
        synthetic = write_synthetic_history(data / "synthetic")
        print(
            "codexgate demo: recording an agent session and a few refusals through the gateway ...",
            flush=True,
        )
        recorded = record_demo_traffic(gateway_url, demo, data, args.agent, sim_url)
        if args.check:
            return _check(traces, synthetic, recorded)
        admin_token = secrets.token_urlsafe(18)
        if not args.no_dashboard:
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
                    "CODEXGATE_SYNTHETIC_TRACES": str(synthetic),
                    "CODEXGATE_VAULT": str(demo.path),
                    "CODEXGATE_VAULT_KEY_FILE": str(demo.key_file),
                    "CODEXGATE_ADMIN_TOKEN": admin_token,
                    "CODEXGATE_GATEWAY_URL": f"{gateway_url}/v1",
                },
                stdout=subprocess.DEVNULL,
            )
            procs.append(("dashboard", dash))
            _wait_port(args.dashboard_port, dash, "dashboard")
        _banner(args, data, demo, admin_token, recorded)
        while all(p.poll() is None for _n, p in procs):
            time.sleep(0.5)
        dead = [n for n, p in procs if p.poll() is not None]
        raise CliError(f"{', '.join(dead)} stopped unexpectedly")
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


def _read(folder: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of ``sql`` over the Parquet files of a traces folder (the relation is called ``t``)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.sql(
            f"create view t as select * from read_parquet('{folder}/**/*.parquet', "
            "hive_partitioning = true, union_by_name = true)"
        )
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def check_recording(traces: Path, synthetic: Path, session: str, timeout: float = 30) -> list[str]:
    """What is wrong with the demo's data (empty: all good): the recorded session has at least
    ``MIN_TOOL_STEPS`` steps with tool calls; the synthetic folder carries its label and lies apart
    from the live one; no live row comes from the synthetic history (its keys, sessions or traces)."""
    problems: list[str] = []
    deadline, steps, tool_steps = time.monotonic() + timeout, 0, 0
    while time.monotonic() < deadline:  # the sink flushes every second
        if list(traces.glob("**/*.parquet")):
            steps, tool_steps = _read(
                traces,
                "select count(*), count(*) filter (where len(coalesce(tool_calls, [])) > 0) from t "
                "where session_id = ?",
                [session],
            )[0]
            if tool_steps >= MIN_TOOL_STEPS:
                break
        time.sleep(0.5)
    if tool_steps < MIN_TOOL_STEPS:
        problems.append(
            f"session {session} has {steps} steps, {tool_steps} with tool calls (want >= {MIN_TOOL_STEPS})"
        )
    label_file = synthetic.parent / SYNTHETIC_LABEL
    try:
        label = json.loads(label_file.read_text())
    except (OSError, ValueError):
        label = {}
    if label.get("synthetic") is not True:
        problems.append(f"{label_file} does not label {synthetic} as synthetic")
    live, synth = traces.resolve(), synthetic.resolve()
    if synth.is_relative_to(live) or live.is_relative_to(synth):
        problems.append(f"the synthetic folder {synthetic} overlaps the live traces {traces}")
    if not list(synthetic.glob("date=*/*.parquet")):
        problems.append(f"no synthetic traces under {synthetic}")
    elif list(traces.glob("**/*.parquet")):
        from analytics.synth import KEYS

        synth_keys = [k.key_id for k in KEYS]
        mixed = _read(
            traces,
            "select count(*) from t where key_id in (select unnest(?::varchar[])) "
            f"or session_id in (select session_id from read_parquet('{synthetic}/**/*.parquet', "
            "hive_partitioning = true, union_by_name = true) where session_id is not null) "
            f"or trace_id in (select trace_id from read_parquet('{synthetic}/**/*.parquet', "
            "hive_partitioning = true, union_by_name = true))",
            [synth_keys],
        )[0][0]
        if mixed:
            problems.append(f"{mixed} live trace rows come from the synthetic history")
    return problems


def _check(traces: Path, synthetic: Path, recorded: Recorded) -> int:
    problems = check_recording(traces, synthetic, recorded.session)
    if problems:
        raise CliError("demo check failed: " + "; ".join(problems))
    time.sleep(2)  # the sink flushes every second: let the last rows land before counting them
    steps = _read(traces, "select count(*) from t where session_id = ?", [recorded.session])[0][0]
    live = _read(traces, "select count(*) from t")[0][0]
    print(
        f"demo check: ok, session {recorded.session} ({recorded.agent} agent) recorded as {steps} steps "
        f"(>= {MIN_TOOL_STEPS} with tool calls) under {traces}; {live} live rows, none synthetic; synthetic history "
        f"labelled in {synthetic.parent / SYNTHETIC_LABEL}"
    )
    return 0


def _banner(
    args: argparse.Namespace, data: Path, demo: DemoVault, admin_token: str, recorded: Recorded
) -> None:
    keys_file = data / "secrets" / "demo-keys.json"  # mode 0600; the key itself is never printed here
    dash = f"http://127.0.0.1:{args.dashboard_port}"
    extra = "\n".join(f"    HTTP {status}  {what}" for what, status in recorded.extra.items())
    agent = (
        "the Codex CLI" if recorded.agent == "codex" else "the built-in agent loop (Codex CLI not installed)"
    )
    print(
        f"""
codexgate demo is running (Ctrl-C stops everything)
  gateway, base-URL mode : http://127.0.0.1:{args.port}/v1
  gateway, forward proxy : http://127.0.0.1:{args.proxy_port}   (CA: {data / "mitmproxy" / "mitmproxy-ca-cert.pem"})
  simulated provider     : http://127.0.0.1:{args.sim_port}
  dashboard              : {"off" if args.no_dashboard else f"{dash}   (admin token: {admin_token})"}
  live traces (Parquet)  : {data / "traces"}
  synthetic history      : {data / "synthetic" / "traces"}   (labelled, separate; pick it in the sidebar)
  vault                  : {demo.path}   (key file: {demo.key_file})

Recorded through the gateway just now:
  agent session {recorded.session}: {len(STORY_COMMANDS)} shell commands run by {agent}
{extra}

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
"""
        + (
            ""
            if args.no_dashboard
            else f"""
Open first (sign in with the admin token above):
  1. Overview    {dash}/overview
  2. Replay      {dash}/replay?session={recorded.session}&step=1
  3. Attribution {dash}/attribution
"""
        ),
        flush=True,
    )
