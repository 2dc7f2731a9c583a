"""Routing benchmark (prints figures; not run in CI).

1. The routing layer's added latency on the happy path: a streamed call to a local upstream
   stub, direct (aiohttp client -> stub) beside through the relay (client -> relay -> stub) with
   one target, p50/p90 (target: < 1 ms added at p50).
2. Time to fail over on a refused connection: a job whose first target refuses connections and
   whose second is the stub, beside the same job with only the stub; backoff 0 (target: < 50 ms
   plus the configured backoff).
3. Translation overhead per streamed event: Anthropic SSE -> Responses SSE
   (``codexgate.wire.translate.anthropic.ResponsesStream``), microseconds per event, beside the
   cost of only parsing the same stream.

Run: ``.venv/bin/python bench/routing_bench.py [--n 300]``. The upstream stub runs in a thread
with its own event loop, so the relay's loop does what it does in the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from addons.stream_relay import RelayJob, RelayTarget, RetryPolicy, StreamRelay  # noqa: E402
from codexgate.wire import anthropic as wire_anthropic  # noqa: E402
from codexgate.wire.sse import SseParser  # noqa: E402
from codexgate.wire.translate.anthropic import ResponsesStream  # noqa: E402

STREAM = (
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"r1"}}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n'
    b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r1","usage":{}}}\n\n'
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_stub() -> int:
    port = _free_port()
    ready = threading.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(STREAM)
        await resp.write_eof()
        return resp

    def run() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/responses", handler)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    return port


def _target(url: str, label: str) -> RelayTarget:
    return RelayTarget(label, label, url, url, [("content-type", "application/json")], b'{"model":"m"}')


def _job(targets: list[RelayTarget]) -> RelayJob:
    return RelayJob(
        targets=targets,
        method="POST",
        attempts=[],
        on_headers=lambda status, headers: None,
        on_end=lambda error, gone: None,
        on_connect_error=lambda error: (502, b"{}", {"content-type": "application/json"}),
        policy=RetryPolicy(attempts_per_target=1, backoff_base_s=0.0),
    )


async def timed(session: aiohttp.ClientSession, url: str) -> float:
    t0 = time.perf_counter()
    async with session.post(url, data=b'{"model":"m"}') as r:
        await r.read()
        assert r.status == 200, r.status
    return (time.perf_counter() - t0) * 1000.0


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def bench_relay(n: int) -> None:
    port = start_stub()
    up = f"http://127.0.0.1:{port}/v1/responses"
    dead = f"http://127.0.0.1:{_free_port()}/v1/responses"
    relay = StreamRelay()
    await relay.start()
    async with aiohttp.ClientSession() as session:
        for _ in range(30):  # warm up both paths
            await timed(session, up)
            await timed(session, relay.submit("w", _job([_target(up, "stub")])))
        direct, relayed, failover, one = [], [], [], []
        for i in range(n):
            direct.append(await timed(session, up))
            relayed.append(await timed(session, relay.submit(f"a{i}", _job([_target(up, "stub")]))))
            one.append(await timed(session, relay.submit(f"b{i}", _job([_target(up, "stub")]))))
            failover.append(
                await timed(
                    session, relay.submit(f"c{i}", _job([_target(dead, "dead"), _target(up, "stub")]))
                )
            )
    await relay.stop()
    print(f"happy path, {n} streamed calls (ms)       p50      p90")
    print(f"  direct to the upstream            {pct(direct, 50):8.3f} {pct(direct, 90):8.3f}")
    print(f"  through the relay (1 target)      {pct(relayed, 50):8.3f} {pct(relayed, 90):8.3f}")
    print(f"  added by the routing layer        {pct(relayed, 50) - pct(direct, 50):8.3f}   (target < 1 ms)")
    print("fail over on a refused connection (ms, backoff 0)")
    print(f"  one live target                   {pct(one, 50):8.3f} {pct(one, 90):8.3f}")
    print(f"  refused target, then live one     {pct(failover, 50):8.3f} {pct(failover, 90):8.3f}")
    print(
        f"  time to fail over                 {pct(failover, 50) - pct(one, 50):8.3f}   (target < 50 ms + backoff)"
    )


def bench_translation(repeat: int) -> None:
    msg = {
        "id": "msg_b",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "word " * 400},
            {"type": "tool_use", "id": "toolu_1", "name": "exec_command", "input": {"cmd": "ls -la " * 20}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 100, "output_tokens": 500},
    }
    frames = wire_anthropic.encode_events(msg, split=lambda s: [s[k : k + 12] for k in range(0, len(s), 12)])
    events = len(frames)
    t0 = time.perf_counter()
    for _ in range(repeat):
        tr = ResponsesStream()
        for f in frames:
            tr.feed(f)
        tr.close()
    translate = (time.perf_counter() - t0) / (repeat * events) * 1e6
    t0 = time.perf_counter()
    for _ in range(repeat):
        p = SseParser()
        for f in frames:
            p.feed(f)
    parse = (time.perf_counter() - t0) / (repeat * events) * 1e6
    print(f"translation Anthropic -> Responses, {events} events x {repeat}")
    print(f"  parse only          {parse:7.2f} us/event")
    print(f"  parse + translate   {translate:7.2f} us/event   ({translate / parse:.1f}x parsing alone)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    asyncio.run(bench_relay(args.n))
    bench_translation(50)


if __name__ == "__main__":
    main()
