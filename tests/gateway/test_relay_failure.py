"""Fail closed inside the relay: when answering a call raises (in-process for a non-streamed call,
on the hop for a streamed one), the client gets a 502 in its provider's format, the call has its
row (with the exception's type, never its text), and nothing else is sent."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import duckdb
from mitmproxy import http
from mitmproxy.test import taddons

from addons.flowstate import get_state
from addons.stream_relay import RELAY_FAILED_HEADER
from addons.tracing import Tracing
from addons.upstream import Upstream
from tests.gateway.flows import PROVIDER_KEY, Pipeline, demo_vault, error_of, model_flow

REQUIRED = ("identity", "scope", "tracing")


async def test_a_relay_that_raises_answers_502_and_records_the_call(tmp_path: Path, caplog) -> None:
    demo = demo_vault(tmp_path)
    p = Pipeline(demo, required=REQUIRED)
    tracing = Tracing()
    p.upstream = Upstream(p.hosts, REQUIRED, tracing)
    p.chain[-1] = p.upstream
    with taddons.context(*p.chain, tracing) as tctx, caplog.at_level(logging.ERROR):
        tctx.options.update(codexgate_traces=str(tmp_path / "traces"), codexgate_trace_convert="thread")
        await p.upstream.running()  # starts the relay
        try:
            assert p.upstream.relay.running and tracing.sink is not None
            # a real fault: the relay's client session is closed under it (aiohttp raises
            # RuntimeError, which the attempt loop does not expect)
            await p.upstream.relay._session.close()  # type: ignore[union-attr]
            f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hi"})
            await p.run(f, extra=[tracing])
        finally:
            await p.upstream.relay.stop()
            tracing.sink.close()
    assert f.response is not None and f.response.status_code == 502
    err = error_of(f)
    assert err["code"] == "gateway_error" and "internal error" in err["message"]
    assert get_state(f).verdict.gateway_error == "StreamRelay.answer: RuntimeError"
    assert PROVIDER_KEY not in str(f.request.headers) and demo.keys["alice"] not in str(f.request.headers)
    assert "Session is closed" not in caplog.text  # the exception's type is logged, not its text
    rows = duckdb.sql(
        f"select outcome, error_message, key_id from read_parquet('{tmp_path}/traces/**/*.parquet')"
    ).fetchall()
    assert rows == [("upstream_error", "internal error in the relay (RuntimeError)", demo.key_ids["alice"])]


async def test_a_relay_that_raises_on_a_stream_answers_provider_json_and_records_the_call(
    tmp_path: Path, caplog
) -> None:
    """The streamed path: the hop answers the relay's failure, mitmproxy would hand that answer to
    the addons, and the client gets the provider-format 502 (not the hop's plain text)."""
    demo = demo_vault(tmp_path)
    p = Pipeline(demo, required=REQUIRED)
    tracing = Tracing()
    p.upstream = Upstream(p.hosts, REQUIRED, tracing)
    p.chain[-1] = p.upstream
    with taddons.context(*p.chain, tracing) as tctx, caplog.at_level(logging.ERROR):
        tctx.options.update(codexgate_traces=str(tmp_path / "traces"), codexgate_trace_convert="thread")
        await p.upstream.running()
        try:
            await p.upstream.relay._session.close()  # type: ignore[union-attr]  # the same real fault
            f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hi", "stream": True})
            await p.run(f, extra=[tracing])
            assert f.response is None and f.request.port == p.upstream.relay.port  # sent to the hop
            # what mitmproxy does next: send the request to the hop and read its answer
            async with aiohttp.ClientSession() as session:
                async with session.post(f.request.url, data=b"", headers={"content-length": "0"}) as hop:
                    status, headers, body = hop.status, list(hop.raw_headers), await hop.read()
            f.response = http.Response.make(status, body, headers)
            tracing.responseheaders(f)
            assert f.response.stream is not True  # held whole, so it can be replaced
            tracing.response(f)
            p.upstream.response(f)
        finally:
            await p.upstream.relay.stop()
            tracing.sink.close()
    assert f.response.status_code == 502
    assert f.response.headers["content-type"] == "application/json"
    assert RELAY_FAILED_HEADER not in f.response.headers
    err = error_of(f)
    assert err["code"] == "gateway_error" and "internal error" in err["message"]
    assert PROVIDER_KEY not in str(f.response.headers) and PROVIDER_KEY not in f.response.text
    assert "Session is closed" not in caplog.text
    rows = duckdb.sql(
        f"select outcome, error_message, key_id from read_parquet('{tmp_path}/traces/**/*.parquet')"
    ).fetchall()
    assert rows == [("upstream_error", "internal error in the relay (RuntimeError)", demo.key_ids["alice"])]
