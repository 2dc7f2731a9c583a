"""Synthetic codexgate traces with realistic shapes, for demos, the dashboard, tests and benchmarks.

One fixed "world" (2 orgs, 6 teams, 30 developers with their keys and projects, 6 models) and
Codex-like sessions of 5-60 calls: turns made of tool-call round trips, input growing along the
session with prompt-cache reads, reasoning tokens, per-model latency, ~3% upstream errors (with
retries and fallbacks), ~2% gateway refusals, guardrail findings and tags.

The traffic is generated column-wise with numpy (``_batch``, one function per phase), so
``bodies=False`` datasets of millions of rows take seconds per million. ``bodies=True`` adds
Responses-API request/response JSON per row in Python (~1,000 rows/s, ~28 KB per row). Costs use
``codexgate.core.pricing``, the gateway's own rule (``Usage.input_tokens`` includes cache reads).

``write_dataset`` streams: each batch is written to its own Parquet file(s) as soon as it is made,
so peak memory is one batch (~1.5 GB with bodies) whatever the number of calls.

CLI: ``python -m analytics.synth --traces DIR --calls N [--no-bodies] [--seed S] [--days D]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from codexgate.core import pricing, schema
from codexgate.core.pricing import PRICE_SOURCE, PRICE_VERSION
from codexgate.core.pricing import Usage as PriceUsage
from codexgate.core.timeutil import as_utc

CODEX_VERSION = "0.171.0"

# ---------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    name: str  # what the client asks for
    response_name: str  # what the provider reports
    provider: str  # vault provider entry of the first attempt
    fallback: str | None  # provider entry used when falling back
    reasoning: float  # median reasoning tokens (0: no reasoning)
    ttfb_ms: float  # median time to response headers
    tokens_per_s: float  # visible output speed
    caching: bool


MODELS: list[Model] = [
    Model("gpt-5-codex", "gpt-5-codex", "openai", "azure-openai", 420, 650, 70, True),
    Model("gpt-5", "gpt-5-2025-08-07", "openai", "azure-openai", 520, 850, 55, True),
    Model("o4-mini", "o4-mini-2025-04-16", "openai", "azure-openai", 380, 550, 110, True),
    Model("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", "openai", "azure-openai", 0, 320, 130, True),
    Model("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "anthropic", None, 240, 1100, 65, True),
    Model("devstral-internal", "devstral-internal", "vllm-internal", None, 0, 250, 45, False),
]
UNKNOWN_COST_MODEL = "devstral-internal"
MODEL_NAMES = [m.name for m in MODELS]

# provider entry -> (kind, OTel provider name, upstream URL, gateway route)
PROVIDERS: dict[str, tuple[str, str, str, str]] = {
    "openai": ("openai", "openai", "https://api.openai.com/v1/responses", "codex-openai"),
    "azure-openai": (
        "azure",
        "azure.ai.openai",
        "https://acme-eastus.openai.azure.com/openai/v1/responses",
        "codex-openai",
    ),
    "anthropic": ("anthropic", "anthropic", "https://api.anthropic.com/v1/messages", "codex-anthropic"),
    "vllm-internal": (
        "openai_compatible",
        "openai_compatible",
        "http://vllm.internal:8000/v1/responses",
        "internal",
    ),
}
PROVIDER_NAMES = list(PROVIDERS)

# org, team, cost centre, projects, model weights (in MODELS order)
TEAMS: list[tuple[str, str, str, list[str], list[float]]] = [
    ("acme", "platform", "cc-1100", ["gateway", "k8s-operator"], [0.55, 0.2, 0.1, 0.05, 0.05, 0.05]),
    (
        "acme",
        "payments",
        "cc-1200",
        ["ledger", "checkout-api", "fraud-rules"],
        [0.3, 0.45, 0.0, 0.1, 0.15, 0.0],
    ),
    ("acme", "mobile", "cc-1300", ["ios-app", "android-app"], [0.4, 0.0, 0.2, 0.3, 0.0, 0.1]),
    ("globex", "infra", "cc-2100", ["terraform", "observability"], [0.3, 0.15, 0.0, 0.0, 0.45, 0.1]),
    ("globex", "research", "cc-2200", ["eval-harness", "notebooks"], [0.1, 0.4, 0.3, 0.0, 0.2, 0.0]),
    ("globex", "data", "cc-2300", ["warehouse", "dbt-models"], [0.35, 0.0, 0.15, 0.35, 0.0, 0.15]),
]
# peak working hour (UTC) per org
ORG_PEAK_HOUR = {"acme": 11.0, "globex": 17.0}

_FIRST_NAMES = [
    "alice", "bob", "chen", "dana", "emre", "fatima", "gus", "hana", "ivan", "jun",
    "kofi", "lena", "marco", "nadia", "omar", "priya", "quinn", "rosa", "sven", "tara",
    "uma", "victor", "wei", "xena", "yusuf", "zoe", "arjun", "bea", "carlos", "dmitri",
]  # fmt: skip


@dataclass(frozen=True)
class Key:
    key_id: str
    developer: str
    team_index: int
    env: str  # dev | ci
    weight: float  # share of sessions
    mode: str  # reverse | forward


def _world() -> tuple[list[Key], list[str]]:
    """Fixed keys and developers (independent of the seed so names are stable)."""
    rng = np.random.default_rng(20261101)
    keys: list[Key] = []
    developers: list[str] = []
    team_of_dev = np.repeat(np.arange(len(TEAMS)), 5)
    activity = rng.lognormal(0.0, 0.7, size=len(_FIRST_NAMES))
    for i, name in enumerate(_FIRST_NAMES):
        org = TEAMS[team_of_dev[i]][0]
        dev = f"{name}@{org}.example"
        developers.append(dev)
        digest = hashlib.sha256(dev.encode()).hexdigest()
        mode = "forward" if rng.random() < 0.15 else "reverse"
        keys.append(Key(f"cgk_{digest[:10]}", dev, int(team_of_dev[i]), "dev", float(activity[i]), mode))
        if i % 10 == 3:  # a few developers also run Codex in CI
            keys.append(
                Key(
                    f"cgk_{digest[10:20]}",
                    dev,
                    int(team_of_dev[i]),
                    "ci",
                    float(activity[i]) * 0.4,
                    "reverse",
                )
            )
    return keys, developers


KEYS, DEVELOPERS = _world()

_DEV_PROMPT = (
    "You are Codex, a coding agent based on GPT-5, running in the Codex CLI on a user's machine. "
    "Be precise, safe and helpful. Use the shell tool to read files and run commands; use apply_patch "
    "to edit files. Keep going until the user's request is fully resolved before ending your turn. "
    "Sandbox: workspace-write. Approval policy: on-request. Network access: restricted."
)
INSTRUCTIONS_HASH = {m.name: hashlib.sha256((_DEV_PROMPT + m.name).encode()).hexdigest() for m in MODELS}

REFUSALS: list[tuple[str, int, str, str, float]] = [
    # code, status, policy, message, weight
    ("invalid_api_key", 401, "identity", "Invalid codexgate key.", 0.35),
    ("key_expired", 401, "identity", "This codexgate key has expired.", 0.1),
    ("key_revoked", 401, "identity", "This codexgate key was revoked.", 0.05),
    ("model_not_allowed", 403, "scope", "Model not allowed for this key.", 0.3),
    ("budget_exceeded", 403, "budget", "Budget exhausted for this period.", 0.2),
]
GUARDRAIL_REFUSAL = ("guardrail_blocked", 403, "guardrail", "Request blocked by the secrets guardrail.")
UPSTREAM_ERRORS: list[tuple[int, str, str, float]] = [
    (429, "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 2s.", 0.5),
    (500, "server_error", "The server had an error while processing your request.", 0.2),
    (503, "service_unavailable", "The engine is currently overloaded, please try again later.", 0.3),
]
TOOL_NAMES = ["shell", "apply_patch", "update_plan", "view_image"]
TOOL_WEIGHTS = [0.7, 0.2, 0.08, 0.02]

# guardrail finding kinds: guardrail, stage, entity, action
FINDINGS: list[tuple[str, str, str, str]] = [
    ("pii", "input", "EMAIL_ADDRESS", "logged"),
    ("pii", "input", "EMAIL_ADDRESS", "redacted"),
    ("pii", "input", "PHONE_NUMBER", "logged"),
    ("pii", "input", "IP_ADDRESS", "logged"),
    ("pii", "input", "IBAN_CODE", "redacted"),
    ("pii", "input", "CREDIT_CARD", "redacted"),
    ("secrets", "input", "AWS_KEY", "redacted"),
    ("secrets", "input", "GITHUB_TOKEN", "redacted"),
    ("secrets", "input", "PRIVATE_KEY", "blocked"),
    ("secrets", "input", "OPENAI_API_KEY", "blocked"),
    ("prompt_injection", "input", "INSTRUCTION_OVERRIDE", "warned"),
    ("pii", "output", "EMAIL_ADDRESS", "logged"),
]
_FINDING_WEIGHTS = np.array(
    [0.012, 0.005, 0.005, 0.005, 0.002, 0.001, 0.002, 0.002, 0.001, 0.001, 0.004, 0.002]
)

# ---------------------------------------------------------------------------------------------
# Prices: the gateway's own rule (``codexgate.core.pricing``)
# ---------------------------------------------------------------------------------------------

# Above this many input tokens some models change tier; those rows are priced one by one.
_LINEAR_PRICE_LIMIT = 128_000


def price_call(
    model: str,
    provider_kind: str,
    input_tokens: int,
    cache_read: int | None,
    cache_write: int | None,
    output: int,
) -> tuple[float, float, float] | None:
    """(total, input, output) USD for one call, or None when genai-prices has no price."""
    usage = PriceUsage(
        input_tokens=int(input_tokens),
        cache_read_tokens=int(cache_read) if cache_read else None,
        cache_creation_tokens=int(cache_write) if cache_write else None,
        output_tokens=int(output),
    )
    cost = pricing.price(model, provider_kind, usage)
    if not cost.known:
        return None
    assert cost.total_usd is not None and cost.input_usd is not None and cost.output_usd is not None
    return cost.total_usd, cost.input_usd, cost.output_usd


@lru_cache(maxsize=256)
def _rates(model: str, provider_kind: str) -> tuple[float, float, float, float] | None:
    """Per-token USD rates (uncached input, cache read, cache write, output) below the tier limit."""
    m = 100_000
    base = price_call(model, provider_kind, m, None, None, 0)
    read = price_call(model, provider_kind, m, m, None, 0)
    write = price_call(model, provider_kind, m, None, m, 0)
    out = price_call(model, provider_kind, 0, None, None, m)
    if not (base and read and write and out):
        return None
    return base[1] / m, read[1] / m, write[1] / m, out[2] / m


# ---------------------------------------------------------------------------------------------
# Column helpers
# ---------------------------------------------------------------------------------------------

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_strings(
    rng: np.random.Generator, n: int, nbytes: int, prefix: str = "", uuid: bool = False
) -> pa.Array:
    """``n`` random hex ids (optionally uuid-formatted) as an Arrow string array, without Python loops."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    hexed = np.empty((n, nbytes * 2), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 15]
    if uuid:  # 8-4-4-4-12
        dash = np.full((n, 1), ord("-"), dtype=np.uint8)
        h = hexed[:, :32]
        hexed = np.hstack(
            [h[:, :8], dash, h[:, 8:12], dash, h[:, 12:16], dash, h[:, 16:20], dash, h[:, 20:32]]
        )
    if prefix:
        pre = np.tile(np.frombuffer(prefix.encode(), dtype=np.uint8), (n, 1))
        hexed = np.hstack([pre, hexed])
    width = hexed.shape[1]
    offsets = (np.arange(n + 1, dtype=np.int32) * width).astype(np.int32)
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(hexed).tobytes())
    )


def _take(
    values: list[Any] | pa.Array, idx: np.ndarray, mask: np.ndarray | None = None, type: Any = None
) -> pa.Array:
    """``values[idx]`` as Arrow, NULL where ``mask`` is true."""
    arr = values if isinstance(values, pa.Array) else pa.array(values, type=type)
    indices = (
        pa.array(idx.astype(np.int32), mask=mask) if mask is not None else pa.array(idx.astype(np.int32))
    )
    return arr.take(indices)


def _num(values: np.ndarray, typ: pa.DataType, mask: np.ndarray | None = None) -> pa.Array:
    if mask is not None and mask.any():
        return pa.array(values, type=typ, mask=mask)
    return pa.array(values, type=typ)


def _ts(us: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    arr = _num(us.astype(np.int64), pa.int64(), mask)
    return arr.cast(schema.TS)


def _list(offsets: np.ndarray, values: pa.Array, typ: pa.DataType, null_mask: np.ndarray | None) -> pa.Array:
    arr = pa.ListArray.from_arrays(
        pa.array(offsets.astype(np.int32)),
        values,
        mask=pa.array(null_mask) if null_mask is not None else None,
    )
    return arr.cast(typ)


def _within(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For groups of ``lengths``: (group index per element, position within group, group start)."""
    total = int(lengths.sum())
    group = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.cumsum(lengths) - lengths
    pos = np.arange(total) - starts[group]
    return group, pos, starts


def _group_cumsum(
    values: np.ndarray, group: np.ndarray, starts: np.ndarray, exclusive: bool = False
) -> np.ndarray:
    """Cumulative sum of ``values`` restarting at each group (elements are grouped contiguously)."""
    cs = np.cumsum(values)
    base = np.concatenate([[0], cs])[starts][group]
    out = cs - base
    return out - values if exclusive else out


def _lognormal(rng: np.random.Generator, median: float | np.ndarray, sigma: float, size: int) -> np.ndarray:
    return np.asarray(median) * np.exp(rng.normal(0.0, sigma, size))


def _weighted(rng: np.random.Generator, weights: np.ndarray | list[float], size: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return np.searchsorted(np.cumsum(w / w.sum()), rng.random(size), side="right").clip(0, len(w) - 1)


# ---------------------------------------------------------------------------------------------
# One batch of sessions, column-wise
# ---------------------------------------------------------------------------------------------

_MS = 1000  # microseconds per millisecond


@dataclass
class _Aux:
    """Per-row facts the body builder needs that are not trace columns."""

    final: np.ndarray  # last call of its turn (answers with a message)
    n_tools: np.ndarray  # tool calls the model makes (ok calls that are not final)
    tool_names: list[list[str]]
    tool_call_ids: list[list[str]]
    turn_no: np.ndarray  # turn ordinal within the session
    visible: np.ndarray  # visible output tokens
    model_index: np.ndarray


class _Batch:
    """The arrays of one batch, filled in by the phase functions of ``_batch`` in order."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def take(self, names: str) -> tuple[Any, ...]:
        """The arrays named (space-separated), in order."""
        return tuple(self.__dict__[n] for n in names.split())

    def put(self, **values: Any) -> None:
        """Add (or replace) arrays for the later phases."""
        self.__dict__.update(values)


def _sessions(rng: np.random.Generator, b: _Batch) -> None:
    """Sessions: developer key, team, model, length, project and start of each session."""
    days, n_sessions, window_start = b.days, b.n_sessions, b.window_start
    S = n_sessions
    start_us0 = int(window_start.timestamp() * 1_000_000)
    window_us = days * 86_400 * 1_000_000

    # --- sessions ----------------------------------------------------------------------------
    key_w = np.array([k.weight for k in KEYS])
    s_key = _weighted(rng, key_w, S)
    key_team = np.array([k.team_index for k in KEYS])
    s_team = key_team[s_key]
    team_models = np.array([t[4] for t in TEAMS])
    cum = np.cumsum(team_models / team_models.sum(axis=1, keepdims=True), axis=1)
    s_model = (rng.random(S)[:, None] > cum[s_team]).sum(axis=1).clip(0, len(MODELS) - 1)
    s_len = np.clip(np.round(_lognormal(rng, 16.0, 0.65, S)), 5, 60).astype(np.int64)
    n_proj = np.array([len(t[3]) for t in TEAMS])
    s_project = (rng.random(S) * n_proj[s_team]).astype(np.int64)
    s_stream = rng.random(S) < 0.95
    s_base = rng.integers(9_000, 12_500, S)  # developer prompt + tools + environment context
    s_ticket = rng.random(S) < 0.3
    s_instance = rng.integers(0, 2, S)
    # start: a day (weekends quiet), then an hour around the org's working day
    day_w = np.array(
        [0.25 if (window_start + timedelta(days=d)).weekday() >= 5 else 1.0 for d in range(days)]
    )
    s_day = _weighted(rng, day_w, S)
    peak = np.array([ORG_PEAK_HOUR[TEAMS[t][0]] for t in range(len(TEAMS))])[s_team]
    s_hour = np.mod(rng.normal(peak, 3.0), 24.0)
    s_start = start_us0 + s_day * 86_400_000_000 + (s_hour * 3_600_000_000).astype(np.int64)
    b.put(
        S=S, start_us0=start_us0, window_us=window_us, s_key=s_key, key_team=key_team, s_team=s_team,
        s_model=s_model, s_len=s_len, s_project=s_project, s_stream=s_stream, s_base=s_base,
        s_ticket=s_ticket, s_instance=s_instance, s_start=s_start,
    )

def _calls(rng: np.random.Generator, b: _Batch) -> None:
    """Calls: per-call model facts, turns (a turn ends with the model's final answer)."""
    s_len, s_model, s_stream = b.s_len, b.s_model, b.s_stream
    # --- calls -------------------------------------------------------------------------------
    sess, ci, s_first = _within(s_len)
    N = len(sess)
    model = s_model[sess]
    m_reason = np.array([m.reasoning for m in MODELS])[model]
    m_ttfb = np.array([m.ttfb_ms for m in MODELS])[model]
    m_tps = np.array([m.tokens_per_s for m in MODELS])[model]
    m_cache = np.array([m.caching for m in MODELS])[model]
    m_is_claude = model == MODEL_NAMES.index("claude-sonnet-4-5")
    streaming = s_stream[sess]

    new_turn = (rng.random(N) < 0.28) | (ci == 0)
    final = np.concatenate([new_turn[1:], [True]])  # next call starts a turn (or a new session)
    turn_global = np.cumsum(new_turn) - 1
    turn_no = turn_global - turn_global[s_first][sess]
    b.put(
        sess=sess, ci=ci, s_first=s_first, N=N, model=model, m_reason=m_reason, m_ttfb=m_ttfb, m_tps=m_tps,
        m_cache=m_cache, m_is_claude=m_is_claude, streaming=streaming, new_turn=new_turn, final=final,
        turn_global=turn_global, turn_no=turn_no,
    )

def _outcomes(rng: np.random.Generator, b: _Batch) -> None:
    """Outcomes: refusals, upstream errors, client aborts, guardrail findings."""
    N = b.N
    # outcomes
    u = rng.random(N)
    refused = u < 0.018
    upstream_err = (u >= 0.018) & (u < 0.048)
    aborted = (u >= 0.048) & (u < 0.051)
    finding = np.full(N, -1)
    has_finding = rng.random(N) < _FINDING_WEIGHTS.sum()
    finding[has_finding] = _weighted(rng, _FINDING_WEIGHTS, int(has_finding.sum()))
    blocked = np.isin(finding, [i for i, f in enumerate(FINDINGS) if f[3] == "blocked"]) & ~refused
    ok_pre = ~(refused | upstream_err | aborted)
    # output-stage findings only exist on answered calls
    finding[(finding >= 0) & ~ok_pre & np.array([f[1] == "output" for f in FINDINGS])[finding.clip(0)]] = -1
    refused = refused | blocked
    upstream_err &= ~blocked
    aborted &= ~blocked
    ok = ~(refused | upstream_err | aborted)
    refusal = np.where(refused, _weighted(rng, [r[4] for r in REFUSALS], N), -1)
    refusal[blocked] = len(REFUSALS)  # the guardrail refusal
    anonymous = refusal == 0  # invalid_api_key: no identity
    b.put(
        refused=refused, upstream_err=upstream_err, aborted=aborted, finding=finding, blocked=blocked,
        ok=ok, refusal=refusal, anonymous=anonymous,
    )

def _tokens(rng: np.random.Generator, b: _Batch) -> None:
    """Tokens: output, reasoning and tool results; input growing along the session; prompt cache."""
    (
        N, ci, final, m_cache, m_is_claude, m_reason, new_turn, ok, s_base, s_first, sess,
    ) = b.take(
        "N ci final m_cache m_is_claude m_reason new_turn ok s_base s_first sess"
    )
    # output tokens
    n_tools = np.where(final, 0, 1 + (rng.random(N) < 0.15) + (rng.random(N) < 0.03)).astype(np.int64)
    visible = np.where(
        final,
        np.clip(_lognormal(rng, 450, 0.8, N), 20, 8000),
        np.clip(_lognormal(rng, 90, 0.7, N), 10, 2000),
    ).astype(np.int64)
    reasoning = np.where(m_reason > 0, np.clip(_lognormal(rng, np.maximum(m_reason, 1), 1.0, N), 0, 20000), 0)
    reasoning = np.where(rng.random(N) < np.where(m_is_claude, 0.5, 0.12), 0, reasoning).astype(np.int64)
    output = visible + reasoning
    tool_out = np.where(n_tools > 0, n_tools * np.clip(_lognormal(rng, 700, 1.1, N), 5, 20000), 0).astype(
        np.int64
    )
    user_tokens = np.where(new_turn, np.clip(_lognormal(rng, 120, 0.8, N), 5, 4000), 0).astype(np.int64)

    # input grows: base + what every earlier answered call added + user messages so far
    added = np.where(ok, output + tool_out, 0)
    input_tokens = (
        s_base[sess]
        + _group_cumsum(added, sess, s_first, exclusive=True)
        + _group_cumsum(user_tokens, sess, s_first)
    )
    input_tokens = np.minimum(input_tokens, 250_000)
    prev_input = np.concatenate([[0], input_tokens[:-1]])
    # input items: developer + environment + first prompt, then outputs and tool results, user messages
    r_item = (reasoning > 0).astype(np.int64)
    added_items = np.where(ok, r_item + np.where(n_tools > 0, 2 * n_tools, 1), 0)
    turn_items = (new_turn & (ci > 0)).astype(np.int64)
    item_count = (
        3
        + _group_cumsum(added_items, sess, s_first, exclusive=True)
        + _group_cumsum(turn_items, sess, s_first)
    )
    prev_items = np.concatenate([[0], item_count[:-1]])
    new_start = np.where(ci == 0, 0, prev_items)

    # prompt cache: previous call's whole input, in 128-token blocks, when the cache is warm
    hit = (ci > 0) & m_cache & (rng.random(N) < np.where(new_turn, 0.75, 0.95))
    cached = np.where(hit, (np.minimum(prev_input, input_tokens) // 128) * 128, 0).astype(np.int64)
    cache_write = np.where(m_is_claude, input_tokens - cached, 0).astype(np.int64)
    b.put(
        n_tools=n_tools, visible=visible, reasoning=reasoning, output=output, input_tokens=input_tokens,
        item_count=item_count, new_start=new_start, cached=cached, cache_write=cache_write,
    )

def _attempts(rng: np.random.Generator, b: _Batch) -> None:
    """Upstream attempts (retries, fallbacks) and the call's timings."""
    (
        N, aborted, cached, input_tokens, m_reason, m_tps, m_ttfb, model, ok, reasoning, refused, streaming,
        upstream_err, visible,
    ) = b.take(
        "N aborted cached input_tokens m_reason m_tps m_ttfb model ok reasoning refused streaming"
        " upstream_err visible"
    )
    # --- attempts and timings -------------------------------------------------------------------
    has_fallback = np.array([m.fallback is not None for m in MODELS])[model]
    retried_ok = ok & (rng.random(N) < 0.025)
    n_att = np.where(refused, 0, 1)
    n_att = np.where(retried_ok, 2, n_att)
    err_att = _weighted(rng, [0.4, 0.35, 0.25], N) + 1
    n_att = np.where(upstream_err, err_att, n_att).astype(np.int64)
    fallback = (
        (retried_ok & (rng.random(N) < 0.5)) | (upstream_err & (n_att > 1) & (rng.random(N) < 0.4))
    ) & has_fallback

    # upstream model timings (ms) for an answered attempt
    uncached = input_tokens - cached
    prefill = uncached * 0.012 + cached * 0.001
    up_ttfb = _lognormal(rng, m_ttfb, 0.35, N) + prefill * 0.2
    reason_ms = reasoning / np.where(m_reason > 0, 85.0, 1.0) * 1000.0 * _lognormal(rng, 1.0, 0.2, N)
    up_ttft = up_ttfb + prefill * 0.8 + reason_ms + _lognormal(rng, 40, 0.5, N)
    up_dur = up_ttft + visible / m_tps * 1000.0 * _lognormal(rng, 1.0, 0.25, N) + 15.0
    up_ttfb = np.where(streaming, up_ttfb, up_dur - 3.0)  # non-streaming: headers arrive at the end
    aborted_cut = rng.uniform(0.2, 0.9, N)
    up_dur = np.where(aborted, up_ttfb + (up_dur - up_ttfb) * aborted_cut, up_dur)

    arow, apos, afirst = _within(n_att)
    A = len(arow)
    a_last = apos == n_att[arow] - 1
    a_fail = ~(a_last & (ok | aborted)[arow])
    err_kind = _weighted(rng, [e[3] for e in UPSTREAM_ERRORS], A)
    a_status = np.where(a_fail, np.array([e[0] for e in UPSTREAM_ERRORS])[err_kind], 200)
    a_lat = np.where(
        a_fail,
        np.where(a_status == 429, _lognormal(rng, 120, 0.4, A), _lognormal(rng, 600, 0.8, A)),
        up_ttfb[arow],
    )
    a_backoff = np.where(a_last, 0.0, 200.0 * 2.0**apos * rng.uniform(0.8, 1.2, A))
    overhead = rng.uniform(1.0, 4.0, N)
    a_offset = overhead[arow] + _group_cumsum(a_lat + a_backoff, arow, afirst, exclusive=True)
    primary = np.array([PROVIDER_NAMES.index(m.provider) for m in MODELS])[model]
    fb = np.array([PROVIDER_NAMES.index(m.fallback or m.provider) for m in MODELS])[model]
    a_provider = np.where(fallback[arow] & a_last, fb[arow], primary[arow])

    last_idx = np.where(n_att > 0, afirst + n_att - 1, 0)
    pre = np.where(n_att > 0, a_offset[last_idx] if A else 0.0, 0.0)
    row_status_err = a_status[last_idx] if A else np.zeros(N, dtype=np.int64)
    final_provider = np.where(fallback, fb, primary)

    ttfb = np.where(refused, np.nan, pre + np.where(ok | aborted, up_ttfb, a_lat[last_idx] if A else 0.0))
    ttft = np.where((ok | aborted) & streaming, pre + up_ttft, np.nan)
    ttft = np.where(aborted & (aborted_cut < 0.5), np.nan, ttft)
    duration = np.where(
        refused,
        rng.uniform(0.6, 4.0, N),
        np.where(upstream_err, ttfb + rng.uniform(1.0, 5.0, N), pre + up_dur),
    )
    duration = np.where(ok | aborted | upstream_err, np.maximum(duration, np.nan_to_num(ttft)), duration)
    b.put(
        n_att=n_att, fallback=fallback, arow=arow, apos=apos, a_fail=a_fail, a_status=a_status, a_lat=a_lat,
        a_offset=a_offset, primary=primary, a_provider=a_provider, row_status_err=row_status_err,
        final_provider=final_provider, ttfb=ttfb, ttft=ttft, duration=duration,
    )

def _placement(rng: np.random.Generator, b: _Batch) -> None:
    """Wall-clock placement: sessions start in the window and end before it closes."""
    (
        N, duration, new_turn, s_first, s_len, s_start, sess, start_us0, window_us,
    ) = b.take(
        "N duration new_turn s_first s_len s_start sess start_us0 window_us"
    )
    # --- wall-clock placement --------------------------------------------------------------------
    gap_ms = np.where(new_turn, _lognormal(rng, 40_000, 1.0, N), _lognormal(rng, 2_500, 1.0, N))
    step = np.concatenate([duration[:-1] + gap_ms[1:], [0.0]])  # time from this call's start to the next's
    step_us = (step * _MS).astype(np.int64)
    offset_us = _group_cumsum(step_us, sess, s_first, exclusive=True)
    span_us = offset_us[s_first + s_len - 1] + (duration[s_first + s_len - 1] * _MS).astype(np.int64)
    latest = start_us0 + window_us - span_us - 60_000_000
    s_start = np.maximum(np.minimum(s_start, latest), start_us0)
    start_us = s_start[sess] + offset_us
    end_us = start_us + (duration * _MS).astype(np.int64)
    b.put(start_us=start_us, end_us=end_us)

def _call_columns(rng: np.random.Generator, b: _Batch) -> None:
    """Columns: times, status, outcome, errors, identity, route, models, sizes."""
    (
        N, S, aborted, anonymous, end_us, final_provider, input_tokens, key_team, model, n_tools, ok,
        primary, refusal, refused, row_status_err, s_instance, s_key, s_project, sess, start_us, streaming,
        ttfb, ttft, upstream_err, visible,
    ) = b.take(
        "N S aborted anonymous end_us final_provider input_tokens key_team model n_tools ok primary"
        " refusal refused row_status_err s_instance s_key s_project sess start_us streaming ttfb ttft"
        " upstream_err visible"
    )
    # --- assemble ----------------------------------------------------------------------------------
    cols: dict[str, pa.Array] = {}
    key_idx = s_key[sess]
    team_idx = key_team[key_idx]
    org_names = [t[0] for t in TEAMS]
    cols["schema_version"] = pa.array(np.full(N, schema.SCHEMA_VERSION, dtype=np.int16))
    cols["trace_id"] = _hex_strings(rng, N, 16)
    cols["gateway_instance"] = _take(["gw-a", "gw-b"], s_instance[sess])
    cols["start_time"] = _ts(start_us)
    cols["upstream_first_byte_time"] = _ts(
        start_us + np.nan_to_num(ttfb * _MS).astype(np.int64), np.isnan(ttfb)
    )
    cols["first_token_time"] = _ts(start_us + np.nan_to_num(ttft * _MS).astype(np.int64), np.isnan(ttft))
    cols["end_time"] = _ts(end_us)
    cols["duration_ms"] = pa.array((end_us - start_us) / 1000.0)
    cols["ttfb_ms"] = _num(np.nan_to_num(ttfb), pa.float64(), np.isnan(ttfb))
    cols["ttft_ms"] = _num(np.nan_to_num(ttft), pa.float64(), np.isnan(ttft))
    refusal_status = np.array([r[1] for r in REFUSALS] + [GUARDRAIL_REFUSAL[1]])[refusal.clip(0)]
    status = np.where(refused, refusal_status, np.where(upstream_err, row_status_err, 200))
    cols["status_code"] = pa.array(status.astype(np.int32))
    outcome = np.select([ok, refused, upstream_err], [0, 1, 2], 3)
    cols["outcome"] = _take(["ok", "refused", "upstream_error", "client_aborted"], outcome)
    cols["streaming"] = pa.array(streaming)
    cols["client_aborted"] = pa.array(aborted)
    err_idx = np.select([status == 429, status == 500], [0, 1], 2)
    refusal_codes = [r[0] for r in REFUSALS] + [GUARDRAIL_REFUSAL[0]]
    refusal_msgs = [r[3] for r in REFUSALS] + [GUARDRAIL_REFUSAL[3]]
    etype_values = [e[1] for e in UPSTREAM_ERRORS] + refusal_codes + ["client_disconnected"]
    emsg_values = (
        [e[2] for e in UPSTREAM_ERRORS] + refusal_msgs + ["Client disconnected before the response finished."]
    )
    e_idx = np.where(
        upstream_err,
        err_idx,
        np.where(refused, len(UPSTREAM_ERRORS) + refusal.clip(0), len(etype_values) - 1),
    )
    cols["error_type"] = _take(etype_values, e_idx, mask=ok)
    cols["error_message"] = _take(emsg_values, e_idx, mask=ok)
    cols["refusal_reason"] = _take(refusal_codes, refusal.clip(0), mask=~refused)
    cols["org"] = _take(org_names, team_idx, mask=anonymous)
    cols["team"] = _take([t[1] for t in TEAMS], team_idx, mask=anonymous)
    proj_names = [p for t in TEAMS for p in t[3]]
    proj_base = np.cumsum([0] + [len(t[3]) for t in TEAMS])[:-1]
    cols["project"] = _take(proj_names, proj_base[team_idx] + s_project[sess], mask=anonymous)
    cols["developer"] = _take([k.developer for k in KEYS], key_idx, mask=anonymous)
    cols["key_id"] = _take([k.key_id for k in KEYS], key_idx, mask=anonymous)
    cols["mode"] = _take([k.mode for k in KEYS], key_idx)
    cols["route"] = _take([PROVIDERS[p][3] for p in PROVIDER_NAMES], primary, mask=refused)
    cols["openai_api_type"] = pa.array(np.full(N, "responses"), type=pa.string())
    cols["gen_ai_operation_name"] = pa.array(np.full(N, "chat"), type=pa.string())
    cols["gen_ai_provider_name"] = _take(
        [PROVIDERS[p][1] for p in PROVIDER_NAMES], final_provider, mask=refused
    )
    cols["provider"] = _take(PROVIDER_NAMES, final_provider, mask=refused)
    cols["gen_ai_request_model"] = _take(MODEL_NAMES, model)
    cols["gen_ai_response_model"] = _take([m.response_name for m in MODELS], model, mask=~ok)
    resp_ids = _hex_strings(rng, N, 16, prefix="resp_")
    cols["gen_ai_response_id"] = pc.if_else(pa.array(ok), resp_ids, pa.scalar(None, pa.string()))
    cols["gen_ai_response_finish_reasons"] = _list(
        np.concatenate([[0], np.cumsum(ok)]),
        pa.array(np.full(int(ok.sum()), "completed")),
        pa.list_(pa.string()),
        ~ok,
    )
    session_ids = _hex_strings(rng, S, 16, uuid=True)
    sid = session_ids.take(pa.array(sess.astype(np.int32)))
    cols["gen_ai_conversation_id"] = sid
    cols["request_method"] = pa.array(np.full(N, "POST"), type=pa.string())
    cols["request_path"] = pa.array(np.full(N, "/v1/responses"), type=pa.string())
    request_bytes = (input_tokens * 3.7 + 2_000).astype(np.int64)
    cols["request_bytes"] = pa.array(request_bytes)
    cols["sse_event_count"] = _num(
        (8 + visible // 2 + n_tools * 6).astype(np.int32), pa.int32(), ~(ok & streaming)
    )
    cols["response_bytes"] = _num(
        (600 + visible * 5 + n_tools * 400).astype(np.int64), pa.int64(), ~(ok | aborted)
    )
    b.put(cols=cols, key_idx=key_idx, team_idx=team_idx, sid=sid)

def _cost_columns(rng: np.random.Generator, b: _Batch) -> None:
    """Columns: token usage and cost (per-token rates; exact prices above the tier limit)."""
    (
        N, cache_write, cached, cols, final_provider, input_tokens, m_is_claude, model, ok, output,
        reasoning,
    ) = b.take(
        "N cache_write cached cols final_provider input_tokens m_is_claude model ok output reasoning"
    )
    usage_mask = ~ok
    cols["gen_ai_usage_input_tokens"] = _num(input_tokens, pa.int64(), usage_mask)
    cols["gen_ai_usage_cache_read_input_tokens"] = _num(cached, pa.int64(), usage_mask)
    cols["gen_ai_usage_cache_creation_input_tokens"] = _num(
        cache_write, pa.int64(), usage_mask | ~m_is_claude
    )
    cols["gen_ai_usage_output_tokens"] = _num(output, pa.int64(), usage_mask)
    cols["gen_ai_usage_reasoning_output_tokens"] = _num(reasoning, pa.int64(), usage_mask)
    cols["usage_complete"] = pa.array(ok)

    # cost: per-token rates of (response model, final provider kind), exact pricing above the tier limit
    resp_names = [m.response_name for m in MODELS]
    cost = np.full(N, np.nan)
    in_cost = np.full(N, np.nan)
    out_cost = np.full(N, np.nan)
    for mi in range(len(MODELS)):
        for pi, pname in enumerate(PROVIDER_NAMES):
            sel = ok & (model == mi) & (final_provider == pi)
            if not sel.any():
                continue
            kind = PROVIDERS[pname][0]
            rates = _rates(resp_names[mi], kind)
            if rates is None:
                continue
            r_in, r_read, r_write, r_out = rates
            cw = np.where(m_is_claude, cache_write, 0)
            ic = (input_tokens - cached - cw) * r_in + cached * r_read + cw * r_write
            oc = output * r_out
            in_cost[sel] = ic[sel]
            out_cost[sel] = oc[sel]
            for i in np.flatnonzero(sel & (input_tokens > _LINEAR_PRICE_LIMIT)):
                exact = price_call(resp_names[mi], kind, input_tokens[i], cached[i], cw[i], output[i])
                assert exact is not None
                cost[i], in_cost[i], out_cost[i] = exact
    cost = np.where(np.isnan(cost), in_cost + out_cost, cost)
    known = ~np.isnan(cost)
    cols["cost_usd"] = _num(np.nan_to_num(cost), pa.float64(), ~known)
    cols["input_cost_usd"] = _num(np.nan_to_num(in_cost), pa.float64(), ~known)
    cols["output_cost_usd"] = _num(np.nan_to_num(out_cost), pa.float64(), ~known)
    cols["cost_known"] = pa.array(known)
    cols["price_source"] = _take([PRICE_SOURCE], np.zeros(N), mask=~known)
    cols["price_version"] = _take([PRICE_VERSION], np.zeros(N), mask=~known)

def _attempt_columns(rng: np.random.Generator, b: _Batch) -> None:
    """Columns: the attempts list."""
    (
        a_fail, a_lat, a_offset, a_provider, a_status, apos, arow, cols, fallback, n_att, start_us,
    ) = b.take(
        "a_fail a_lat a_offset a_provider a_status apos arow cols fallback n_att start_us"
    )
    # attempts
    a_start_us = start_us[arow] + (a_offset * _MS).astype(np.int64)
    err_texts = {e[0]: e[1] for e in UPSTREAM_ERRORS}
    attempt_values = pa.StructArray.from_arrays(
        [
            pa.array((apos + 1).astype(np.int32)),
            _take(PROVIDER_NAMES, a_provider),
            _take([PROVIDERS[p][2] for p in PROVIDER_NAMES], a_provider),
            pa.array(a_status.astype(np.int32)),
            pa.array(a_lat),
            _take(
                [err_texts[429], err_texts[500], err_texts[503]],
                np.select([a_status == 429, a_status == 500], [0, 1], 2),
                mask=~a_fail,
            ),
            _ts(a_start_us),
        ],
        fields=list(schema.ATTEMPT)[:7],
    )
    # fields the schema gained later (model, decision, ...) are left null
    attempt_values = pa.StructArray.from_arrays(
        [
            *(attempt_values.field(i) for i in range(7)),
            *(pa.nulls(len(attempt_values), f.type) for f in list(schema.ATTEMPT)[7:]),
        ],
        fields=list(schema.ATTEMPT),
    )
    cols["attempts"] = _list(
        np.concatenate([[0], np.cumsum(n_att)]), attempt_values, pa.list_(schema.ATTEMPT), n_att == 0
    )
    cols["attempt_count"] = pa.array(n_att.astype(np.int32))
    cols["fallback_used"] = pa.array(fallback)

def _policy_columns(rng: np.random.Generator, b: _Batch) -> None:
    """Columns: policy decisions (the allow chain, or up to the denying policy)."""
    cols, fallback, refusal, refused = b.cols, b.fallback, b.refusal, b.refused
    # policy decisions: allow chain, or the chain up to the policy that denied
    chain = ["identity", "scope", "budget", "routing"]
    templates: list[list[dict[str, str | None]]] = [
        [{"policy": p, "decision": "allow", "reason": None} for p in chain],
        [{"policy": p, "decision": "allow", "reason": None} for p in chain[:2]]
        + [{"policy": "routing", "decision": "allow", "reason": "fallback"}],
    ]
    refusal_template: list[int] = []
    for code, _status, policy, _msg in [r[:4] for r in REFUSALS] + [GUARDRAIL_REFUSAL]:
        upto = chain.index(policy) if policy in chain else 3
        templates.append(
            [{"policy": p, "decision": "allow", "reason": None} for p in chain[:upto]]
            + [{"policy": policy, "decision": "deny", "reason": code}]
        )
        refusal_template.append(len(templates) - 1)
    tmpl = np.where(refused, np.array(refusal_template)[refusal.clip(0)], np.where(fallback, 1, 0))
    cols["policy_decisions"] = _templated_list(templates, tmpl, schema.POLICY_DECISION, None)

def _finding_columns(rng: np.random.Generator, b: _Batch) -> None:
    """Columns: guardrail findings (0 or 1 per call)."""
    N, blocked, cols, finding = b.N, b.blocked, b.cols, b.finding
    # guardrail findings (0 or 1 per call)
    has = finding >= 0
    f_idx = finding[has]
    f_n = int(has.sum())
    f_rows = np.flatnonzero(has)
    f_start = rng.integers(0, 4000, f_n).astype(np.int32)
    f_len = np.where(np.array([FINDINGS[i][0] == "secrets" for i in f_idx], dtype=bool), 40, 18).astype(
        np.int32
    )
    finding_values = pa.StructArray.from_arrays(
        [
            _take([f[0] for f in FINDINGS], f_idx),
            _take([f[1] for f in FINDINGS], f_idx),
            _take([f[2] for f in FINDINGS], f_idx),
            _take([f[3] for f in FINDINGS], f_idx),
            pa.array(np.round(rng.uniform(0.55, 1.0, f_n), 2)),
            pa.array(f_start),
            pa.array(f_start + f_len),
            _take([f"{f[2]} found in {f[1]} ({f[3]})" for f in FINDINGS], f_idx),
        ],
        fields=list(schema.GUARDRAIL_FINDING),
    )
    counts = np.zeros(N, dtype=np.int64)
    counts[f_rows] = 1
    cols["guardrail_findings"] = _list(
        np.concatenate([[0], np.cumsum(counts)]), finding_values, pa.list_(schema.GUARDRAIL_FINDING), ~has
    )
    cols["guardrail_blocked"] = pa.array(blocked)

def _tag_columns(rng: np.random.Generator, b: _Batch) -> None:
    """Columns: tags (cost_center, env, optional ticket)."""
    (
        N, S, anonymous, cols, key_idx, s_team, s_ticket, sess, team_idx, want_aux,
    ) = b.take(
        "N S anonymous cols key_idx s_team s_ticket sess team_idx want_aux"
    )
    # tags: cost_center, env, optional ticket (sorted by key like the gateway)
    ticket_row = s_ticket[sess]
    n_tags = np.where(anonymous, 0, 2 + ticket_row).astype(np.int64)
    trow, tpos, _ = _within(n_tags)
    ticket_values = [
        f"{TEAMS[t][3][0][:3].upper()}-{n}" for t, n in zip(s_team, rng.integers(100, 9999, S), strict=True)
    ]
    tag_values = [t[2] for t in TEAMS] + ["dev", "ci"] + ticket_values
    env_idx = np.array([0 if k.env == "dev" else 1 for k in KEYS])[key_idx]
    v_idx = np.select(
        [tpos == 0, tpos == 1],
        [team_idx[trow], len(TEAMS) + env_idx[trow]],
        len(TEAMS) + 2 + sess[trow],
    )
    tag_struct = pa.StructArray.from_arrays(
        [_take(["cost_center", "env", "ticket"], tpos), _take(tag_values, v_idx)], fields=list(schema.TAG)
    )
    cols["tags"] = _list(
        np.concatenate([[0], np.cumsum(n_tags)]), tag_struct, pa.list_(schema.TAG), n_tags == 0
    )
    cols["privacy_mode"] = pa.array(np.full(N, "full" if want_aux else "metrics_only"), type=pa.string())

def _codex_columns(rng: np.random.Generator, b: _Batch) -> None:
    """Columns: Codex session grouping (session = thread = cache key = client request id)."""
    (
        N, ci, cols, item_count, key_idx, model, new_start, sid, turn_global,
    ) = b.take(
        "N ci cols item_count key_idx model new_start sid turn_global"
    )
    # Codex session grouping: session id = thread id = prompt cache key = client request id
    cols["session_id"] = sid
    cols["thread_id"] = sid
    turn_ids = _hex_strings(rng, int(turn_global[-1]) + 1 if N else 0, 16, uuid=True)
    cols["turn_id"] = turn_ids.take(pa.array(turn_global.astype(np.int32)))
    cols["request_kind"] = pa.array(np.full(N, "turn"), type=pa.string())
    cols["window_id"] = sid
    cols["client_request_id"] = sid
    cols["prompt_cache_key"] = sid
    ci_key = np.array([k.env == "ci" for k in KEYS])[key_idx]
    cols["originator"] = _take(["codex_cli_rs", "codex_exec"], ci_key.astype(np.int64))
    cols["user_agent"] = _take(
        [f"codex_cli_rs/{CODEX_VERSION} (Linux; x86_64)", f"codex_exec/{CODEX_VERSION} (Linux; x86_64)"],
        ci_key.astype(np.int64),
    )
    cols["call_index"] = pa.array(ci.astype(np.int32))
    cols["input_item_count"] = pa.array(item_count.astype(np.int32))
    cols["new_input_start"] = pa.array(new_start.astype(np.int32))
    cols["instructions_hash"] = _take([INSTRUCTIONS_HASH[m] for m in MODEL_NAMES], model)

def _tool_columns(rng: np.random.Generator, b: _Batch) -> None:
    """Columns: the tool calls the model made."""
    cols, n_tools, ok = b.cols, b.n_tools, b.ok
    # tool calls the model made (metadata-only: arguments NULL, like privacy_mode=metrics_only)
    k = np.where(ok, n_tools, 0)
    krow, kpos, _ = _within(k)
    K = len(krow)
    tool_name_idx = _weighted(rng, TOOL_WEIGHTS, K)
    call_ids = _hex_strings(rng, K, 12, prefix="call_")
    tool_struct = pa.StructArray.from_arrays(
        [
            call_ids,
            _take(TOOL_NAMES, tool_name_idx),
            pa.array(np.full(K, "function_call"), type=pa.string()),
            pa.nulls(K, pa.string()),
        ],
        fields=list(schema.TOOL_CALL),
    )
    cols["tool_calls"] = _list(
        np.concatenate([[0], np.cumsum(k)]), tool_struct, pa.list_(schema.TOOL_CALL), k == 0
    )
    b.put(krow=krow, tool_name_idx=tool_name_idx, call_ids=call_ids)


def _batch(
    rng: np.random.Generator, n_sessions: int, window_start: datetime, days: int, want_aux: bool
) -> tuple[pa.Table, _Aux | None]:
    """One batch of ``n_sessions`` sessions as a schema table, built phase by phase (each phase
    reads and adds arrays on ``_Batch``; the random draws happen in the same order every run)."""
    b = _Batch(n_sessions=n_sessions, window_start=window_start, days=days, want_aux=want_aux)
    _sessions(rng, b)
    _calls(rng, b)
    _outcomes(rng, b)
    _tokens(rng, b)
    _attempts(rng, b)
    _placement(rng, b)
    _call_columns(rng, b)
    _cost_columns(rng, b)
    _attempt_columns(rng, b)
    _policy_columns(rng, b)
    _finding_columns(rng, b)
    _tag_columns(rng, b)
    _codex_columns(rng, b)
    _tool_columns(rng, b)
    (
        N, call_ids, cols, final, krow, model, n_tools, ok, tool_name_idx, turn_no, visible, want_aux,
    ) = b.take(
        "N call_ids cols final krow model n_tools ok tool_name_idx turn_no visible want_aux"
    )
    arrays = [cols[f.name] if f.name in cols else pa.nulls(N, f.type) for f in schema.SCHEMA]
    table = pa.Table.from_arrays(
        [a.cast(f.type) for a, f in zip(arrays, schema.SCHEMA, strict=True)], schema=schema.SCHEMA
    )

    aux = None
    if want_aux:
        names = _take(TOOL_NAMES, tool_name_idx).to_pylist()
        ids = call_ids.to_pylist()
        per_row_names: list[list[str]] = [[] for _ in range(N)]
        per_row_ids: list[list[str]] = [[] for _ in range(N)]
        for r, name, cid in zip(krow.tolist(), names, ids, strict=True):
            per_row_names[r].append(name)
            per_row_ids[r].append(cid)
        aux = _Aux(final, np.where(ok, n_tools, 0), per_row_names, per_row_ids, turn_no, visible, model)
    return table, aux


def _templated_list(
    templates: list[list[dict[str, Any]]],
    choice: np.ndarray,
    struct: pa.DataType,
    null_mask: np.ndarray | None,
) -> pa.Array:
    flat = [item for t in templates for item in t]
    values = pa.array(flat, type=struct)
    lens = np.array([len(t) for t in templates], dtype=np.int64)
    starts = np.cumsum(lens) - lens
    row_lens = lens[choice]
    offsets = np.concatenate([[0], np.cumsum(row_lens)])
    idx = np.repeat(starts[choice] - offsets[:-1], row_lens) + np.arange(offsets[-1])
    return _list(offsets, values.take(pa.array(idx.astype(np.int32))), pa.list_(struct), null_mask)


# ---------------------------------------------------------------------------------------------
# Bodies (Responses API JSON), built per session in Python
# ---------------------------------------------------------------------------------------------

_PROMPTS = [
    "Fix the failing test in tests/test_ledger.py and explain the root cause.",
    "Add retry with exponential backoff to the HTTP client in src/client.py.",
    "Refactor the config loader to support environment overrides.",
    "Why does `make build` fail on CI? Investigate and fix.",
    "Write unit tests for the pagination helper.",
    "Rename the `user_id` column to `account_id` across the codebase.",
    "Add a /healthz endpoint that checks the database connection.",
    "Speed up the slow query in reports/monthly.sql.",
]
_FOLLOWUPS = [
    "Looks good, now also update the docs.",
    "Run the full test suite.",
    "Please also handle the empty case.",
    "Commit it.",
]
_SHELL_CMDS = [
    "rg -n 'def ' src",
    "ls -la",
    "pytest -q tests",
    "git status --short",
    "sed -n 1,80p src/app.py",
    "cat pyproject.toml",
]
_ENV_CONTEXT = (
    "<environment_context>\n  <cwd>/home/dev/repo</cwd>\n  <approval_policy>on-request</approval_policy>\n"
    "  <sandbox_mode>workspace-write</sandbox_mode>\n  <network_access>restricted</network_access>\n"
    "  <shell>bash</shell>\n</environment_context>"
)
_TOOLS_SPEC = [
    {"type": "function", "name": "shell", "description": "Runs a shell command and returns its output.",
     "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}},
                                                      "workdir": {"type": "string"}, "timeout_ms": {"type": "number"}},
                    "required": ["command"]}},
    {"type": "function", "name": "apply_patch", "description": "Apply a patch to files.",
     "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}},
    {"type": "function", "name": "update_plan", "description": "Update the task plan.",
     "parameters": {"type": "object", "properties": {"plan": {"type": "array", "items": {"type": "object"}}}}},
    {"type": "function", "name": "view_image", "description": "Attach a local image.",
     "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
]  # fmt: skip


def _message(role: str, text: str, part: str = "input_text") -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": part, "text": text}]}


def _tool_arguments(name: str, rng: np.random.Generator) -> str:
    if name == "shell":
        cmd = _SHELL_CMDS[int(rng.integers(len(_SHELL_CMDS)))]
        return json.dumps(
            {"command": ["bash", "-lc", cmd], "workdir": "/home/dev/repo", "timeout_ms": 120000}
        )
    if name == "apply_patch":
        patch = "*** Begin Patch\n*** Update File: src/app.py\n@@\n-    retries = 0\n+    retries = 3\n*** End Patch\n"
        return json.dumps({"input": patch})
    if name == "update_plan":
        return json.dumps(
            {"plan": [{"step": "Reproduce", "status": "completed"}, {"step": "Fix", "status": "in_progress"}]}
        )
    return json.dumps({"path": "/home/dev/repo/docs/screenshot.png"})


def _tool_output(name: str, rng: np.random.Generator) -> str:
    lines = int(rng.integers(2, 25))
    if name == "shell":
        body = "\n".join(f"src/module_{i}.py:{10 * i}: def handler_{i}(request):" for i in range(lines))
    elif name == "apply_patch":
        body = "Success. Updated the following files:\nM src/app.py"
    elif name == "update_plan":
        body = "Plan updated"
    else:
        body = "image attached"
    return json.dumps(
        {
            "output": body,
            "metadata": {"exit_code": 0, "duration_seconds": round(float(rng.uniform(0.01, 3)), 2)},
        }
    )


def _add_bodies(rows: list[dict[str, Any]], aux: _Aux, offset: int, rng: np.random.Generator) -> None:
    """Fill the body columns of the rows of one session (``rows`` in call order)."""
    first = rows[0]
    model = first["gen_ai_request_model"]
    items: list[dict[str, Any]] = [
        {**_message("developer", _DEV_PROMPT), "id": "msg_dev"},
        _message("user", _ENV_CONTEXT),
        _message("user", _PROMPTS[int(rng.integers(len(_PROMPTS)))]),
    ]
    for j, row in enumerate(rows):
        i = offset + j
        if row["call_index"] > 0 and aux.turn_no[i] > aux.turn_no[i - 1]:
            items.append(_message("user", _FOLLOWUPS[int(rng.integers(len(_FOLLOWUPS)))]))
        assert len(items) == row["input_item_count"], (len(items), row["input_item_count"])
        body = {
            "model": model,
            "instructions": None,
            "input": items,
            "tools": _TOOLS_SPEC,
            "tool_choice": "auto",
            "parallel_tool_calls": False,
            "reasoning": {"effort": "medium", "summary": "auto"},
            "store": False,
            "stream": row["streaming"],
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": row["prompt_cache_key"],
        }
        del body["instructions"]
        body_text = json.dumps(body)
        row["request_body"] = body_text
        row["request_bytes"] = len(body_text.encode())
        start = row["new_input_start"]
        row["new_input_items"] = json.dumps(items[start:])
        meta = {
            "session_id": row["session_id"],
            "thread_id": row["thread_id"],
            "turn_id": row["turn_id"],
            "request_kind": row["request_kind"],
            "window_id": row["window_id"],
            "model": model,
            "sandbox_mode": "workspace-write",
        }
        row["codex_turn_metadata"] = json.dumps(meta)
        row["request_headers"] = json.dumps(
            {
                "accept": "text/event-stream" if row["streaming"] else "application/json",
                "content-type": "application/json",
                "originator": row["originator"],
                "user-agent": row["user_agent"],
                "session-id": row["session_id"],
                "thread-id": row["thread_id"],
                "x-client-request-id": row["client_request_id"],
                "x-codex-window-id": row["window_id"],
                "x-codex-turn-metadata": row["codex_turn_metadata"],
            }
        )
        if row["outcome"] != "ok":
            continue
        output: list[dict[str, Any]] = []
        reasoning_text = None
        if (row["gen_ai_usage_reasoning_output_tokens"] or 0) > 0:
            reasoning_text = (
                "**Planning the change**\n\nI need to inspect the relevant files first, then edit."
            )
            output.append(
                {
                    "type": "reasoning",
                    "id": f"rs_{row['trace_id'][:16]}",
                    "summary": [{"type": "summary_text", "text": reasoning_text}],
                    "encrypted_content": "gAAAAB" + row["trace_id"] * 4,
                }
            )
        tool_results: list[dict[str, Any]] = []
        text = None
        if aux.n_tools[i] > 0:
            calls = []
            for name, call_id in zip(aux.tool_names[i], aux.tool_call_ids[i], strict=True):
                args = _tool_arguments(name, rng)
                output.append({"type": "function_call", "name": name, "arguments": args, "call_id": call_id})
                calls.append({"call_id": call_id, "name": name, "type": "function_call", "arguments": args})
                tool_results.append(
                    {"type": "function_call_output", "call_id": call_id, "output": _tool_output(name, rng)}
                )
            row["tool_calls"] = calls
        else:
            words = max(3, int(aux.visible[i] * 0.75))
            text = ("I updated the code and ran the tests; everything passes. " * (1 + words // 10))[
                : words * 6
            ]
            output.append({**_message("assistant", text, "output_text"), "id": f"msg_{row['trace_id'][:16]}"})
            row["tool_calls"] = None
        usage = {
            "input_tokens": row["gen_ai_usage_input_tokens"],
            "input_tokens_details": {"cached_tokens": row["gen_ai_usage_cache_read_input_tokens"]},
            "output_tokens": row["gen_ai_usage_output_tokens"],
            "output_tokens_details": {"reasoning_tokens": row["gen_ai_usage_reasoning_output_tokens"]},
            "total_tokens": row["gen_ai_usage_input_tokens"] + row["gen_ai_usage_output_tokens"],
        }
        response = {
            "id": row["gen_ai_response_id"],
            "object": "response",
            "created_at": int(row["start_time"].timestamp()),
            "status": "completed",
            "model": row["gen_ai_response_model"],
            "output": output,
            "usage": usage,
        }
        response_text = json.dumps(response)
        row["response_body"] = response_text
        row["response_bytes"] = len(response_text.encode())
        row["response_text"] = text
        row["response_reasoning"] = reasoning_text
        row["response_headers"] = json.dumps(
            {
                "content-type": "text/event-stream" if row["streaming"] else "application/json",
                "x-request-id": "req_" + row["trace_id"][:24],
            }
        )
        items = items + output + tool_results


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

# Batch sizes bound the generator's memory: sessions per numpy batch, rows per written table.
_BODY_BATCH_ROWS = 10_000  # ~28 KB of bodies per row: ~0.3 GB of text per batch
_SESSIONS_PER_BODY_ROW = 1 / 5  # sessions per generator batch, per body row written at a time
_ROWS_BATCH_SESSIONS = round(_BODY_BATCH_ROWS * _SESSIONS_PER_BODY_ROW)  # 2,000 (~24k calls)
_FAST_BATCH_SESSIONS = 25_000


def _default_start(days: int) -> datetime:
    """``days`` before now (to the hour), so generated traffic ends about now, never in the future."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return hour - timedelta(days=days)




def _tables(
    n_calls: int | None,
    n_sessions: int | None,
    seed: int,
    start: datetime,
    days: int,
    batch_sessions: int,
    aux: bool,
) -> Iterator[tuple[pa.Table, _Aux | None]]:
    if n_calls is None and n_sessions is None:
        raise ValueError("give n_calls or n_sessions")
    if days < 1:
        raise ValueError("days must be >= 1")
    start = as_utc(start)
    calls_left = n_calls if n_calls is not None else None
    sessions_left = n_sessions if n_sessions is not None else None
    batch_no = 0
    while (calls_left is None or calls_left > 0) and (sessions_left is None or sessions_left > 0):
        rng = np.random.default_rng([seed, batch_no])
        batch_no += 1
        want = batch_sessions
        if sessions_left is not None:
            want = min(want, sessions_left)
        if calls_left is not None:
            want = min(want, max(1, calls_left // 12))
        table, extra = _batch(rng, want, start, days, aux)
        if calls_left is not None and table.num_rows > calls_left:
            table = table.slice(0, calls_left)
        if calls_left is not None:
            calls_left -= table.num_rows
        if sessions_left is not None:
            sessions_left -= want
        yield table, extra


def generate_rows(
    n_calls: int | None = None,
    *,
    n_sessions: int | None = None,
    seed: int = 0,
    start: datetime,
    days: int = 7,
    bodies: bool = True,
    batch_sessions: int = _ROWS_BATCH_SESSIONS,
) -> Iterator[dict[str, Any]]:
    """Synthetic trace rows (dicts in ``codexgate.core.schema`` shape), session by session in call order.

    Stops after ``n_calls`` rows or ``n_sessions`` sessions (whichever comes first; the last session
    may be cut short by ``n_calls``). Same seed and ``batch_sessions`` (sessions generated at a
    time), same rows.
    """
    for table, aux in _tables(n_calls, n_sessions, seed, start, days, batch_sessions, bodies):
        rows = table.to_pylist()
        del table
        if not bodies:
            yield from rows
            continue
        assert aux is not None
        body_rng = np.random.default_rng([seed, 7, len(rows)])
        begin = 0
        for j in range(1, len(rows) + 1):
            if j == len(rows) or rows[j]["call_index"] == 0:
                session = rows[begin:j]
                _add_bodies(session, aux, begin, body_rng)
                for k in range(begin, j):
                    rows[k] = None  # type: ignore[call-overload]  # let yielded rows be freed
                yield from session
                begin = j


def _write_file(traces_dir: Path, day: str, table: pa.Table, name: str, row_group: int) -> None:
    """One Parquet file (zstd, rows sorted by ``start_time``), written atomically."""
    table = table.sort_by([("start_time", "ascending")])
    folder = traces_dir / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=row_group)
    tmp.replace(path)


def _batches(
    n_calls: int, seed: int, start: datetime, days: int, bodies: bool, body_batch_rows: int = _BODY_BATCH_ROWS
) -> Iterator[pa.Table]:
    """The dataset as a stream of tables of at most one generator batch each (memory: one batch;
    with bodies, ``body_batch_rows`` rows)."""
    if not bodies:
        for table, _ in _tables(n_calls, None, seed, start, days, _FAST_BATCH_SESSIONS, False):
            yield table
        return
    chunk: list[dict[str, Any]] = []
    sessions = max(1, round(body_batch_rows * _SESSIONS_PER_BODY_ROW))
    for row in generate_rows(n_calls, seed=seed, start=start, days=days, batch_sessions=sessions):
        chunk.append(row)
        if len(chunk) >= body_batch_rows:
            yield schema.to_table(chunk)
            chunk = []
    if chunk:
        yield schema.to_table(chunk)


def _split_by_day(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    day_us = 86_400_000_000
    days_idx = pc.divide(table.column("start_time").cast(pa.int64()), day_us).to_numpy()
    for d in np.unique(days_idx):
        day = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=int(d))).strftime("%Y-%m-%d")
        yield day, table.filter(pa.array(days_idx == d))


class _Progress:
    """A progress bar on stderr when it is a terminal (tqdm), silent otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = tqdm(total=total, unit="call", unit_scale=True, file=sys.stderr, disable=not enabled)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def write_dataset(
    traces_dir: Path,
    n_calls: int,
    *,
    seed: int = 0,
    bodies: bool = True,
    rows_per_file: int = 500_000,
    row_group_size: int = 122_880,
    start: datetime | None = None,
    days: int = 7,
    progress: bool = False,
    body_batch_rows: int = _BODY_BATCH_ROWS,
) -> int:
    """Write ``n_calls`` synthetic traces as ``traces_dir/date=YYYY-MM-DD/*.parquet`` (zstd).

    Streams: each generated batch is split by day and written at once as its own file(s) of at
    most ``rows_per_file`` rows, so memory stays bounded by one batch whatever ``n_calls`` is.
    With bodies, a written batch is ``body_batch_rows`` rows (~28 KB of text each), generated
    ``body_batch_rows / 5`` sessions at a time (the default gives the default rows of a seed). Rows are sorted by
    ``start_time`` within each file. ``start`` defaults to ``days`` days before
    the current hour, so the data ends about now. Returns the number of rows written.
    """
    if rows_per_file < 1:
        raise ValueError("rows_per_file must be >= 1")
    if body_batch_rows < 1:
        raise ValueError("body_batch_rows must be >= 1")
    traces_dir = Path(traces_dir)
    traces_dir.mkdir(parents=True, exist_ok=True)
    start = as_utc(start) if start is not None else _default_start(days)
    bar = _Progress(n_calls, progress)
    written = 0
    part = 0
    try:
        for table in _batches(n_calls, seed, start, days, bodies, body_batch_rows):
            for day, piece in _split_by_day(table):
                for offset in range(0, piece.num_rows, rows_per_file):
                    part_table = piece.slice(offset, rows_per_file)
                    _write_file(traces_dir, day, part_table, f"synth-s{seed}-{part:05d}", row_group_size)
                    part += 1
                    written += part_table.num_rows
            bar.update(table.num_rows)
            del table
    finally:
        bar.close()
    return written


def peak_rss_mb() -> float:
    """Peak resident memory of this process's own program so far, in MB: Linux's ``VmHWM``.
    Not ``ru_maxrss``: Linux carries that across ``exec``, so a process started by a large
    parent (``vfork``, as ``subprocess`` does) reports the parent's size. Elsewhere ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analytics.synth", description="Write synthetic codexgate traces."
    )
    parser.add_argument(
        "--traces", required=True, type=Path, help="traces folder (date=YYYY-MM-DD partitions)"
    )
    parser.add_argument("--calls", required=True, type=int, help="number of trace rows")
    parser.add_argument("--no-bodies", action="store_true", help="metadata columns only (fast, vectorised)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--start", help="start of the window, YYYY-MM-DD (default: DAYS days before now)")
    parser.add_argument("--rows-per-file", type=int, default=500_000)
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=_BODY_BATCH_ROWS,
        help=f"with bodies: rows generated and written at a time, which bounds memory (default {_BODY_BATCH_ROWS:,})",
    )
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be >= 1")
    if args.batch_rows < 1:
        parser.error("--batch-rows must be >= 1")
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC) if args.start else None
    t0 = time.perf_counter()
    n = write_dataset(
        args.traces,
        args.calls,
        seed=args.seed,
        bodies=not args.no_bodies,
        rows_per_file=args.rows_per_file,
        start=start,
        days=args.days,
        progress=sys.stderr.isatty(),
        body_batch_rows=args.batch_rows,
    )
    files = len(list(Path(args.traces).glob("date=*/synth-*.parquet")))
    print(
        f"wrote {n} traces in {files} Parquet files to {args.traces} in {time.perf_counter() - t0:.1f}s"
        f" (peak memory {peak_rss_mb():.0f} MB)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
