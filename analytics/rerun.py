"""Re-run one recorded model call through the gateway, with the viewer's own gateway key.

The recorded ``request_body`` is sent again (optionally with another ``model``) with ``stream``
forced off, to the gateway path of its API type; the answer text, status and usage come back for a
side-by-side comparison with the recording. The key is only put in the request header.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from codexgate.wire import Api, from_json_body

DEFAULT_GATEWAY_URL = "http://127.0.0.1:8080/v1"
API_PATHS: dict[str, str] = {
    Api.RESPONSES: "/responses",
    Api.CHAT: "/chat/completions",
    Api.ANTHROPIC: "/messages",
}


class RerunError(Exception):
    """The step cannot be re-run (no recorded body, unknown API type, no key)."""


@dataclass
class RerunResult:
    status_code: int
    text: str
    usage: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    error: str | None = None
    elapsed_ms: float = 0.0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300 and self.error is None


def gateway_url(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    return (env.get("CODEXGATE_GATEWAY_URL") or DEFAULT_GATEWAY_URL).rstrip("/")


def build_request(
    request_body: str | None, api_type: str | None, model: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The gateway path and the JSON body to send: the recorded body with ``stream`` false (and
    ``model`` replaced when given)."""
    if not request_body:
        raise RerunError("this step has no recorded request body (privacy mode metrics_only?)")
    if api_type not in API_PATHS:
        raise RerunError(f"cannot re-run a call of API type {api_type!r}")
    try:
        body = json.loads(request_body)
    except ValueError as exc:
        raise RerunError(f"recorded request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RerunError("recorded request body is not a JSON object")
    body["stream"] = False
    body.pop("stream_options", None)
    if model:
        body["model"] = model
    return API_PATHS[api_type], body


def auth_headers(api_type: str, key: str) -> dict[str, str]:
    if api_type == Api.ANTHROPIC:
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {"Authorization": f"Bearer {key}"}


def answer_of(api_type: str, doc: Any) -> tuple[str, dict[str, Any], str | None, list[dict[str, Any]]]:
    """(answer text, raw usage object, model, tool calls) of a non-streamed response JSON, read
    with the wire summary (``codexgate.wire.from_json_body``)."""
    summary = from_json_body(api_type, doc)
    if not isinstance(doc, dict) or summary.failed:
        return "", {}, None, []
    calls = [{"name": c.get("name"), "arguments": c.get("arguments")} for c in summary.tool_calls]
    usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
    return summary.text, usage, summary.response_model, calls


def _error_text(doc: Any, raw: str) -> str:
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or err)
        if isinstance(err, str):
            return err
    return raw[:2000]


def rerun_step(
    request_body: str | None,
    api_type: str | None,
    key: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    timeout: float = 120.0,
) -> RerunResult:
    """POST the recorded request through the gateway with ``key`` and return the new answer."""
    if not key:
        raise RerunError("re-running needs your gateway key (log in with a gateway key)")
    path, body = build_request(request_body, api_type, model)
    assert api_type is not None
    url = (base_url or gateway_url()).rstrip("/") + path
    headers = {"content-type": "application/json", **auth_headers(api_type, key)}
    started = time.perf_counter()
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return RerunResult(0, "", error=f"gateway not reachable at {url}: {type(exc).__name__}")
    elapsed = (time.perf_counter() - started) * 1000.0
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if response.status_code >= 400:
        return RerunResult(
            response.status_code, "", error=_error_text(doc, response.text), elapsed_ms=elapsed
        )
    text, usage, served_by, calls = answer_of(api_type, doc)
    return RerunResult(
        response.status_code, text, usage=usage, model=served_by, elapsed_ms=elapsed, tool_calls=calls
    )
