"""First addon in the chain: recognises gateway traffic, opens its per-flow state, and refuses
anything the gateway cannot vouch for before any policy runs.

``requestheaders``: takes every credential off the request (so no later failure can forward
the developer's key), caps header count and size, answers Codex's WebSocket probe with 426,
and refuses endpoints that are not on the allowlist (404/405), malformed paths (400), bodies
announced larger than the cap (413) and announced trailers (400).

``request``: decodes ``Content-Encoding`` with a bounded decoder (a bomb is refused with 413
without ever expanding), parses the JSON with bounded depth (BOM, UTF-16/32 accepted), and
refuses model calls whose body is not a JSON object or whose ``model`` is not a string (400)
— a model the gateway cannot read is a model scope cannot check. Reads Codex's session
headers and the ``x-codexgate-metadata`` tags (bounded). Every refusal is in the provider's
error format and becomes a trace row.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy.mode_specs import ReverseMode

from addons import codex_session
from addons.api_shape import check_endpoint, classify
from addons.codex_session import SessionTracker
from addons.credentials import header_map, take_credentials
from addons.errors import error_response
from addons.failsafe import failsafe
from addons.flowstate import STATE_KEY, FlowState
from addons.provider_hosts import ProviderHosts
from codexgate.core.decompress import BadEncoding, TooLarge, decode_bounded
from codexgate.core.safejson import UntrustedJSONError, decode_text, loads_text

log = logging.getLogger("codexgate.intake")

METADATA_HEADER = "x-codexgate-metadata"
_INLINE_PARSE_LIMIT = 256 * 1024  # bytes; larger bodies are decoded and parsed in a thread
_MAX_MODEL_CHARS = 256
MAX_TAGS = 32
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 512
_MAX_METADATA_BYTES = 16 * 1024


class BodyRejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class ParsedBody:
    body: dict[str, Any] | None
    text: str | None
    items: list[Any]
    digests: list[str]  # identity digests (session deltas)
    content_digests: list[str]  # content digests (guardrail cache), each item hashed once
    instructions_hash: str | None
    decoded_bytes: int


def parse_request(
    raw: bytes, encoding: str, api: str, *, max_bytes: int, max_depth: int, require_object: bool
) -> ParsedBody:
    """Decode (bounded), parse (bounded) and digest a request body. Pure: safe in a thread.
    Raises ``BodyRejected`` with the status and message the client should get."""
    try:
        data = decode_bounded(raw, encoding, max_bytes) if encoding else raw
    except TooLarge:
        raise BodyRejected(
            413, "request_too_large", f"codexgate: the request body is larger than {max_bytes} bytes."
        ) from None
    except BadEncoding as exc:
        raise BodyRejected(400, "invalid_encoding", f"codexgate: {exc}.") from None
    if len(data) > max_bytes:
        raise BodyRejected(
            413, "request_too_large", f"codexgate: the request body is larger than {max_bytes} bytes."
        )
    body: dict[str, Any] | None = None
    text: str | None = None
    doc: Any = None
    if data:
        try:
            text = decode_text(data)
            doc = loads_text(text, max_depth=max_depth)
        except UntrustedJSONError as exc:
            if require_object:
                raise BodyRejected(
                    400, "invalid_json", f"codexgate: the request body is not valid JSON: {exc.reason}."
                ) from None
            text = text if text is not None else data.decode("utf-8", "replace")
        body = doc if isinstance(doc, dict) else None
        if body is None and require_object:
            raise BodyRejected(400, "invalid_json", "codexgate: the request body must be a JSON object.")
    elif require_object:
        raise BodyRejected(400, "invalid_json", "codexgate: this endpoint needs a JSON body.")
    items = codex_session.input_items(api, body)
    contents, digests = codex_session.item_digests(items)
    return ParsedBody(
        body, text, items, digests, contents, codex_session.instructions_hash(api, body, items, contents), len(data)
    )


def parse_metadata_header(value: str | None) -> dict[str, str]:
    """Tags from ``x-codexgate-metadata`` (a JSON object); raises ``BodyRejected`` (400) when it
    is not one or exceeds the caps (tags, key and value sizes)."""
    if not value:
        return {}
    limits = (
        f"at most {MAX_TAGS} tags, keys up to {MAX_TAG_KEY} and values up to {MAX_TAG_VALUE} characters"
    )
    try:
        doc = loads_text(value, max_depth=2, max_chars=_MAX_METADATA_BYTES)
    except UntrustedJSONError:
        raise BodyRejected(
            400, "invalid_metadata", f"codexgate: {METADATA_HEADER} must be a JSON object ({limits})."
        ) from None
    if not isinstance(doc, dict) or len(doc) > MAX_TAGS:
        raise BodyRejected(
            400, "invalid_metadata", f"codexgate: {METADATA_HEADER} must be a JSON object ({limits})."
        )
    tags: dict[str, str] = {}
    for k, v in doc.items():
        if isinstance(v, (dict, list)):
            raise BodyRejected(
                400, "invalid_metadata", f"codexgate: {METADATA_HEADER} values must be strings or numbers."
            )
        text = v if isinstance(v, str) else ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
        if len(k) > MAX_TAG_KEY or len(text) > MAX_TAG_VALUE:
            raise BodyRejected(400, "invalid_metadata", f"codexgate: {METADATA_HEADER}: {limits}.")
        tags[k] = text
    return tags


class Intake:
    def __init__(self, hosts: ProviderHosts) -> None:
        self.hosts = hosts
        self.sessions = SessionTracker()

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "codexgate_max_body_bytes",
            int,
            32 * 1024 * 1024,
            "Largest request body accepted, after Content-Encoding is undone (413 above it).",
        )
        loader.add_option(
            "codexgate_max_json_depth", int, 64, "Deepest JSON nesting accepted in a request body (400 above it)."
        )
        loader.add_option("codexgate_max_headers", int, 128, "Most request headers accepted (431 above it).")
        loader.add_option(
            "codexgate_max_header_bytes", int, 64 * 1024, "Largest total size of request headers (431 above it)."
        )
        loader.add_option(
            "codexgate_unknown_endpoints",
            str,
            "refuse",
            "Requests to endpoints that are not model APIs: 'refuse' (404/405 in the provider's format) or "
            "'passthrough' (authenticated, forwarded WITHOUT provider credentials, traced).",
        )

    def configure(self, updated: set[str]) -> None:
        for name in ("codexgate_max_body_bytes", "codexgate_max_json_depth", "codexgate_max_headers",
                     "codexgate_max_header_bytes"):
            if name in updated and getattr(ctx.options, name) <= 0:
                raise exceptions.OptionsError(f"{name} must be a positive number, not {getattr(ctx.options, name)}.")
        if "codexgate_max_json_depth" in updated and ctx.options.codexgate_max_json_depth > 512:
            raise exceptions.OptionsError("codexgate_max_json_depth must be at most 512.")
        if "codexgate_max_body_bytes" in updated and not ctx.options.body_size_limit:
            # mitmproxy buffers a request body whole before the request hook; its own limit refuses
            # an announced oversize body (413) before reading it. Set generously (responses share it).
            ctx.options.update(body_size_limit=str(4 * ctx.options.codexgate_max_body_bytes))
        if "codexgate_unknown_endpoints" in updated and ctx.options.codexgate_unknown_endpoints not in (
            "refuse",
            "passthrough",
        ):
            raise exceptions.OptionsError(
                "codexgate_unknown_endpoints must be 'refuse' or 'passthrough', "
                f"not '{ctx.options.codexgate_unknown_endpoints}'."
            )

    @failsafe
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        if flow.response is not None or req.method == "CONNECT":
            return
        reverse = isinstance(flow.client_conn.proxy_mode, ReverseMode)
        if not reverse and not self.hosts.is_provider_host(req.pretty_host):
            return  # forward-proxy traffic to a non-provider host: not model traffic
        seen = header_map(req.headers)  # one pass; every lookup below reads this
        shape = classify(req.path, headers_anthropic="anthropic-version" in seen)
        state = FlowState.new(shape, "reverse" if reverse else "forward")
        state.request.client_path = req.path.split("?", 1)[0][:2048]
        flow.metadata[STATE_KEY] = state
        # Before anything else can fail: no credential of the client's stays on the request.
        state.request.presented_key = take_credentials(req, state.request.mode, seen)
        # so early refusals carry the session ids
        state.request.codex = codex_session.from_request(req, None, seen)

        headers = req.headers.fields
        if len(headers) > ctx.options.codexgate_max_headers or sum(
            len(k) + len(v) for k, v in headers
        ) > ctx.options.codexgate_max_header_bytes:
            self._refuse(flow, state, 431, "headers_too_large", "codexgate: too many or too large request headers.")
            return
        if seen.get("upgrade", "").lower() == "websocket":
            # Codex's built-in provider tries a WebSocket first; 426 makes it use HTTP right away.
            self._refuse(
                flow, state, 426, "websocket_not_supported", "codexgate serves this API over HTTP; use HTTP streaming."
            )
            return
        refusal = check_endpoint(req.method, req.path, shape)
        if refusal is not None:
            if refusal.status != 400 and ctx.options.codexgate_unknown_endpoints == "passthrough":
                state.request.passthrough = True
            else:
                extra = {"allow": refusal.allow} if refusal.allow else None
                self._refuse(flow, state, refusal.status, refusal.code, refusal.message, extra)
                return
        if "trailer" in seen:
            self._refuse(flow, state, 400, "trailers_not_supported", "codexgate: HTTP trailers are not supported.")
            return
        length = seen.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > ctx.options.codexgate_max_body_bytes:
            limit = ctx.options.codexgate_max_body_bytes
            self._refuse(
                flow, state, 413, "request_too_large", f"codexgate: the request body is larger than {limit} bytes."
            )

    @failsafe
    async def request(self, flow: http.HTTPFlow) -> None:
        state: FlowState | None = flow.metadata.get(STATE_KEY)
        if state is None or flow.response is not None:
            return
        req = flow.request
        seen = header_map(req.headers)
        raw = req.raw_content or b""
        model_call = state.request.shape.is_model_call and not state.request.passthrough
        args = (
            raw,
            seen.get("content-encoding", ""),
            state.request.shape.api,
        )
        kwargs: dict[str, Any] = {
            "max_bytes": ctx.options.codexgate_max_body_bytes,
            "max_depth": ctx.options.codexgate_max_json_depth,
            "require_object": model_call,
        }
        try:
            if len(raw) > _INLINE_PARSE_LIMIT or seen.get("content-encoding"):
                parsed = await asyncio.to_thread(parse_request, *args, **kwargs)
            else:
                parsed = parse_request(*args, **kwargs)
            state.request.tags = parse_metadata_header(seen.get(METADATA_HEADER))
        except BodyRejected as exc:
            self._refuse(flow, state, exc.status, exc.code, exc.message)
            return
        finally:
            if METADATA_HEADER in seen:
                del req.headers[METADATA_HEADER]
        body = parsed.body
        state.request.body, state.request.body_text, state.request.size = body, parsed.text, parsed.decoded_bytes
        if body is not None:
            model = body.get("model")
            if model is not None and (not isinstance(model, str) or not model or len(model) > _MAX_MODEL_CHARS):
                self._refuse(flow, state, 400, "invalid_model", "codexgate: 'model' must be a non-empty string.")
                return
            state.request.model = model
            state.request.stream = body.get("stream") is True
        if state.request.shape.azure_deployment:
            # Azure serves the deployment named in the path, whatever the body says: scope checks it.
            state.request.model = state.request.shape.azure_deployment
            if body is not None and isinstance(body.get("model"), str):
                state.request.also_served_models = [body["model"]]
        if model_call and state.request.model is None and state.request.shape.api != "models":
            self._refuse(flow, state, 400, "missing_model", "codexgate: the request names no 'model'.")
            return
        state.request.codex = codex_session.from_request(req, body, seen)
        state.request.instructions_hash = parsed.instructions_hash
        state.request.items, state.request.content_digests = parsed.items, parsed.content_digests
        if state.request.shape.is_model_call:
            state.request.delta = self.sessions.observe(state.request.codex.grouping_key, parsed.digests)
            state.request.new_items = parsed.items[state.request.delta.new_start :]

    @staticmethod
    def _refuse(
        flow: http.HTTPFlow,
        state: FlowState,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        state.refuse(status, code, message, "intake")
        flow.response = error_response(state.request.shape.family, status, code, message, headers)
