"""What the gateway adds on real Codex-sized traffic, side by side in one run: direct to the
simulated provider, through mitmdump with a no-op addon, and through the gateway. Streams also
go through a mitmdump whose only addon streams event streams (``noop_stream_addon.py``): the
plain no-op holds a whole response before sending it on, which an instant upstream hides and a
paced one (``--pace-ms``) shows; the gateway's SSE ratios are printed against both.

Bodies are Codex-shaped: a ~17 KB developer message (Codex's base instructions) plus history
items (messages, reasoning with encrypted content, function calls and outputs) up to 40 KB or
200 KB, and every worker is one growing Codex session (``session-id``, ``x-codex-turn-metadata``;
each call resends the history plus one new exchange). 1 and 16 connections, streaming and not.
Targets run in interleaved rounds (A, B, C, A, B, C, …) so machine drift hits all alike; each
figure is the median over rounds of that round's percentile. CPU per call is each target
process's own (user + system, its child processes included), which a noisy machine moves far
less than throughput. The gateway's loop-lag probe
(``codexgate_looplag_file``) reports the longest event-loop stall, start-up included.

    .venv/bin/python bench/gateway_bench.py [--requests 200] [--rounds 3] [--sizes 40,200] [--pace-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from addons.looplag import read_lag_file  # noqa: E402
from codexgate.cli import launch  # noqa: E402
from codexgate.cli.demo_setup import DemoVault, create_demo_vault  # noqa: E402
from codexgate.guard.policy import SECTION as GUARD_SECTION  # noqa: E402
from codexgate.guard.policy import to_section  # noqa: E402

# --controls: limits that never refuse (so every call reserves and settles on five levels) and
# the guardrail policy a security team would start with (scan inputs and outputs, refuse nothing).
NEVER_REFUSES = {"budget_usd": 1e9, "period": "day", "rpm": 10**8, "tpm": 10**12, "max_concurrent": 10**6}
GUARD_POLICY = {"secrets": {"action": "redact"}, "pii": {"action": "flag"}, "injection": {"action": "flag"}}


def controls_vault(folder: Path, sim_url: str, keys: dict[str, str]) -> DemoVault:
    """A demo vault whose developer key has limits on all five levels and a
    guardrail policy (secrets redacted, PII and injection flagged)."""
    folder.mkdir()
    demo = create_demo_vault(folder, sim_url, keys["SIM_OPENAI_KEY"], keys["SIM_ANTHROPIC_KEY"])
    v = demo.load()
    key_id = demo.key_ids["alice"]
    levels = (f"key:{key_id}", "developer:acme/alice", "project:acme/codexgate", "team:acme/platform", "org:acme")
    v.sections["limits"] = {"version": 1, "levels": dict.fromkeys(levels, NEVER_REFUSES)}
    v.sections[GUARD_SECTION] = to_section({f"key:{key_id}": {"detectors": GUARD_POLICY}})
    demo.save(v)
    return demo

INSTRUCTIONS = ("You are Codex, a coding agent. Follow the repository's conventions. " * 260)[:17_000]


def history_item(i: int) -> list[dict]:
    call_id = f"call_{i:04d}"
    return [
        {"type": "reasoning", "id": f"rs_{i}", "summary": [], "encrypted_content": "gAAAAB" + "x" * 600},
        {"type": "function_call", "id": f"fc_{i}", "call_id": call_id, "name": "exec_command",
         "arguments": json.dumps({"cmd": f"sed -n {i},{i + 40}p src/module_{i % 7}.py"})},
        {"type": "function_call_output", "call_id": call_id, "output": f"line {i}: " + "def f(x):\n    return x\n" * 60},
    ]


def codex_body(size_kb: int, extra_turns: int, stream: bool) -> bytes:
    items: list[dict] = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": INSTRUCTIONS}]},
                         {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the failing test"}]}]
    i = 0
    while len(json.dumps(items)) < size_kb * 1024:
        items += history_item(i)
        i += 1
    for j in range(extra_turns):
        items += history_item(10_000 + j)
    return json.dumps({"model": "gpt-5-codex", "input": items, "stream": stream, "store": False,
                       "tools": [], "tool_choice": "auto", "parallel_tool_calls": False}).encode()


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (the gateway's converter
    process is one), from ``/proc``; 0 for a process that is gone."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


_TICKS = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_batch(
    url: str, key: str, n: int, conc: int, stream: bool, size_kb: int, pace_ms: int = 0
) -> tuple[list[float], float]:
    """Latency (ms) of n calls at the given concurrency (streams: time to first body byte),
    and the throughput (calls/s). Each worker is one growing Codex session. ``pace_ms``: the
    simulated provider sends a stream's events that far apart (its ``chunk_delay_ms`` fault)."""
    out: list[float] = []
    counter = iter(range(n))
    bodies = [codex_body(size_kb, k % 8, stream) for k in range(8)]  # the session grows, then wraps
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            sid = str(uuid.uuid4())
            turn = 0
            for _ in counter:
                headers = {
                    "authorization": f"Bearer {key}",
                    "content-type": "application/json",
                    "session-id": sid,
                    "originator": "codex_exec",
                    "x-codex-turn-metadata": json.dumps({"session_id": sid, "turn_id": f"t{turn}"}),
                }
                if stream and pace_ms:
                    headers["x-sim-fault"] = f"chunk_delay_ms={pace_ms}"
                body = bodies[turn % len(bodies)]
                turn += 1
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    if stream:
                        await resp.content.readany()
                        out.append((time.perf_counter() - t0) * 1000)
                        await resp.read()
                    else:
                        await resp.read()
                        out.append((time.perf_counter() - t0) * 1000)
                    if resp.status != 200:
                        raise RuntimeError(f"{url}: HTTP {resp.status}: {(await resp.read())[:200]!r}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
    return out, n / (time.perf_counter() - t0)


def start_old_tree(tree: Path, tmp: Path, sim_url: str, keys: dict[str, str], procs: list) -> tuple[str, str]:
    """Another checkout's gateway on its own demo vault, built by that checkout's own code (its
    ``create_demo_vault``, wherever that lived); returns (url, developer key)."""
    import subprocess  # noqa: PLC0415 - only for this comparison

    out = tmp / "old-tree"
    out.mkdir()
    script = (
        "import json, sys\n"
        "try:\n    from codexgate.cli.demo_setup import create_demo_vault\n"
        "except ImportError:\n    from codexgate.demo_setup import create_demo_vault\n"
        f"d = create_demo_vault(__import__('pathlib').Path({str(out)!r}), {sim_url!r}, "
        f"{keys['SIM_OPENAI_KEY']!r}, {keys['SIM_ANTHROPIC_KEY']!r})\n"
        "print(json.dumps({'path': str(d.path), 'key_file': str(d.key_file), 'key': d.keys['alice']}))\n"
    )
    made = json.loads(
        subprocess.run([sys.executable, "-c", script], cwd=tree, check=True, capture_output=True, text=True).stdout
    )
    (port,) = launch.free_ports(1)
    cmd = [launch.MITMDUMP, "-q", "-s", str(tree / "addons" / "gateway.py"), "--listen-host", "127.0.0.1",
           "--mode", f"reverse:{sim_url}@{port}", "--set", f"confdir={tmp}/conf", "--set", "connection_strategy=lazy", "--set", "onboarding=false",
           "--set", f"codexgate_vault={made['path']}", "--set", f"codexgate_vault_key_file={made['key_file']}",
           "--set", f"codexgate_traces={out / 'traces'}"]
    procs.append(subprocess.Popen(cmd, env=launch.clean_env(), stdout=subprocess.DEVNULL, cwd=tree))
    launch.wait_port(port, proc=procs[-1])
    time.sleep(3)  # its addons load after the port opens
    return f"http://127.0.0.1:{port}/v1/responses", made["key"]


STREAMING_NOOP = "mitmdump streaming"
# Targets measured on streams only: on a whole answer the streaming no-op is the plain no-op.
STREAM_ONLY = {STREAMING_NOOP}


def measured(name: str, stream: bool) -> bool:
    return stream or name not in STREAM_ONLY


def noop_command(addon: str, upstream: str, port: int, confdir: Path) -> list[str]:
    """A mitmdump that carries only ``addon`` (bench/noop*.py), reverse-proxying to ``upstream``.
    Each gets its own confdir: two mitmdumps creating one CA at once collide."""
    return [launch.MITMDUMP, "-q", "-s", str(ROOT / "bench" / addon), "--listen-host", "127.0.0.1",
            "--mode", f"reverse:{upstream}@{port}", "--set", f"confdir={confdir}"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="calls per target, round, size and concurrency")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="40,200", help="body sizes in KB")
    ap.add_argument(
        "--old-tree",
        default="",
        help="also run the gateway of another checkout (e.g. `git worktree add /tmp/old <commit>`) with its own demo vault",
    )
    ap.add_argument(
        "--controls",
        action="store_true",
        help="also run a gateway whose key has limits on all five levels and a guardrail policy (controls on, "
        "refusing nothing), side by side with the default one (no limits, no guardrail policy)",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:OPTION=VALUE[,OPTION=VALUE]",
        help="add a gateway with these options set, side by side with the default one (repeatable), e.g. "
        "'hop:codexgate_relay_hop=true' or 'thread:codexgate_trace_convert=thread'",
    )
    ap.add_argument(
        "--pace-ms",
        type=int,
        default=0,
        help="streams: the simulated provider sends events this many ms apart, as a model streams tokens "
        "(default 0: the whole stream at once, so a gateway's first byte also waits for its work on the rest)",
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="codexgate-bench-"))
    keys = {"SIM_OPENAI_KEY": secrets.token_hex(16), "SIM_ANTHROPIC_KEY": secrets.token_hex(16)}
    procs = []
    lag_file = tmp / "looplag.csv"
    try:
        sim_port, noop_port, gw_port, snoop_port = launch.free_ports(4)
        procs.append(launch.start_sim_process(sim_port, keys))
        sim_url = f"http://127.0.0.1:{sim_port}"
        demo = create_demo_vault(tmp, sim_url, keys["SIM_OPENAI_KEY"], keys["SIM_ANTHROPIC_KEY"])
        common = {"connection_strategy": "lazy", "confdir": f"{tmp}/conf"}
        import subprocess  # noqa: PLC0415 - only for the baselines, which the launcher does not start

        noop = subprocess.Popen(noop_command("noop_addon.py", sim_url, noop_port, tmp / "conf"),
                                env=launch.clean_env(), stdout=subprocess.DEVNULL)  # fmt: skip
        procs.append(noop)
        snoop = subprocess.Popen(noop_command("noop_stream_addon.py", sim_url, snoop_port, tmp / "conf-stream"),
                                 env=launch.clean_env(), stdout=subprocess.DEVNULL)  # fmt: skip
        procs.append(snoop)
        gw = launch.start_gateway_process(
            {**common, "codexgate_vault": str(demo.path), "codexgate_vault_key_file": str(demo.key_file),
             "codexgate_traces": f"{tmp}/traces", "codexgate_looplag_file": str(lag_file)},
            tmp / "gateway.log", port=gw_port, reverse_target=sim_url, quiet=True,
        )
        procs.append(gw)
        launch.wait_port(noop_port, proc=noop)
        launch.wait_port(snoop_port, proc=snoop)
        pids = {"direct": procs[0].pid, "mitmdump no-op": noop.pid, STREAMING_NOOP: snoop.pid, "gateway": gw.pid}
        targets = {
            "direct": (f"{sim_url}/v1/responses", keys["SIM_OPENAI_KEY"]),
            "mitmdump no-op": (f"http://127.0.0.1:{noop_port}/v1/responses", keys["SIM_OPENAI_KEY"]),
            STREAMING_NOOP: (f"http://127.0.0.1:{snoop_port}/v1/responses", keys["SIM_OPENAI_KEY"]),
            "gateway": (f"http://127.0.0.1:{gw_port}/v1/responses", demo.developer_key),
        }
        for i, spec in enumerate(args.variant):
            name, _, sets = spec.partition(":")
            extra = dict(item.split("=", 1) for item in sets.split(",") if item)
            (port,) = launch.free_ports(1)
            procs.append(
                launch.start_gateway_process(
                    {**common, "codexgate_vault": str(demo.path), "codexgate_vault_key_file": str(demo.key_file),
                     "codexgate_traces": f"{tmp}/traces-{i}", **extra},
                    tmp / f"gateway-{i}.log", port=port, reverse_target=sim_url, quiet=True,
                )
            )
            targets[f"gateway, {name}"] = (f"http://127.0.0.1:{port}/v1/responses", demo.developer_key)
            pids[f"gateway, {name}"] = procs[-1].pid
        if args.controls:
            cdemo = controls_vault(tmp / "controls", sim_url, keys)
            (port,) = launch.free_ports(1)
            procs.append(
                launch.start_gateway_process(
                    {**common, "codexgate_vault": str(cdemo.path), "codexgate_vault_key_file": str(cdemo.key_file),
                     "codexgate_traces": f"{tmp}/controls/traces"},
                    tmp / "gateway-controls.log", port=port, reverse_target=sim_url, quiet=True,
                )
            )
            targets["gateway, controls on"] = (f"http://127.0.0.1:{port}/v1/responses", cdemo.developer_key)
            pids["gateway, controls on"] = procs[-1].pid
        if args.old_tree:
            targets["gateway, old tree"] = start_old_tree(Path(args.old_tree), tmp, sim_url, keys, procs)
            pids["gateway, old tree"] = procs[-1].pid
        for url, key in targets.values():  # warm-up
            asyncio.run(run_batch(url, key, 20, 4, False, sizes[0]))
        results: dict[tuple, list[tuple[float, float, float]]] = {}
        for _ in range(args.rounds):
            for size in sizes:
                for conc in (1, 16):
                    for stream in (False, True):
                        for name, (url, key) in targets.items():
                            if not measured(name, stream):
                                continue
                            cpu0 = tree_cpu_s(pids[name])
                            lat, rps = asyncio.run(
                                run_batch(url, key, args.requests, conc, stream, size, args.pace_ms)
                            )
                            cpu_ms = (tree_cpu_s(pids[name]) - cpu0) * 1000 / args.requests
                            results.setdefault((name, size, conc, stream), []).append(
                                (pct(lat, 0.5), pct(lat, 0.99), rps, cpu_ms)
                            )

        def med(name: str, size: int, conc: int, stream: bool, i: int) -> float:
            return statistics.median(r[i] for r in results[(name, size, conc, stream)])

        print(f"calls per target, round, size and concurrency: {args.requests}; rounds: {args.rounds}; medians over rounds"
              + (f"; stream events {args.pace_ms} ms apart" if args.pace_ms else ""))
        for size in sizes:
            for stream in (False, True):
                what = "SSE time to first byte" if stream else "non-streaming latency"
                print(f"\n== {size} KB bodies, {what} ==")
                print(f"{'conc':>4}  {'target':<22} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'+p50':>7} {'+p99':>7}"
                      f" {'cpu ms/call':>12}")
                for conc in (1, 16):
                    d50, d99 = med("direct", size, conc, stream, 0), med("direct", size, conc, stream, 1)
                    for name in targets:
                        if not measured(name, stream):
                            continue
                        p50, p99, rps, cpu = (med(name, size, conc, stream, i) for i in range(4))
                        print(f"{conc:>4}  {name:<22} {p50:8.2f} {p99:8.2f} {rps:8.0f} {p50 - d50:7.2f} {p99 - d99:7.2f}"
                              f" {cpu:12.2f}")
                    for base, label in (("mitmdump no-op", "no-op"), (STREAMING_NOOP, "streaming no-op")):
                        if not measured(base, stream):
                            continue
                        n50, n99, nrps, ncpu = (med(base, size, conc, stream, i) for i in range(4))
                        for name in (n for n in targets if n.startswith("gateway")):
                            g50, g99, grps, gcpu = (med(name, size, conc, stream, i) for i in range(4))
                            r50 = (g50 - d50) / (n50 - d50) if n50 > d50 else float("nan")
                            r99 = (g99 - d99) / (n99 - d99) if n99 > d99 else float("nan")
                            print(f"      {name} / {label}: added p50 {r50:.2f}x, added p99 {r99:.2f}x, "
                                  f"throughput {grps / nrps:.2f}x, cpu per call {gcpu / ncpu:.2f}x")
        lags = [r for r in read_lag_file(lag_file) if r.serving]  # from the start-up gate's opening on
        if lags:
            first = max(r.stall_ms for r in lags[:10])
            print(f"\ngateway event loop, from the first second it served: longest stall {max(r.stall_ms for r in lags):.1f} ms over "
                  f"{len(lags)} s (first 10 s: {first:.1f} ms); seconds with a stall over 5 ms: "
                  f"{sum(r.stall_ms > 5 for r in lags)}; longest single callback {max(r.callback_ms for r in lags):.1f} ms "
                  f"(seconds with one over 5 ms: {sum(r.callback_ms > 5 for r in lags)}); "
                  f"longest garbage-collector pause {max(r.gc_max_ms for r in lags):.1f} ms")  # fmt: skip
    finally:
        for p in procs:
            launch.stop(p)


if __name__ == "__main__":
    main()
