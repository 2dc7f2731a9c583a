"""The gateway's cheaper hook dispatch (``addons.dispatch``) against mitmproxy's own: the same
addon trees, events and failures through both, compared call by call, with the errors each
logged."""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mitmproxy import addonmanager, exceptions, hooks
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.test import taddons, tflow

from addons import dispatch

Trigger = Callable[[addonmanager.AddonManager, hooks.Hook], Awaitable[None]]
IMPLEMENTATIONS: dict[str, Trigger] = {
    "mitmproxy": dispatch.original_trigger_event,
    "codexgate": dispatch.trigger_event,
}


class Recorder:
    """A named addon recording the hooks it sees; ``fail`` picks what its request hook does."""

    def __init__(self, name: str, calls: list[tuple[str, str, Any]], fail: str = "", children=None) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail
        if children is not None:
            self.addons = children

    def _act(self, hook: str, arg: Any) -> None:
        self.calls.append((self.name, hook, arg))
        if hook != "request":
            return
        if self.fail == "raise":
            raise ValueError(f"{self.name} broke")
        if self.fail == "halt":
            raise exceptions.AddonHalt
        if self.fail == "options":
            raise exceptions.OptionsError(f"{self.name} bad option")

    def request(self, flow) -> None:
        self._act("request", flow.id)

    def response(self, flow) -> None:
        self._act("response", flow.id)


class AsyncRecorder(Recorder):
    async def request(self, flow) -> None:  # type: ignore[override]
        self._act("request", flow.id)


class OddAttributes:
    """Attributes named like hooks that are not callables: a module is skipped, anything else
    is an error of this addon."""

    name = "odd"
    request = types.ModuleType("request")
    response = 42

    def __repr__(self) -> str:
        return "OddAttributes()"


def tree(calls: list, spec: str) -> list[Any]:
    """Build a chain from a compact spec: ``a b(c d!) e~ f^`` where ``(…)`` are children,
    ``!`` raises, ``^`` halts, ``~`` is async, ``?`` raises OptionsError, ``%`` is OddAttributes."""
    tokens = spec.replace("(", " ( ").replace(")", " ) ").split()
    stack: list[list[Any]] = [[]]
    for tok in tokens:
        if tok == "(":
            parent = stack[-1][-1]
            parent.addons = []
            stack.append(parent.addons)
        elif tok == ")":
            stack.pop()
        elif tok == "%":
            stack[-1].append(OddAttributes())
        else:
            fail = {"!": "raise", "^": "halt", "?": "options"}.get(tok[-1], "")
            cls = AsyncRecorder if tok.endswith("~") else Recorder
            stack[-1].append(cls(tok.rstrip("!^~?"), calls, fail))
    return stack[0]


async def run(impl: str, spec: str, caplog: pytest.LogCaptureFixture, event_name: str = "request"):
    calls: list[tuple[str, str, Any]] = []
    caplog.clear()
    with taddons.context() as tctx:
        manager = tctx.master.addons
        chain = tree(calls, spec)
        manager.chain = list(chain)  # the tree as mitmproxy holds it, without load hooks
        flow = tflow.tflow()
        flow.id = "f1"
        event = HttpRequestHook(flow) if event_name == "request" else HttpResponseHook(flow)
        outcome = "ok"
        with caplog.at_level(logging.ERROR):
            try:
                await IMPLEMENTATIONS[impl](manager, event)
            except exceptions.OptionsError as exc:
                outcome = f"OptionsError: {exc}"
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        return calls, outcome, errors


# spec -> the addons whose request hook runs, worked out by hand from mitmproxy's rules
SPECS = {
    "a b c": "a b c",  # plain chain
    "a b(c d(e f) g) h": "a b c d e f g h",  # nested trees in traverse order
    "a b! c": "a b c",  # an error in one root: logged, the next roots still run
    "a b(c! d) e": "a b c e",  # an error in a child: the rest of that root's tree is skipped
    "a b^ c": "a b",  # AddonHalt stops the event
    "a b(c^ d) e": "a b c",
    "a b~ c(d~ e)": "a b c d e",  # async handlers awaited in order
    "a % b": "a b",  # non-callable attributes named like the hook
    "a b? c": "a b",  # OptionsError propagates
    "": "",  # empty chain
}


@pytest.mark.parametrize("spec", list(SPECS))
@pytest.mark.parametrize("event_name", ["request", "response"])
async def test_same_calls_order_and_errors_as_mitmproxy(spec, event_name, caplog):
    ours = await run("codexgate", spec, caplog, event_name)
    theirs = await run("mitmproxy", spec, caplog, event_name)
    assert ours == theirs
    calls, outcome, errors = ours
    if event_name == "request":
        assert " ".join(name for name, _, _ in calls) == SPECS[spec]
        assert all(hook == "request" and arg == "f1" for _, hook, arg in calls)
        assert (outcome != "ok") == ("?" in spec)
        assert len([e for e in errors if "broke" in e]) == spec.count("!")


async def test_odd_attribute_error_names_the_addon(caplog):
    calls, outcome, errors = await run("codexgate", "a % b", caplog, "response")
    assert outcome == "ok"
    assert [c[0] for c in calls] == ["a", "b"]
    assert errors == ["Addon error: Addon handler response (OddAttributes()) not callable"]


async def test_handlers_see_the_same_flow_object():
    seen: list[Any] = []

    class Grab:
        def request(self, flow) -> None:
            seen.append(flow)

    with taddons.context() as tctx:
        manager = tctx.master.addons
        manager.chain = [Grab(), types.SimpleNamespace(addons=[Grab()])]
        flow = tflow.tflow()
        await dispatch.trigger_event(manager, HttpRequestHook(flow))
    assert seen == [flow, flow] and all(s is flow for s in seen)


def test_installed_only_on_the_verified_mitmproxy(monkeypatch):
    assert dispatch.source_hash() in dispatch.VERIFIED  # the versions CI runs (11.0.x, 12.x)
    cls: Any = addonmanager.AddonManager
    was = cls.trigger_event
    try:
        dispatch.uninstall()
        monkeypatch.setattr(dispatch, "VERIFIED", frozenset({"not-this-one"}))
        assert dispatch.install() is False
        assert cls.trigger_event is dispatch.original_trigger_event
        monkeypatch.setattr(dispatch, "VERIFIED", frozenset({dispatch.source_hash()}))
        assert dispatch.install() is True
        assert cls.trigger_event is dispatch.trigger_event
        assert dispatch.install() is True  # idempotent
    finally:
        cls.trigger_event = was
        setattr(cls, dispatch._PATCHED, was is dispatch.trigger_event)


def test_option_switches_between_the_two():
    cls: Any = addonmanager.AddonManager
    was = cls.trigger_event
    try:
        with taddons.context(dispatch.FastDispatch()) as tctx:
            tctx.options.update(codexgate_fast_dispatch=False)
            assert cls.trigger_event is dispatch.original_trigger_event
            tctx.options.update(codexgate_fast_dispatch=True)
            assert cls.trigger_event is dispatch.trigger_event
    finally:
        cls.trigger_event = was
        setattr(cls, dispatch._PATCHED, was is dispatch.trigger_event)


# --- the per-event plan: looked up once, dropped whenever the addon tree can have changed ----


class CountingLookups:
    """Counts how often dispatch looks its ``request`` handler up."""

    def __init__(self, seen: list[str], name: str = "counting") -> None:
        self.name = name
        self.seen = seen
        self.lookups = 0

    def __getattribute__(self, attr: str) -> Any:
        if attr == "request":
            object.__setattr__(self, "lookups", object.__getattribute__(self, "lookups") + 1)
        return object.__getattribute__(self, attr)

    def request(self, flow) -> None:
        self.seen.append(self.name)


async def fire(manager: addonmanager.AddonManager) -> None:
    await dispatch.trigger_event(manager, HttpRequestHook(tflow.tflow()))


async def test_handlers_are_looked_up_once_per_event_name():
    seen: list[str] = []
    counting = CountingLookups(seen)
    with taddons.context() as tctx:
        tctx.master.addons.add(counting)
        counting.lookups = 0  # registering looks at the addon too
        for _ in range(5):
            await fire(tctx.master.addons)
    assert seen == ["counting"] * 5
    assert counting.lookups == 1


async def test_added_removed_and_child_addons_are_seen_on_the_next_event():
    seen: list[str] = []
    installed = dispatch.install(force=True)
    assert installed
    with taddons.context() as tctx:
        manager = tctx.master.addons
        first = CountingLookups(seen, "first")
        parent = types.SimpleNamespace(name="parent", addons=[])
        manager.add(first, parent)
        await fire(manager)
        second = CountingLookups(seen, "second")
        manager.add(second)  # appended to the chain
        await fire(manager)
        child = CountingLookups(seen, "child")
        parent.addons.append(child)  # a parent managing its children, as mitmproxy asks it to
        manager.register(child)
        await fire(manager)
        manager.remove(first)  # the chain list is replaced
        await fire(manager)
    assert seen == ["first", "first", "second", "first", "child", "second", "child", "second"]


async def test_an_option_change_drops_the_plan(tmp_path):
    """A reorder of children without any register (what a reorder of ``scripts`` does) is seen
    after the next option change."""
    seen: list[str] = []
    with taddons.context(dispatch.FastDispatch()) as tctx:
        manager = tctx.master.addons
        a, b = CountingLookups(seen, "a"), CountingLookups(seen, "b")
        parent = types.SimpleNamespace(name="parent", addons=[a, b])
        manager.add(parent)
        await fire(manager)
        parent.addons.reverse()
        tctx.options.update(codexgate_fast_dispatch=True)
        await fire(manager)
    assert seen == ["a", "b", "b", "a"]


async def test_scripts_loaded_and_unloaded_by_mitmproxy_are_dispatched_to(tmp_path):
    from mitmproxy.addons import script as mitm_script

    log = tmp_path / "calls.txt"
    paths = []
    for name in ("one", "two"):
        path = tmp_path / f"{name}.py"
        path.write_text(
            f"class {name.title()}:\n"
            "    def request(self, flow):\n"
            f"        open({str(log)!r}, 'a').write({name!r} + '\\n')\n"
            f"addons = [{name.title()}()]\n"
        )
        paths.append(str(path))
    loader = mitm_script.ScriptLoader()

    async def loaded(scripts: list[str]) -> None:
        tctx.configure(loader, scripts=scripts)
        for _ in range(200):  # mitmproxy loads a script from its watcher task
            if [s.path for s in loader.addons if s.ns is not None] == scripts:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"mitmproxy did not load {scripts}")

    with taddons.context(loader) as tctx:
        manager = tctx.master.addons
        await loaded([paths[0]])
        await fire(manager)
        await loaded([paths[0], paths[1]])
        await fire(manager)
        await loaded([paths[1]])
        await fire(manager)
    assert log.read_text().split() == ["one", "one", "two", "two"]


class OddRequest:
    name = "oddrequest"
    request = 42

    def __repr__(self) -> str:
        return "OddRequest()"


async def test_odd_trees_are_walked_afresh_with_mitmproxy_errors(caplog):
    seen: list[str] = []
    with taddons.context() as tctx:
        manager = tctx.master.addons
        manager.add(CountingLookups(seen, "a"), OddRequest(), CountingLookups(seen, "b"))
        with caplog.at_level(logging.ERROR):
            await fire(manager)
            await fire(manager)
    assert seen == ["a", "b", "a", "b"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["Addon error: Addon handler request (OddRequest()) not callable"] * 2
