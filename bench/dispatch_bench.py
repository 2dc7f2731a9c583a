"""Hook dispatch alone, side by side in one run: mitmproxy's ``trigger_event``, codexgate's
previous uncached loop (``git show <rev>:addons/dispatch.py``) and the current cached one
(``addons.dispatch``).

The addon tree is mitmdump's (default addons, dumper, keepserving, readfile, errorcheck) with a
script whose children have the gateway's shape: one no-op stand-in per gateway addon with exactly
the hooks the real class has, and a top-level Backstop stand-in. Handler bodies are empty, so the
figures are dispatch cost (plus mitmproxy's own built-in handlers, the same for all three).

    .venv/bin/python bench/dispatch_bench.py [--rounds 7] [--flows 2000] [--rev e7144fc]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mitmproxy import addonmanager, hooks, options  # noqa: E402
from mitmproxy.proxy.layers.http import (  # noqa: E402
    HttpRequestHeadersHook,
    HttpRequestHook,
    HttpResponseHeadersHook,
    HttpResponseHook,
)
from mitmproxy.test import tflow  # noqa: E402
from mitmproxy.tools.dump import DumpMaster  # noqa: E402

from addons import dispatch  # noqa: E402

HOOKS = ("requestheaders", "request", "responseheaders", "response", "error", "update",
         "client_connected", "client_disconnected", "server_connect", "server_connected",
         "server_disconnected", "running", "configure", "done", "load")

SCRIPT = '''
import sys
sys.path.insert(0, {root!r})
from addons.client_limits import ClientLimits
from addons.failsafe import Backstop
from addons.guardrails import Guardrails
from addons.identity import Identity
from addons.intake import Intake
from addons.limits import Limits
from addons.looplag import LoopLag
from addons.scope import Scope
from addons.startup import StartupGate, _Started
from addons.tracing import Tracing
from addons.upstream import Upstream
from addons.dispatch import FastDispatch

HOOKS = {hooks!r}
REAL = [None, FastDispatch, StartupGate, LoopLag, ClientLimits, Intake, Identity, Scope, Limits,
        Guardrails, Tracing, Upstream, _Started]


def noop(self, *args):
    return None


def stand_in(cls, name):
    methods = {{h: noop for h in HOOKS if cls is not None and h not in ("load", "configure", "running", "done") and hasattr(cls, h)}}
    return type(name, (), methods)()


class Pipeline:
    def load(self, loader):
        from mitmproxy import ctx
        if ctx.master.addons.get("backstop") is None:
            b = stand_in(Backstop, "Backstop")
            ctx.master.addons.add(b)


addons = [Pipeline()] + [stand_in(c, (c.__name__ if c else "X") + "StandIn") for c in REAL[1:]]
'''


def load_previous(rev: str) -> types.ModuleType | None:
    try:
        src = subprocess.run(["git", "show", f"{rev}:addons/dispatch.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType("previous_dispatch")
    exec(compile(src, f"{rev}:addons/dispatch.py", "exec"), mod.__dict__)
    return mod


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--flows", type=int, default=2000)
    ap.add_argument("--rev", default="e7144fc", help="commit with the previous (uncached) loop")
    a = ap.parse_args()

    folder = Path(tempfile.mkdtemp())
    script = folder / "shape.py"
    script.write_text(SCRIPT.format(root=str(ROOT), hooks=HOOKS))
    master = DumpMaster(options.Options(), loop=asyncio.get_running_loop(), with_termlog=False, with_dumper=False)
    master.options.update(scripts=[str(script)])
    for _ in range(100):
        await asyncio.sleep(0.05)
        if master.addons.get("backstop") is not None:
            break
    mgr = master.addons
    nodes = list(addonmanager.traverse(mgr.chain))
    print(f"chain: {len(mgr.chain)} entries, {len(nodes)} addons in traverse order")

    f = tflow.tflow(resp=True)
    flow_events = [HttpRequestHeadersHook(f), HttpRequestHook(f), HttpResponseHeadersHook(f),
                   HttpResponseHook(f)]
    per_flow = [e for ev in flow_events for e in (ev, hooks.UpdateHook([f]))]

    impls = {"mitmproxy": dispatch.original_trigger_event}
    prev = load_previous(a.rev)
    if prev is not None:
        impls["uncached"] = prev.trigger_event
    impls["cached"] = dispatch.trigger_event

    def handlers(name: str) -> int:
        return sum(1 for n in nodes if callable(getattr(n, name, None)))

    results: dict[str, dict[str, list[float]]] = {k: {} for k in impls}
    for _ in range(a.rounds):
        for impl_name, impl in impls.items():  # interleaved, so drift hits all alike
            for ev in flow_events + [hooks.UpdateHook([f])]:
                n = a.flows
                t = time.perf_counter()
                for _ in range(n):
                    await impl(mgr, ev)
                results[impl_name].setdefault(ev.name, []).append((time.perf_counter() - t) / n * 1e6)
            t = time.perf_counter()
            for _ in range(a.flows):
                for ev in per_flow:
                    await impl(mgr, ev)
            results[impl_name].setdefault("flow (8 events)", []).append((time.perf_counter() - t) / a.flows * 1e6)

    names = [e.name for e in flow_events] + ["update", "flow (8 events)"]
    print(f"\nmedian of {a.rounds} rounds, µs per call (handlers with the hook in parentheses)")
    print(f"{'event':<18}" + "".join(f"{k:>12}" for k in impls) + "   cached/mitmproxy  cached/uncached")
    for name in names:
        med = {k: statistics.median(results[k][name]) for k in impls}
        label = name if name.startswith("flow") else f"{name} ({handlers(name)})"
        row = f"{label:<18}" + "".join(f"{med[k]:>12.2f}" for k in impls)
        row += f"   {med['cached'] / med['mitmproxy']:>16.2f}"
        if "uncached" in med:
            row += f"  {med['cached'] / med['uncached']:>15.2f}"
        print(row)


if __name__ == "__main__":
    asyncio.run(main())
