"""The one trace schema. The gateway's sink writes it; analytics, dashboard and notebooks read it.

One row = one model call that reached the gateway (forwarded, failed or refused).

Column names follow the OpenTelemetry GenAI semantic conventions where one exists, with
dots replaced by underscores so they are plain SQL identifiers (``gen_ai.request.model`` ->
``gen_ai_request_model``). ``OTEL_ATTRIBUTES`` maps each such column back to its attribute.

Versioning: ``schema_version`` is stored in every row. Readers call ``conform`` (Arrow) or
use ``read_parquet(..., union_by_name = true)`` (DuckDB) so files written by an older
version, which lack newer columns, read as NULL in those columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1

TS = pa.timestamp("us", tz="UTC")

ATTEMPT = pa.struct(
    [
        ("attempt", pa.int32()),  # 1-based
        ("provider", pa.string()),  # vault provider name, e.g. "openai"
        ("url", pa.string()),  # upstream URL without query secrets
        ("status_code", pa.int32()),  # null when no HTTP status arrived
        ("latency_ms", pa.float64()),  # request sent -> response headers (or failure)
        ("error", pa.string()),  # null on success
        ("started_at", TS),
        ("model", pa.string()),  # model asked of the provider (after a route's rewrite)
        ("upstream_api", pa.string()),  # provider API when translated (e.g. anthropic_messages)
        ("decision", pa.string()),  # served | retry | fallback | skipped | cut | gave_up
        ("wait_ms", pa.float64()),  # backoff slept after this attempt
        ("sent_bytes", pa.int64()),  # request body bytes sent upstream
    ]
)

GUARDRAIL_FINDING = pa.struct(
    [
        ("guardrail", pa.string()),  # pii | secrets | prompt_injection | token_limit | ...
        ("stage", pa.string()),  # input | output
        ("entity", pa.string()),  # e.g. EMAIL_ADDRESS, AWS_KEY
        ("action", pa.string()),  # logged | redacted | blocked | warned
        ("score", pa.float64()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("message", pa.string()),
    ]
)

POLICY_DECISION = pa.struct(
    [
        ("policy", pa.string()),  # identity | scope | budget | rate_limit | guardrail | routing
        ("decision", pa.string()),  # allow | deny | warn
        ("reason", pa.string()),
    ]
)

TOOL_CALL = pa.struct(
    [
        ("call_id", pa.string()),
        ("name", pa.string()),
        ("type", pa.string()),  # function_call | custom_tool_call | local_shell_call | tool_use
        ("arguments", pa.string()),  # JSON text as the model produced it
    ]
)

TAG = pa.struct([("key", pa.string()), ("value", pa.string())])

# (name, type, nullable, description). Order is the on-disk column order.
_FIELDS: list[tuple[str, pa.DataType, bool, str]] = [
    ("schema_version", pa.int16(), False, "Trace schema version that wrote the row"),
    ("trace_id", pa.string(), False, "Unique id of this trace (uuid4 hex)"),
    ("gateway_instance", pa.string(), True, "Id of the gateway process that wrote the row"),
    # timings
    ("start_time", TS, False, "Request fully received by the gateway"),
    ("upstream_first_byte_time", TS, True, "First response byte from the upstream"),
    ("first_token_time", TS, True, "First output token/delta seen in the stream"),
    ("end_time", TS, False, "Trace finished (stream ended, client left, or refusal sent)"),
    ("duration_ms", pa.float64(), False, "end_time - start_time"),
    ("ttfb_ms", pa.float64(), True, "upstream_first_byte_time - start_time"),
    ("ttft_ms", pa.float64(), True, "first_token_time - start_time"),
    # outcome
    ("status_code", pa.int32(), True, "HTTP status sent to the client (null if none was sent)"),
    (
        "outcome",
        pa.string(),
        False,
        "ok | refused | upstream_error | client_aborted | incomplete | gateway_error",
    ),
    ("streaming", pa.bool_(), False, "Response was SSE"),
    ("client_aborted", pa.bool_(), False, "Client disconnected before the upstream finished"),
    ("error_type", pa.string(), True, "Error code/type (provider's or gateway's)"),
    ("error_message", pa.string(), True, "Human-readable error (secrets stripped)"),
    ("refusal_reason", pa.string(), True, "Gateway refusal code, e.g. invalid_api_key, model_not_allowed"),
    # identity (never the key itself)
    ("org", pa.string(), True, "Organisation of the gateway key"),
    ("team", pa.string(), True, "Team of the gateway key"),
    ("project", pa.string(), True, "Project of the gateway key"),
    ("developer", pa.string(), True, "Developer of the gateway key"),
    ("key_id", pa.string(), True, "Public id of the gateway key (not the secret)"),
    # route
    ("mode", pa.string(), True, "reverse | forward"),
    ("route", pa.string(), True, "Gateway route name that served the call"),
    ("openai_api_type", pa.string(), True, "responses | chat_completions | anthropic_messages | other"),
    ("gen_ai_operation_name", pa.string(), True, "OTel gen_ai.operation.name (chat, ...)"),
    (
        "gen_ai_provider_name",
        pa.string(),
        True,
        "OTel gen_ai.provider.name (openai, anthropic, azure.ai.openai)",
    ),
    ("provider", pa.string(), True, "Vault provider entry used for the final attempt"),
    ("gen_ai_request_model", pa.string(), True, "Model the client asked for"),
    ("gen_ai_response_model", pa.string(), True, "Model the provider says served the call"),
    ("gen_ai_response_id", pa.string(), True, "Provider response id"),
    ("gen_ai_response_finish_reasons", pa.list_(pa.string()), True, "Finish/stop reasons"),
    ("gen_ai_conversation_id", pa.string(), True, "Conversation id (Codex thread id)"),
    # request
    ("request_method", pa.string(), True, "HTTP method"),
    ("request_path", pa.string(), True, "Path as the client sent it (no query)"),
    ("request_headers", pa.string(), True, "JSON object of request headers, secrets removed"),
    (
        "request_body",
        pa.string(),
        True,
        "Request body (decoded JSON text); null when privacy_mode=metrics_only",
    ),
    ("request_bytes", pa.int64(), True, "Decoded request body size"),
    (
        "upstream_request_body",
        pa.string(),
        True,
        "Body sent to the provider that served (else the last one tried) when it differs from "
        "request_body: translated to another API or model rewritten by the route; null when the "
        "same. Same privacy as request_body (null in metrics_only; in redacted mode, or when a "
        "guardrail masked the request, the stored request body rewritten) and the same size cap",
    ),
    (
        "body_truncated",
        pa.bool_(),
        True,
        "A stored body or item list was cut to the trace size cap (sizes stay exact)",
    ),
    # response
    ("response_headers", pa.string(), True, "JSON object of response headers, secrets removed"),
    ("response_body", pa.string(), True, "Final response JSON (reassembled from SSE for streams)"),
    ("response_text", pa.string(), True, "Concatenated assistant output text"),
    ("response_reasoning", pa.string(), True, "Concatenated reasoning summary text"),
    ("tool_calls", pa.list_(TOOL_CALL), True, "Tool calls the model made in this response"),
    ("sse_event_count", pa.int32(), True, "Number of SSE events seen (streams only)"),
    ("response_bytes", pa.int64(), True, "Response bytes received from upstream"),
    # usage (tokens). input includes cached; output includes reasoning (OTel semantics)
    ("gen_ai_usage_input_tokens", pa.int64(), True, "Input tokens incl. cache reads and writes"),
    ("gen_ai_usage_cache_read_input_tokens", pa.int64(), True, "Input tokens read from the prompt cache"),
    (
        "gen_ai_usage_cache_creation_input_tokens",
        pa.int64(),
        True,
        "Input tokens written to the prompt cache",
    ),
    ("gen_ai_usage_output_tokens", pa.int64(), True, "Output tokens incl. reasoning"),
    ("gen_ai_usage_reasoning_output_tokens", pa.int64(), True, "Reasoning output tokens"),
    ("usage_complete", pa.bool_(), False, "Usage came from the provider (false: missing or partial)"),
    # cost
    ("cost_usd", pa.float64(), True, "Total cost in USD; null when cost_known is false"),
    ("input_cost_usd", pa.float64(), True, "Input part of the cost (incl. cache)"),
    ("output_cost_usd", pa.float64(), True, "Output part of the cost (incl. reasoning)"),
    ("cost_known", pa.bool_(), False, "A price was found for the model (never a silent 0)"),
    ("price_source", pa.string(), True, "Where the price came from, e.g. genai-prices"),
    ("price_version", pa.string(), True, "Version of the price data used"),
    # attempts, policy, guardrails
    ("attempts", pa.list_(ATTEMPT), True, "Every upstream attempt, in order"),
    ("attempt_count", pa.int32(), False, "len(attempts)"),
    ("fallback_used", pa.bool_(), False, "Final attempt used a different provider than the first"),
    ("policy_decisions", pa.list_(POLICY_DECISION), True, "Policy checks and their verdicts"),
    ("guardrail_findings", pa.list_(GUARDRAIL_FINDING), True, "Guardrail findings"),
    ("guardrail_blocked", pa.bool_(), False, "A guardrail blocked the call"),
    ("tags", pa.list_(TAG), True, "Tags from key tags and the x-codexgate-metadata header"),
    ("privacy_mode", pa.string(), True, "full | metrics_only | redacted"),
    # Codex session grouping
    ("session_id", pa.string(), True, "Codex session-id header / turn metadata session_id"),
    ("thread_id", pa.string(), True, "Codex thread-id header"),
    ("turn_id", pa.string(), True, "x-codex-turn-metadata turn_id"),
    ("request_kind", pa.string(), True, "x-codex-turn-metadata request_kind"),
    ("window_id", pa.string(), True, "x-codex-window-id / turn metadata window_id"),
    ("client_request_id", pa.string(), True, "x-client-request-id"),
    ("prompt_cache_key", pa.string(), True, "Body prompt_cache_key"),
    ("originator", pa.string(), True, "originator header (codex_exec, codex_cli_rs, ...)"),
    ("user_agent", pa.string(), True, "User-Agent header"),
    ("subagent", pa.string(), True, "x-openai-subagent header"),
    ("codex_turn_metadata", pa.string(), True, "Raw x-codex-turn-metadata JSON"),
    ("call_index", pa.int32(), True, "0-based position of this call in its session (per gateway process)"),
    ("input_item_count", pa.int32(), True, "Number of input items/messages in the request"),
    (
        "new_input_start",
        pa.int32(),
        True,
        "Index of the first input item new since the previous call of the session",
    ),
    ("new_input_items", pa.string(), True, "JSON array of the input items new since the previous call"),
    (
        "instructions_hash",
        pa.string(),
        True,
        "sha256 of instructions/system/developer prompt, to spot changes",
    ),
]

SCHEMA: pa.Schema = pa.schema(
    [
        pa.field(name, typ, nullable=nullable, metadata={"description": desc})
        for name, typ, nullable, desc in _FIELDS
    ],
    metadata={"codexgate.schema_version": str(SCHEMA_VERSION)},
)

COLUMNS: list[str] = [f[0] for f in _FIELDS]
DESCRIPTIONS: dict[str, str] = {f[0]: f[3] for f in _FIELDS}

# Column -> OpenTelemetry GenAI attribute it carries.
OTEL_ATTRIBUTES: dict[str, str] = {
    "gen_ai_operation_name": "gen_ai.operation.name",
    "gen_ai_provider_name": "gen_ai.provider.name",
    "gen_ai_request_model": "gen_ai.request.model",
    "gen_ai_response_model": "gen_ai.response.model",
    "gen_ai_response_id": "gen_ai.response.id",
    "gen_ai_response_finish_reasons": "gen_ai.response.finish_reasons",
    "gen_ai_conversation_id": "gen_ai.conversation.id",
    "gen_ai_usage_input_tokens": "gen_ai.usage.input_tokens",
    "gen_ai_usage_cache_read_input_tokens": "gen_ai.usage.cache_read.input_tokens",
    "gen_ai_usage_cache_creation_input_tokens": "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai_usage_output_tokens": "gen_ai.usage.output_tokens",
    "gen_ai_usage_reasoning_output_tokens": "gen_ai.usage.reasoning.output_tokens",
    "openai_api_type": "openai.api.type",
}

# Required (non-nullable) columns and the value a row gets when the producer leaves them out.
_DEFAULTS: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION,
    "streaming": False,
    "client_aborted": False,
    "usage_complete": False,
    "cost_known": False,
    "attempt_count": 0,
    "fallback_used": False,
    "guardrail_blocked": False,
}


def normalise_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``row`` with every schema column present (missing nullable ones as None).

    Raises ``KeyError`` for unknown columns so a typo never silently drops data.
    """
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown trace columns: {sorted(unknown)}")
    out: dict[str, Any] = {}
    for name in COLUMNS:
        if name in row and row[name] is not None:
            out[name] = row[name]
        else:
            out[name] = _DEFAULTS.get(name)
    if out["attempt_count"] == 0 and out.get("attempts"):
        out["attempt_count"] = len(out["attempts"])
    return out


def to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Build an Arrow table in exactly the trace schema from row dicts."""
    rows = [normalise_row(r) for r in rows]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def conform(table: pa.Table) -> pa.Table:
    """Bring a table read from an older (or newer) file to the current schema.

    Missing columns become nulls (or the default for required columns); extra columns are dropped.
    """
    arrays = []
    n = table.num_rows
    for field in SCHEMA:
        if field.name in table.column_names:
            col = table.column(field.name)
            if not col.type.equals(field.type):
                col = col.cast(field.type)
            arrays.append(col)
        else:
            default = _DEFAULTS.get(field.name)
            arrays.append(pa.array([default] * n, type=field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def partition_date(row: Mapping[str, Any]) -> str:
    """Hive partition value (``date=YYYY-MM-DD``) of a row, from its UTC start_time."""
    return row["start_time"].strftime("%Y-%m-%d")
