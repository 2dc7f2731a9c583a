"""In-process relay: owns every forwarded call's upstream connection, so the gateway can retry,
fall back to the next target, translate between API families, and keep reading a provider's
stream after the client hung up (the tokens are billed either way, and the trace needs the usage
that only arrives at the end).

mitmproxy tears down a flow's server connection when its client disconnects. The upstream step
therefore points mitmproxy at this relay (a tiny aiohttp server on loopback, on mitmproxy's own
event loop) with a ``RelayJob``: the ordered targets, each with its own URL, credential headers
and body. The relay:

1. tries the targets in order (skipping those whose circuit breaker is open), each up to
   ``policy.attempts_per_target`` times, on connection errors, timeouts (connect, first event,
   idle) and 429/500/502/503/504/529, with exponential backoff and jitter that honours
   ``Retry-After``, all inside ``policy.budget_s``. A client error (other 4xx) is never retried;
2. holds a streamed answer until the upstream produced its first real event (not a keep-alive
   comment or ``ping``), so a failure before it — refused, error status, no event within the
   first-byte timeout, reset — can still go to the next target; then commits: headers ``x-codexgate-served-by`` and ``x-codexgate-attempts``
   and every chunk pass through the tap (which writes the trace) to mitmproxy and the client;
3. after the commit, a broken or truncated stream is ended with a terminal event in the
   client's format (Responses ``response.failed`` with a retryable code, which Codex answers by
   resending; Anthropic ``error``), never a silent clean end, and the attempt records the cut;
4. if the client has gone, drains the upstream until the end (bounded by ``drain_seconds``)
   and records the call as ``client_aborted`` with the real usage.

Invariant: the relay sends nothing except the jobs the upstream step submitted (one per flow
it cleared), each used once; credential headers live only in the job, never in a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from addons.flowstate import Attempt
from codexgate.wire.sse import SseParser, frame

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
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
# keep-alives: the relay holds the answer until an event other than these arrives (SSE comments
# are skipped by the parser already)
_PREAMBLE = frozenset({"ping"})
_TERMINAL = frozenset(
    {"response.completed", "response.failed", "response.incomplete", "message_stop", "error", "[DONE]"}
)
_ERROR_BODY_LIMIT = 64 * 1024


class StreamTranslator(Protocol):
    """Turns a provider's SSE byte stream into the client's format (``codexgate.wire.translate``)."""

    def feed(self, chunk: bytes) -> bytes: ...
    def close(self) -> bytes: ...


class Breaker(Protocol):
    async def allow(self, key: str) -> bool: ...
    async def record(self, key: str, ok: bool) -> None: ...


@dataclass
class RetryPolicy:
    """Bounds of the retry loop; timeouts are per attempt, ``budget_s`` for the whole call
    until its answer is committed."""

    attempts_per_target: int = 2
    budget_s: float = 120.0
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0
    # A longer Retry-After is not waited out here: the call goes to the next target at once, or,
    # with none left, the answer (and its Retry-After) goes to the client, which honours it.
    max_retry_after_s: float = 5.0


@dataclass
class RelayTarget:
    """One target as the relay sends to it; ``headers`` carry the credential (never logged)."""

    label: str
    provider: str
    url: str
    display_url: str
    headers: list[tuple[str, str]] = field(repr=False)
    body: bytes = field(repr=False)
    model: str | None = None
    upstream_api: str | None = None  # set when translated
    stream_translator: Callable[[], StreamTranslator] | None = None
    json_translator: Callable[[int, bytes], bytes] | None = None  # (status, body) -> client body
    connect_timeout_s: float = 10.0
    first_byte_timeout_s: float = 60.0
    idle_timeout_s: float = 300.0
    dropped: tuple[str, ...] = ()  # what translation left out (recorded when this target serves)


@dataclass
class RelayJob:
    """One call the relay makes on behalf of a flow."""

    targets: list[RelayTarget]
    method: str
    attempts: list[Attempt]  # the flow's attempt list: the relay appends one per try
    on_headers: Callable[[int, list[tuple[str, str]]], Callable[[bytes], bytes] | None]
    on_end: Callable[[str | None, bool], None]  # (error or None, client_gone)
    on_connect_error: Callable[[str], tuple[int, bytes, dict[str, str]]]  # -> reply for the client
    on_client_gone: Callable[[], None] = lambda: None
    on_commit: Callable[[RelayTarget], None] = lambda t: None
    client_family: str = "openai"  # openai | anthropic: the terminal event written on a cut
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: Breaker | None = None
    drain_seconds: float = 120.0
    started: bool = False
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class _Failure:
    error: str
    status: int | None = None
    retry_after_s: float | None = None
    headers: list[tuple[str, str]] | None = None
    body: bytes | None = None


@dataclass
class _Ready:
    up: aiohttp.ClientResponse
    held: list[bytes]  # chunks read while waiting for the first real event
    sse: bool


def retry_after_seconds(headers: aiohttp.typedefs.LooseHeaders | dict[str, str]) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), else None."""
    get = headers.get  # type: ignore[union-attr]
    ms = get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def backoff_seconds(policy: RetryPolicy, retry_index: int, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped."""
    full = min(policy.backoff_max_s, policy.backoff_base_s * (2**retry_index))
    return full / 2 + rng.random() * full / 2


def _event_type(ev_name: str | None, data: str) -> str | None:
    if data.strip() == "[DONE]":
        return "[DONE]"
    if ev_name:
        return ev_name
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc.get("type") if isinstance(doc, dict) and isinstance(doc.get("type"), str) else "chunk"


class _Watch:
    """Follows the SSE stream in the client's format: the response id and whether a terminal
    event passed (a stream that ends without one is a cut, not a clean end)."""

    def __init__(self) -> None:
        self.parser = SseParser()
        self.terminal = False
        self.response_id: str | None = None
        self.sequence = 0

    def feed(self, data: bytes) -> None:
        for ev in self.parser.feed(data):
            kind = _event_type(ev.event, ev.data)
            self.sequence += 1
            if kind in _TERMINAL:
                self.terminal = True
            if self.response_id is None and kind in ("response.created", "message_start"):
                try:
                    doc = json.loads(ev.data)
                    inner = doc.get("response") or doc.get("message") or {}
                    self.response_id = inner.get("id")
                except (ValueError, AttributeError):
                    pass


def cut_event(family: str, response_id: str | None, message: str, sequence: int) -> bytes:
    """The terminal event that ends a stream the upstream broke after it was committed."""
    if family == "anthropic":
        return frame("error", {"type": "error", "error": {"type": "api_error", "message": message}})
    return frame(
        "response.failed",
        {
            "type": "response.failed",
            "sequence_number": sequence,
            "response": {
                "id": response_id or "resp_codexgate_cut",
                "object": "response",
                "status": "failed",
                "error": {"code": "server_error", "message": message},
                "output": [],
            },
        },
    )


def _internal(exc: BaseException) -> str:
    """The row's error for an exception inside the relay: its type, never its text."""
    return f"internal error in the relay ({type(exc).__name__})"


class Buffered:
    """An answer collected whole, for a client that is not streaming (``StreamRelay.answer``):
    the ``web.StreamResponse`` surface ``_stream`` writes to, kept in memory."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.chunks: list[bytes] = []
        self.broken = False  # the upstream body broke after commit: the client must see a cut

    async def prepare(self, request: web.Request | None) -> None:
        return None

    async def write(self, data: bytes) -> None:
        self.chunks.append(data)

    async def write_eof(self) -> None:
        return None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


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
            timeout=aiohttp.ClientTimeout(total=None),
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

    # ---------------------------------------------------------------- one call
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        job = self._jobs.pop(request.match_info["job"], None)
        if job is None or self._session is None:
            return web.Response(status=404, text="unknown relay job")
        done: tuple[web.StreamResponse | Buffered, str | None, bool] | None = None
        crashed: str | None = None
        try:
            done = await self._run(job, request)
            assert isinstance(done[0], web.StreamResponse)
            return done[0]
        except Exception as exc:
            crashed = _internal(exc)
            raise
        finally:
            job.on_end(done[1] if done else crashed, done[2] if done else False)

    async def answer(self, job: RelayJob, client_gone: Callable[[], bool] = lambda: False) -> Buffered:
        """Run ``job`` for a client that waits for the whole answer (a non-streamed call): the
        same attempts, retries, fallback, translation, tap and trace as a relayed call, without
        the loopback HTTP hop through mitmproxy and this relay's server (the caller sets the
        returned answer as the flow's response). ``broken`` says the body broke after commit;
        ``client_gone()`` is asked at the end (the row of a call whose client left says so)."""
        done: tuple[web.StreamResponse | Buffered, str | None, bool] | None = None
        crashed: str | None = None
        try:
            done = await self._run(job, None)
            assert isinstance(done[0], Buffered)
            return done[0]
        except Exception as exc:  # the row says so; the caller answers the client
            crashed = _internal(exc)
            raise
        finally:
            job.on_end(done[1] if done else crashed, client_gone())

    async def _run(
        self, job: RelayJob, request: web.Request | None
    ) -> tuple[web.StreamResponse | Buffered, str | None, bool]:
        """One job: the attempts, then the committed answer, or the failure reply (the last
        target's own error answer, else the gateway's in the client's format) — written to
        ``request``'s response, or into a ``Buffered`` answer without one. Returns (answer,
        error or None, client gone)."""
        job.started = True
        ready, target, failure = await self._attempt_all(job)
        if ready is not None:
            assert target is not None
            return await self._stream(request, job, target, ready)
        assert failure is not None
        if failure.status is not None and target is not None:
            reply = await self._reply_failure(job, target, failure)
        else:
            status, body, err_headers = job.on_connect_error(failure.error)
            reply = web.Response(status=status, body=body, headers={**err_headers, **self._summary_headers(job, None)})
        if request is not None:
            return reply, failure.error, False
        out = Buffered(reply.status)
        out.headers.extend(reply.headers)
        out.chunks.append(bytes(reply.body or b""))  # type: ignore[arg-type]
        return out, failure.error, False

    def _summary_headers(self, job: RelayJob, served: RelayTarget | None) -> dict[str, str]:
        out = {"x-codexgate-attempts": str(sum(1 for a in job.attempts if a.decision != "skipped"))}
        if served is not None:
            out["x-codexgate-served-by"] = served.label
        return out

    async def _attempt_all(self, job: RelayJob) -> tuple[_Ready | None, RelayTarget | None, _Failure | None]:
        """Try targets in order until one is ready to commit; returns the ready answer, or the
        last failure (the last attempt then has decision ``gave_up``)."""
        policy = job.policy
        deadline = time.monotonic() + policy.budget_s
        failure: _Failure | None = None
        last_target: RelayTarget | None = None
        for ti, target in enumerate(job.targets):
            more_targets = ti + 1 < len(job.targets)
            if job.breaker is not None and not await job.breaker.allow(target.label):
                att = self._new_attempt(job, target)
                att.decision, att.error = "skipped", "circuit open"
                att.latency_ms = 0.0
                if failure is None:
                    failure = _Failure(f"circuit open for {target.label}")
                continue
            for n in range(max(1, policy.attempts_per_target)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._give_up(job, failure or _Failure("retry budget exhausted"), last_target)
                att = self._new_attempt(job, target)
                last_target = target
                result = await self._try(
                    job.method, target, min(remaining, target.first_byte_timeout_s), remaining
                )
                if isinstance(result, _Ready):
                    if job.breaker is not None:
                        await job.breaker.record(target.label, True)
                    return result, target, None
                failure = result
                if result.status is not None:
                    att.answered(result.status)
                att.failed(result.error)
                if job.breaker is not None:
                    await job.breaker.record(target.label, False)
                wait = (
                    result.retry_after_s
                    if result.retry_after_s is not None
                    else backoff_seconds(policy, n, job.rng)
                )
                can_retry = (
                    n + 1 < policy.attempts_per_target
                    and wait <= policy.max_retry_after_s
                    and time.monotonic() + wait < deadline
                )
                if can_retry:
                    att.decision, att.wait_ms = "retry", wait * 1000.0
                    await asyncio.sleep(wait)
                    continue
                att.decision = "fallback" if more_targets else "gave_up"
                break
        return self._give_up(job, failure or _Failure("no target could be tried"), last_target)

    @staticmethod
    def _give_up(
        job: RelayJob, failure: _Failure, target: RelayTarget | None
    ) -> tuple[None, RelayTarget | None, _Failure]:
        tried = [a for a in job.attempts if a.decision != "skipped"]
        if tried:
            tried[-1].decision = "gave_up"
        return None, target, failure

    @staticmethod
    def _new_attempt(job: RelayJob, target: RelayTarget) -> Attempt:
        att = Attempt(
            len(job.attempts) + 1,
            target.provider,
            target.display_url,
            datetime.now(UTC),
            time.monotonic(),
            model=target.model,
            upstream_api=target.upstream_api,
            sent_bytes=len(target.body),
        )
        job.attempts.append(att)
        return att

    async def _try(
        self, method: str, target: RelayTarget, first_event_s: float, remaining_s: float
    ) -> _Ready | _Failure:
        """One HTTP request; ready when the answer may be committed (a final status, or a
        stream whose first real event arrived), else the failure."""
        assert self._session is not None
        fb_deadline = time.monotonic() + first_event_s
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(target.connect_timeout_s, remaining_s))
        headers = [(k, v) for k, v in target.headers if k.lower() not in _HOP_BY_HOP]
        try:
            up = await asyncio.wait_for(
                self._session.request(method, target.url, headers=headers, data=target.body, timeout=timeout),
                timeout=max(0.001, fb_deadline - time.monotonic()),
            )
        except aiohttp.ConnectionTimeoutError:  # a TimeoutError too: name the timeout that fired
            return _Failure(
                f"connect timeout: no connection to {target.label} within {target.connect_timeout_s:g}s"
            )
        except TimeoutError:
            return _Failure(f"timeout: no response from {target.label} within {first_event_s:.1f}s")
        except (aiohttp.ClientError, OSError) as exc:
            return _Failure(f"{type(exc).__name__}: {exc}"[:500])
        if up.status in RETRY_STATUSES:
            body = b""
            try:
                body = await asyncio.wait_for(
                    up.content.read(_ERROR_BODY_LIMIT), timeout=max(0.001, fb_deadline - time.monotonic())
                )
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            resp_headers = [(k, v) for k, v in up.headers.items() if k.lower() not in _HOP_BY_HOP]
            retry_after = retry_after_seconds(up.headers)
            up.release()
            return _Failure(f"HTTP {up.status}", up.status, retry_after, resp_headers, body)
        sse = up.status < 300 and "text/event-stream" in up.headers.get("content-type", "")
        if not sse:
            return _Ready(up, [], False)
        held: list[bytes] = []
        parser = SseParser()
        try:
            while True:
                chunk = await asyncio.wait_for(
                    up.content.readany(), timeout=max(0.001, fb_deadline - time.monotonic())
                )
                if not chunk:
                    break  # ended before a real event: commit what there is; the tap judges it
                held.append(chunk)
                if any(_event_type(ev.event, ev.data) not in _PREAMBLE for ev in parser.feed(chunk)):
                    break
        except TimeoutError:
            up.close()
            return _Failure(f"timeout: no first event from {target.label} within {first_event_s:.1f}s")
        except (aiohttp.ClientError, OSError) as exc:
            up.close()
            return _Failure(f"stream broke before its first event: {type(exc).__name__}: {exc}"[:500])
        return _Ready(up, held, True)

    async def _reply_failure(self, job: RelayJob, target: RelayTarget, failure: _Failure) -> web.Response:
        """Every target failed and the last one answered with an error status: the client gets
        that answer (translated when the target was), through the tap like any answer."""
        assert failure.status is not None
        body = failure.body or b""
        headers = [(k, v) for k, v in (failure.headers or []) if k.lower() != "content-encoding"]
        if target.json_translator is not None:
            body = target.json_translator(failure.status, body)
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("content-type", "application/json"))
        headers += list(self._summary_headers(job, None).items())
        tap = job.on_headers(failure.status, headers)
        if tap is not None:
            body = tap(body)
            body += tap(b"")
        out = web.Response(status=failure.status, body=body)
        for k, v in headers:
            if k.lower() != "content-type":
                out.headers.add(k, v)
            else:
                out.content_type = v.split(";")[0]
        return out

    async def _stream(
        self, request: web.Request | None, job: RelayJob, target: RelayTarget, ready: _Ready
    ) -> tuple[web.StreamResponse | Buffered, str | None, bool]:
        """Commit ``ready`` to the client and pass the rest of the answer on (into a ``Buffered``
        answer when there is no relay ``request``: see ``answer``)."""
        up = ready.up
        job.on_commit(target)
        served = job.attempts[-1]
        served.answered(up.status)
        served.decision = "served"
        translator = target.stream_translator() if (ready.sse and target.stream_translator) else None
        resp_headers = [(k, v) for k, v in up.headers.items() if k.lower() not in _HOP_BY_HOP]
        whole_json = not ready.sse and target.json_translator is not None
        if translator is not None or whole_json:
            drop = {"content-type", "content-encoding", "request-id", "anthropic-organization-id"}
            resp_headers = [(k, v) for k, v in resp_headers if k.lower() not in drop]
            resp_headers.append(("content-type", "text/event-stream" if ready.sse else "application/json"))
        resp_headers += list(self._summary_headers(job, target).items())
        error: str | None = None
        client_gone = False
        try:
            tap = job.on_headers(up.status, resp_headers)
            out: web.StreamResponse | Buffered = (
                web.StreamResponse(status=up.status, reason=up.reason)
                if request is not None
                else Buffered(up.status)
            )
            for k, v in resp_headers:
                out.headers.add(k, v)
            try:
                await out.prepare(request)
            except (ConnectionError, RuntimeError):
                client_gone = True
            watch = _Watch() if ready.sse else None
            deadline: float | None = None

            async def emit(data: bytes) -> None:
                nonlocal client_gone
                if translator is not None and data:
                    data = translator.feed(data)
                if watch is not None:
                    watch.feed(data)
                data = tap(data) if tap is not None else data
                if data and not client_gone:
                    try:
                        await out.write(data)
                    except (ConnectionError, RuntimeError):
                        client_gone = True
                        job.on_client_gone()

            if whole_json:
                try:
                    raw = await asyncio.wait_for(up.read(), timeout=target.idle_timeout_s)
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    raw, error = b"", f"upstream body broke: {type(exc).__name__}: {exc}"[:500]
                assert target.json_translator is not None
                await emit(target.json_translator(up.status, raw))
            else:
                for chunk in ready.held:
                    await emit(chunk)
                loop, idle = asyncio.get_running_loop(), target.idle_timeout_s
                try:
                    # one timer re-armed per read (wait_for made a task and a timer per chunk on 3.11);
                    # disarmed while the chunk goes to the client, so a slow client is not "idle upstream"
                    async with asyncio.timeout(None) as idle_timer:
                        while True:
                            idle_timer.reschedule(loop.time() + idle)
                            chunk = await up.content.readany()
                            idle_timer.reschedule(None)
                            if not chunk:
                                break
                            await emit(chunk)
                            if client_gone:
                                deadline = deadline or time.monotonic() + job.drain_seconds
                                if time.monotonic() > deadline:
                                    error = f"stopped draining the upstream after {job.drain_seconds:.0f}s"
                                    break
                except TimeoutError:
                    error = f"upstream stream idle for more than {target.idle_timeout_s:.0f}s"
                except (aiohttp.ClientError, OSError) as exc:
                    error = f"upstream stream broke: {type(exc).__name__}: {exc}"[:500]
                if translator is not None:
                    await emit(translator.close())
            if watch is not None and not watch.terminal and not (client_gone and error is None):
                # broken or closed without its terminal event: end it properly for the client
                why = error or "upstream closed the stream before its end"
                served.decision = "cut"
                served.failed(f"stream cut after commit: {why}")
                if job.breaker is not None:
                    await job.breaker.record(target.label, False)
                msg = f"codexgate: the stream from {target.label} broke after it started ({why}); resend the request."
                await emit(cut_event(job.client_family, watch.response_id, msg, watch.sequence))
                error = error or why
            if tap is not None:
                tail = tap(b"")
                if tail and not client_gone:
                    try:
                        await out.write(tail)
                    except (ConnectionError, RuntimeError):
                        client_gone = True
            if error is not None and not client_gone and watch is None:
                # a broken plain body: cut the client's connection too, so it sees a broken answer
                if request is not None and request.transport is not None:
                    request.transport.abort()
                elif isinstance(out, Buffered):
                    out.broken = True
                return out, error, client_gone
            if not client_gone:
                try:
                    await out.write_eof()
                except (ConnectionError, RuntimeError):
                    client_gone = True
            return out, error, client_gone
        finally:
            up.release()
