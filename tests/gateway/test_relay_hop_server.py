"""The relay's loopback hop (``StreamRelay``'s HTTP/1.1 server) driven over real sockets: real
HTTP clients (aiohttp, and raw streams where the test needs to control the bytes) against a
real upstream (an aiohttp server in the test) — streams arrive chunk by chunk, connections are
kept alive, a client that leaves does not stop the upstream from being drained, failures and
garbage get their answers."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from addons.stream_relay import RelayJob, RelayTarget, RetryPolicy, StreamRelay

KEY = "sk-upstream-secret"


def event(kind: str, **extra: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **extra})}\n\n".encode()


CREATED = event("response.created", response={"id": "resp_1"})
DELTA = event("response.output_text.delta", delta="hi")
COMPLETED = event("response.completed", response={"id": "resp_1", "usage": {"output_tokens": 3}})


@dataclass
class Upstream:
    """The provider: each path's handler is set by the test; ``release`` lets a stream go on."""

    url: str
    broken_url: str  # a plain answer whose body breaks
    release: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # a stream sent its last byte
    sent: int = 0  # events the endless stream wrote
    seen: list[tuple[str, str | None, bytes]] = field(default_factory=list)  # path, auth, body
    cookies: list[str | None] = field(default_factory=list)  # the Cookie header of each /cookie call


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state: Upstream | None = None

    async def record(request: web.Request) -> None:
        assert state is not None
        state.seen.append((request.path, request.headers.get("authorization"), await request.read()))

    async def stream(
        request: web.Request, middle: Callable[[web.StreamResponse], Awaitable[None]], **headers: str
    ) -> web.StreamResponse:
        """created, ``middle``'s events, completed; then the stream is marked finished."""
        await record(request)
        assert state is not None
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", **headers})
        await resp.prepare(request)
        await resp.write(CREATED)
        await middle(resp)
        await resp.write(COMPLETED)
        await resp.write_eof()
        state.finished.set()
        return resp

    async def sse(request: web.Request) -> web.StreamResponse:
        """created, then (once released) a delta and completed."""

        async def middle(resp: web.StreamResponse) -> None:
            assert state is not None
            await state.release.wait()
            await resp.write(DELTA)

        return await stream(request, middle, **{"x-upstream": "yes"})

    async def big(request: web.Request) -> web.StreamResponse:
        """created, then 8 MiB of deltas, then completed: more than any socket buffer holds."""

        async def middle(resp: web.StreamResponse) -> None:
            piece = event("response.output_text.delta", delta="x" * 65_000)
            for _ in range(128):
                await resp.write(piece)

        return await stream(request, middle)

    async def endless(request: web.Request) -> web.StreamResponse:
        """created, then deltas until released (at most 256 MiB), then completed."""

        async def middle(resp: web.StreamResponse) -> None:
            assert state is not None
            piece = event("response.output_text.delta", delta="x" * 65_000)
            while not state.release.is_set() and state.sent < 4096:
                await resp.write(piece)
                state.sent += 1

        return await stream(request, middle)

    async def cut(request: web.Request) -> web.StreamResponse:
        """created, a delta, then the connection ends without a terminal event."""
        await record(request)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(CREATED + DELTA)
        await resp.write_eof()
        return resp

    async def busy(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(
            status=429,
            body=b'{"error":"slow down"}',
            headers={
                "content-type": "application/json; charset=utf-8",
                "retry-after": "100",
                "x-upstream": "yes",
            },
        )

    async def cookie(request: web.Request) -> web.StreamResponse:
        """A whole stream, with a cookie the provider would like back."""
        assert state is not None
        state.cookies.append(request.headers.get("cookie"))
        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream", "set-cookie": "tenant=first-caller; Path=/"}
        )
        await resp.prepare(request)
        await resp.write(CREATED + COMPLETED)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/sse", sse)
    app.router.add_post("/cookie", cookie)
    app.router.add_post("/big", big)
    app.router.add_post("/endless", endless)
    app.router.add_post("/cut", cut)
    app.router.add_post("/busy", busy)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # a plain body that breaks: content-length 100, 10 bytes sent, connection closed
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 100\r\n\r\n"
        )
        writer.write(b"0123456789")
        await writer.drain()
        await asyncio.sleep(0.2)  # (aiohttp drops what it holds of a body that broke)
        writer.close()

    raw = await asyncio.start_server(broken, "127.0.0.1", 0)
    state = Upstream(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{raw.sockets[0].getsockname()[1]}/plain")
    yield state
    state.release.set()
    raw.close()
    await runner.cleanup()


@pytest.fixture
async def relay() -> AsyncIterator[StreamRelay]:
    r = StreamRelay()
    await r.start()
    yield r
    await r.stop(grace_s=1.0)


@dataclass
class Calls:
    """What the relay called back for one job."""

    ends: list[tuple[str | None, bool]] = field(default_factory=list)
    headers: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)
    tapped: list[bytes] = field(default_factory=list)
    gone: int = 0

    async def ended(self, timeout: float = 10.0) -> tuple[str | None, bool]:
        async with asyncio.timeout(timeout):
            while not self.ends:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # a second call would come now
        assert len(self.ends) == 1, self.ends
        return self.ends[0]


def job(url: str, calls: Calls, family: str = "openai") -> RelayJob:
    def on_headers(status: int, headers: list[tuple[str, str]]) -> Callable[[bytes], bytes]:
        calls.headers.append((status, headers))

        def tap(data: bytes) -> bytes:
            calls.tapped.append(data)
            return data

        return tap

    def on_client_gone() -> None:
        calls.gone += 1

    target = RelayTarget(
        label="up",
        provider="openai",
        url=url,
        display_url=url,
        headers=[("authorization", f"Bearer {KEY}"), ("content-type", "application/json")],
        body=b'{"model":"m","stream":true}',
        first_byte_timeout_s=5.0,
        idle_timeout_s=10.0,
    )
    return RelayJob(
        targets=[target],
        method="POST",
        attempts=[],
        on_headers=on_headers,
        on_end=lambda error, gone: calls.ends.append((error, gone)),
        on_connect_error=lambda error: (
            502,
            b'{"error":"unreachable"}',
            {"content-type": "application/json"},
        ),
        on_client_gone=on_client_gone,
        client_family=family,
        policy=RetryPolicy(attempts_per_target=1, backoff_base_s=0.0),
        drain_seconds=30.0,
    )


def path_of(url: str) -> str:
    return url[url.index("/relay/") :]


async def connect(
    relay: StreamRelay, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", relay.port))
    return await asyncio.open_connection(sock=sock, limit=2**20)


def request(path: str, extra: str = "") -> bytes:
    """A request as mitmproxy sends it to the hop: the client's headers, an empty body."""
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"accept: text/event-stream\r\n{extra}content-length: 0\r\n\r\n"
    ).encode()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    status_line, *lines = head[:-4].split("\r\n")
    assert status_line.startswith("HTTP/1.1 ")
    return int(status_line.split(" ")[1]), {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
    data = await reader.readexactly(size + 2)
    assert data.endswith(b"\r\n")
    return data[:-2]


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One whole answer (content-length or chunked) off a kept-alive connection."""
    status, headers = await read_head(reader)
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    assert headers["transfer-encoding"] == "chunked"
    body = b""
    while chunk := await read_chunk(reader):
        body += chunk
    return status, headers, body


async def test_a_stream_reaches_the_client_event_by_event(relay: StreamRelay, upstream: Upstream) -> None:
    calls = Calls()
    url = relay.submit("s1", job(f"{upstream.url}/sse", calls))
    async with aiohttp.ClientSession() as session, session.post(url, data=b"") as resp:
        assert resp.status == 200
        assert resp.headers["transfer-encoding"] == "chunked"
        assert resp.headers["content-type"] == "text/event-stream"
        assert resp.headers["x-upstream"] == "yes"
        assert resp.headers["x-codexgate-served-by"] == "up"
        assert resp.headers["x-codexgate-attempts"] == "1"
        assert "content-length" not in resp.headers
        # the first event is here while the upstream still holds the rest
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        assert first == CREATED and not upstream.finished.is_set()
        upstream.release.set()
        rest = await resp.content.read()
    assert first + rest == CREATED + DELTA + COMPLETED
    assert await calls.ended() == (None, False)
    assert b"".join(calls.tapped) == CREATED + DELTA + COMPLETED
    assert upstream.seen == [("/sse", f"Bearer {KEY}", b'{"model":"m","stream":true}')]
    assert calls.gone == 0


async def test_a_providers_cookie_never_rides_along_on_the_next_call(
    relay: StreamRelay, upstream: Upstream
) -> None:
    # one client session serves every developer: a Set-Cookie from one answer must not be sent
    # with anyone's next call (by host name: aiohttp's jar ignores cookies from IP addresses)
    url = upstream.url.replace("127.0.0.1", "localhost") + "/cookie"
    for n in range(2):
        calls = Calls()
        hop = relay.submit(f"c{n}", job(url, calls))
        async with aiohttp.ClientSession() as session, session.post(hop, data=b"") as resp:
            assert resp.status == 200 and await resp.read() == CREATED + COMPLETED
        assert await calls.ended() == (None, False)
    assert upstream.cookies == [None, None]


async def test_one_connection_serves_requests_one_after_another(
    relay: StreamRelay, upstream: Upstream
) -> None:
    upstream.release.set()
    first, second = Calls(), Calls()
    path1 = path_of(relay.submit("k1", job(f"{upstream.url}/sse", first)))
    path2 = path_of(relay.submit("k2", job(f"{upstream.url}/busy", second)))
    reader, writer = await connect(relay)
    # the second request's bytes arrive while the first is still answered
    writer.write(request(path1) + request(path2))
    status, headers, body = await read_answer(reader)
    assert (status, body) == (200, CREATED + DELTA + COMPLETED)
    assert "connection" not in headers
    status, headers, body = await read_answer(reader)
    assert (status, body) == (429, b'{"error":"slow down"}')
    # and a third, sent after both answers: still the same connection
    writer.write(request("/relay/nope"))
    status, _, body = await read_answer(reader)
    assert (status, body) == (404, b"unknown relay job")
    writer.close()
    assert await first.ended() == (None, False)
    assert await second.ended() == ("HTTP 429", False)


async def test_connection_close_is_honoured(relay: StreamRelay, upstream: Upstream) -> None:
    reader, writer = await connect(relay)
    writer.write(request("/relay/nope", extra="connection: close\r\n"))
    status, headers, body = await read_answer(reader)
    assert (status, headers["connection"], body) == (404, "close", b"unknown relay job")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the relay
    writer.close()


async def test_an_unknown_or_used_job_is_404(relay: StreamRelay, upstream: Upstream) -> None:
    upstream.release.set()
    calls = Calls()
    url = relay.submit("once", job(f"{upstream.url}/sse", calls))
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=b"") as resp:
            assert resp.status == 200
            await resp.read()
        for target in (url, url.replace("once", "never"), url.replace("/relay/once", "/other")):
            async with session.post(target, data=b"") as resp:
                assert resp.status == 404
                assert await resp.text() == "unknown relay job"
                assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert await calls.ended() == (None, False)
    assert len(upstream.seen) == 1  # each job is sent once


async def test_a_client_that_leaves_mid_stream_leaves_the_upstream_drained(
    relay: StreamRelay, upstream: Upstream
) -> None:
    calls = Calls()
    path = path_of(relay.submit("gone", job(f"{upstream.url}/sse", calls)))
    reader, writer = await connect(relay)
    writer.write(request(path))
    await read_head(reader)
    assert await read_chunk(reader) == CREATED
    writer.transport.abort()  # as mitmproxy does when its client disconnects
    await asyncio.sleep(0.1)
    upstream.release.set()  # the rest (with the usage) comes after the client left
    assert await calls.ended() == (None, True)
    assert upstream.finished.is_set()
    assert b"".join(calls.tapped) == CREATED + DELTA + COMPLETED  # the trace saw the usage
    assert calls.gone == 1


async def test_a_client_that_stops_reading_holds_the_upstream_back(
    relay: StreamRelay, upstream: Upstream
) -> None:
    """Backpressure: the relay stops reading the upstream while the client does not read; when
    the client then leaves, the blocked write gives up and the upstream is drained to its end."""
    calls = Calls()
    path = path_of(relay.submit("endless", job(f"{upstream.url}/endless", calls)))
    reader, writer = await connect(relay, rcvbuf=4096)
    writer.write(request(path))
    await read_head(reader)
    async with asyncio.timeout(20):  # the upstream's writes block once every buffer is full
        stalled = -1
        while stalled != upstream.sent:
            stalled = upstream.sent
            await asyncio.sleep(0.5)
    assert 0 < upstream.sent < 4096 and not calls.ends
    writer.transport.abort()
    upstream.release.set()
    error, gone = await calls.ended()
    assert (error, gone) == (None, True) and upstream.finished.is_set()
    assert b"".join(calls.tapped).endswith(COMPLETED)
    assert calls.gone == 1


async def test_a_slow_reader_gets_every_byte(relay: StreamRelay, upstream: Upstream) -> None:
    calls = Calls()
    path = path_of(relay.submit("big2", job(f"{upstream.url}/big", calls)))
    reader, writer = await connect(relay, rcvbuf=4096)
    writer.write(request(path))
    await asyncio.sleep(0.5)  # the relay's writes pause meanwhile
    status, _, body = await read_answer(reader)
    writer.close()
    assert status == 200
    assert body.startswith(CREATED) and body.endswith(COMPLETED) and len(body) > 8_000_000
    assert body == b"".join(calls.tapped)
    assert await calls.ended() == (None, False)


async def test_the_last_targets_error_answer_goes_to_the_client(
    relay: StreamRelay, upstream: Upstream
) -> None:
    calls = Calls()
    url = relay.submit("busy", job(f"{upstream.url}/busy", calls))
    async with aiohttp.ClientSession() as session, session.post(url, data=b"") as resp:
        body = await resp.read()
        assert resp.status == 429 and body == b'{"error":"slow down"}'
        assert resp.headers["content-length"] == str(len(body))
        assert resp.headers["content-type"] == "application/json"
        assert resp.headers["retry-after"] == "100"
        assert resp.headers["x-upstream"] == "yes"
        assert resp.headers["x-codexgate-attempts"] == "1"
        assert "x-codexgate-served-by" not in resp.headers
        assert "transfer-encoding" not in resp.headers
    assert await calls.ended() == ("HTTP 429", False)
    assert calls.headers[0][0] == 429


async def test_an_unreachable_target_gets_the_gateways_reply(relay: StreamRelay, upstream: Upstream) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1/responses"
    calls = Calls()
    url = relay.submit("dead", job(dead, calls))
    async with aiohttp.ClientSession() as session, session.post(url, data=b"") as resp:
        assert resp.status == 502 and await resp.read() == b'{"error":"unreachable"}'
        assert resp.headers["content-type"] == "application/json"
        assert resp.headers["x-codexgate-attempts"] == "1"
    error, gone = await calls.ended()
    assert error is not None and "Connect" in error and not gone


async def test_a_stream_cut_after_commit_ends_with_a_terminal_event(
    relay: StreamRelay, upstream: Upstream
) -> None:
    calls = Calls()
    url = relay.submit("cut", job(f"{upstream.url}/cut", calls))
    async with aiohttp.ClientSession() as session, session.post(url, data=b"") as resp:
        body = await resp.read()  # a clean chunked end: the cut is said in the stream
    assert body.startswith(CREATED + DELTA)
    last = body[len(CREATED + DELTA) :].decode()
    assert last.startswith("event: response.failed\n")
    doc = json.loads(last.split("data: ", 1)[1])
    assert doc["response"]["id"] == "resp_1" and doc["response"]["error"]["code"] == "server_error"
    error, gone = await calls.ended()
    assert error == "upstream closed the stream before its end" and not gone


async def test_a_broken_plain_body_breaks_the_clients_connection(
    relay: StreamRelay, upstream: Upstream
) -> None:
    calls = Calls()
    path = path_of(relay.submit("plain", job(upstream.broken_url, calls)))
    reader, writer = await connect(relay)
    writer.write(request(path))
    status, headers = await read_head(reader)
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert await read_chunk(reader) == b"0123456789"
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await asyncio.wait_for(read_chunk(reader), 5)  # no terminating chunk: the connection ends
    writer.close()
    error, gone = await calls.ended()
    assert error is not None and error.startswith("upstream stream broke") and not gone


@pytest.mark.parametrize(
    "head",
    [
        b"HELLO\r\n\r\n",
        b"POST /relay/x HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /relay/x HTTP/1.1\r\ncontent-length: ten\r\n\r\n",
        b"POST /relay/x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
        b"POST /relay/x HTTP/1.1\r\nx-big: " + b"a" * 70_000,  # no end of head within the bound
    ],
    ids=["garbage", "no-colon", "bad-length", "chunked", "oversized"],
)
async def test_a_bad_request_head_is_400_and_closed(relay: StreamRelay, head: bytes) -> None:
    reader, writer = await connect(relay)
    writer.write(head)
    status, headers, body = await asyncio.wait_for(read_answer(reader), 5)
    assert (status, headers["connection"], body) == (400, "close", b"bad request")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_request_body_is_discarded(relay: StreamRelay, upstream: Upstream) -> None:
    """A body (the upstream step sends none) is read and dropped, in pieces, before the next head."""
    reader, writer = await connect(relay)
    writer.write(b"POST /relay/a HTTP/1.1\r\ncontent-length: 10\r\n\r\n01234")
    status, _, _ = await read_answer(reader)
    assert status == 404
    writer.write(b"56789" + request("/relay/b"))
    status, _, _ = await read_answer(reader)
    assert status == 404
    writer.close()


async def test_stop_closes_the_hop_and_its_connections(upstream: Upstream) -> None:
    relay = StreamRelay()
    await relay.start()
    assert relay.running
    reader, writer = await connect(relay)
    writer.write(request("/relay/nope"))
    assert (await read_answer(reader))[0] == 404
    await relay.stop()
    assert not relay.running
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    with pytest.raises(OSError):
        await connect(relay)


async def test_a_job_that_raises_is_ended_once_and_answered_500(
    relay: StreamRelay, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.release.set()
    calls = Calls()
    failing = job(f"{upstream.url}/sse", calls)

    def on_headers(status: int, headers: list[tuple[str, str]]) -> None:
        raise LookupError(f"secret detail {KEY}")

    failing.on_headers = on_headers  # type: ignore[assignment]
    caplog.set_level(logging.ERROR)
    reader, writer = await connect(relay)
    writer.write(request(path_of(relay.submit("raises", failing))))
    status, headers, body = await asyncio.wait_for(read_answer(reader), 5)
    assert (status, headers["connection"], body) == (500, "close", b"relay failed")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert await calls.ended() == ("internal error in the relay (LookupError)", False)
    assert "LookupError" in caplog.text and KEY not in caplog.text  # the type is logged, not the text
