"""In-process relay for streamed calls, so the gateway keeps reading the provider's stream
after the client hangs up (the tokens are billed either way, and the trace needs the usage
that only arrives at the end).

mitmproxy tears down a flow's server connection when its client disconnects. For a call the
client asked to stream, routing therefore points mitmproxy at this relay (a tiny aiohttp
server on loopback, on mitmproxy's own event loop), and the relay talks to the provider:
each upstream chunk goes through the tap first (which writes the trace when the terminal
event passes), then on to mitmproxy and the client. If the client has gone, the relay drains
the upstream until the end of the response (bounded by ``drain_seconds``) and records the
call as ``client_aborted`` with the real usage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

log = logging.getLogger("codexgate.relay")

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass
class RelayJob:
    """One upstream call the relay makes on behalf of a flow."""

    url: str
    method: str
    headers: list[tuple[str, str]]
    body: bytes
    on_headers: Callable[[int, list[tuple[str, str]]], Callable[[bytes], bytes] | None]
    on_end: Callable[[str | None, bool], None]  # (error or None, client_gone)
    on_connect_error: Callable[[str], tuple[int, bytes, dict[str, str]]]  # -> reply for the client
    on_client_gone: Callable[[], None] = lambda: None
    drain_seconds: float = 120.0
    started: bool = False


class StreamRelay:
    def __init__(self) -> None:
        self.port: int | None = None
        self._jobs: dict[str, RelayJob] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/relay/{job}", self._handle)
        # auto_decompress=False: the relay never reads the body mitmproxy sends it (the job holds
        # the raw body), and aiohttp cannot decode every encoding a client may use (zstd).
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300),
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._session = None

    @property
    def running(self) -> bool:
        return self.port is not None and self._session is not None

    def submit(self, job_id: str, job: RelayJob) -> str:
        """Register a job; returns the relay URL mitmproxy should send the request to."""
        self._jobs[job_id] = job
        return f"http://127.0.0.1:{self.port}/relay/{job_id}"

    def discard(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        job = self._jobs.pop(request.match_info["job"], None)
        if job is None or self._session is None:
            return web.Response(status=404, text="unknown relay job")
        job.started = True
        headers = [(k, v) for k, v in job.headers if k.lower() not in _HOP_BY_HOP]
        client_gone = False
        error: str | None = None
        try:
            try:
                up = await self._session.request(job.method, job.url, headers=headers, data=job.body)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                status, body, err_headers = job.on_connect_error(error)
                return web.Response(status=status, body=body, headers=err_headers)
            try:
                resp_headers = [(k, v) for k, v in up.headers.items() if k.lower() not in _HOP_BY_HOP]
                tap = job.on_headers(up.status, resp_headers)
                out = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in resp_headers:
                    out.headers.add(k, v)
                try:
                    await out.prepare(request)
                except (ConnectionError, RuntimeError):
                    client_gone = True
                deadline: float | None = None
                try:
                    async for chunk in up.content.iter_any():
                        data = tap(chunk) if tap is not None else chunk
                        if not client_gone:
                            try:
                                await out.write(data)
                            except (ConnectionError, RuntimeError):
                                client_gone = True
                                job.on_client_gone()
                        if client_gone:
                            deadline = deadline or time.monotonic() + job.drain_seconds
                            if time.monotonic() > deadline:
                                error = f"stopped draining the upstream after {job.drain_seconds:.0f}s"
                                break
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    error = f"upstream stream broke: {type(exc).__name__}: {exc}"[:500]
                if tap is not None:
                    tap(b"")
                if error is not None and not client_gone:
                    # Cut the client's stream too, so it sees a broken stream, not a clean end.
                    if request.transport is not None:
                        request.transport.abort()
                    return out
                if not client_gone:
                    try:
                        await out.write_eof()
                    except (ConnectionError, RuntimeError):
                        client_gone = True
                return out
            finally:
                up.release()
        finally:
            job.on_end(error, client_gone)
