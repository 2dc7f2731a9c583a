"""A local simulated model provider that speaks the real wire formats, for tests and the demo.

``python -m codexgate.simprovider --host 127.0.0.1 --port 0`` prints
``SIMPROVIDER READY http://127.0.0.1:PORT`` once listening. Credentials it accepts come from
``--openai-key/--anthropic-key/--azure-key`` or ``SIM_OPENAI_KEY``/``SIM_ANTHROPIC_KEY``/``SIM_AZURE_KEY``.

APIs (with or without ``/v1``): OpenAI Responses (``/responses``; SSE or JSON), Chat
Completions (``/chat/completions``; SSE with ``stream_options.include_usage`` or JSON),
Anthropic Messages (``/messages``; SSE or JSON), Azure OpenAI (``/openai/deployments/D/chat/
completions``, ``/openai/v1/responses``, header ``api-key``), ``GET /v1/models``, ``GET /health``.
A wrong credential gets the provider's own 401 JSON.

Deterministic answers: lines ``RUN: <command>`` in the first user message make the model call
the shell tool for each command in turn (one per call, counted by the tool outputs already in
the input), then answer with a text that quotes the last tool output. Codex 0.171 offers the
function tool ``exec_command`` (arguments ``{"cmd": "..."}``) or ``shell`` (arguments
``{"command": ["bash", "-lc", "..."]}``); the simulator uses whichever the request lists.
Otherwise it answers ``sim: <start of the last user text>``.

Usage (documented, deterministic): input_tokens = ceil(len(canonical JSON of the input)/4);
cached = input tokens of the previous call with the same ``prompt_cache_key`` (capped);
reasoning = 16 for gpt-5*/o* models or when ``reasoning`` is requested, else 0;
output_tokens = ceil(len(output text + tool arguments)/4) + reasoning. Anthropic's
``input_tokens`` excludes cache reads, as the real API.

Faults: header ``x-sim-fault: k=v;k=v`` or a queue (``POST /_sim/faults`` with ``{"spec",
"times", "match_path"}``; ``DELETE`` clears). Keys: ``status`` (+``retry_after``),
``delay_ms``, ``chunk_delay_ms``, ``reset_after_events``, ``stall_after_events``+``stall_ms``,
``error_event`` (Responses: end with ``response.failed``). ``GET /_sim/requests`` lists what
was received (credential headers replaced by ``sha256:`` digests, plus ``auth_ok``).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")
REASONING_TOKENS = 16


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def ntok(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


@dataclass
class Fault:
    status: int | None = None
    retry_after: str | None = None
    delay_ms: int = 0
    chunk_delay_ms: int = 0
    reset_after_events: int | None = None
    stall_after_events: int | None = None
    stall_ms: int = 0
    error_event: str | None = None

    @classmethod
    def parse(cls, spec: str | None) -> Fault:
        f = cls()
        for part in (spec or "").split(";"):
            if "=" not in part:
                continue
            k, v = (x.strip() for x in part.split("=", 1))
            if k in (
                "status",
                "delay_ms",
                "chunk_delay_ms",
                "reset_after_events",
                "stall_after_events",
                "stall_ms",
            ):
                setattr(f, k, int(v))
            elif k in ("retry_after", "error_event"):
                setattr(f, k, v)
        return f


@dataclass
class QueuedFault:
    spec: str
    times: int
    match_path: str | None


@dataclass
class Sim:
    openai_key: str
    anthropic_key: str
    azure_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[QueuedFault] = field(default_factory=list)
    cache: dict[str, int] = field(default_factory=dict)

    def take_fault(self, request: web.Request) -> tuple[Fault, str | None]:
        spec = request.headers.get("x-sim-fault")
        if spec:
            return Fault.parse(spec), spec
        for q in self.faults:
            if q.match_path is None or q.match_path in request.path:
                q.times -= 1
                if q.times <= 0:
                    self.faults.remove(q)
                return Fault.parse(q.spec), q.spec
        return Fault(), None


# ----------------------------------------------------------------------------- scenario


def _texts(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return ""


def _user_texts(items: list[Any]) -> list[str]:
    return [_texts(i.get("content")) for i in items if isinstance(i, dict) and i.get("role") == "user"]


def _tool_outputs(items: list[Any]) -> list[str]:
    out = []
    for i in items:
        if not isinstance(i, dict):
            continue
        if i.get("type") in ("function_call_output", "custom_tool_call_output"):
            o = i.get("output")
            out.append(o if isinstance(o, str) else json.dumps(o))
        elif i.get("role") == "tool":
            out.append(_texts(i.get("content")))
        elif i.get("role") == "user" and isinstance(i.get("content"), list):
            out += [
                _texts(p.get("content"))
                for p in i["content"]
                if isinstance(p, dict) and p.get("type") == "tool_result"
            ]
    return out


def _commands(items: list[Any]) -> list[str]:
    cmds: list[str] = []
    for text in _user_texts(items):
        cmds += [
            line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("RUN:")
        ]
        if cmds:
            break
    return cmds


@dataclass
class Decision:
    text: str | None = None
    tool: tuple[str, str] | None = None  # (name, arguments JSON)


def decide(items: list[Any], tool_names: list[str]) -> Decision:
    cmds = _commands(items)
    outputs = _tool_outputs(items)
    if cmds and len(outputs) < len(cmds):
        cmd = cmds[len(outputs)]
        if "exec_command" in tool_names:
            return Decision(tool=("exec_command", json.dumps({"cmd": cmd})))
        name = "shell" if "shell" in tool_names or not tool_names else tool_names[0]
        return Decision(tool=(name, json.dumps({"command": ["bash", "-lc", cmd]})))
    if cmds:
        last = outputs[-1] if outputs else ""
        return Decision(text=f"Done. Ran {len(cmds)} command(s). Last output: {last.strip()[:500]}")
    texts = _user_texts(items)
    return Decision(text=f"sim: {(texts[-1] if texts else '').strip()[:40]}")


def _tool_names(body: dict[str, Any]) -> list[str]:
    names = []
    for t in body.get("tools") or []:
        if isinstance(t, dict):
            names.append(t.get("name") or (t.get("function") or {}).get("name") or t.get("type"))
    return [n for n in names if n]


def _reasoning_tokens(model: str, body: dict[str, Any]) -> int:
    return (
        REASONING_TOKENS
        if (body.get("reasoning") or model.startswith(("gpt-5", "o")) or "reason" in model)
        else 0
    )


# ----------------------------------------------------------------------------- server


class SimServer:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    def app(self) -> web.Application:
        # Decode request bodies ourselves (gzip, zstd), as a provider would.
        app = web.Application(client_max_size=1024**3, handler_args={"auto_decompress": False})
        r = app.router
        for prefix in ("", "/v1", "/openai", "/openai/v1"):
            r.add_post(f"{prefix}/responses", self.responses)
            r.add_post(f"{prefix}/chat/completions", self.chat)
            r.add_post(f"{prefix}/messages", self.messages)
        r.add_post("/openai/deployments/{deployment}/chat/completions", self.chat)
        r.add_get("/v1/models", self.models)
        r.add_get("/models", self.models)
        r.add_get("/health", self.health)
        r.add_get("/_sim/requests", self.list_requests)
        r.add_delete("/_sim/requests", self.clear_requests)
        r.add_post("/_sim/faults", self.add_fault)
        r.add_delete("/_sim/faults", self.clear_faults)
        return app

    # -- admin
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": m, "object": "model"} for m in ("gpt-5-codex", "gpt-4.1-mini")],
            }
        )

    async def list_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim.requests)

    async def clear_requests(self, request: web.Request) -> web.Response:
        self.sim.requests.clear()
        return web.json_response({"ok": True})

    async def add_fault(self, request: web.Request) -> web.Response:
        doc = await request.json()
        self.sim.faults.append(QueuedFault(doc["spec"], int(doc.get("times", 1)), doc.get("match_path")))
        return web.json_response({"ok": True})

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.sim.faults.clear()
        return web.json_response({"ok": True})

    # -- common
    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        # aiohttp may already have decoded Content-Encoding; decode only what still is encoded.
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        elif raw[:4] == b"\x28\xb5\x2f\xfd":
            import zstandard

            raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        return json.loads(raw) if raw else {}

    def _record(
        self, request: web.Request, body: dict[str, Any], auth_ok: bool, fault: str | None
    ) -> dict[str, Any]:
        headers = {
            k.lower(): (_digest(v) if k.lower() in CREDENTIAL_HEADERS else v)
            for k, v in request.headers.items()
        }
        entry = {
            "method": request.method,
            "path": request.path,
            "headers": headers,
            "auth_ok": auth_ok,
            "body": body,
            "fault": fault,
            "usage": None,
        }
        self.sim.requests.append(entry)
        return entry

    def _auth(self, request: web.Request, family: str) -> bool:
        h = request.headers
        if request.path.startswith("/openai/"):
            return h.get("api-key") == self.sim.azure_key
        if family == "anthropic":
            return h.get("x-api-key") == self.sim.anthropic_key
        return h.get("authorization") == f"Bearer {self.sim.openai_key}"

    @staticmethod
    def _error(
        family: str, status: int, message: str, code: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        if family == "anthropic":
            kind = {
                401: "authentication_error",
                429: "rate_limit_error",
                400: "invalid_request_error",
                503: "overloaded_error",
            }.get(status, "api_error")
            doc: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            kind = {401: "invalid_request_error", 429: "requests", 400: "invalid_request_error"}.get(
                status, "server_error"
            )
            doc = {"error": {"message": message, "type": kind, "code": code, "param": None}}
        return web.json_response(doc, status=status, headers=headers)

    async def _prelude(
        self, request: web.Request, family: str
    ) -> tuple[dict[str, Any], dict[str, Any], Fault, web.Response | None]:
        body = await self._body(request)
        fault, spec = self.sim.take_fault(request)
        ok = self._auth(request, family)
        entry = self._record(request, body, ok, spec)
        if not ok:
            return (
                body,
                entry,
                fault,
                self._error(family, 401, "Incorrect API key provided.", "invalid_api_key"),
            )
        if fault.delay_ms:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.status:
            headers = {"retry-after": fault.retry_after} if fault.retry_after else None
            code = {429: "rate_limit_exceeded", 400: "invalid_request", 503: "server_overloaded"}.get(
                fault.status, "server_error"
            )
            return (
                body,
                entry,
                fault,
                self._error(family, fault.status, f"simulated {fault.status}", code, headers),
            )
        return body, entry, fault, None

    async def _stream(self, request: web.Request, events: list[bytes], fault: Fault) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200, headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await resp.prepare(request)
        for n, ev in enumerate(events):
            if fault.reset_after_events is not None and n >= fault.reset_after_events:
                if request.transport is not None:
                    request.transport.abort()
                return resp
            if fault.stall_after_events is not None and n == fault.stall_after_events:
                await asyncio.sleep(fault.stall_ms / 1000)
            if n and fault.chunk_delay_ms:
                await asyncio.sleep(fault.chunk_delay_ms / 1000)
            await resp.write(ev)
        await resp.write_eof()
        return resp

    def _usage(self, body: dict[str, Any], inp: Any, out_text: str, model: str) -> tuple[int, int, int, int]:
        input_tokens = ntok(json.dumps(inp, sort_keys=True, separators=(",", ":")))
        key = body.get("prompt_cache_key")
        cached = 0
        if isinstance(key, str):
            cached = min(self.sim.cache.get(key, 0), input_tokens)
            self.sim.cache[key] = input_tokens
        reasoning = _reasoning_tokens(model, body)
        return input_tokens, cached, ntok(out_text) + reasoning, reasoning

    # -- OpenAI Responses
    async def responses(self, request: web.Request) -> web.StreamResponse:
        body, entry, fault, early = await self._prelude(request, "openai")
        if early:
            return early
        model = body.get("model", "gpt-5-codex")
        inp = body.get("input") or []
        items = [{"role": "user", "content": inp}] if isinstance(inp, str) else list(inp)
        d = decide(items, _tool_names(body))
        rid = f"resp_{uuid.uuid4().hex[:24]}"
        output: list[dict[str, Any]] = []
        reasoning_item = None
        if body.get("reasoning"):
            reasoning_item = {
                "type": "reasoning",
                "id": f"rs_{uuid.uuid4().hex[:16]}",
                "summary": [{"type": "summary_text", "text": "Thinking about it."}],
            }
            output.append(reasoning_item)
        if d.tool:
            name, args = d.tool
            output.append(
                {
                    "type": "function_call",
                    "id": f"fc_{uuid.uuid4().hex[:16]}",
                    "call_id": f"call_{uuid.uuid4().hex[:16]}",
                    "name": name,
                    "arguments": args,
                    "status": "completed",
                }
            )
            out_text = args
        else:
            output.append(
                {
                    "type": "message",
                    "id": f"msg_{uuid.uuid4().hex[:16]}",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": d.text, "annotations": []}],
                }
            )
            out_text = d.text or ""
        i_tok, cached, o_tok, r_tok = self._usage(body, inp, out_text, model)
        usage = {
            "input_tokens": i_tok,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": o_tok,
            "output_tokens_details": {"reasoning_tokens": r_tok},
            "total_tokens": i_tok + o_tok,
        }
        entry["usage"] = usage
        final = {
            "id": rid,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": model,
            "output": output,
            "usage": usage,
            "error": None,
            "incomplete_details": None,
        }
        if not body.get("stream"):
            return web.json_response(final)
        seq = 0
        events: list[bytes] = []

        def ev(kind: str, **fields: Any) -> None:
            nonlocal seq
            events.append(
                f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': seq, **fields})}\n\n".encode()
            )
            seq += 1

        ev("response.created", response={**final, "status": "in_progress", "output": [], "usage": None})
        ev("response.in_progress", response={**final, "status": "in_progress", "output": [], "usage": None})
        for idx, item in enumerate(output):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                ev(
                    "response.output_item.added",
                    output_index=idx,
                    item={**item, "status": "in_progress", "content": []},
                )
                ev(
                    "response.content_part.added",
                    output_index=idx,
                    item_id=item["id"],
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": []},
                )
                for k in range(0, len(text), 12):
                    ev(
                        "response.output_text.delta",
                        output_index=idx,
                        item_id=item["id"],
                        content_index=0,
                        delta=text[k : k + 12],
                    )
                ev(
                    "response.output_text.done",
                    output_index=idx,
                    item_id=item["id"],
                    content_index=0,
                    text=text,
                )
                ev(
                    "response.content_part.done",
                    output_index=idx,
                    item_id=item["id"],
                    content_index=0,
                    part=item["content"][0],
                )
            elif item["type"] == "function_call":
                ev(
                    "response.output_item.added",
                    output_index=idx,
                    item={**item, "arguments": "", "status": "in_progress"},
                )
                ev(
                    "response.function_call_arguments.delta",
                    output_index=idx,
                    item_id=item["id"],
                    delta=item["arguments"],
                )
                ev(
                    "response.function_call_arguments.done",
                    output_index=idx,
                    item_id=item["id"],
                    arguments=item["arguments"],
                )
            else:
                ev("response.output_item.added", output_index=idx, item={**item, "summary": []})
                ev(
                    "response.reasoning_summary_text.delta",
                    output_index=idx,
                    item_id=item["id"],
                    summary_index=0,
                    delta=item["summary"][0]["text"],
                )
            ev("response.output_item.done", output_index=idx, item=item)
        if fault.error_event:
            failed = {
                **final,
                "status": "failed",
                "error": {"code": fault.error_event, "message": f"simulated {fault.error_event}"},
            }
            ev("response.failed", response=failed)
        else:
            ev("response.completed", response=final)
        return await self._stream(request, events, fault)

    # -- Chat Completions
    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, entry, fault, early = await self._prelude(request, "openai")
        if early:
            return early
        model = body.get("model") or request.match_info.get("deployment") or "gpt-4.1-mini"
        messages = body.get("messages") or []
        d = decide(messages, _tool_names(body))
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        out_text = d.tool[1] if d.tool else (d.text or "")
        i_tok, cached, o_tok, r_tok = self._usage(body, messages, out_text, model)
        usage = {
            "prompt_tokens": i_tok,
            "completion_tokens": o_tok,
            "total_tokens": i_tok + o_tok,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": r_tok},
        }
        entry["usage"] = usage
        tool_calls = (
            [
                {
                    "id": f"call_{uuid.uuid4().hex[:16]}",
                    "type": "function",
                    "function": {"name": d.tool[0], "arguments": d.tool[1]},
                }
            ]
            if d.tool
            else None
        )
        finish = "tool_calls" if d.tool else "stop"
        if not body.get("stream"):
            msg: dict[str, Any] = {"role": "assistant", "content": None if d.tool else d.text}
            if tool_calls:
                msg["tool_calls"] = tool_calls
            doc = {
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                "usage": usage,
            }
            if "gzip" in request.headers.get("accept-encoding", ""):
                return web.Response(
                    body=gzip.compress(json.dumps(doc).encode()),
                    headers={"content-type": "application/json", "content-encoding": "gzip"},
                )
            return web.json_response(doc)
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        chunks: list[dict[str, Any]] = [
            {
                **base,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                ],
            }
        ]
        if tool_calls:
            tc = tool_calls[0]
            chunks.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": tc["id"],
                                        "type": "function",
                                        "function": {"name": tc["function"]["name"], "arguments": ""},
                                    }
                                ]
                            },
                            "finish_reason": None,
                        }
                    ],
                }
            )
            chunks.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {"index": 0, "function": {"arguments": tc["function"]["arguments"]}}
                                ]
                            },
                            "finish_reason": None,
                        }
                    ],
                }
            )
        else:
            text = d.text or ""
            chunks += [
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"content": text[k : k + 12]}, "finish_reason": None}],
                }
                for k in range(0, len(text), 12)
            ]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]
        return await self._stream(request, events, fault)

    # -- Anthropic Messages
    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, entry, fault, early = await self._prelude(request, "anthropic")
        if early:
            return early
        model = body.get("model", "claude-sonnet-4-5")
        messages = body.get("messages") or []
        d = decide(messages, _tool_names(body))
        mid = f"msg_{uuid.uuid4().hex[:24]}"
        out_text = d.tool[1] if d.tool else (d.text or "")
        total_in, cached, o_tok, _ = self._usage(body, [body.get("system"), messages], out_text, model)
        o_tok -= _reasoning_tokens(model, body)
        usage = {
            "input_tokens": total_in - cached,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
            "output_tokens": o_tok,
        }
        entry["usage"] = usage
        content: list[dict[str, Any]] = (
            [
                {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:20]}",
                    "name": d.tool[0],
                    "input": json.loads(d.tool[1]),
                }
            ]
            if d.tool
            else [{"type": "text", "text": d.text}]
        )
        stop = "tool_use" if d.tool else "end_turn"
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage,
                }
            )

        def ev(kind: str, doc: dict[str, Any]) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **doc})}\n\n".encode()

        events = [
            ev(
                "message_start",
                {
                    "message": {
                        "id": mid,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {**usage, "output_tokens": 1},
                    }
                },
            ),
            ev("ping", {}),
        ]
        block = content[0]
        if block["type"] == "text":
            events.append(
                ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            )
            events += [
                ev(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": block["text"][k : k + 12]}},
                )
                for k in range(0, len(block["text"]), 12)
            ]
        else:
            events.append(ev("content_block_start", {"index": 0, "content_block": {**block, "input": {}}}))
            events.append(
                ev(
                    "content_block_delta",
                    {
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                    },
                )
            )
        events.append(ev("content_block_stop", {"index": 0}))
        events.append(
            ev(
                "message_delta",
                {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": o_tok}},
            )
        )
        events.append(ev("message_stop", {}))
        return await self._stream(request, events, fault)


async def _serve(host: str, port: int, sim: Sim) -> None:
    runner = web.AppRunner(SimServer(sim).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"SIMPROVIDER READY http://{host}:{bound}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="codexgate's simulated model provider")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--openai-key", default=os.environ.get("SIM_OPENAI_KEY", "sk-sim-openai"))
    ap.add_argument("--anthropic-key", default=os.environ.get("SIM_ANTHROPIC_KEY", "sk-ant-sim"))
    ap.add_argument("--azure-key", default=os.environ.get("SIM_AZURE_KEY", "sim-azure"))
    args = ap.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port, Sim(args.openai_key, args.anthropic_key, args.azure_key)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
