"""Estimate a call's cost before it is forwarded, for the ledger's reservation.

Input tokens: ``ceil(len(body) / bytes_per_token)`` (default 4 bytes per token). Bound: every
token of a byte-level BPE (OpenAI's o200k/cl100k, Anthropic's) covers at least one byte of the
text it encodes, so the number of text tokens never exceeds the body's byte count — the
estimate with ``bytes_per_token=1`` is a hard upper bound; the default of 4 is the usual ratio
for English and code, and the JSON framing, ids and base64 ``encrypted_content`` in a Codex
body make it overestimate rather than underestimate the billed input. (Images are billed by
size, not bytes, and are not bounded by this.) Settlement replaces the estimate with the real
cost, so the estimate only decides how much budget is held while the call runs.

Output tokens: the body's ``max_output_tokens`` (Responses), ``max_completion_tokens`` or
``max_tokens`` (Chat Completions, Anthropic Messages), else the configured default.

Price: ``codexgate.core.pricing`` (the genai-prices data the trace uses). A model without a
price is charged the configured fallback USD per 1k tokens and marked ``price_known=False``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from codexgate.core.pricing import Usage, price
from codexgate.limits.config import Settings

_OUTPUT_FIELDS = ("max_output_tokens", "max_completion_tokens", "max_tokens")


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a call is expected to use. ``cost_usd`` is always a number (fallback-priced when
    ``price_known`` is false)."""

    input_tokens: int
    output_tokens: int
    cost_usd: float
    price_known: bool = True

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def fallback_cost(tokens: int, settings: Settings) -> float:
    return tokens / 1000.0 * settings.fallback_usd_per_1k_tokens


def output_limit(body: Mapping[str, Any] | None, settings: Settings) -> int:
    for name in _OUTPUT_FIELDS:
        v = (body or {}).get(name)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return settings.default_output_tokens


def cost_of(
    model: str | None, provider_kind: str | None, input_tokens: int, output_tokens: int, settings: Settings
) -> tuple[float, bool]:
    """(USD, price known) for token counts; unknown prices fall back to the configured rate."""
    c = price(model, provider_kind, Usage(input_tokens=input_tokens, output_tokens=output_tokens))
    if c.known and c.total_usd is not None:
        return c.total_usd, True
    return fallback_cost(input_tokens + output_tokens, settings), False


def estimate_call(
    body_bytes: int,
    body: Mapping[str, Any] | None,
    model: str | None,
    provider_kind: str | None,
    settings: Settings | None = None,
) -> Estimate:
    """Estimate of one call from its raw body size and parsed JSON body (``None`` if unparsed)."""
    settings = settings or Settings()
    input_tokens = math.ceil(max(body_bytes, 0) / settings.bytes_per_token)
    output_tokens = output_limit(body, settings)
    cost, known = cost_of(model, provider_kind, input_tokens, output_tokens, settings)
    return Estimate(input_tokens, output_tokens, cost, known)
