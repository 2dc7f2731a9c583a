"""Cheaper hook dispatch for mitmproxy's ``AddonManager.trigger_event``, same behaviour.

mitmproxy dispatches every event (``requestheaders``, ``request``, ``response``, …, and an
``update`` after each flow event) to each of the ~36 addons of its chain plus the script's
children. For every chain entry it builds a ``safecall`` context manager, an
``invoke_addon`` coroutine and a ``traverse`` generator, and for every handler it calls
``Hook.args()``, which walks ``dataclasses.fields`` again. Under load that bookkeeping was about
a fifth of the gateway's event-loop time (py-spy, 16 connections, 40 KB bodies), most of it for
addons that have no handler for the event.

``install()`` replaces ``trigger_event`` with one loop that does the same thing:

- the same order: chain entries in order, each entry's tree in ``traverse`` order. The handlers
  an event reaches are looked up once and kept as a plan per event name; looking them up on every
  event (``getattr`` on ~75 addons, a ``traverse`` generator per entry, ~10 events a call) was
  ~5 % of the gateway's CPU. A plan is used only while nothing it depends on can have changed:
  it is dropped when an addon is registered or removed (``register``/``remove``/``clear``, which
  mitmproxy's script loader and reloads go through), on every option change (a reorder of
  ``scripts`` changes the tree without a register), and when the chain list was replaced or grew.
  Its check is two comparisons; any tree with an odd attribute (below) is never planned and is
  walked afresh on every event;
- the same arguments (``Hook.args()`` computed once per event; a hook's fields never change
  while it is dispatched);
- the same error handling per chain entry: ``AddonHalt`` stops the event, ``OptionsError``
  propagates, any other exception is logged as ``Addon error: …`` (the traceback cut to the
  handler) and skips the rest of that entry's tree; a non-callable attribute named like the
  hook raises ``AddonManagerError`` in the same way, a module named like it is skipped;
- awaitable results awaited, sync handlers called directly.

It is installed only when mitmproxy's own code for those functions is the code this was
checked against (by hash of the source; 11.0.2 and 12.3.1 have the same); on any other version mitmproxy's
dispatch stays, slower but the same. ``tests/test_dispatch.py`` runs both implementations on
the same addon trees and compares calls, order, halts and logged errors.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import types
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


_PLANS = "_codexgate_dispatch_plans"
_generation = 0
_ORIGINAL_MUTATORS = {
    name: getattr(addonmanager.AddonManager, name) for name in ("register", "remove", "clear")
}
Plan = tuple[tuple[Any, ...], ...]  # per chain entry (with any handler), its handlers in order


def invalidate() -> None:
    """Drop every cached dispatch plan (addons added, removed or reloaded; options changed)."""
    global _generation
    _generation += 1


def _plan(self: addonmanager.AddonManager, name: str) -> Plan | None:
    """The handlers ``name`` reaches, grouped per chain entry; None when a tree has an attribute
    named like the hook that is not a plain handler, or looking one up raised (such trees are
    walked afresh on every event, with mitmproxy's error for each)."""
    groups = []
    for root in self.chain:
        funcs = []
        try:
            tree = addonmanager.traverse((root,)) if hasattr(root, "addons") else (root,)
            for addon in tree:
                func = getattr(addon, name, None)
                if not func:
                    continue
                if not callable(func):
                    return None
                funcs.append(func)
        except Exception:
            return None
        if funcs:
            groups.append(tuple(funcs))
    return tuple(groups)


async def trigger_event(self: addonmanager.AddonManager, event: hooks.Hook) -> None:
    """Drop-in for ``AddonManager.trigger_event`` (see the module docstring)."""
    name = event.name
    plans = self.__dict__.get(_PLANS)
    if plans is None:
        plans = self.__dict__[_PLANS] = {}
    chain = self.chain
    entry = plans.get(name)
    if entry is None or entry[0] != _generation or entry[1] is not chain or entry[2] != len(chain):
        entry = plans[name] = (_generation, chain, len(chain), _plan(self, name))
    plan = entry[3]
    if plan is None:
        return await _walk(self, event)
    args = event.args()
    for funcs in plan:
        try:
            for func in funcs:
                res = func(*args)
                if res is not None and inspect.isawaitable(res):
                    await res
        except exceptions.AddonHalt:
            return
        except exceptions.OptionsError:
            raise
        except Exception as exc:
            _log_addon_error(exc)


async def _walk(self: addonmanager.AddonManager, event: hooks.Hook) -> None:
    """Dispatch by walking the chain afresh (trees with odd attributes)."""
    name = event.name
    args = event.args()
    for root in self.chain:
        try:
            tree = addonmanager.traverse((root,)) if hasattr(root, "addons") else (root,)
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
    for name, original in _ORIGINAL_MUTATORS.items():
        setattr(cls, name, _invalidating(original))
    cls.trigger_event = trigger_event
    setattr(cls, _PATCHED, True)
    invalidate()
    return True


def _invalidating(method: Any) -> Any:
    def mutator(self: addonmanager.AddonManager, *args: Any, **kwargs: Any) -> Any:
        invalidate()
        try:
            return method(self, *args, **kwargs)
        finally:
            invalidate()  # also after: the method's own load hooks may register more

    mutator.__name__ = method.__name__
    mutator.__doc__ = method.__doc__
    return mutator


def uninstall() -> None:
    """Restore mitmproxy's own dispatch."""
    cls: Any = addonmanager.AddonManager
    cls.trigger_event = original_trigger_event
    for name, original in _ORIGINAL_MUTATORS.items():
        setattr(cls, name, original)
    setattr(cls, _PATCHED, False)
    invalidate()


class FastDispatch:
    """Option ``codexgate_fast_dispatch`` (default on): off restores mitmproxy's own dispatch,
    for comparison or if this one ever misbehaves."""

    def load(self, loader: Any) -> None:
        loader.add_option(
            "codexgate_fast_dispatch",
            bool,
            True,
            "Dispatch addon hooks with codexgate's cheaper loop (same order and error handling as "
            "mitmproxy's; used only on the mitmproxy versions it was checked against). Off: "
            "mitmproxy's own dispatch.",
        )

    def configure(self, updated: set[str]) -> None:
        invalidate()  # an option change (e.g. the order of scripts) may change the addon tree
        if "codexgate_fast_dispatch" in updated:
            if ctx.options.codexgate_fast_dispatch:
                install()
            else:
                uninstall()
