"""Bounds on what one client connection may hold: time to send a request, idle keep-alive,
and connections per client address.

mitmproxy itself closes a connection only after 10 minutes without any traffic, so 50
clients that send half a header line (or nothing after connecting, or a body that never ends)
would each hold a socket and a file descriptor for that long. Each connection here is in one
phase, and each phase has a deadline:

- ``waiting``: connected (or a response finished) and no complete request head yet — the
  keep-alive idle timeout applies after a response, the header timeout after connecting;
- ``body``: the head arrived and the body is still coming — the body timeout;
- ``busy``: the request is with the gateway or the provider — no deadline here (streams may
  legitimately stay quiet for minutes; the provider and the relay bound those).

A connection past its deadline is closed by mitmproxy's own connection handler (the same call
its inactivity timeout makes). Connections beyond ``codexgate_max_client_connections`` from
one address are refused at accept time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

from mitmproxy import connection, ctx, exceptions, http

from addons.failsafe import failsafe

log = logging.getLogger("codexgate.clients")


@dataclass
class _Conn:
    client: connection.Client
    phase: str  # waiting | body | busy
    since: float
    served: int = 0  # requests completed on this connection


class ClientLimits:
    def __init__(self) -> None:
        self._conns: dict[str, _Conn] = {}
        self._per_address: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self.closed: Counter[str] = Counter()  # why connections were closed (for tests/metrics)

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "codexgate_header_timeout",
            str,
            "15",
            "Seconds a client has, after connecting, to send a complete request head.",
        )
        loader.add_option(
            "codexgate_body_timeout", str, "60", "Seconds a client has to send a request body once its head arrived."
        )
        loader.add_option(
            "codexgate_keepalive_timeout",
            str,
            "60",
            "Seconds an idle keep-alive connection stays open after a response.",
        )
        loader.add_option(
            "codexgate_max_client_connections",
            int,
            256,
            "Most open connections from one client address (0: no limit).",
        )

    def configure(self, updated: set[str]) -> None:
        for name in ("codexgate_header_timeout", "codexgate_body_timeout", "codexgate_keepalive_timeout"):
            if name in updated:
                raw = getattr(ctx.options, name)
                try:
                    ok = float(raw) > 0
                except ValueError:
                    ok = False
                if not ok:
                    raise exceptions.OptionsError(f"{name} must be a positive number of seconds, not {raw!r}.")
        if "codexgate_max_client_connections" in updated and ctx.options.codexgate_max_client_connections < 0:
            raise exceptions.OptionsError("codexgate_max_client_connections must be 0 (no limit) or more.")

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # ---------------------------------------------------------------- connection lifecycle
    @failsafe
    def client_connected(self, client: connection.Client) -> None:
        address = client.peername[0] if client.peername else "?"
        limit = ctx.options.codexgate_max_client_connections
        if limit and self._per_address[address] >= limit:
            client.error = f"codexgate: more than {limit} connections from this address"
            self.closed["too_many_connections"] += 1
            log.warning("codexgate: refused a connection: %d already open from %s", limit, address)
            return
        self._per_address[address] += 1
        self._conns[client.id] = _Conn(client, "waiting", time.monotonic())

    @failsafe
    def client_disconnected(self, client: connection.Client) -> None:
        if self._conns.pop(client.id, None) is not None:
            address = client.peername[0] if client.peername else "?"
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]

    def _set(self, flow: http.HTTPFlow, phase: str, done: bool = False) -> None:
        conn = self._conns.get(flow.client_conn.id)
        if conn is not None:
            conn.phase, conn.since = phase, time.monotonic()
            if done:
                conn.served += 1

    @failsafe
    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._set(flow, "busy")  # a tunnel: what runs inside has its own flows (or is passed through)

    @failsafe
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "CONNECT":
            self._set(flow, "body")

    @failsafe
    def request(self, flow: http.HTTPFlow) -> None:
        self._set(flow, "busy")

    @failsafe
    def response(self, flow: http.HTTPFlow) -> None:
        self._set(flow, "waiting", done=True)

    @failsafe
    def error(self, flow: http.HTTPFlow) -> None:
        self._set(flow, "waiting", done=True)

    # ---------------------------------------------------------------- deadlines
    def _deadline(self, conn: _Conn) -> tuple[float, str] | None:
        if conn.phase == "busy":
            return None
        if conn.phase == "body":
            return float(ctx.options.codexgate_body_timeout), "body_timeout"
        if conn.served:
            return float(ctx.options.codexgate_keepalive_timeout), "keepalive_timeout"
        return float(ctx.options.codexgate_header_timeout), "header_timeout"

    def expired(self, now: float) -> list[tuple[_Conn, str]]:
        out = []
        for conn in self._conns.values():
            limit = self._deadline(conn)
            if limit is not None and now - conn.since > limit[0]:
                out.append((conn, limit[1]))
        return out

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                for conn, why in self.expired(time.monotonic()):
                    await self._close(conn, why)
            except Exception as exc:  # the watchdog must outlive any one bad connection
                log.error("codexgate: client watchdog error (%s)", type(exc).__name__)

    async def _close(self, conn: _Conn, why: str) -> None:
        self._conns.pop(conn.client.id, None)
        address = conn.client.peername[0] if conn.client.peername else "?"
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]
        self.closed[why] += 1
        handler = None
        try:
            handler = ctx.master.addons.get("proxyserver").connections.get(conn.client.id)
        except AttributeError:
            pass
        if handler is None:
            return
        log.info("codexgate: closing a client connection (%s)", why.replace("_", " "))
        await handler.on_timeout()
