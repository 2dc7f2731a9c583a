"""mitmproxy's proxy-core log records follow the terminal's verbosity (addons.proxy_log)."""

from __future__ import annotations

import logging

from mitmproxy.addons import termlog
from mitmproxy.test import taddons

from addons.proxy_log import PROXY_LOGGER, ProxyLogLevel


def test_records_below_the_terminal_verbosity_are_not_created() -> None:
    server = logging.getLogger("mitmproxy.proxy.server")  # where mitmproxy logs "Streaming response from …"
    before = logging.getLogger(PROXY_LOGGER).level
    own = logging.getLogger("codexgate.relay").getEffectiveLevel()
    addon = ProxyLogLevel()
    with taddons.context(termlog.TermLog(), addon) as tctx:
        tctx.configure(addon, termlog_verbosity="error")  # what mitmdump -q sets
        assert not server.isEnabledFor(logging.INFO) and server.isEnabledFor(logging.ERROR)
        tctx.configure(addon, termlog_verbosity="info")
        assert server.isEnabledFor(logging.INFO) and not server.isEnabledFor(logging.DEBUG)
        tctx.configure(addon, termlog_verbosity="debug")
        assert server.isEnabledFor(logging.DEBUG)
        # the gateway's own loggers keep their level whatever the terminal shows
        tctx.configure(addon, termlog_verbosity="error")
        assert logging.getLogger("codexgate.relay").getEffectiveLevel() == own
        addon.done()
    assert logging.getLogger(PROXY_LOGGER).level == before


def test_without_a_terminal_log_the_levels_stay() -> None:
    before = logging.getLogger(PROXY_LOGGER).level
    addon = ProxyLogLevel()
    with taddons.context(addon):  # no termlog addon: no termlog_verbosity option
        addon.configure({"termlog_verbosity"})
    assert logging.getLogger(PROXY_LOGGER).level == before
