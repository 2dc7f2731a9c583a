"""A local simulated model provider that speaks the real wire formats, for tests and the demo.

Run it::

    python -m codexgate.simprovider --host 127.0.0.1 --port 0 \
        [--openai-key K1] [--anthropic-key K2] [--azure-key K3]

Keys may come from ``SIM_OPENAI_KEY`` / ``SIM_ANTHROPIC_KEY`` / ``SIM_AZURE_KEY`` instead (keep
them out of argv). A provider without a key rejects every call. Once listening it prints exactly
one line, ``SIMPROVIDER READY http://127.0.0.1:PORT``, and runs until SIGTERM/SIGINT. It never
prints or logs a credential. Code: ``codexgate/sim/`` (one module per API plus faults, usage,
scenario, auth, app).

Endpoints (OpenAI ones with or without ``/v1``)
    ``POST /v1/responses``            OpenAI Responses, SSE (``stream: true``) or JSON
    ``POST /v1/chat/completions``     Chat Completions, ``data:`` chunks ending ``data: [DONE]``
                                      (``stream_options.include_usage`` adds the usage chunk) or JSON
    ``POST /v1/messages``             Anthropic Messages, SSE (with ``ping``) or JSON
    ``POST /openai/deployments/{d}/chat/completions?api-version=...``, ``POST /openai/responses
    ?api-version=...``, ``POST /openai/v1/responses``, ``POST /openai/v1/chat/completions``: Azure
    OpenAI (``api-version`` is required except under ``/openai/v1/``)
    ``GET /v1/models`` (Anthropic's list when ``anthropic-version`` is sent), ``GET /health``.
    Anything else gets 404, a wrong method 405 (so a WebSocket upgrade on ``GET /v1/responses``
    gets 405), both in the provider's error format.

Authentication
    OpenAI ``Authorization: Bearer <key>``; Anthropic ``x-api-key`` plus a required
    ``anthropic-version`` header (400 without it); Azure ``api-key``. A missing or wrong credential
    gets the provider's own 401 body (OpenAI ``{"error": {"message", "type": "invalid_request_error",
    "code": "invalid_api_key", "param": null}}``; Anthropic ``{"type": "error", "error": {"type":
    "authentication_error", "message"}}``; Azure ``{"error": {"code": "401", "message"}}``); the
    presented credential is never echoed. Validation as the real APIs: ``model`` is required
    (Anthropic also ``max_tokens`` and ``messages``; Chat ``messages``); a body that is not JSON,
    or cannot be decoded, is a 400; an unknown ``Content-Encoding`` a 415.

Request log (no authentication; loopback test tool)
    ``GET /_sim/requests`` lists every API request received (not ``/health`` or ``/_sim/*``):
    ``seq``, ``time``, ``method``, ``path``, ``query``, ``headers`` (lower-case; values of
    ``authorization``, ``proxy-authorization``, ``x-api-key``, ``api-key``, ``cookie`` replaced by
    ``sha256:<hex of the whole header value>``), ``credential`` (``sha256:<hex>`` of the bare key
    presented, Bearer scheme stripped, or null), ``auth_ok``, ``body`` (parsed JSON), ``body_error``,
    ``model``, ``stream``, ``fault`` (the spec applied), ``usage`` (as returned, in the API's
    shape), ``status`` (0 for a reset non-streaming call), ``events_sent``, ``stream_outcome``
    (``completed`` | ``reset`` | ``client_disconnected``). ``DELETE /_sim/requests`` clears it,
    ``DELETE /_sim/cache`` forgets the emulated prompt cache.

Deterministic answers (ids and timestamps are fresh; everything else depends on the request only)
    * Plain prompt: ``sim: <first 40 chars of the last non-empty user text>``.
    * ``RUN: <command>`` lines (several allowed) in the first user message that has any: with k =
      number of tool results already in the conversation (``function_call_output`` /
      ``custom_tool_call_output`` items, Chat ``tool`` messages, Anthropic ``tool_result``
      blocks), call k < n returns a tool call running the k-th command; once all have results,
      the answer is ``sim: ran <n> command(s); last output: <last tool output>`` (Codex's
      ``Chunk ID ... Output:`` wrapper is stripped; at most 500 chars). Without tools offered it
      says it cannot run the command.
    * The tool: the first offered of ``exec_command``, ``shell_command``, ``shell``, ``bash``,
      ``run_shell``, ``local_shell``; else the first tool whose schema has a ``cmd``/``command``/
      ``script``/``commands`` property; else the first tool. Arguments follow its schema: that
      property set to the command string, or to ``["bash", "-lc", command]`` if it is an array.
      A ``custom`` (free-form) tool gets a ``custom_tool_call`` whose ``input`` is the command.

    Measured with the real Codex CLI 0.171 (``codex exec``, custom provider, ``wire_api =
    "responses"``; models gpt-5-codex, gpt-5, gpt-5.2-codex, gpt-4.1 and o3 alike, all with
    Codex's fallback model metadata): it offers the function tools ``exec_command``
    (``parameters.required = ["cmd"]``; optional ``workdir``, ``shell``, ``login``, ``tty``,
    ``yield_time_ms``, ``max_output_tokens``, ``sandbox_permissions``, ``justification``,
    ``prefix_rule``), ``write_stdin``, ``request_user_input``, ``view_image``, ``get_goal``,
    ``create_goal``, ``update_goal``, a ``namespace`` ``multi_agent_v1`` (``spawn_agent``, ...) and
    the hosted ``web_search``; no ``shell``, ``local_shell`` or ``apply_patch``. A
    ``function_call`` named ``exec_command`` with arguments ``{"cmd": "echo hello"}`` is executed
    (shown as ``/bin/bash -lc 'echo hello'`` in ``command_execution``); the next request ends with
    that ``function_call`` and a ``function_call_output`` whose ``output`` is a string
    ``"Chunk ID: ...\\nWall time: ...\\nProcess exited with code 0\\nOriginal token count: N\\n
    Output:\\nhello\\n"``. Codex sends ``reasoning: {"summary": "auto"}``, ``include:
    ["reasoning.encrypted_content"]`` and ``prompt_cache_key`` = thread id on every call.

Usage (deterministic; canonical JSON = ``json.dumps(x, sort_keys=True, separators=(",", ":"))``,
tokens(s) = ceil(len(s) / 4))
    * Responses: ``input_tokens`` = tokens(canonical(``input``)) (instructions and tools are not
      counted); Chat: ``prompt_tokens`` = tokens(canonical(``messages``)).
    * ``cached_tokens``: with a ``prompt_cache_key`` (Responses or Chat), the input tokens of the
      previous call with the same key, capped at this call's input; else 0.
    * ``reasoning_tokens`` = 16 when the request has ``reasoning`` (Responses) or
      ``reasoning_effort`` (Chat), or the model name contains "reason" or starts with "o" or
      "gpt-5"; else 0. ``output_tokens`` = tokens(answer text, or the tool call's arguments
      string) + reasoning_tokens; ``total_tokens`` = input + output.
    * Anthropic: T = tokens(canonical([system, messages])); without ``cache_control`` on a
      system/message block, ``input_tokens`` = T and no cache. With breakpoints: P = tokens of
      the canonical list of content blocks (system first, a string content counts as one text
      block) up to and including the last marked block, capped at T; the cache key is the blocks
      up to the first marked one; ``cache_read_input_tokens`` = min(P left by an earlier call with
      that key, P), ``cache_creation_input_tokens`` = P - read, ``input_tokens`` = T - P (reads
      and writes excluded, as the real API). ``output_tokens`` = tokens(text or tool input JSON);
      no reasoning tokens.
    * The usage is in ``response.completed`` (Responses), the final chunk (Chat with
      include_usage), ``message_start`` + ``message_delta`` (Anthropic), and the JSON bodies.
    * ``model`` in every answer is the model requested (Azure deployments: the deployment name
      if the body has no model).

Streams
    Responses: ``response.created``, ``response.in_progress``; per output item
    ``response.output_item.added`` ... ``response.output_item.done`` with, for a message,
    ``content_part.added``, several ``output_text.delta``, ``output_text.done``,
    ``content_part.done``; for a function call ``function_call_arguments.delta``/``.done``; for a
    custom tool call ``custom_tool_call_input.delta``/``.done``; a reasoning item first when the
    request has ``reasoning`` (summary part and ``reasoning_summary_text.delta`` events when
    ``reasoning.summary`` is set, ``encrypted_content`` when ``include`` asks for it); then
    ``response.completed``. Every frame is ``event: TYPE\\ndata: JSON\\n\\n`` and every JSON has
    ``type`` and ``sequence_number``. Non-streaming calls get the final response object, gzip-
    compressed when ``Accept-Encoding`` allows gzip (all three APIs).

Faults: header ``x-sim-fault: <spec>`` (wins), or the queue: ``POST /_sim/faults`` with
``{"spec": "...", "times": N, "match_path": "substring of the path" | null}`` applies to the next N
API requests whose path contains ``match_path`` (401s do not consume it); ``GET`` lists,
``DELETE`` clears. Spec: ``key=value`` pairs joined by ``;`` (unknown keys are a 400):
    * ``status=429|500|503|400|...``: that HTTP status with the provider's error body (OpenAI
      type/code 429 ``requests``/``rate_limit_exceeded``, 500 ``server_error``/``server_error``,
      503 ``server_error``/``service_unavailable``, 400 ``invalid_request_error``/
      ``invalid_request``; Anthropic 429 ``rate_limit_error``, 500 ``api_error``, 503/529
      ``overloaded_error``, 400 ``invalid_request_error``; Azure 429 ``{"code": "429"}``).
      ``retry_after=S`` adds ``Retry-After: S``.
    * ``delay_ms=N``: wait before the response headers.
    * ``chunk_delay_ms=N``: wait between SSE frames (streaming stays streaming).
    * ``stall_after_events=K;stall_ms=N``: pause N ms before frame K.
    * ``reset_after_events=K``: after K frames, close the TCP connection without the terminating
      chunk (non-streaming: close it before any response).
    * ``error_event=CODE``: Responses streams end with ``response.failed`` carrying
      ``response.error.code`` = CODE instead of ``response.completed``; Chat streams end with a
      ``data: {"error": {...}}`` frame, Anthropic streams with an ``error`` event whose type is
      CODE; non-streaming calls get HTTP 500 with code CODE.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from codexgate.sim.app import serve
from codexgate.sim.auth import Keys


def _ready(url: str) -> None:
    print(f"SIMPROVIDER READY {url}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m codexgate.simprovider", description="codexgate's simulated model provider"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--openai-key", default=os.environ.get("SIM_OPENAI_KEY"), help="or SIM_OPENAI_KEY")
    parser.add_argument(
        "--anthropic-key", default=os.environ.get("SIM_ANTHROPIC_KEY"), help="or SIM_ANTHROPIC_KEY"
    )
    parser.add_argument("--azure-key", default=os.environ.get("SIM_AZURE_KEY"), help="or SIM_AZURE_KEY")
    args = parser.parse_args(argv)
    keys = Keys(openai=args.openai_key, anthropic=args.anthropic_key, azure=args.azure_key)
    asyncio.run(serve(args.host, args.port, keys, _ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
