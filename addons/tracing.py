"""Records every gateway call as exactly one trace row, however it ends.

- refused by the gateway (401/403/503…): a row with the decision and no upstream attempt;
- streamed: the tap reassembles the SSE on the side and the row is written the moment the
  terminal event passes, before the client sees it (Codex hangs up right after
  ``response.completed``, which mitmproxy reports as an ``error``, not a ``response``);
- ended normally, upstream failed, or client left early: written from ``response``/``error``.

Rows go to the durable spool of ``TraceSink`` (an ``os.write`` on the event loop, fsync and
Parquet conversion in its thread). If the spool cannot be written the gateway keeps serving
(``codexgate_trace_failure=open``, the default) or refuses new calls with 503 (``closed``).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from addons.errors import error_response
from addons.flowstate import FlowState, get_state
from addons.reassembly import Reassembled, from_json_body
from addons.stream_tap import StreamTap
from addons.trace_row import build_row
from addons.trace_sink import SinkError, TraceSink

log = logging.getLogger("codexgate.tracing")

_CLIENT_GONE = ("client disconnected", "connection closed by client", "client closed")


class Tracing:
    def __init__(self) -> None:
        self.sink: TraceSink | None = None

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option("codexgate_traces", str, "codexgate-data/traces", "Directory of the Parquet trace files.")
        loader.add_option(
            "codexgate_trace_failure",
            str,
            "open",
            "When traces cannot be written: 'open' keeps serving (and logs loudly), 'closed' refuses calls with 503.",
        )
        loader.add_option("codexgate_flush_seconds", float, 5.0, "Seconds between flushes of the trace spool to Parquet.")

    def configure(self, updated: set[str]) -> None:
        if "codexgate_trace_failure" in updated and ctx.options.codexgate_trace_failure not in ("open", "closed"):
            raise exceptions.OptionsError("codexgate_trace_failure must be 'open' or 'closed'.")
        if {"codexgate_traces", "codexgate_flush_seconds"} & updated:
            if ctx.options.codexgate_flush_seconds <= 0:
                raise exceptions.OptionsError("codexgate_flush_seconds must be positive.")
            if self.sink is not None:
                self.sink.close()
            path = Path(ctx.options.codexgate_traces).expanduser()
            try:
                path.mkdir(parents=True, exist_ok=True)
                self.sink = TraceSink(path, flush_interval_s=ctx.options.codexgate_flush_seconds, on_error=self._sink_error)
                self.sink.start()
            except OSError as exc:
                raise exceptions.OptionsError(f"codexgate_traces: cannot use {path}: {exc.strerror or exc}") from exc

    def done(self) -> None:
        if self.sink is not None:
            self.sink.close()  # no logging here: mitmproxy's logging is already shut down

    @staticmethod
    def _sink_error(message: str) -> None:
        log.error("codexgate: TRACES ARE NOT BEING WRITTEN: %s", message)

    # ---------------------------------------------------------------- hooks
    def request(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or flow.response is not None or self.sink is None:
            return
        if ctx.options.codexgate_trace_failure == "closed" and not self.sink.healthy:
            state.refuse(503, "trace_sink_unavailable", "codexgate cannot record traces right now; try again later.", "tracing")
            flow.response = error_response(state.shape.family, 503, "trace_sink_unavailable", state.refusal.message)  # type: ignore[union-attr]

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or state.refusal is not None or flow.response is None:
            return
        now = datetime.now(UTC)
        state.first_byte_at = now
        if state.attempts:
            attempt = state.attempts[-1]
            attempt["status_code"] = flow.response.status_code
            if state.upstream_sent_mono is not None:
                attempt["latency_ms"] = (time.monotonic() - state.upstream_sent_mono) * 1000.0
        ctype = flow.response.headers.get("content-type", "")
        if "text/event-stream" in ctype:
            state.tap = StreamTap(
                state.shape.api,
                flow.response.headers.get("content-encoding", ""),
                on_first_token=lambda t: _first_token(state, t),
                on_terminal=lambda: self._finish_stream(flow, state, None),
            )
            flow.response.stream = state.tap

    def response(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or state.traced:
            return
        resp = flow.response
        assert resp is not None
        if state.tap is not None:
            self._finish_stream(flow, state, None)
            return
        if state.refusal is not None:
            self._write(flow, state, None, outcome="refused", status_code=resp.status_code)
            return
        result = self._json_result(state, resp)
        ok = resp.status_code < 400 and not result.failed
        if state.attempts and not ok:
            state.attempts[-1]["error"] = result.error_type or f"HTTP {resp.status_code}"
        self._write(
            flow,
            state,
            result,
            outcome="ok" if ok else "upstream_error",
            status_code=resp.status_code,
            response_bytes=len(resp.raw_content or b""),
        )

    def error(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or state.traced:
            return
        msg = flow.error.msg if flow.error else "unknown error"
        client_gone = any(s in msg.lower() for s in _CLIENT_GONE)
        if state.tap is not None:
            self._finish_stream(flow, state, msg, client_gone=client_gone)
            return
        if state.attempts:
            state.attempts[-1]["error"] = msg
        self._write(
            flow,
            state,
            None,
            outcome="client_aborted" if client_gone else "upstream_error",
            status_code=None if client_gone else 502,
            client_aborted=client_gone,
            error_type="client_disconnected" if client_gone else "upstream_connection_error",
            error_message=msg,
        )

    # ---------------------------------------------------------------- helpers
    def _finish_stream(self, flow: http.HTTPFlow, state: FlowState, error: str | None, client_gone: bool = False) -> None:
        if state.traced or state.tap is None:
            return
        tap = state.tap
        result = tap.result()
        status = flow.response.status_code if flow.response else None
        if result.terminal and not result.failed:
            outcome, aborted = "ok", False  # complete, even if the client hung up right after
        elif result.failed:
            outcome, aborted = "upstream_error", False
        elif client_gone:
            outcome, aborted = "client_aborted", True
        else:
            outcome, aborted = "incomplete", False  # upstream closed or broke before the end
        err_type = None
        if outcome == "client_aborted":
            err_type = "client_disconnected"
        elif outcome == "incomplete":
            err_type = "stream_incomplete"
        if state.attempts and outcome in ("upstream_error", "incomplete"):
            state.attempts[-1]["error"] = result.error_type or error or "stream ended before completion"
        self._write(
            flow,
            state,
            result,
            outcome=outcome,
            status_code=status,
            client_aborted=aborted,
            error_type=err_type,
            error_message=error if outcome != "ok" else None,
            streaming=True,
            response_bytes=tap.bytes_seen,
        )

    @staticmethod
    def _json_result(state: FlowState, resp: http.Response) -> Reassembled:
        try:
            content = resp.get_content(strict=False) or b""
            body = json.loads(content) if content else None
        except ValueError:
            body = None
        return from_json_body(state.shape.api, body if isinstance(body, dict) else None)

    def _write(self, flow: http.HTTPFlow, state: FlowState, result: Reassembled | None, **fields: object) -> None:
        state.traced = True
        if self.sink is None:
            return
        row = build_row(flow, state, result, end=datetime.now(UTC), instance=self.sink.instance_id, **fields)  # type: ignore[arg-type]
        try:
            self.sink.write(row)
        except SinkError:
            pass  # already reported loudly through on_error; fail-open keeps serving


def _first_token(state: FlowState, at: datetime) -> None:
    if state.first_token_at is None:
        state.first_token_at = at
