"""mitmproxy's proxy-core log records at the terminal's verbosity, not below it.

mitmproxy sets the root logger to DEBUG and keeps a handler on it (``LegacyLogEvents``) that
formats every record and re-dispatches it to every addon as the deprecated ``add_log`` event,
through the event loop's self-pipe. Its proxy core writes one INFO record per streamed
response ("Streaming response from …") and DEBUG records per connection, so every streamed
call paid for a record, its formatting, a wake-up write and a walk over ~50 addons — about
5 % of the gateway's CPU under streaming load — even under ``mitmdump -q``, where the
terminal shows errors only.

``ProxyLogLevel`` sets the level of the ``mitmproxy.proxy`` logger (the proxy core and its
layers) to ``termlog_verbosity``. Invariant: every record the terminal would show is still
created; below it, mitmproxy's proxy core creates none. Other loggers (the gateway's own
``codexgate.*``, mitmproxy's addon errors) are untouched.
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import ctx

PROXY_LOGGER = "mitmproxy.proxy"


class ProxyLogLevel:
    def __init__(self) -> None:
        self._before: int | None = None

    def configure(self, updated: set[str]) -> None:
        if "termlog_verbosity" not in updated:
            return
        verbosity: Any = getattr(ctx.options, "termlog_verbosity", None)
        if not isinstance(verbosity, str):
            return  # no terminal log in this frontend: leave mitmproxy's levels alone
        level = logging.getLevelName(verbosity.upper())  # error, warn, info, alert, debug
        if not isinstance(level, int):
            return
        logger = logging.getLogger(PROXY_LOGGER)
        if self._before is None:
            self._before = logger.level
        logger.setLevel(level)

    def done(self) -> None:
        if self._before is not None:
            logging.getLogger(PROXY_LOGGER).setLevel(self._before)
