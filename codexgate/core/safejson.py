"""Bounded parsing of untrusted JSON (request bodies, headers, metadata).

Invariants:
- ``loads_bounded`` never raises anything but ``UntrustedJSONError`` for any input: bad
  encoding, a byte-order mark, UTF-16/32, nesting deeper than ``max_depth``, input larger
  than ``max_bytes``, numbers Python cannot hold, duplicate-key tricks — all become one
  ``UntrustedJSONError`` with a reason that never quotes the input.
- Parsing is orjson's (C, no Python recursion; it refuses nesting past 1,024 levels itself),
  then the parsed tree's depth is checked level by level against ``max_depth``, so no later
  recursive walker over the document can reach ``RecursionError``. Numbers orjson cannot hold
  as a 64-bit integer or a finite double, ``NaN``/``Infinity`` and lone surrogates are refused.
- JSON text may be UTF-8 (with or without a BOM), UTF-16 or UTF-32 (RFC 8259 §8.1 says
  UTF-8, RFC 7159 allowed the others); the encoding is detected from the first bytes.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import orjson

DEFAULT_MAX_DEPTH = 64


class UntrustedJSONError(ValueError):
    """The input is not JSON the gateway accepts; ``reason`` is safe to show to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def detect_encoding(raw: bytes) -> tuple[str, int]:
    """(codec, bytes of BOM to skip) for a JSON text, from its BOM or its first NUL pattern."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return codec, len(bom)
    head = raw[:4]
    if len(head) >= 4:
        if head[0] == 0 and head[1] == 0 and head[2] == 0 and head[3] != 0:
            return "utf-32-be", 0
        if head[0] != 0 and head[1] == 0 and head[2] == 0 and head[3] == 0:
            return "utf-32-le", 0
    if len(head) >= 2:
        if head[0] == 0 and head[1] != 0:
            return "utf-16-be", 0
        if head[0] != 0 and head[1] == 0:
            return "utf-16-le", 0
    return "utf-8", 0


def decode_text(raw: bytes, max_bytes: int | None = None) -> str:
    """The JSON text of ``raw`` (any encoding JSON allows), or ``UntrustedJSONError``."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise UntrustedJSONError(f"JSON larger than {max_bytes} bytes")
    codec, skip = detect_encoding(raw)
    try:
        return raw[skip:].decode(codec)
    except UnicodeDecodeError:
        raise UntrustedJSONError(f"body is not valid {codec.upper()} text") from None


_CONTAINERS = (dict, list)


def tree_depth(doc: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1), stopping as soon as it
    exceeds ``limit``. Iterative, one level at a time: no recursion, linear in the containers."""
    level = [doc] if type(doc) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return depth
        below: list[Any] = []
        for node in level:
            below += [v for v in (node.values() if type(node) is dict else node) if type(v) in _CONTAINERS]
        level = below
    return depth


def loads_text(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH, max_chars: int | None = None) -> Any:
    """Parse JSON text with bounded size and depth."""
    if max_chars is not None and len(text) > max_chars:
        raise UntrustedJSONError(f"JSON longer than {max_chars} characters")
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        deep = "depth" in str(exc)  # orjson's own 1,024-level stop
        raise UntrustedJSONError(
            f"JSON nested deeper than {max_depth} levels" if deep else "not valid JSON"
        ) from None
    except (ValueError, MemoryError, TypeError) as exc:
        raise UntrustedJSONError(f"not valid JSON ({type(exc).__name__})") from None
    if tree_depth(doc, max_depth) > max_depth:
        raise UntrustedJSONError(f"JSON nested deeper than {max_depth} levels")
    return doc


def loads_bounded(
    raw: bytes | str, *, max_bytes: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """Parse untrusted JSON bytes (or text) with bounded size, depth and checked encoding."""
    if isinstance(raw, bytes):
        text = decode_text(raw, max_bytes)
    else:
        text = raw
        if max_bytes is not None and len(text) > max_bytes:
            raise UntrustedJSONError(f"JSON larger than {max_bytes} bytes")
    return loads_text(text, max_depth=max_depth)


def dumps_text(value: Any) -> str:
    """Compact JSON text of a parsed value (orjson; UTF-8 as is, not ``\\u`` escapes). Falls
    back to ``json`` for what orjson refuses (lone surrogates, nesting past 254 levels, ints
    past 64 bits), so it never raises on anything ``json.loads`` produced."""
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=False, default=str)
