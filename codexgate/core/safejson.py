"""Bounded parsing of untrusted JSON (request bodies, headers, metadata).

Invariants:
- ``loads_bounded`` never raises anything but ``UntrustedJSONError`` for any input: bad
  encoding, a byte-order mark, UTF-16/32, nesting deeper than ``max_depth``, input larger
  than ``max_bytes``, numbers Python cannot hold, duplicate-key tricks — all become one
  ``UntrustedJSONError`` with a reason that never quotes the input.
- Nesting is checked *before* the recursive parser runs, by a linear scan that skips
  string contents, so a 1,000-level document cannot reach ``RecursionError``.
- JSON text may be UTF-8 (with or without a BOM), UTF-16 or UTF-32 (RFC 8259 §8.1 says
  UTF-8, RFC 7159 allowed the others); the encoding is detected from the first bytes.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

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


def nesting_depth(text: str, limit: int) -> int:
    """Deepest nesting of arrays/objects in ``text``, stopping as soon as it exceeds ``limit``
    (string contents, including escaped quotes, are skipped). Linear in ``len(text)``."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise UntrustedJSONError(f"{name} is not valid JSON")


def loads_text(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH, max_chars: int | None = None) -> Any:
    """Parse JSON text with bounded size and depth."""
    if max_chars is not None and len(text) > max_chars:
        raise UntrustedJSONError(f"JSON longer than {max_chars} characters")
    if nesting_depth(text, max_depth) > max_depth:
        raise UntrustedJSONError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except UntrustedJSONError:
        raise
    except (ValueError, RecursionError, OverflowError, MemoryError) as exc:
        raise UntrustedJSONError(f"not valid JSON ({type(exc).__name__})") from None


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
