"""Start-up gate: no call is handled before every addon's ``running`` hook has finished.

mitmproxy opens its listening sockets *before* it runs the addons' ``running`` hooks, and it
awaits those hooks one after another (parent first, then children in order). Some of ours do
real work there — the limits addon opens its ledger in a thread, the upstream step starts the
stream relay — so a client that connects the moment the port accepts (a test fixture, a
Codex that was retrying while the gateway restarted) used to meet a half-started gateway and
get ``503 limits_unavailable`` from a ledger that opened a few milliseconds later.

``StartupGate`` goes first in the script's addon list and ``StartupGate.last`` last. Invariant:
a request hook of any later addon runs only after ``last.running`` (i.e. after every earlier
addon's ``running``) has returned, or after ``wait_s`` seconds; in the second case (a
``running`` hook raised, and mitmproxy skipped the later ones) the gate stops waiting for good
and flows meet the same fail-closed checks as ever (a ledger that is not open refuses with
503), so waiting never opens the gateway. Once started, the check is one attribute
read per call.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable

from mitmproxy import http

log = logging.getLogger("codexgate.startup")


class StartupGate:
    """First addon: holds requests until the gateway has started (bounded by ``wait_s``)."""

    def __init__(self, wait_s: float = 30.0) -> None:
        self.wait_s = wait_s
        self.started = False
        self._event = asyncio.Event()  # binds to the running loop on first wait (Python >= 3.10)
        self.last = _Started(self)  # not "done": that name is a mitmproxy hook

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        # once started, a plain call (no coroutine to create and await on every request)
        return None if self.started else self._wait()

    async def _wait(self) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), self.wait_s)
        except TimeoutError:
            if not self.started:  # once: an addon's running hook failed (mitmproxy then skips the later ones)
                log.error(
                    "codexgate: start-up did not finish within %.0f s (see the addon errors above); calls no "
                    "longer wait and meet the checks as they stand",
                    self.wait_s,
                )
                self.open()

    def open(self) -> None:
        self.started = True
        self._event.set()


class _Started:
    """Last addon: its ``running`` hook runs after every other addon's has returned."""

    def __init__(self, gate: StartupGate) -> None:
        self.gate = gate

    def running(self) -> None:
        # The start-up heap (mitmproxy, presidio, price tables, the ledger, this code: ~160k
        # objects) leaves the collector's view. Every full collection used to walk it on the event
        # loop: a ~150 ms stall every few seconds under load. No collect() first: a full
        # collection here is itself a ~150 ms stall.
        gc.freeze()
        self.gate.open()
