"""In-process tests of the start-up gate: a call that arrives while the addons' ``running``
hooks are still working (mitmproxy listens before it runs them) waits for them instead of
meeting a ledger that is not open yet."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mitmproxy.test import taddons

from addons.failsafe import CLEARED_KEY
from addons.flowstate import get_state
from addons.limits import Limits
from addons.startup import StartupGate
from addons.tracing import Tracing
from codexgate.cli.demo_setup import DemoVault
from tests.gateway.flows import Pipeline, demo_vault, error_of, model_flow


async def _hook(result: Awaitable[None] | None) -> None:
    """Run a hook's result as mitmproxy does: awaited when awaitable (the gate's request hook is a
    plain call once started)."""
    if result is not None:
        await result



async def _running(*addons) -> None:
    """mitmproxy's order: each addon's running hook awaited before the next one's."""
    for addon in addons:
        result = getattr(addon, "running", lambda: None)()
        if asyncio.iscoroutine(result):
            await result


@contextmanager
def _pipeline(tmp_path: Path, wait_s: float) -> Iterator[tuple[Pipeline, StartupGate, Limits, DemoVault]]:
    """The request path with limits (real SQLite ledger, not opened: no running hook yet) and a gate."""
    demo = demo_vault(tmp_path)
    p = Pipeline(demo, required=("identity", "scope", "limits"))
    gate, limits = StartupGate(wait_s=wait_s), Limits(p.holder)
    with taddons.context(*p.chain, limits, Tracing()) as tctx:  # Tracing declares codexgate_traces
        tctx.options.update(
            codexgate_traces=str(tmp_path / "traces"), codexgate_ledger=str(tmp_path / "l.sqlite3")
        )
        yield p, gate, limits, demo


async def test_a_call_during_start_up_waits_for_the_ledger_and_is_served(tmp_path: Path) -> None:
    with _pipeline(tmp_path, 30) as (p, gate, limits, demo):
        flow = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hello"})
        call = asyncio.create_task(p.run(flow, extra=[limits]))  # not gated: shows the race
        gated_flow = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hello"})

        async def gated() -> None:
            await _hook(gate.request(gated_flow))
            await p.run(gated_flow, extra=[limits])

        waiting = asyncio.create_task(gated())
        await call
        # Without the gate the call met the unopened ledger and was refused, never forwarded.
        assert flow.response.status_code == 503 and error_of(flow)["code"] == "limits_unavailable"
        await asyncio.sleep(0.05)
        assert not waiting.done() and gated_flow.response is None and not gate.started
        await _running(gate, limits, gate.last)
        await asyncio.wait_for(waiting, 5)
        assert gate.started and gc.get_freeze_count() > 0
        assert gated_flow.response is None and gated_flow.metadata[CLEARED_KEY] is True
        allowed = [d["policy"] for d in get_state(gated_flow).verdict.decisions if d["decision"] == "allow"]
        assert allowed == ["identity", "scope", "limits"]
    gc.unfreeze()


async def test_the_wait_is_bounded_and_then_the_checks_refuse_as_before(tmp_path: Path) -> None:
    with _pipeline(tmp_path, 0.2) as (p, gate, limits, demo):
        flow = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hello"})
        await asyncio.wait_for(_hook(gate.request(flow)), 5)  # the running hooks never finish here
        await p.run(flow, extra=[limits])
        assert flow.response.status_code == 503 and CLEARED_KEY not in flow.metadata
        # it waited once: later calls meet the checks at once instead of 0.2 s later each
        later = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hello"})
        await asyncio.wait_for(_hook(gate.request(later)), 0.1)
        await p.run(later, extra=[limits])
        assert later.response.status_code == 503 and CLEARED_KEY not in later.metadata


async def test_once_started_the_gate_does_not_wait(tmp_path: Path) -> None:
    gate = StartupGate(wait_s=30)
    gate.open()
    flow = model_flow(None, {"model": "gpt-5-codex", "input": "x"})
    await asyncio.wait_for(_hook(gate.request(flow)), 0.5)
    assert flow.response is None
    assert gate.request(flow) is None  # a plain call once started: no coroutine per request
