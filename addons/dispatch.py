"""Cheaper hook dispatch for mitmproxy's ``AddonManager.trigger_event``, same behaviour.

mitmproxy dispatches every event (``requestheaders``, ``request``, ``response``, …, and an
``update`` after each flow event) to each of the ~36 addons of its chain plus the script's
children. For every chain entry it builds a ``safecall`` context manager, an
``invoke_addon`` coroutine and a ``traverse`` generator, and for every handler it calls
``Hook.args()``, which walks ``dataclasses.fields`` again. Under load that bookkeeping was about
a fifth of the gateway's event-loop time (py-spy, 16 connections, 40 KB bodies), most of it for
addons that have no handler for the event.

``install()`` replaces ``trigger_event`` with one loop that does the same thing:

- the same order: chain entries in order, each entry's tree in ``traverse`` order, looked up
  afresh on every event (no cache, so script reloads and added or removed addons behave as
  before);
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


async def trigger_event(self: addonmanager.AddonManager, event: hooks.Hook) -> None:
    """Drop-in for ``AddonManager.trigger_event`` (see the module docstring)."""
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
    cls.trigger_event = trigger_event
    setattr(cls, _PATCHED, True)
    return True


def uninstall() -> None:
    """Restore mitmproxy's own dispatch."""
    cls: Any = addonmanager.AddonManager
    cls.trigger_event = original_trigger_event
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
