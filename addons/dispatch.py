"""Cheaper hook dispatch for mitmproxy's ``AddonManager.trigger_event``, same behaviour.

mitmproxy dispatches every event (``requestheaders``, ``request``, ``response``, …, and an
``update`` after each flow event) to each of the ~36 addons of its chain plus the script's
children. For every chain entry it builds a ``safecall`` context manager, an
``invoke_addon`` coroutine and a ``traverse`` generator, and for every handler it calls
``Hook.args()``, which walks ``dataclasses.fields`` again. Under load that bookkeeping was about
a fifth of the gateway's event-loop time (py-spy, 16 connections, 40 KB bodies), most of it for
addons that have no handler for the event.

``install()`` replaces ``trigger_event`` with one loop that does the same thing, from a plan
cached per manager and event name: for each chain entry, the addons of its tree (``traverse``
order) that have an attribute named like the event. Entries with none are not visited.

Invariants of the cache, checked before every event (``_Plan.valid``, ~5 us for the gateway's
36 entries / 50 addons; a failed check rebuilds the plan):

- the chain has the same entries in the same order (list ``==``: identity first);
- every addon planned as without the attribute still has none (``hasattr``, so a hook set
  later on the instance or its class counts; plain modules by ``name in __dict__``), every
  addon without ``addons`` still has none, and every ``addons`` (list or tuple, property or
  not, as ``Script.addons``) has the same entries (script reloads, replaced lists, lists
  changed in place);
- planned handlers are looked up afresh (``getattr``) at every event, so one replaced on the
  instance is called, and a falsy, module or non-callable value is skipped or is an error of
  that entry at the same place as in mitmproxy;
- addons whose look-ups are not the default ones (``__getattr__``, ``__getattribute__``, a
  module ``__getattr__``), child lists that are not lists or tuples, and trees that fail to
  walk are not planned: their entry is walked with ``traverse`` on every event, as mitmproxy
  does;
- ``register``, ``remove`` and ``clear`` are wrapped to count (``add`` goes through
  ``register``); a count that moved, or a chain whose length changed, while an entry was
  dispatched (a script reload in an ``await``, an addon added by a handler) sends the rest of
  that event through the uncached walk over the live chain, as mitmproxy's loop would see it;
  a moved count also drops all of the manager's plans.

Not detected within one event (seen from the next): a handler that changes, other than through
the manager or the chain's length, the attributes or child lists of addons dispatched later in
the same event, or the tree of the entry being dispatched. Not detected at all: a chain entry or
child replaced in place by an object whose ``__eq__`` says it equals the old one, a class gaining
``__getattr__`` after planning. mitmproxy itself does none of these.

The rest is as mitmproxy does it:

- the same arguments (``Hook.args()`` computed once per event; a hook's fields never change
  while it is dispatched);
- the same error handling per chain entry: ``AddonHalt`` stops the event, ``OptionsError``
  propagates, any other exception is logged as ``Addon error: …`` (the traceback cut to the
  handler) and skips the rest of that entry's tree; a non-callable attribute named like the
  hook raises ``AddonManagerError`` in the same way, a module named like it is skipped;
- awaitable results awaited, sync handlers called directly.

It is installed only when mitmproxy's own code for those functions is the code this was
checked against (by hash of the source; 11.0.2 and 12.3.1 have the same); on any other version mitmproxy's
dispatch stays, slower but the same. ``tests/gateway/test_dispatch.py`` runs both implementations
on the same addon trees, events, failures and changes (between and during events) and compares
calls, order, halts and logged errors; ``bench/dispatch_bench.py`` times them side by side.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import types
from itertools import repeat
from typing import Any

from mitmproxy import addonmanager, ctx, exceptions, hooks

_PATCHED = "_codexgate_fast_dispatch"
# sha256 over the sources below; checked identical in mitmproxy 11.0.2 and 12.3.1
VERIFIED = frozenset({"613524acc47b350418fe359d1619b17871e2fd6536317b183da600e230323b65"})
_SOURCES = (
    addonmanager.AddonManager.trigger_event,
    addonmanager.AddonManager.invoke_addon,
    addonmanager.AddonManager._iter_hooks,
    addonmanager.safecall,
    addonmanager.traverse,
    hooks.Hook.args,
)

logger = logging.getLogger(addonmanager.__name__)  # the logger mitmproxy's own "Addon error" uses
original_trigger_event = addonmanager.AddonManager.trigger_event


def source_hash() -> str:
    """Hash of mitmproxy's dispatch code as installed (``""`` if it cannot be read)."""
    try:
        text = "\n".join(inspect.getsource(f) for f in _SOURCES)
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(text.encode()).hexdigest()


def _log_addon_error(exc: BaseException) -> None:
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # start at the handler, as mitmproxy's cut traceback does
    logger.error(f"Addon error: {exc}", exc_info=(type(exc), exc, tb))


# Bumped (after the call) by AddonManager.register, .remove and .clear while installed; ``add``
# goes through ``register``. Read after each chain entry to see changes made during an event.
_generation = [0]
_PLANS = "_codexgate_plans"  # per manager, in its __dict__: (generation, {event name: _Plan})
_OBJECT_GETATTRIBUTE = object.__getattribute__
_MODULE_GETATTRIBUTE = types.ModuleType.__getattribute__


class _Dynamic(Exception):
    """A node whose attribute look-ups may have effects or change without its ``__dict__``
    changing: its chain entry is walked as mitmproxy walks it, on every event."""


def _plain(node: Any) -> bool:
    """Attribute look-ups on ``node`` are the default ones (instance dict, then the class
    hierarchy), so ``hasattr`` has no effects and only answers differently after a change."""
    cls = type(node)
    if hasattr(cls, "__getattr__"):
        return False
    ga = cls.__getattribute__
    if ga is _OBJECT_GETATTRIBUTE:
        return True
    return ga is _MODULE_GETATTRIBUTE and "__getattr__" not in node.__dict__


class _Plan:
    """One event's dispatch, resolved for the chain as it was when built (see the docstring)."""

    __slots__ = ("roots", "absent", "absent_in", "leaves", "parents", "steps")

    def __init__(self, chain: list[Any], name: str) -> None:
        self.roots = list(chain)
        self.absent: list[Any] = []  # nodes without an attribute `name`
        # the same for plain modules, by their __dict__ (a missed module attribute costs an
        # AttributeError with its message, ~0.8 us; ModuleType itself has no hook attributes)
        self.absent_in: list[dict[str, Any]] = []
        self.leaves: list[Any] = []  # nodes without an attribute `addons`
        self.parents: list[tuple[Any, Any]] = []  # (node, its children as a list or tuple)
        # (chain index, root, its nodes that have the attribute in traverse order, or None: walk)
        self.steps: list[tuple[int, Any, tuple[Any, ...] | None]] = []
        for index, root in enumerate(self.roots):
            absent: list[Any] = []
            leaves: list[Any] = []
            parents: list[tuple[Any, Any]] = []
            handlers: list[Any] = []
            try:
                self._visit(root, name, handlers, absent, leaves, parents)
            except Exception:  # _Dynamic, a child list that is no list, a cycle, a failing getter
                self.steps.append((index, root, None))
                continue
            for node in absent:
                if type(node) is types.ModuleType:
                    self.absent_in.append(node.__dict__)
                else:
                    self.absent.append(node)
            self.leaves += leaves
            self.parents += parents
            if handlers:
                self.steps.append((index, root, tuple(handlers)))

    @classmethod
    def _visit(cls, node: Any, name: str, handlers: list, absent: list, leaves: list, parents: list) -> None:
        if not _plain(node):
            raise _Dynamic
        (handlers if hasattr(node, name) else absent).append(node)
        if not hasattr(node, "addons"):
            leaves.append(node)
            return
        kids = node.addons
        if type(kids) is list:
            kids = list(kids)
        elif type(kids) is not tuple:
            raise _Dynamic
        parents.append((node, kids))
        for kid in kids:
            cls._visit(kid, name, handlers, absent, leaves, parents)

    def valid(self, chain: list[Any], name: str) -> bool:
        """Would a plan built now be this one? Checked before every event."""
        if chain != self.roots:  # same length, same entries (identity first)
            return False
        if any(map(hasattr, self.absent, repeat(name))):  # a handler gained, instance or class
            return False
        for namespace in self.absent_in:
            if name in namespace:
                return False
        if any(map(hasattr, self.leaves, repeat("addons"))):  # children gained
            return False
        for node, kids in self.parents:
            if not hasattr(node, "addons"):
                return False
            now = node.addons
            if type(now) is not type(kids) or now != kids:  # replaced or changed in place
                return False
        return True


async def trigger_event(self: addonmanager.AddonManager, event: hooks.Hook) -> None:
    """Drop-in for ``AddonManager.trigger_event`` (see the module docstring)."""
    name = event.name
    args = event.args()
    chain = self.chain
    generation = _generation[0]
    cached = self.__dict__.get(_PLANS)
    if cached is None or cached[0] != generation:  # addons (un)registered: drop the old plans
        cached = self.__dict__[_PLANS] = (generation, {})
    plans = cached[1]
    plan = plans.get(name)
    if plan is None or not plan.valid(chain, name):
        plan = plans[name] = _Plan(chain, name)
    length = len(chain)
    steps = plan.steps
    n_steps = len(steps)
    k = 0
    live = -1  # >= 0: something changed during this event; walk the rest of the chain from here
    while True:
        if live < 0:
            if k >= n_steps:
                return
            index, root, tree = steps[k]
            k += 1
            if tree is None:
                tree = addonmanager.traverse((root,))
        else:
            if live >= len(chain):  # as a list iterator: the list's length now
                return
            root = chain[live]
            live += 1
            tree = addonmanager.traverse((root,)) if hasattr(root, "addons") else (root,)
        try:
            for addon in tree:
                func = getattr(addon, name, None)
                if not func:
                    continue
                if not callable(func):
                    if isinstance(func, types.ModuleType):
                        continue
                    raise exceptions.AddonManagerError(f"Addon handler {name} ({addon}) not callable")
                res = func(*args)
                if res is not None and inspect.isawaitable(res):
                    await res
        except exceptions.AddonHalt:
            return
        except exceptions.OptionsError:
            raise
        except Exception as exc:
            _log_addon_error(exc)
        if live < 0 and (_generation[0] != generation or len(chain) != length):
            live = index + 1  # addons registered or removed meanwhile: no plan for the rest


def _counting(method: Any) -> Any:
    @functools.wraps(method)
    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            _generation[0] += 1

    counted._codexgate_wraps = method  # type: ignore[attr-defined]
    return counted


_COUNTED = ("register", "remove", "clear")


def install(*, force: bool = False) -> bool:
    """Use the cheaper dispatch if mitmproxy's is the verified code (or ``force``). Idempotent;
    returns whether it is in use."""
    cls: Any = addonmanager.AddonManager
    if getattr(cls, _PATCHED, False):
        return True
    if not force and source_hash() not in VERIFIED:
        logging.getLogger("codexgate.dispatch").warning(
            "codexgate: mitmproxy's hook dispatch is not the code this gateway was checked "
            "against; using mitmproxy's own (slower, same behaviour)"
        )
        return False
    for attr in _COUNTED:
        method = getattr(cls, attr)
        if not hasattr(method, "_codexgate_wraps"):
            setattr(cls, attr, _counting(method))
    _generation[0] += 1
    cls.trigger_event = trigger_event
    setattr(cls, _PATCHED, True)
    return True


def uninstall() -> None:
    """Restore mitmproxy's own dispatch."""
    cls: Any = addonmanager.AddonManager
    cls.trigger_event = original_trigger_event
    for attr in _COUNTED:
        method = getattr(cls, attr)
        if hasattr(method, "_codexgate_wraps"):
            setattr(cls, attr, method._codexgate_wraps)
    setattr(cls, _PATCHED, False)


class FastDispatch:
    """Option ``codexgate_fast_dispatch`` (default on): off restores mitmproxy's own dispatch,
    for comparison or if this one ever misbehaves."""

    def load(self, loader: Any) -> None:
        loader.add_option(
            "codexgate_fast_dispatch", bool, True,
            "Dispatch addon hooks with codexgate's cheaper loop (same order and error handling as "
            "mitmproxy's; used only on the mitmproxy versions it was checked against). Off: "
            "mitmproxy's own dispatch.",
        )

    def configure(self, updated: set[str]) -> None:
        if "codexgate_fast_dispatch" in updated:
            if ctx.options.codexgate_fast_dispatch:
                install()
            else:
                uninstall()
