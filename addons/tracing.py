"""Records every gateway call as exactly one trace row, however it ends.

- refused by the gateway (401/403/503…): a row with the decision and no upstream attempt;
- streamed: the call goes to the provider through the in-process relay (``stream_relay``),
  whose tap reassembles the SSE on the side and writes the row the moment the terminal event
  passes, before the client sees it. Codex hangs up right after ``response.completed``; a
  client that leaves earlier does not stop the relay from reading the rest of the stream,
  so the row still gets the provider's usage (``client_aborted``);
- not streamed: written from mitmproxy's ``response``/``error`` hook.

Rows go to the durable spool of ``TraceSink`` (an ``os.write`` on the event loop, fsync and
Parquet conversion in its thread). If the spool cannot be written the gateway keeps serving
(``codexgate_trace_failure=open``, the default) or refuses new calls with 503 (``closed``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from mitmproxy import ctx, exceptions, http

from addons import privacy
from addons.errors import error_body, error_response
from addons.failsafe import failsafe
from addons.flowstate import FlowState, get_state
from addons.guardrails import ASYNC_WAIT_S, pending_async_check
from addons.options import seconds
from addons.reassembly import Reassembled, from_json_body
from addons.stream_relay import RELAY_FAILED_HEADER
from addons.stream_tap import BodyCollector, StreamTap
from addons.trace_row import STORED_TEXT_COLUMNS, build_row, minimal_row
from codexgate.guard.service import Guard
from codexgate.sink import SinkError, TraceSink
from codexgate.sink.sink import CONVERT_IN

log = logging.getLogger("codexgate.tracing")

_CLIENT_GONE = ("client disconnected", "connection closed by client", "client closed")


@dataclass
class RelayHooks:
    """What the relay calls back for one call: the tap for the upstream's answer, the end, a
    connection failure (-> the client's reply) and a client that left."""

    on_headers: Callable[[int, list[tuple[str, str]]], Callable[[bytes], bytes]]
    on_end: Callable[[str | None, bool], None]
    on_connect_error: Callable[[str], tuple[int, bytes, dict[str, str]]]
    on_client_gone: Callable[[], None]


class Tracing:
    """Admission (a call is refused when traces cannot be written and the policy is 'closed'),
    the stored body, the taps and exactly one row per call."""

    policy = "tracing"

    def __init__(self, storage_privacy: privacy.Privacy | None = None) -> None:
        self.sink: TraceSink | None = None
        # redacted-mode storage uses the guardrails' engine (gateway.py passes the shared one)
        self.privacy = storage_privacy if storage_privacy is not None else privacy.Privacy(Guard(workers=1))
        # rows waiting (bounded) for a still-running async-stage guardrail check: id -> write now
        self._deferred: dict[int, Callable[[], None]] = {}

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "codexgate_traces", str, "codexgate-data/traces", "Directory of the Parquet trace files."
        )
        loader.add_option(
            "codexgate_trace_failure",
            str,
            "open",
            "When traces cannot be written: 'open' keeps serving (and logs loudly), 'closed' refuses calls with 503.",
        )
        loader.add_option(
            "codexgate_flush_seconds", str, "5", "Seconds between flushes of the trace spool to Parquet."
        )
        loader.add_option(
            "codexgate_trace_convert",
            str,
            "process",
            "Where trace spool segments become Parquet: 'thread' (in the gateway) or 'process' "
            "(a supervised converter process, off the gateway's GIL).",
        )

    def configure(self, updated: set[str]) -> None:
        if "codexgate_trace_failure" in updated and ctx.options.codexgate_trace_failure not in (
            "open",
            "closed",
        ):
            raise exceptions.OptionsError("codexgate_trace_failure must be 'open' or 'closed'.")
        if "codexgate_trace_convert" in updated and ctx.options.codexgate_trace_convert not in CONVERT_IN:
            raise exceptions.OptionsError(f"codexgate_trace_convert must be one of {', '.join(CONVERT_IN)}.")
        if {"codexgate_traces", "codexgate_flush_seconds", "codexgate_trace_convert"} & updated:
            flush_seconds = seconds("codexgate_flush_seconds")
            if self.sink is not None:
                self.sink.close()
            path = Path(ctx.options.codexgate_traces).expanduser()
            try:
                path.mkdir(parents=True, exist_ok=True)
                self.sink = TraceSink(
                    path,
                    flush_interval_s=flush_seconds,
                    on_error=self._sink_error,
                    convert_in=ctx.options.codexgate_trace_convert,
                )
                self.sink.start()
            except OSError as exc:
                raise exceptions.OptionsError(
                    f"codexgate_traces: cannot use {path}: {exc.strerror or exc}"
                ) from exc

    def done(self) -> None:
        for write_now in list(self._deferred.values()):  # shutdown waits for no check: rows first
            write_now()
        if self.sink is not None:
            self.sink.close()  # no logging here: mitmproxy's logging is already shut down

    @staticmethod
    def _sink_error(message: str) -> None:
        log.error("codexgate: trace sink: %s", message)

    # ---------------------------------------------------------------- mitmproxy hooks
    @failsafe
    async def request(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or flow.response is not None or self.sink is None:
            return
        if ctx.options.codexgate_trace_failure == "closed" and not self.sink.healthy:
            msg = "codexgate cannot record traces right now; try again later."
            state.refuse(503, "trace_sink_unavailable", msg, "tracing")
            flow.response = error_response(state.request.shape.family, 503, "trace_sink_unavailable", msg)
            return
        state.allow(self.policy, "sink healthy" if self.sink.healthy else "trace_failure=open")
        if state.verdict.privacy_mode == privacy.REDACTED and state.request.body_text:
            # the engine, item by item through its verdict cache: in a thread, before the call
            sid, req = state.request.codex.grouping_key, state.request
            state.record.stored_body_text = await asyncio.to_thread(
                self.privacy.redact_body, req.body, req.body_text, req.shape.api, sid
            )
            if state.request.new_items is not None:
                state.record.stored_new_items = await asyncio.to_thread(
                    self.privacy.redact_items_json, req.new_items, sid
                )

    @failsafe
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or state.verdict.refusal is not None or flow.response is None:
            return
        if state.upstream.relayed:
            # the relay already taps it; pass bytes straight on (but not the relay's own failure
            # reply, which the upstream step replaces whole)
            if not state.upstream.in_process and RELAY_FAILED_HEADER not in flow.response.headers:
                flow.response.stream = True
            return
        self._upstream_headers(
            state, flow.response.status_code, list(flow.response.headers.items(multi=True))
        )
        if "text/event-stream" in flow.response.headers.get("content-type", ""):
            state.record.tap = self._make_tap(flow, state, flow.response.headers.get("content-encoding", ""))
            flow.response.stream = filtered(state.record.tap, state.record.stream_filters)

    @failsafe
    def response(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or state.record.traced or state.upstream.relayed:
            return
        resp = flow.response
        assert resp is not None
        if state.record.tap is not None:
            self._finish_stream(flow, state, None)
            return
        if state.verdict.refusal is not None:
            state.upstream.status = resp.status_code
            state.upstream.response_headers = list(resp.headers.items(multi=True))
            outcome = (
                "gateway_error"
                if state.verdict.gateway_error or state.verdict.refusal.code == "gateway_error"
                else "refused"
            )
            self._write(flow, state, None, outcome=outcome, status_code=resp.status_code)
            return
        self._finish_json(flow, state, resp.get_content(strict=False) or b"", resp.status_code)

    @failsafe
    def error(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or state.record.traced:
            return
        msg = flow.error.msg if flow.error else "unknown error"
        client_gone = any(s in msg.lower() for s in _CLIENT_GONE)
        if state.upstream.relayed:
            # the relay writes the row; it only learns of a client that left during a stall here
            if client_gone:
                state.upstream.client_gone = True
            return
        if state.record.tap is not None:
            self._finish_stream(flow, state, msg, client_gone=client_gone)
            return
        if state.upstream.last:
            state.upstream.last.failed(msg)
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

    # ---------------------------------------------------------------- relay hooks
    def relay_hooks(self, flow: http.HTTPFlow, state: FlowState) -> RelayHooks:
        """Callbacks for the relay job the upstream step submits for this call."""
        tap_holder: list[StreamTap | BodyCollector] = []

        def on_headers(status: int, headers: list[tuple[str, str]]) -> Callable[[bytes], bytes]:
            self._upstream_headers(state, status, headers)
            hdrs = {k.lower(): v for k, v in headers}
            if "text/event-stream" in hdrs.get("content-type", ""):
                state.record.tap = self._make_tap(flow, state, hdrs.get("content-encoding", ""))
                tap_holder.append(state.record.tap)
            else:
                tap_holder.append(BodyCollector(hdrs.get("content-encoding", "")))
            return filtered(tap_holder[0], state.record.stream_filters)

        def on_end(error: str | None, client_gone: bool) -> None:
            if state.record.traced:
                return
            if state.record.tap is not None:
                self._finish_stream(flow, state, error, client_gone=client_gone)
            elif tap_holder and isinstance(tap_holder[0], BodyCollector):
                self._finish_json(
                    flow, state, tap_holder[0].body(), state.upstream.status or 502, client_gone=client_gone
                )
            else:  # never reached the provider
                self._write(
                    flow,
                    state,
                    None,
                    outcome="upstream_error",
                    status_code=502,
                    error_type="upstream_connection_error",
                    error_message=error,
                )

        def on_connect_error(error: str) -> tuple[int, bytes, dict[str, str]]:
            if state.upstream.last:
                state.upstream.last.failed(error)
            name = state.verdict.provider.name if state.verdict.provider else "?"
            msg = f"codexgate could not reach provider '{name}': {error}"
            return (
                502,
                error_body(state.request.shape.family, 502, "upstream_unreachable", msg),
                {"content-type": "application/json"},
            )

        return RelayHooks(
            on_headers=on_headers,
            on_end=on_end,
            on_connect_error=on_connect_error,
            on_client_gone=lambda: setattr(state.upstream, "client_gone", True),
        )

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _upstream_headers(state: FlowState, status: int, headers: list[tuple[str, str]]) -> None:
        state.timing.first_byte_at = datetime.now(UTC)
        state.upstream.status = status
        state.upstream.response_headers = headers
        if state.upstream.last:
            state.upstream.last.answered(status)

    def _make_tap(self, flow: http.HTTPFlow, state: FlowState, encoding: str) -> StreamTap:
        return StreamTap(
            state.request.shape.api,
            encoding,
            on_first_token=lambda t: _first_token(state, t),
            on_terminal=lambda: self._finish_stream(flow, state, None),
        )

    def _finish_stream(
        self, flow: http.HTTPFlow, state: FlowState, error: str | None, client_gone: bool = False
    ) -> None:
        if state.record.traced or state.record.tap is None:
            return
        tap = state.record.tap
        result = tap.result()
        client_gone = client_gone or state.upstream.client_gone
        if result.failed:
            outcome = "upstream_error"
        elif client_gone:
            outcome = "client_aborted"  # left before the end (the relay still drained the usage)
        elif result.terminal:
            outcome = "ok"
        else:
            outcome = "incomplete"  # upstream closed or broke before the end
        err_type = {"client_aborted": "client_disconnected", "incomplete": "stream_incomplete"}.get(outcome)
        if state.upstream.last and outcome in ("upstream_error", "incomplete"):
            state.upstream.last.failed(result.error_type or error or "stream ended before completion")
        self._write(
            flow,
            state,
            result,
            outcome=outcome,
            status_code=state.upstream.status,
            client_aborted=client_gone,
            error_type=err_type,
            error_message=error if outcome != "ok" else None,
            streaming=True,
            response_bytes=tap.bytes_seen,
        )

    def _finish_json(
        self, flow: http.HTTPFlow, state: FlowState, content: bytes, status: int, client_gone: bool = False
    ) -> None:
        try:
            body = orjson.loads(content) if content else None
        except ValueError:  # orjson.JSONDecodeError included
            body = None
        result: Reassembled = from_json_body(
            state.request.shape.api, body if isinstance(body, dict) else None
        )
        client_gone = client_gone or state.upstream.client_gone  # it left while the call ran
        ok = status < 400 and not result.failed
        if state.upstream.last and not ok:
            state.upstream.last.failed(result.error_type or f"HTTP {status}")
        self._write(
            flow,
            state,
            result,
            outcome=("client_aborted" if client_gone else "ok") if ok else "upstream_error",
            status_code=status,
            client_aborted=client_gone,
            response_bytes=len(content),
        )

    def _write(
        self, flow: http.HTTPFlow, state: FlowState, result: Reassembled | None, **fields: object
    ) -> None:
        state.record.traced = True
        end = datetime.now(UTC)
        check = pending_async_check(flow)
        if check is not None:
            self._defer(flow, state, result, end, check, fields)
            return
        self._emit(flow, state, result, end, fields)

    def _defer(
        self,
        flow: http.HTTPFlow,
        state: FlowState,
        result: Reassembled | None,
        end: datetime,
        check: asyncio.Future[object],
        fields: dict[str, object],
    ) -> None:
        """The call ended before its async-stage guardrail check: the row waits for the check,
        at most ``ASYNC_WAIT_S`` (then it is written marked unfinished, its request body withheld).
        Nothing else waits: the client already has its answer."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the event loop (cannot happen in mitmproxy): write at once
            self._emit(flow, state, result, end, fields)
            return
        key = id(state)

        def write_now(*_: object) -> None:
            if self._deferred.pop(key, None) is None:
                return  # already written (the check finished and the timer fired, or shutdown)
            timer.cancel()
            self._emit(flow, state, result, end, fields)

        self._deferred[key] = write_now
        timer = loop.call_later(ASYNC_WAIT_S, write_now)
        check.add_done_callback(write_now)

    def _emit(
        self, flow: http.HTTPFlow, state: FlowState, result: Reassembled | None, end: datetime,
        fields: dict[str, object],
    ) -> None:
        instance = self.sink.instance_id if self.sink is not None else None
        try:
            row = build_row(flow, state, result, end=end, instance=instance, privacy_=self.privacy, **fields)  # type: ignore[arg-type]
        except Exception as exc:  # a row must exist even when building it fails: keep the essentials
            log.error(
                "codexgate: could not build a full trace row (%s); writing a minimal one", type(exc).__name__
            )
            row = minimal_row(state, end, instance, f"trace_row: {type(exc).__name__}", fields)
        if self.sink is not None:
            try:
                self.sink.write(row)
            except SinkError:
                # reported loudly through on_error already. A healthy sink refused the record for
                # its size (seven capped texts, each escaped up to 6x, can pass the spool's
                # record cap): the row is kept without its stored texts, flagged truncated.
                if self.sink.healthy:
                    slim = {**row, **dict.fromkeys(STORED_TEXT_COLUMNS), "body_truncated": True}
                    try:
                        self.sink.write(slim)
                    except SinkError:
                        pass
        for finish in state.record.finishers:
            try:
                finish(row)
            except Exception as exc:  # one control's bookkeeping must not stop another's
                log.error("codexgate: a finisher failed (%s)", type(exc).__name__)
        state.request.release_payload()
        # the tap's reassembled answer too: whoever still feeds it (the relay, mitmproxy's stream
        # callable) holds it, and once they let go nothing cyclic keeps it alive
        state.record.tap = None


def filtered(
    tap: Callable[[bytes], bytes], filters: list[Callable[[bytes], bytes]]
) -> Callable[[bytes], bytes]:
    """The chunk function of a call: stream filters first (they may hold, rewrite or end the
    stream), then the tap, so the row records what the client got and is written only after
    every filter saw the terminal event. ``b""`` at the end flushes the filters, then ends the tap."""
    if not filters:
        return tap
    chain = list(filters)

    def run(chunk: bytes) -> bytes:
        data = chunk
        for f in chain:
            if data or not chunk:
                data = f(data)
        out = tap(data) if data else b""
        if not chunk:
            out = (out or b"") + (tap(b"") or b"")
        return out

    return run


def _first_token(state: FlowState, at: datetime) -> None:
    if state.timing.first_token_at is None:
        state.timing.first_token_at = at
