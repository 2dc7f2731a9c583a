"""Bounded decoding of ``Content-Encoding`` (gzip, deflate, zstd, br, identity).

Invariant: decoding never holds more than ``limit`` bytes of output (plus one bounded step
of the decoder) in memory — a body that would expand past ``limit`` raises ``TooLarge`` as
soon as that is known, so a 1 MB bomb that expands to 1 GiB costs ``limit`` bytes, not 1 GiB.
Undecodable input raises ``BadEncoding``. Messages never quote the body.
"""

from __future__ import annotations

import zlib

import brotli
import zstandard

_STEP = 64 * 1024  # output produced per decoder step
_BROTLI_SLICE = 32  # input bytes per step for a brotli without output limits (< 1.2)


class DecodeError(ValueError):
    pass


class TooLarge(DecodeError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"decoded body larger than {limit} bytes")
        self.limit = limit


class BadEncoding(DecodeError):
    pass


class _Out:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        if data:
            self.size += len(data)
            if self.size > self.limit:
                raise TooLarge(self.limit)
            self.parts.append(data)

    def value(self) -> bytes:
        return b"".join(self.parts)


def _zlib(raw: bytes, wbits: int, limit: int) -> bytes:
    out = _Out(limit)
    d = zlib.decompressobj(wbits)
    data = raw
    try:
        while True:
            out.add(d.decompress(data, _STEP))
            data = d.unconsumed_tail
            if d.eof:
                rest = d.unused_data
                if rest and wbits & 16 and rest.lstrip(b"\0"):  # concatenated gzip members
                    d = zlib.decompressobj(wbits)
                    data = rest
                    continue
                break
            if not data:
                out.add(d.flush())
                break
    except zlib.error:
        raise BadEncoding("body is not valid gzip/deflate data") from None
    return out.value()


def _deflate(raw: bytes, limit: int) -> bytes:
    try:
        return _zlib(raw, zlib.MAX_WBITS, limit)  # zlib-wrapped (RFC 1950), what "deflate" means
    except BadEncoding:
        return _zlib(raw, -zlib.MAX_WBITS, limit)  # raw deflate, which some clients send


def _zstd(raw: bytes, limit: int) -> bytes:
    out = _Out(limit)
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        while True:
            chunk = reader.read(_STEP)
            if not chunk:
                break
            out.add(chunk)
    except zstandard.ZstdError:
        raise BadEncoding("body is not valid zstd data") from None
    return out.value()


def _brotli(raw: bytes, limit: int) -> bytes:
    out = _Out(limit)
    d = brotli.Decompressor()
    try:
        if hasattr(d, "can_accept_more_data"):  # brotli >= 1.2: bounded output per call
            pos = 0
            while True:
                if d.can_accept_more_data():
                    if pos >= len(raw):
                        break
                    data, pos = raw[pos : pos + _STEP], pos + _STEP
                else:
                    data = b""
                out.add(d.process(data, output_buffer_limit=_STEP))
                if d.is_finished():
                    break
        else:  # brotli 1.1 (mitmproxy 11 pins it): small input slices bound each step's output
            for pos in range(0, len(raw), _BROTLI_SLICE):
                out.add(d.process(raw[pos : pos + _BROTLI_SLICE]))
    except brotli.error:
        raise BadEncoding("body is not valid brotli data") from None
    if not d.is_finished():
        raise BadEncoding("brotli body is truncated")
    return out.value()


_DECODERS = {
    "gzip": lambda raw, limit: _zlib(raw, 16 + zlib.MAX_WBITS, limit),
    "x-gzip": lambda raw, limit: _zlib(raw, 16 + zlib.MAX_WBITS, limit),
    "deflate": _deflate,
    "zstd": _zstd,
    "br": _brotli,
}


def decode_bounded(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo ``content_encoding`` (a comma list, applied in order, so decoded in reverse)."""
    encodings = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
    data = raw
    for enc in reversed(encodings):
        if enc == "identity":
            continue
        decoder = _DECODERS.get(enc)
        if decoder is None:
            raise BadEncoding(f"unsupported Content-Encoding {enc[:20]!r}")
        data = decoder(data, limit)
    if len(data) > limit:
        raise TooLarge(limit)
    return data
