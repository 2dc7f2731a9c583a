"""CPU of the relay's loopback hop per streamed call, this tree's relay against another tree's
(``--old-tree``), side by side in one process: a client (aiohttp, kept-alive connections, as
mitmproxy reuses its connection to the relay) sends empty-bodied requests to the relay, which
streams each from an SSE stub upstream in a child process (its CPU is not counted). Rounds
alternate old, new, old, new, … so machine drift hits both alike; the figure is process CPU
(client + relay) per call, median over rounds.

    .venv/bin/python bench/relay_hop_bench.py --old-tree /tmp/old-relay [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from addons import stream_relay  # noqa: E402
from addons.stream_relay import RelayJob  # noqa: E402

STUB = r"""
import asyncio, json, sys
from aiohttp import web
EVENTS = int(sys.argv[1])
def ev(kind, **kw):
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **kw})}\n\n".encode()
async def sse(request):
    await request.read()
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(ev("response.created", response={"id": "resp_b"}))
    for i in range(EVENTS):
        await resp.write(ev("response.output_text.delta", delta="word " * 8, sequence_number=i))
    await resp.write(ev("response.completed", response={"id": "resp_b", "usage": {"output_tokens": EVENTS}}))
    return resp
async def main():
    app = web.Application()
    app.router.add_post("/v1/responses", sse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def load_old(tree: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("old_stream_relay", tree / "addons" / "stream_relay.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_stream_relay"] = mod
    spec.loader.exec_module(mod)
    return mod


def make_job(mod: ModuleType, url: str) -> RelayJob:
    target = mod.RelayTarget(
        label="stub",
        provider="openai",
        url=url,
        display_url=url,
        headers=[("authorization", "Bearer sk-bench"), ("content-type", "application/json")],
        body=b'{"model":"gpt-5-codex","stream":true}',
    )
    return mod.RelayJob(
        targets=[target],
        method="POST",
        attempts=[],
        on_headers=lambda status, headers: None,
        on_end=lambda error, gone: None,
        on_connect_error=lambda error: (502, b"{}", {"content-type": "application/json"}),
        policy=mod.RetryPolicy(attempts_per_target=1),
    )


async def run_round(relay: object, mod: ModuleType, up: str, calls: int, conns: int, tag: str) -> float:
    """Process CPU seconds per call for ``calls`` streamed calls over ``conns`` connections."""
    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as session:
        counter = iter(range(calls))

        async def worker() -> None:
            for i in counter:
                url = relay.submit(f"{tag}{i}", make_job(mod, up))  # type: ignore[attr-defined]
                async with session.post(url, data=b"", headers={"accept": "text/event-stream"}) as r:
                    async for _ in r.content.iter_any():
                        pass
                    assert r.status == 200, r.status

        t0 = time.process_time()
        await asyncio.gather(*(worker() for _ in range(conns)))
        return (time.process_time() - t0) / calls


async def bench(old_tree: Path | None, calls: int, rounds: int, conns: int, events: int) -> None:
    stub = subprocess.Popen([sys.executable, "-c", STUB, str(events)], stdout=subprocess.PIPE, text=True)
    try:
        assert stub.stdout is not None
        up = f"http://127.0.0.1:{stub.stdout.readline().strip()}/v1/responses"
        mods: dict[str, ModuleType] = {"new": stream_relay}
        if old_tree is not None:
            mods = {"old": load_old(old_tree), **mods}
        relays = {name: mod.StreamRelay() for name, mod in mods.items()}
        for r in relays.values():
            await r.start()
        figures: dict[str, list[float]] = {name: [] for name in mods}
        for name in mods:  # warm up
            await run_round(relays[name], mods[name], up, 200, conns, f"w{name}")
        for n in range(rounds):
            for name, mod in mods.items():
                figures[name].append(await run_round(relays[name], mod, up, calls, conns, f"{name}{n}-"))
        for r in relays.values():
            await r.stop()
    finally:
        stub.terminate()
        stub.wait()
    print(f"{calls} streamed calls x {rounds} rounds, {conns} connections, {events + 2} events per call")
    print("relay      CPU/call (client + relay, us)   per round")
    for name, values in figures.items():
        per = " ".join(f"{v * 1e6:7.1f}" for v in values)
        print(f"  {name:6} {statistics.median(values) * 1e6:10.1f}                         {per}")
    if "old" in figures:
        ratio = statistics.median(figures["new"]) / statistics.median(figures["old"])
        print(f"  new/old  {ratio:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-tree", type=Path, default=None, help="a checkout whose relay to compare with")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--events", type=int, default=40, help="deltas per streamed answer")
    args = ap.parse_args()
    asyncio.run(bench(args.old_tree, args.calls, args.rounds, args.conns, args.events))


if __name__ == "__main__":
    main()
