"""Token usage of one call, shared by the wire formats, the trace and the prices.

Kept apart from ``pricing`` so that reading usage never imports the price data (genai-prices
pulls in httpx and its data snapshot: ~0.5 s), e.g. in the report CLI.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Usage:
    """Usage in Responses-API terms: ``input_tokens`` includes cache reads and writes,
    ``output_tokens`` includes reasoning. ``None`` means the provider did not say."""

    input_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
