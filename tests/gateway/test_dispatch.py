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
from mitmproxy.proxy.layers.http import HttpErrorHook, HttpRequestHook, HttpResponseHook
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

    def __repr__(self) -> str:
        return f"Recorder({self.name})"

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


# --- the cached plan: changes between (and during) events give the same dispatch -----------


def named(chain: list[Any]) -> dict[str, Any]:
    return {getattr(a, "name", ""): a for a in addonmanager.traverse(chain)}


class ScriptLike:
    """Like mitmproxy's ``Script``: ``addons`` is a property over a replaceable module ``ns``."""

    def __init__(self, ns: types.ModuleType) -> None:
        self.name = "script"
        self.ns: types.ModuleType | None = ns

    @property
    def addons(self) -> list[Any]:
        return [self.ns] if self.ns else []


def module(calls: list, label: str, children: list[Any]) -> types.ModuleType:
    ns = types.ModuleType(label)

    def request(flow) -> None:
        calls.append((label, "request", flow.id))

    ns.request = request
    ns.addons = children
    ns.name = label
    return ns


def _gain_instance(m, n, calls):
    n["c"].error = lambda flow: calls.append(("c", "error", flow.id))  # a hook c had not


def _gain_class(m, n, calls):
    cls = type("Late", (), {"name": "late"})
    late = cls()
    m.chain.append(late)
    yield
    cls.request = lambda self, flow: calls.append(("late", "request", flow.id))


MUTATIONS: dict[str, Callable[..., Any]] = {
    "add": lambda m, n, calls: m.add(Recorder("new", calls)),
    "remove": lambda m, n, calls: m.remove(n["f"]),
    "clear": lambda m, n, calls: m.clear(),
    "chain replaced in place": lambda m, n, calls: m.chain.__setitem__(0, Recorder("z", calls)),
    "chain reordered": lambda m, n, calls: m.chain.reverse(),
    "child list replaced": lambda m, n, calls: setattr(n["b"], "addons", [Recorder("x", calls), n["d"]]),
    "child appended": lambda m, n, calls: n["b"].addons.append(Recorder("x", calls)),
    "child removed": lambda m, n, calls: n["b"].addons.remove(n["c"]),
    "child swapped": lambda m, n, calls: n["b"].addons.__setitem__(0, Recorder("x", calls)),
    "children gained": lambda m, n, calls: setattr(n["e"], "addons", [Recorder("x", calls)]),
    "children lost": lambda m, n, calls: delattr(n["b"], "addons"),
    "handler replaced": lambda m, n, calls: setattr(n["c"], "request", lambda f: calls.append(("c2", "request", f.id))),
    "handler gained": lambda m, n, calls: setattr(n["e"], "request", lambda f: calls.append(("e", "request", f.id))),
    "handler gained on class": _gain_class,
    "handler gained, other hook": _gain_instance,
    "handler now None": lambda m, n, calls: setattr(n["c"], "request", None),
    "handler now not callable": lambda m, n, calls: setattr(n["c"], "request", 42),
    "handler now a module": lambda m, n, calls: setattr(n["c"], "request", types.ModuleType("request")),
    "handler now raises": lambda m, n, calls: setattr(n["d"], "fail", "raise"),
    "handler now halts": lambda m, n, calls: setattr(n["c"], "fail", "halt"),
    "script reloaded": lambda m, n, calls: setattr(n["script"], "ns", module(calls, "ns2", [Recorder("y", calls)])),
    "script unloaded": lambda m, n, calls: setattr(n["script"], "ns", None),
    "module gains a hook": lambda m, n, calls: setattr(n["ns1"], "response", lambda f: calls.append(("ns1", "response", f.id))),
}


class Plain:
    """An addon without hooks for the events dispatched (``e`` in the chain below)."""

    def __init__(self, name: str) -> None:
        self.name = name


def cached_chain(calls: list) -> list[Any]:
    chain = tree(calls, "a b(c d) f")
    chain.insert(3, Plain("e"))
    chain.append(ScriptLike(module(calls, "ns1", [Recorder("g", calls), Plain("h")])))
    return chain


async def run_scenario(impl: str, mutation: str, caplog: pytest.LogCaptureFixture, during: bool = False):
    """Dispatch four events, apply ``mutation`` (between events, or from c's request hook during
    the next one), dispatch them twice more; every event's calls and outcome, and the errors."""
    calls: list[tuple[str, str, Any]] = []
    caplog.clear()
    seen = []
    with taddons.context() as tctx:
        manager = tctx.master.addons
        manager.chain = cached_chain(calls)
        nodes = named(manager.chain)
        manager.lookup = dict(nodes)  # registered, so that remove() finds them
        flow = tflow.tflow(resp=True)
        flow.id = "f1"
        events = [HttpRequestHook(flow), HttpResponseHook(flow), hooks.UpdateHook([flow]), HttpErrorHook(flow)]
        change = MUTATIONS[mutation](manager, nodes, calls) if mutation == "handler gained on class" else None

        def apply() -> None:
            if change is not None:
                next(change, None)
            else:
                MUTATIONS[mutation](manager, nodes, calls)

        with caplog.at_level(logging.ERROR):
            for round_ in range(3):  # plans built, then the change, then once more
                if round_ == 1 and not during:
                    apply()
                if round_ == 1 and during:
                    c = nodes["c"]
                    original = c.request

                    def request(flow, c=c, original=original) -> None:
                        c.request = original
                        apply()
                        original(flow)

                    c.request = request
                for event in events:
                    calls.clear()
                    outcome = "ok"
                    try:
                        await IMPLEMENTATIONS[impl](manager, event)
                    except exceptions.OptionsError as exc:
                        outcome = f"OptionsError: {exc}"
                    seen.append((round_, event.name, list(calls), outcome))
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return seen, errors


@pytest.fixture
def counted_manager():
    """The dispatch installed, so AddonManager.register/remove/clear count changes."""
    cls: Any = addonmanager.AddonManager
    was = cls.trigger_event
    dispatch.install(force=True)
    yield
    dispatch.uninstall()
    if was is dispatch.trigger_event:
        dispatch.install(force=True)


@pytest.mark.parametrize("mutation", list(MUTATIONS))
async def test_cache_follows_changes_between_events(mutation, caplog, counted_manager):
    ours = await run_scenario("codexgate", mutation, caplog)
    theirs = await run_scenario("mitmproxy", mutation, caplog)
    assert ours == theirs
    before = [s for s in ours[0] if s[0] == 0]
    after = [s for s in ours[0] if s[0] == 1]
    if mutation not in ("handler gained, other hook",):
        assert before != after or mutation.startswith("chain reordered"), "the change is visible"


# Changes made while an event is dispatched, through the manager (as a script reload or an
# addon adding one does) or by changing the chain's length: the rest of that event already
# sees them. (In-place changes of other kinds show from the next event; see the docstring.)
DURING = ["add", "remove", "clear", "chain replaced in place"]


@pytest.mark.parametrize("mutation", DURING)
async def test_cache_follows_changes_made_during_an_event(mutation, caplog, counted_manager):
    ours = await run_scenario("codexgate", mutation, caplog, during=True)
    theirs = await run_scenario("mitmproxy", mutation, caplog, during=True)
    assert ours == theirs


async def test_script_reload_during_an_event_through_the_manager(caplog, counted_manager):
    async def scenario(impl: str):
        calls: list = []
        with taddons.context() as tctx:
            manager = tctx.master.addons
            first = module(calls, "ns1", [Recorder("g", calls)])
            script = ScriptLike(first)

            class Reloader:
                name = "reloader"

                def request(self, flow) -> None:
                    if script.ns is first:  # as Script.loadscript: remove, register, replace
                        manager.remove(first)
                        ns2 = module(calls, "ns2", [Recorder("y", calls)])
                        manager.register(ns2)
                        script.ns = ns2

            manager.add(script)
            manager.chain.insert(0, Reloader())
            flow = tflow.tflow()
            flow.id = "f1"
            out = []
            for _ in range(3):
                calls.clear()
                await IMPLEMENTATIONS[impl](manager, HttpRequestHook(flow))
                out.append(list(calls))
                script.ns = first if len(out) == 1 else script.ns
            return out

    assert await scenario("codexgate") == await scenario("mitmproxy")


def test_plan_is_reused_while_nothing_changes():
    calls: list = []
    with taddons.context() as tctx:
        manager = tctx.master.addons
        manager.chain = cached_chain(calls)
        flow = tflow.tflow()
        asyncio.run(dispatch.trigger_event(manager, HttpRequestHook(flow)))
        plan = manager._codexgate_plans[1]["request"]
        asyncio.run(dispatch.trigger_event(manager, HttpRequestHook(flow)))
        assert manager._codexgate_plans[1]["request"] is plan
        names = [getattr(a, "name", "") for _, _, nodes in plan.steps for a in nodes or ()]
        assert names == ["a", "b", "c", "d", "f", "ns1", "g"]
        manager.chain[1].addons.append(Plain("late"))
        asyncio.run(dispatch.trigger_event(manager, HttpRequestHook(flow)))
        assert manager._codexgate_plans[1]["request"] is not plan


def test_dynamic_addons_are_walked_every_event():
    class Dynamic:
        def __init__(self) -> None:
            self.looked_up: list[str] = []

        def __getattr__(self, item: str) -> Any:
            self.looked_up.append(item)
            raise AttributeError(item)

    with taddons.context() as tctx:
        manager = tctx.master.addons
        dyn = Dynamic()
        manager.chain = [dyn]
        flow = tflow.tflow()
        for _ in range(2):
            asyncio.run(dispatch.trigger_event(manager, HttpRequestHook(flow)))
        assert dyn.looked_up.count("request") == 2
