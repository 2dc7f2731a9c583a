"""The aiohttp application: routes, authentication, the request log, faults and streaming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from codexgate.sim import anthropic, chat, responses
from codexgate.sim.auth import Keys, check, digest, redacted_headers, redacted_query
from codexgate.sim.faults import Fault, FaultQueue
from codexgate.sim.reply import Reply
from codexgate.sim.scenario import decide
from codexgate.sim.usage import PromptCache
from codexgate.sim.wire import (
    BadBody,
    anthropic_error_body,
    azure_error_body,
    decode_body,
    json_reply,
    new_id,
    openai_error_body,
)
from codexgate.wire import responses as wire_responses

OPENAI_MODELS = ("gpt-5-codex", "gpt-5", "gpt-5-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini")
ANTHROPIC_MODELS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5")
UNLOGGED_PREFIXES = ("/_sim/", "/health")
FLUSH_WAIT_S = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SimState:
    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.log: list[dict[str, Any]] = []
        self.faults = FaultQueue()
        self.cache = PromptCache()


def family_of(request: web.Request) -> str:
    """Whose API (and error format): the path decides; only a path both share (``/v1/models``,
    unknown paths) looks at the ``anthropic-version`` header."""
    path = request.path
    if path.startswith("/openai/"):
        return "azure"
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith(("/responses", "/chat/completions")):
        return "openai"
    return "anthropic" if "anthropic-version" in request.headers else "openai"


def error(
    family: str,
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in the provider's own format."""
    if family == "anthropic":
        doc = anthropic_error_body(status, message)
    elif family == "azure":
        doc = azure_error_body(status, message, code)
    else:
        doc = openai_error_body(status, message, code, param)
    return web.json_response(doc, status=status, headers={**_id_headers(family), **(headers or {})})


def _id_headers(family: str) -> dict[str, str]:
    return {"request-id" if family == "anthropic" else "x-request-id": new_id("req_")}


class SimApp:
    def __init__(self, state: SimState) -> None:
        self.state = state

    def build(self) -> web.Application:
        # Request bodies are decoded here (gzip, deflate, zstd), as a provider would.
        app = web.Application(
            client_max_size=1024**3,
            middlewares=[self._log_middleware],
            handler_args={"auto_decompress": False},
        )
        add = app.router.add_route
        for prefix in ("", "/v1"):
            add("POST", f"{prefix}/responses", self._api(self._responses))
            add("POST", f"{prefix}/chat/completions", self._api(self._chat))
            add("POST", f"{prefix}/messages", self._api(self._messages))
            add("GET", f"{prefix}/models", self._api(self._models))
        add("POST", "/openai/deployments/{deployment}/chat/completions", self._api(self._chat))
        add("POST", "/openai/responses", self._api(self._responses))
        add("POST", "/openai/v1/responses", self._api(self._responses))
        add("POST", "/openai/v1/chat/completions", self._api(self._chat))
        add("GET", "/openai/models", self._api(self._models))
        add("GET", "/openai/v1/models", self._api(self._models))
        add("GET", "/health", self._health)
        add("GET", "/_sim/requests", self._list_requests)
        add("DELETE", "/_sim/requests", self._clear_requests)
        add("GET", "/_sim/faults", self._list_faults)
        add("POST", "/_sim/faults", self._add_fault)
        add("DELETE", "/_sim/faults", self._clear_faults)
        add("DELETE", "/_sim/cache", self._clear_cache)
        return app

    # ------------------------------------------------------------------ log and admin

    @web.middleware
    async def _log_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(UNLOGGED_PREFIXES):
            return await handler(request)
        entry: dict[str, Any] = {
            "seq": len(self.state.log),
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": redacted_query(request.query),
            "headers": redacted_headers(request.headers),
            "credential": None,  # set below for every request, whatever its path answers
            "auth_ok": None,
            "body": None,
            "body_error": None,
            "model": None,
            "stream": False,
            "fault": None,
            "usage": None,
            "status": None,
            "events_sent": None,
            "stream_outcome": None,
        }
        # the credential that came with it, even when no API answers the path (a 404 is logged too)
        presented = check(family_of(request), request.headers, self.state.keys).presented
        entry["credential"] = digest(presented) if presented else None
        self.state.log.append(entry)
        request["sim_entry"] = entry
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # unknown path (404), wrong method (405), ...
            code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status)
            message = f"{exc.reason}: {request.method} {request.path}"
            response = error(family_of(request), exc.status, message, code)
        if entry["status"] is None:
            entry["status"] = response.status
        return response

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _list_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.log)

    async def _clear_requests(self, request: web.Request) -> web.Response:
        self.state.log.clear()
        return web.json_response({"ok": True})

    async def _list_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.faults.pending())

    async def _add_fault(self, request: web.Request) -> web.Response:
        try:
            doc = await request.json()
            match_path = doc.get("match_path")
            self.state.faults.add(str(doc["spec"]), int(doc.get("times", 1)), match_path)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"ok": True, "pending": self.state.faults.pending()})

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.state.faults.clear()
        return web.json_response({"ok": True})

    async def _clear_cache(self, request: web.Request) -> web.Response:
        self.state.cache.clear()
        return web.json_response({"ok": True})

    # ------------------------------------------------------------------ the APIs

    def _api(
        self, inner: Callable[[web.Request, str, dict[str, Any], Fault], Awaitable[web.StreamResponse]]
    ) -> Handler:
        """Common prelude: body, authentication, validation that all APIs share, fault selection."""

        async def handler(request: web.Request) -> web.StreamResponse:
            entry = request["sim_entry"]
            family = family_of(request)
            body: dict[str, Any] = {}
            body_error: BadBody | None = None
            if request.method == "POST":
                raw = await request.read()
                try:
                    body = decode_body(raw, request.headers.get("content-encoding", ""))
                except BadBody as exc:
                    body_error = exc
                    entry["body_error"] = str(exc)
            entry["body"] = body if body_error is None and request.method == "POST" else None
            auth = check(family, request.headers, self.state.keys)
            entry["auth_ok"] = auth.ok
            entry["credential"] = digest(auth.presented) if auth.presented else None
            if not auth.ok:
                return error(family, 401, auth.message, "invalid_api_key")
            if family == "anthropic" and "anthropic-version" not in request.headers:
                return error(family, 400, "anthropic-version: header is required")
            if body_error is not None:
                return error(family, body_error.status, str(body_error))
            if (
                family == "azure"
                and not request.path.startswith("/openai/v1/")
                and "api-version" not in request.query
            ):
                message = "The api-version query parameter (?api-version=) is required for all requests."
                return error(family, 400, message, "MissingApiVersionParameter")
            entry["stream"] = bool(body.get("stream"))
            try:
                fault, spec = self._fault_for(request)
            except ValueError as exc:
                return error(family, 400, f"bad x-sim-fault header: {exc}")
            entry["fault"] = spec
            if fault.delay_ms:
                await asyncio.sleep(fault.delay_ms / 1000)
            if fault.status:
                headers = {"retry-after": fault.retry_after} if fault.retry_after else None
                message = f"simulated {fault.status}"
                if fault.status == 429:
                    message = (
                        "Rate limit reached (simulated). Please try again in "
                        + (fault.retry_after or "1")
                        + "s."
                    )
                return error(family, fault.status, message, headers=headers)
            return await inner(request, family, body, fault)

        return handler

    def _fault_for(self, request: web.Request) -> tuple[Fault, str | None]:
        spec = request.headers.get("x-sim-fault")
        if spec:
            return Fault.parse(spec), spec
        queued = self.state.faults.take(request.path)
        return queued if queued else (Fault(), None)

    def _missing(self, family: str, name: str) -> web.Response:
        if family == "anthropic":
            return error(family, 400, f"{name}: Field required")
        return error(
            family, 400, f"Missing required parameter: '{name}'.", "missing_required_parameter", name
        )

    async def _responses(
        self, request: web.Request, family: str, body: dict[str, Any], fault: Fault
    ) -> web.StreamResponse:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._missing(family, "model")
        decision = decide(wire_responses.input_items(body), body.get("tools"))
        usage = responses.usage(self.state.cache, body, decision, model)
        reply = responses.build(body, model, decision, usage, fault.error_event)
        return await self._send(request, family, body, model, reply, fault)

    async def _chat(
        self, request: web.Request, family: str, body: dict[str, Any], fault: Fault
    ) -> web.StreamResponse:
        model = body.get("model") or request.match_info.get("deployment")
        if not isinstance(model, str) or not model:
            return self._missing(family, "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._missing(family, "messages")
        decision = decide(messages, body.get("tools"))
        usage = chat.usage(self.state.cache, body, decision, model)
        reply = chat.build(body, model, decision, usage, fault.error_event)
        return await self._send(request, family, body, model, reply, fault)

    async def _messages(
        self, request: web.Request, family: str, body: dict[str, Any], fault: Fault
    ) -> web.StreamResponse:
        for name in ("model", "max_tokens", "messages"):
            if not body.get(name):
                return self._missing(family, name)
        model = str(body["model"])
        decision = decide(body["messages"], body.get("tools"))
        usage = anthropic.usage(self.state.cache, body, decision)
        reply = anthropic.build(body, model, decision, usage, fault.error_event)
        return await self._send(request, family, body, model, reply, fault)

    async def _models(
        self, request: web.Request, family: str, body: dict[str, Any], fault: Fault
    ) -> web.StreamResponse:
        if family == "anthropic":
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in ANTHROPIC_MODELS
            ]
            doc = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        else:
            created = 1735689600
            doc = {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": created, "owned_by": "sim"} for m in OPENAI_MODELS
                ],
            }
        return web.json_response(doc, headers=_id_headers(family))

    # ------------------------------------------------------------------ sending

    async def _send(
        self, request: web.Request, family: str, body: dict[str, Any], model: str, reply: Reply, fault: Fault
    ) -> web.StreamResponse:
        entry = request["sim_entry"]
        entry["model"] = model
        entry["usage"] = reply.usage
        if fault.reset_after_events is not None and not body.get("stream"):
            await self._reset(request)
            entry["status"], entry["stream_outcome"] = 0, "reset"
            return web.Response(status=500)  # never reaches the client: the connection is gone
        if not body.get("stream"):
            if reply.error_status:
                return error(
                    family, reply.error_status, f"simulated failure ({fault.error_event})", fault.error_event
                )
            return json_reply(request, reply.doc, headers=_id_headers(family))
        return await self._stream(request, family, reply.events, fault)

    async def _stream(
        self, request: web.Request, family: str, frames: list[bytes], fault: Fault
    ) -> web.StreamResponse:
        entry = request["sim_entry"]
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            **_id_headers(family),
        }
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        entry["events_sent"] = 0
        try:
            for n, frame in enumerate(frames):
                if fault.reset_after_events is not None and n >= fault.reset_after_events:
                    break
                if n == fault.stall_after_events and fault.stall_ms:
                    await asyncio.sleep(fault.stall_ms / 1000)
                elif n and fault.chunk_delay_ms:
                    await asyncio.sleep(fault.chunk_delay_ms / 1000)
                await response.write(frame)
                entry["events_sent"] = n + 1
            if fault.reset_after_events is not None:
                await self._reset(request)
                entry["stream_outcome"] = "reset"
                return response
            await response.write_eof()
            entry["stream_outcome"] = "completed"
        except ConnectionError:
            entry["stream_outcome"] = "client_disconnected"
        return response

    @staticmethod
    async def _reset(request: web.Request) -> None:
        """Close the connection without finishing the HTTP message, once what was written is out."""
        transport = request.transport
        if transport is None:
            return
        deadline = time.monotonic() + FLUSH_WAIT_S
        while transport.get_write_buffer_size() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        transport.abort()


async def serve(host: str, port: int, keys: Keys, ready: Callable[[str], None]) -> None:
    """Listen until SIGTERM/SIGINT; ``ready`` gets the base URL once the socket is bound."""
    import signal

    runner = web.AppRunner(SimApp(SimState(keys)).build(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # the only way to learn the port bound for port 0
    bound = server.sockets[0].getsockname()[1] if server and server.sockets else port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready(f"http://{host}:{bound}")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
