"""Deterministic token counts and the emulated prompt cache (formulas in codexgate.simprovider)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

REASONING_TOKENS = 16


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, non-ASCII escaped (``json.dumps`` defaults)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def is_reasoning_model(model: str) -> bool:
    name = model.lower()
    return "reason" in name or name.startswith(("o", "gpt-5"))


def reasoning_tokens(model: str, body: dict[str, Any]) -> int:
    """16 when the request asks for ``reasoning`` (Responses) / ``reasoning_effort`` (Chat) or
    the model looks like a reasoning model, else 0."""
    asked = bool(body.get("reasoning") or body.get("reasoning_effort"))
    return REASONING_TOKENS if asked or is_reasoning_model(model) else 0


@dataclass(frozen=True)
class AnthropicInput:
    input_tokens: int  # excludes cache reads and writes, as the real API
    cache_read: int
    cache_creation: int


class PromptCache:
    """Remembers, per cache key, how many input tokens a previous call left in the cache."""

    def __init__(self) -> None:
        self._tokens: dict[str, int] = {}

    def clear(self) -> None:
        self._tokens.clear()

    def openai_cached(self, key: Any, input_tokens: int) -> int:
        """With a ``prompt_cache_key``: the previous same-key call's input tokens, capped at this
        call's input; every call then leaves its whole input in the cache."""
        if not isinstance(key, str) or not key:
            return 0
        cached = min(self._tokens.get(key, 0), input_tokens)
        self._tokens[key] = input_tokens
        return cached

    def anthropic(self, body: dict[str, Any]) -> AnthropicInput:
        system, messages = body.get("system"), body.get("messages") or []
        total = tokens(canonical([system, messages]))
        blocks = _blocks(system, messages)
        marks = [i for i, b in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")]
        if not marks:
            return AnthropicInput(total, 0, 0)
        key = "anthropic:" + hashlib.sha256(canonical(blocks[: marks[0] + 1]).encode()).hexdigest()
        prefix = min(total, tokens(canonical(blocks[: marks[-1] + 1])))
        read = min(self._tokens.get(key, 0), prefix)
        self._tokens[key] = max(self._tokens.get(key, 0), prefix)
        return AnthropicInput(total - prefix, read, prefix - read)


def _blocks(system: Any, messages: list[Any]) -> list[Any]:
    """System then message content blocks, in order (string content counts as one text block)."""
    out: list[Any] = []
    for content in [system, *[m.get("content") if isinstance(m, dict) else m for m in messages]]:
        if isinstance(content, str):
            out.append({"type": "text", "text": content})
        elif isinstance(content, list):
            out.extend(content)
    return out
