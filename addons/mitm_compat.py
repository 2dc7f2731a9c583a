"""Workarounds for mitmproxy behaviour the gateway cannot accept, in one place.

HTTP/1 trailers: mitmproxy (11.0 and 12.x) raises ``NotImplementedError`` from its HTTP/1
layer when a chunked message ends with trailer fields; the connection then dies with no
reply and a "mitmproxy has crashed!" traceback. The patch drops trailer fields at the parser
(they are never forwarded), so the message completes normally: a request that announced
trailers (``Trailer:`` header) is answered 400 by intake; one that sent them unannounced is
handled without them. Applied once, idempotently.
"""

from __future__ import annotations

from typing import Any

import h11
from h11 import _readers

_PATCHED = "_codexgate_no_trailers"


def refuse_trailers() -> None:
    reader = _readers.ChunkedReader
    if getattr(reader, _PATCHED, False):
        return
    original = reader.__call__

    def call(self: Any, buf: Any) -> Any:
        event = original(self, buf)
        if isinstance(event, h11.EndOfMessage) and event.headers:
            return h11.EndOfMessage()
        return event

    reader.__call__ = call  # type: ignore[method-assign]
    setattr(reader, _PATCHED, True)
