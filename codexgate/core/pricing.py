"""Cost of a call from its token usage, using the ``genai-prices`` package's bundled data.

Auto-update is never started, so prices come from the data shipped with the installed
package; ``PRICE_VERSION`` records which. A model without a price gives ``cost_known=False``
and a NULL cost, never a silent 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

# genai-prices imports its price table (``genai_prices.data``, ~8 ms of module code holding the
# GIL) on the first ``calc_price``: in the gateway that was the first priced call's ``response``
# hook, a stall of every connection on the event loop. Imported here instead, at start-up.
from genai_prices import data as _bundled_prices  # noqa: F401

from codexgate.core.usage import Usage

__all__ = ["PRICE_SOURCE", "PRICE_VERSION", "Cost", "Usage", "price"]

PRICE_SOURCE = "genai-prices"
PRICE_VERSION = version("genai-prices")

# vault provider kind -> genai-prices provider id (None: let genai-prices match by model name)
_PROVIDER_IDS = {"openai": "openai", "azure": "azure", "anthropic": "anthropic", "openai_compatible": None}


@dataclass(frozen=True, slots=True)
class Cost:
    known: bool
    total_usd: float | None = None
    input_usd: float | None = None
    output_usd: float | None = None


@lru_cache(maxsize=512)
def _has_price(model: str, provider_id: str | None) -> bool:
    try:
        calc_price(PriceUsage(input_tokens=1, output_tokens=1), model_ref=model, provider_id=provider_id)
    except LookupError:
        return False
    return True


def price(model: str | None, provider_kind: str | None, usage: Usage | None) -> Cost:
    """Price ``usage`` for ``model``. Input tokens include cache reads (as genai-prices expects);
    reasoning tokens are part of output tokens and priced at the output rate."""
    if not model or usage is None or usage.input_tokens is None or usage.output_tokens is None:
        return Cost(False)
    provider_id = _PROVIDER_IDS.get(provider_kind or "", None)
    if not _has_price(model, provider_id):
        if provider_id is None or not _has_price(model, None):
            return Cost(False)
        provider_id = None
    calc = calc_price(
        PriceUsage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens or None,
            cache_write_tokens=usage.cache_creation_tokens or None,
            output_tokens=usage.output_tokens,
        ),
        model_ref=model,
        provider_id=provider_id,
    )
    return Cost(True, float(calc.total_price), float(calc.input_price), float(calc.output_price))
