"""In-process relay: owns every forwarded call's upstream connection, so the gateway can retry,
fall back to the next target, translate between API families, and keep reading a provider's
stream after the client hung up (the tokens are billed either way, and the trace needs the usage
that only arrives at the end).

mitmproxy tears down a flow's server connection when its client disconnects. The upstream step
therefore points mitmproxy at this relay with a ``RelayJob``: the ordered targets, each with its
own URL, credential headers and body. mitmproxy sends the call (with an empty body) over loopback
to the relay's hop, a minimal HTTP/1.1 server (an ``asyncio.Protocol`` on 127.0.0.1, on
mitmproxy's own event loop; requests one after another on a kept-alive connection), and streams
its answer to the client; the upstream side is an aiohttp client session. The relay:

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
``job.on_end`` is called exactly once per job the hop pops, before a whole (failure) reply is
written and after a stream's last byte. The hop listens on loopback only, reads nothing of a
request but its head (the body, ``content-length`` bytes, is discarded) and frames every answer
itself: ``content-length`` for a whole body, chunked for a stream (one write per chunk, never
an empty chunk before the end); a stream written only partly leaves the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from typing import Protocol

import aiohttp
from multidict import CIMultiDict

from addons.flowstate import Attempt
from codexgate.wire.sse import SseParser, StreamWatch, event_kind, frame

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
# on the hop's own answer when the relay failed inside (before any of the answer went out): the
# upstream step then gives the client a provider-format error instead (never sent to a client)
RELAY_FAILED_HEADER = "x-codexgate-relay-failed"
# keep-alives: the relay holds the answer until an event other than these arrives (SSE comments
# are skipped by the parser already)
_PREAMBLE = frozenset({"ping"})
_ERROR_BODY_LIMIT = 64 * 1024


class StreamTranslator(Protocol):
    """Turns a provider's SSE byte stream into the client's format (``codexgate.wire.translate``)."""

    def feed(self, chunk: bytes) -> bytes: ...
    def close(self) -> bytes: ...


class Breaker(Protocol):
    async def allow(self, key: str) -> bool: ...
    async def record(self, key: str, ok: bool) -> None: ...


_JITTER = random.Random()


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
    # backoff jitter; one shared generator (seeding a Random per job read os.urandom: ~1% of the
    # gateway's CPU); a test may pass its own
    rng: random.Random = field(default=_JITTER, repr=False)


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


def has_real_event(parser: SseParser, chunk: bytes) -> bool:
    """Feed ``chunk`` to ``parser`` one LF-framed event at a time and stop at the first real
    event (not a comment or ``ping``): the relay only needs to know that one arrived, and with a
    fast upstream the first chunk is the whole stream, which the tap parses anyway. Feeding the
    pieces in order is the same as feeding the chunk (the parser is incremental), so a CRLF
    stream, fed whole, gets the same answer."""
    pos, size = 0, len(chunk)
    while pos < size:
        end = chunk.find(b"\n\n", pos)
        stop = size if end < 0 else end + 2
        if any(event_kind(ev) not in _PREAMBLE for ev in parser.feed(chunk[pos:stop])):
            return True
        pos = stop
    return False


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
    the surface ``_stream`` writes to (``prepare``, ``write``, ``write_eof``, as ``_HopStream``),
    kept in memory."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.chunks: list[bytes] = []
        self.broken = False  # the upstream body broke after commit: the client must see a cut

    async def prepare(self) -> None:
        return None

    async def write(self, data: bytes) -> None:
        self.chunks.append(data)

    async def write_eof(self) -> None:
        return None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class _Reply:
    """A whole answer (a failure reply): written after ``job.on_end``, with ``content-length``."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


_HEAD_LIMIT = 64 * 1024  # a request head (request line and headers) larger than this is refused
# the hop frames its answers itself: these never pass from a job's headers
_FRAMING = frozenset({"connection", "keep-alive", "content-length", "transfer-encoding"})
_GONE = "the relay's client closed the connection"
_dates: list[tuple[int, str]] = [(0, "")]


def _http_date() -> str:
    now = int(time.time())
    if _dates[0][0] != now:
        _dates[0] = (now, formatdate(now, usegmt=True))
    return _dates[0][1]


def _head(status: int, reason: str | None, headers: Iterable[tuple[str, str]], framing: str) -> bytes:
    """A response head: status line, ``headers`` (less the framing ones), then ``framing``
    (``content-length``/``transfer-encoding``/``connection`` lines, the hop's own)."""
    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    date = False
    for k, v in headers:
        low = k.lower()
        if low in _FRAMING:
            continue
        date = date or low == "date"
        lines.append(f"{k}: {v}\r\n")
    if not date:
        lines.append(f"date: {_http_date()}\r\n")
    lines.append(framing)
    text = "".join(lines)
    bare = text.replace("\r\n", "")
    if "\n" in bare or "\r" in bare:  # a CR or LF inside a name, value or reason
        raise ValueError("line break in a response header")
    return text.encode("utf-8", "surrogateescape") + b"\r\n"


def _parse_head(head: bytes) -> tuple[str, str, int, bool, bool] | None:
    """(method, target, content-length, keep-alive, HTTP/1.1) of a request head, None if it is
    not one the hop answers (the upstream step sends a content-length, never a chunked body)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[0].isalpha():
        return None
    http11 = parts[2] == b"HTTP/1.1"
    length: int | None = None
    keep_alive = http11
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            return None
        name = name.lower()
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or (length is not None and int(value) != length):
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            return None
        elif name == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            keep_alive = b"close" not in tokens and (http11 or b"keep-alive" in tokens)
    return parts[0].decode(), parts[1].decode("latin-1"), length or 0, keep_alive, http11


class _HopConnection(asyncio.Protocol):
    """One connection from mitmproxy to the hop. Requests are answered one after another: bytes
    that arrive while one is answered wait in the buffer (bounded: reading pauses beyond
    ``_HEAD_LIMIT``). Once the transport is closing, ``send`` and a waiting ``drain`` raise
    ``ConnectionResetError``."""

    def __init__(self, relay: StreamRelay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.task: asyncio.Task[None] | None = None  # the request being answered
        self._buf = bytearray()
        self._skip = 0  # body bytes of the current request still to discard
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None

    # ------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.relay._conns.add(self)

    def data_received(self, data: bytes) -> None:
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        self._buf += data
        if self.task is None:
            self._next()
        elif len(self._buf) > _HEAD_LIMIT and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.relay._conns.discard(self)
        self._wake(ConnectionResetError(_GONE))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake(None)

    # ------------------------------------------------------------- writing
    def _open(self) -> asyncio.Transport:
        t = self.transport
        if self.closed or t is None or t.is_closing():
            raise ConnectionResetError(_GONE)
        return t

    def check(self) -> None:
        """Raise ``ConnectionResetError`` if the connection is closing."""
        self._open()

    def send(self, data: bytes) -> None:
        self._open().write(data)

    async def drain(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
        if not self._writing_paused:
            return
        if self.closed:
            raise ConnectionResetError(_GONE)
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    def _wake(self, exc: Exception | None) -> None:
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            if exc is None:
                w.set_result(None)
            else:
                w.set_exception(exc)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------- requests
    def _next(self) -> None:
        """Start answering the next request once its head is in the buffer."""
        end = self._buf.find(b"\r\n\r\n", 0, _HEAD_LIMIT + 4)
        if end < 0:
            if len(self._buf) > _HEAD_LIMIT:
                self._refuse()
            return
        parsed = _parse_head(bytes(self._buf[:end]))
        if parsed is None:
            self._refuse()
            return
        del self._buf[: end + 4]
        method, target, length, keep_alive, http11 = parsed
        n = min(length, len(self._buf))
        del self._buf[:n]
        self._skip = length - n
        hop = _Hop(self, method, target, keep_alive, http11)
        self.task = asyncio.get_running_loop().create_task(self.relay._serve(hop))

    def done(self, hop: _Hop) -> None:
        """``hop``'s answer ended: serve the next request on this connection, or close it."""
        self.task = None
        if self.closed or self.transport is None:
            return
        if not (hop.complete and hop.keep_alive):
            self.transport.close()
            return
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        if self._buf:
            self._next()

    def _refuse(self) -> None:
        body = b"bad request"
        framing = (
            f"content-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\nconnection: close\r\n"
        )
        self._buf.clear()
        try:
            self.send(_head(400, None, (), framing) + body)
        except ConnectionError:
            return
        assert self.transport is not None
        self.transport.close()


class _Hop:
    """One request on a hop connection: what its answer needs to know of it."""

    __slots__ = ("conn", "method", "target", "keep_alive", "http11", "head_sent", "complete")

    def __init__(
        self, conn: _HopConnection, method: str, target: str, keep_alive: bool, http11: bool
    ) -> None:
        self.conn = conn
        self.method = method
        self.target = target
        self.keep_alive = keep_alive
        self.http11 = http11
        self.head_sent = False
        self.complete = False  # the whole answer was written: the connection may serve another

    def empty_body(self, status: int) -> bool:
        return self.method == "HEAD" or status < 200 or status in (204, 304)

    def _connection(self) -> str:
        return "" if self.keep_alive else "connection: close\r\n"

    async def reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """A whole answer, with ``content-length``."""
        framing = self._connection()
        if self.empty_body(status):
            body = b""
        else:
            framing = f"content-length: {len(body)}\r\n" + framing
            if body and not any(k.lower() == "content-type" for k, _ in headers):
                framing = "content-type: application/octet-stream\r\n" + framing
        data = _head(status, None, headers, framing) + body
        self.head_sent = True
        self.conn.send(data)
        self.complete = True
        await self.conn.drain()

    def stream(self, status: int, reason: str | None) -> _HopStream:
        return _HopStream(self, status, reason)

    def abort(self) -> None:
        self.conn.abort()


class _HopStream:
    """A streamed answer on the hop, the surface ``_stream`` writes to. Chunked on HTTP/1.1
    (each ``write`` one chunk in one transport write), else delimited by closing the connection.
    The head goes out with the first chunk (or the end), so mitmproxy reads both at once.
    ``prepare`` and ``write`` raise ``ConnectionResetError`` once the connection is closing;
    ``write`` waits while the transport's buffer is full."""

    def __init__(self, hop: _Hop, status: int, reason: str | None) -> None:
        self.status = status
        self.reason = reason
        self.headers: CIMultiDict[str] = CIMultiDict()
        self._hop = hop
        self._head = b""  # prepared, not yet sent
        self._empty = hop.empty_body(status)
        self._chunked = hop.http11 and not self._empty
        if not hop.http11:
            hop.keep_alive = False

    async def prepare(self) -> None:
        hop = self._hop
        framing = hop._connection()
        if self._chunked:
            framing = "transfer-encoding: chunked\r\n" + framing
        if not self._empty and "content-type" not in self.headers:
            framing = "content-type: application/octet-stream\r\n" + framing
        self._head = _head(self.status, self.reason, self.headers.items(), framing)
        hop.conn.check()

    async def write(self, data: bytes) -> None:
        if not data or self._empty:
            return  # an empty chunk would end the body
        if self._chunked:
            data = b"%b%x\r\n%b\r\n" % (self._head, len(data), data)
        elif self._head:
            data = self._head + data
        await self._send(data)

    async def write_eof(self) -> None:
        await self._send(self._head + b"0\r\n\r\n" if self._chunked else self._head)
        self._hop.complete = True

    async def _send(self, data: bytes) -> None:
        conn = self._hop.conn
        conn.send(data)
        self._head = b""
        self._hop.head_sent = True
        await conn.drain()


class StreamRelay:
    def __init__(self) -> None:
        self.port: int | None = None
        self._jobs: dict[str, RelayJob] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[_HopConnection] = set()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _HopConnection(self), "127.0.0.1", 0, backlog=128)
        self.port = self._server.sockets[0].getsockname()[1]
        # auto_decompress=False: the relay passes answers on as the provider encoded them.
        # DummyCookieJar: one session serves every developer, so a provider's Set-Cookie must not
        # ride along on the next developer's call (and no call pays for a cookie lookup).
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        )

    async def stop(self, grace_s: float = 5.0) -> None:
        """Close the client session (streams in flight end, cut), let their answers finish for
        up to ``grace_s``, then close the hop and every connection to it."""
        if self._session is not None:
            await self._session.close()
        server, self._server, self._session = self._server, None, None
        if server is None:
            return
        server.close()
        tasks = [c.task for c in self._conns if c.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for t in late:
                t.cancel()
        for conn in list(self._conns):
            conn.abort()
        await server.wait_closed()

    @property
    def running(self) -> bool:
        return self.port is not None and self._session is not None

    def register(self, job_id: str, job: RelayJob) -> str:
        """Register a job; returns its path on the hop (``http://127.0.0.1:{port}``)."""
        self._jobs[job_id] = job
        return f"/relay/{job_id}"

    def submit(self, job_id: str, job: RelayJob) -> str:
        """Register a job; returns the relay URL mitmproxy should send the request to."""
        return f"http://127.0.0.1:{self.port}{self.register(job_id, job)}"

    # ---------------------------------------------------------------- one call
    async def _serve(self, hop: _Hop) -> None:
        """Answer one hop request; the connection goes on (or closes) when it is done."""
        try:
            await self._handle(hop)
        except Exception as exc:
            log.error("codexgate: internal error in the relay's hop (%s)", type(exc).__name__)
            if hop.head_sent:
                hop.abort()
            else:
                hop.keep_alive = False
                try:
                    await hop.reply(
                        500, [("content-type", "text/plain; charset=utf-8"), (RELAY_FAILED_HEADER, "1")], b"relay failed"
                    )
                except ConnectionError:
                    pass
        finally:
            hop.conn.done(hop)

    async def _handle(self, hop: _Hop) -> None:
        path = hop.target.partition("?")[0]
        job_id = path[7:] if path.startswith("/relay/") else ""
        job = self._jobs.pop(job_id, None) if job_id and "/" not in job_id else None
        if job is None or self._session is None:
            reply = _Reply(404, [("content-type", "text/plain; charset=utf-8")], b"unknown relay job")
        else:
            reply = await self._job(job, hop)
        if reply is not None:
            try:
                await hop.reply(reply.status, reply.headers, reply.body)
            except ConnectionError:
                pass  # the client left

    async def _job(self, job: RelayJob, hop: _Hop) -> _Reply | None:
        """Run ``job`` for ``hop``: a stream is written as it comes; a whole reply is returned,
        to be written after ``job.on_end``."""
        done: tuple[_HopStream | Buffered | _Reply, str | None, bool] | None = None
        crashed: str | None = None
        try:
            done = await self._run(job, hop)
        except Exception as exc:
            crashed = _internal(exc)
            raise
        finally:
            job.on_end(done[1] if done else crashed, done[2] if done else False)
        return done[0] if isinstance(done[0], _Reply) else None

    async def answer(self, job: RelayJob, client_gone: Callable[[], bool] = lambda: False) -> Buffered:
        """Run ``job`` for a client that waits for the whole answer (a non-streamed call): the
        same attempts, retries, fallback, translation, tap and trace as a relayed call, without
        the loopback HTTP hop through mitmproxy and this relay's server (the caller sets the
        returned answer as the flow's response). ``broken`` says the body broke after commit;
        ``client_gone()`` is asked at the end (the row of a call whose client left says so)."""
        done: tuple[_HopStream | Buffered | _Reply, str | None, bool] | None = None
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
        self, job: RelayJob, hop: _Hop | None
    ) -> tuple[_HopStream | Buffered | _Reply, str | None, bool]:
        """One job: the attempts, then the committed answer, or the failure reply (the last
        target's own error answer, else the gateway's in the client's format) — streamed to
        ``hop`` (a failure reply is returned for the caller to write), or into a ``Buffered``
        answer without one. Returns (answer, error or None, client gone)."""
        job.started = True
        ready, target, failure = await self._attempt_all(job)
        if ready is not None:
            assert target is not None
            return await self._stream(hop, job, target, ready)
        assert failure is not None
        if failure.status is not None and target is not None:
            reply = await self._reply_failure(job, target, failure)
        else:
            status, body, err_headers = job.on_connect_error(failure.error)
            reply = _Reply(status, list({**err_headers, **self._summary_headers(job, None)}.items()), body)
        if hop is not None:
            return reply, failure.error, False
        out = Buffered(reply.status)
        out.headers.extend(reply.headers)
        out.chunks.append(reply.body)
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
        # one deadline for the answer and its first event; asyncio.timeout_at runs the awaits in
        # this task (wait_for wrapped each in a task of its own on 3.11)
        fb_deadline = asyncio.get_running_loop().time() + first_event_s
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(target.connect_timeout_s, remaining_s))
        headers = [(k, v) for k, v in target.headers if k.lower() not in _HOP_BY_HOP]
        try:
            async with asyncio.timeout_at(fb_deadline):
                up = await self._session.request(
                    method, target.url, headers=headers, data=target.body, timeout=timeout
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
                async with asyncio.timeout_at(fb_deadline):
                    body = await up.content.read(_ERROR_BODY_LIMIT)
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
            async with asyncio.timeout_at(fb_deadline):
                while True:
                    chunk = await up.content.readany()
                    if not chunk:
                        break  # ended before a real event: commit what there is; the tap judges it
                    held.append(chunk)
                    if has_real_event(parser, chunk):
                        break
        except TimeoutError:
            up.close()
            return _Failure(f"timeout: no first event from {target.label} within {first_event_s:.1f}s")
        except (aiohttp.ClientError, OSError) as exc:
            up.close()
            return _Failure(f"stream broke before its first event: {type(exc).__name__}: {exc}"[:500])
        return _Ready(up, held, True)

    async def _reply_failure(self, job: RelayJob, target: RelayTarget, failure: _Failure) -> _Reply:
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
        # the media type alone, as the client has always been sent it
        headers = [(k, v.split(";")[0] if k.lower() == "content-type" else v) for k, v in headers]
        return _Reply(failure.status, headers, body)

    async def _stream(
        self, hop: _Hop | None, job: RelayJob, target: RelayTarget, ready: _Ready
    ) -> tuple[_HopStream | Buffered, str | None, bool]:
        """Commit ``ready`` to the client and pass the rest of the answer on (into a ``Buffered``
        answer when there is no ``hop``: see ``answer``)."""
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
            out: _HopStream | Buffered = (
                hop.stream(up.status, up.reason) if hop is not None else Buffered(up.status)
            )
            for k, v in resp_headers:
                out.headers.add(k, v)
            try:
                await out.prepare()
            except (ConnectionError, RuntimeError):
                client_gone = True
            # what the client's stream shows (terminal event, response id, events): a tap that sees
            # exactly the client's bytes follows them already; else the relay parses them itself
            watch: StreamWatch | None = None
            own_watch: StreamWatch | None = None
            if ready.sse:
                watch = getattr(tap, "watch", None)
                if not isinstance(watch, StreamWatch):
                    watch = own_watch = StreamWatch()
            deadline: float | None = None

            async def emit(data: bytes) -> None:
                nonlocal client_gone
                if translator is not None and data:
                    data = translator.feed(data)
                if own_watch is not None:
                    own_watch.feed(data)
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
                if hop is not None:
                    hop.abort()
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
