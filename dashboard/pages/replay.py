"""Replay: one Codex session like a debugger. A waterfall of its calls, then step-through (Previous /
Next / slider, synced with ``?step=N``, 1-based): what was new in the input, what the model answered,
tokens and cost, attempts, guardrail findings, instruction changes, tool call <-> output links, and a
"Re-run this step" through the gateway with the viewer's own key."""

from __future__ import annotations

import json

import altair as alt
import polars as pl
import streamlit as st

from analytics import rerun, sessions
from analytics.access import ViewerScope
from analytics.sessions import CONTEXT, INSTRUCTIONS, TOOL_OUTPUT, USER, Step
from dashboard import auth, data, replay_view

STEP_KEY = "replay_step"
OUTCOME_COLORS = {
    "ok": "#4c78a8",
    "upstream_error": "#e45756",
    "gateway_error": "#b8405e",
    "incomplete": "#f58518",
    "refused": "#9d755d",
    "client_aborted": "#bab0ac",
}


def _int_param(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _md_escape(text: str) -> str:
    return text.replace("[", "\\[").replace("]", "\\]")


def _highlighted(text: str, findings: list[sessions.Finding]) -> str:
    # finding offsets refer to an input item's text before redaction: highlight the placeholders
    spans = replay_view.placeholder_spans(text, {f.entity for f in findings if f.entity})
    if not spans:
        return text
    parts = []
    for piece, label in replay_view.highlight_segments(text, spans):  # type: ignore[arg-type]
        piece = piece.replace("<", "\\<")  # placeholders are not HTML tags
        parts.append(f":red-background[**{_md_escape(piece)}**]" if label else piece)
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# session picker and waterfall
# ---------------------------------------------------------------------------------------------


def pick_session(scope: ViewerScope) -> str | None:
    session_id = st.query_params.get("session")
    if session_id:
        return session_id
    recent = data.run("list_sessions", scope, order_by="recent", limit=100)
    if recent.is_empty():
        st.info("No Codex sessions to replay yet.")
        return None
    labels = {
        row["session_id"]: f"{row['started']:%Y-%m-%d %H:%M} · {row['developer']} · {row['calls']} calls · "
        f"{(row['title'] or '')[:60]}"
        for row in recent.iter_rows(named=True)
    }
    chosen = st.selectbox("Session", list(labels), format_func=labels.get, key="replay_pick")
    if chosen and st.button("Replay this session", type="primary"):
        st.query_params.update({"session": chosen, "step": "1"})
        st.rerun()
    return None


def waterfall(steps: list[Step], current: int) -> alt.LayerChart:
    frame = replay_view.timeline_frame(steps).with_columns(
        (pl.col("start_ms") / 1000).alias("start_s"),
        (pl.col("end_ms") / 1000).alias("end_s"),
        (pl.col("ttft_ms") / 1000).alias("ttft_s"),
        (pl.col("step") == current).alias("current"),
    )
    y = alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelLimit=320, labelOverlap=False))
    color = alt.Color(
        "outcome:N",
        scale=alt.Scale(domain=list(OUTCOME_COLORS), range=list(OUTCOME_COLORS.values())),
        legend=alt.Legend(orient="top", title=None),
    )
    base = alt.Chart(frame)
    bars = base.mark_bar(cornerRadius=2).encode(
        y=y,
        x=alt.X("start_s:Q", title="seconds since the session's first call"),
        x2="end_s:Q",
        color=color,
        opacity=alt.condition(alt.datum.current, alt.value(1.0), alt.value(0.55)),
        stroke=alt.condition(alt.datum.current, alt.value("black"), alt.value(None)),
        tooltip=["step", "model", "outcome", "duration_ms", "first_token_ms", "cost_usd", "tools"],
    )
    ttft = base.mark_tick(color="black", thickness=2, size=12).encode(y=y, x="ttft_s:Q")
    return (bars + ttft).properties(height=max(120, 20 * len(steps)))


# ---------------------------------------------------------------------------------------------
# step navigation
# ---------------------------------------------------------------------------------------------


def _go(delta: int, n: int) -> None:
    st.session_state[STEP_KEY] = min(n, max(1, int(st.session_state[STEP_KEY]) + delta))


def _jump(number: int) -> None:
    st.session_state[STEP_KEY] = number


def step_navigation(session_id: str, n: int) -> int:
    wanted = min(n, max(1, _int_param(st.query_params.get("step"), 1)))
    if st.session_state.get("replay_session") != session_id or STEP_KEY not in st.session_state:
        st.session_state["replay_session"] = session_id
        st.session_state[STEP_KEY] = wanted
    st.session_state[STEP_KEY] = min(n, max(1, int(st.session_state[STEP_KEY])))
    prev_col, slider_col, next_col = st.columns([1, 6, 1], vertical_alignment="bottom")
    current = int(st.session_state[STEP_KEY])
    prev_col.button("◀ Previous", on_click=_go, args=(-1, n), disabled=current <= 1, width="stretch")
    next_col.button("Next ▶", on_click=_go, args=(1, n), disabled=current >= n, width="stretch")
    with slider_col:
        if n > 1:
            st.slider("Step", 1, n, key=STEP_KEY)
        else:
            st.caption("This session has a single call.")
    step = int(st.session_state[STEP_KEY])
    if st.query_params.get("step") != str(step):
        st.query_params["step"] = str(step)
    return step


def step_link(session_id: str, number: int, label: str | None = None) -> str:
    return f"[{label or f'step {number}'}](?session={session_id}&step={number})"


# ---------------------------------------------------------------------------------------------
# one step
# ---------------------------------------------------------------------------------------------


def render_new_input(step: Step, session_id: str) -> None:
    st.markdown("#### New input")
    shown = [i for i in step.new_items if not i.echo]
    echoed = [i for i in step.new_items if i.echo]
    if step.number > 1 and step.new_turn:
        st.caption("🆕 a new turn starts here")
    if not step.new_items:
        if step.new_items_source == "unavailable":
            st.caption("The request body was not recorded (privacy mode), so the new input is unknown.")
        else:
            st.caption("Nothing new in the input: the same request as the previous step (a retry).")
    input_findings = [f for f in step.findings if f.stage != "output"]
    for item in shown:
        if item.kind == USER:
            with st.chat_message("user"):
                st.markdown(_highlighted(item.text, input_findings))
        elif item.kind == TOOL_OUTPUT:
            link = ""
            if item.answers_step is not None:
                k = item.answers_step + 1
                link = f" — answers the tool call of {step_link(session_id, k, f'step {k}')}"
            st.markdown(f"**Tool output** `{item.call_id or '?'}`{link}")
            text = item.text[:6000] + ("\n…" if len(item.text) > 6000 else "")
            marked = _highlighted(text, input_findings)
            if marked != text:  # a guardrail finding in this output: show it highlighted
                with st.container(border=True):
                    st.markdown(marked)
            else:
                st.code(text, language=None)
        elif item.kind in (CONTEXT, INSTRUCTIONS):
            title = "Instructions (developer prompt)" if item.kind == INSTRUCTIONS else "Environment context"
            with st.expander(title):
                st.code(item.text[:20000], language=None)
        else:
            with st.expander(f"{item.kind} item"):
                st.code(item.text[:6000], language=None)
    if echoed:
        with st.expander(f"{len(echoed)} item(s) of earlier model output sent back as history"):
            for item in echoed:
                st.markdown(
                    f"- *{item.kind}* {('`' + item.name + '`') if item.name else ''} {item.text[:200]}"
                )


def render_answer(step: Step, session_id: str) -> None:
    st.markdown("#### Answer")
    if step.outcome == "refused":
        st.error(
            f"Refused by the gateway (HTTP {step.status_code}): {step.refusal_reason or step.error_type}"
            f" — {step.error_message or ''}"
        )
    elif not step.ok:
        st.error(
            f"**{step.outcome}** (HTTP {step.status_code or '—'}) {step.error_type or ''}: "
            f"{step.error_message or ''}"
        )
    if step.reasoning:
        with st.expander("Reasoning summary", expanded=True):
            st.markdown(step.reasoning)
    output_findings = [f for f in step.findings if f.stage == "output"]
    if step.output_text:
        with st.chat_message("assistant"):
            st.markdown(_highlighted(step.output_text, output_findings))
    for call in step.tool_calls:
        link = ""
        if call.answered_in_step is not None:
            k = call.answered_in_step + 1
            link = f" — answered by {step_link(session_id, k, f'step {k}')}"
        st.markdown(f"🔧 **Tool call `{call.name}`** · `{call.call_id or ''}`{link}")
        args = call.arguments_json
        st.code(
            json.dumps(args, indent=2, ensure_ascii=False) if args is not None else (call.arguments or ""),
            language="json",
        )
    if step.ok and not step.output_text and not step.tool_calls:
        st.caption("No output text or tool calls were recorded for this call.")


def render_usage(step: Step) -> None:
    def n(value: int | None) -> str:
        return "—" if value is None else f"{value:,}"

    cols = st.columns(5)
    cols[0].metric("Input tokens", n(step.input_tokens), help=f"cached: {n(step.cached_tokens)}")
    cols[1].metric("Cached", n(step.cached_tokens))
    cols[2].metric("Output tokens", n(step.output_tokens), help=f"reasoning: {n(step.reasoning_tokens)}")
    cols[3].metric("Step cost", "unpriced" if step.cost_usd is None else f"${step.cost_usd:.4f}")
    cols[4].metric("Cumulative cost", f"${step.cumulative_cost_usd:.4f}")
    st.caption(
        f"Reasoning tokens: {n(step.reasoning_tokens)} · cumulative tokens: "
        f"{step.cumulative_input_tokens:,} in / {step.cumulative_output_tokens:,} out"
        + (f" · {step.cumulative_unpriced} unpriced call(s) so far" if step.cumulative_unpriced else "")
    )


def attempt_target(a: dict) -> str:
    """An attempt's route target as ``x-codexgate-served-by`` names it (provider[:model]), with the
    API it was translated to."""
    base = f"{a.get('provider')}:{a['model']}" if a.get("model") else str(a.get("provider"))
    return base + (f" ({a['upstream_api']})" if a.get("upstream_api") else "")


_DECISIONS = {
    "served": "served",
    "retry": "retried the same target",
    "fallback": "fell back to the next target",
    "skipped": "skipped (circuit open)",
    "cut": "served, then the stream broke (cut)",
    "gave_up": "gave up (nothing left to try)",
}


def render_attempts(step: Step) -> None:
    """Each upstream attempt of the step: target, status, latency, error and what the relay did next."""
    if step.fallback_used:
        providers = " → ".join(attempt_target(a) for a in step.attempts)
        st.warning(f"Fallback: the call moved to another target ({providers}).")
    if len(step.attempts) > 1 or step.fallback_used or (step.attempts and not step.ok):
        st.markdown("**Attempts**")
        rows = [
            {
                "#": a.get("attempt"),
                "target": attempt_target(a),
                "status": a.get("status_code"),
                "latency_ms": a.get("latency_ms"),
                "error": a.get("error"),
                "decision": _DECISIONS.get(str(a.get("decision")), a.get("decision")),
                "waited_ms": a.get("wait_ms"),
                "sent_bytes": a.get("sent_bytes"),
            }
            for a in step.attempts
        ]
        st.dataframe(
            pl.DataFrame(rows, infer_schema_length=None),
            hide_index=True,
            width="stretch",
            column_config={"latency_ms": st.column_config.NumberColumn(format="%.0f")},
        )
    if step.upstream_request_body:
        with st.expander("Sent upstream (translated or rewritten by the route)"):
            try:
                st.json(json.loads(step.upstream_request_body), expanded=1)
            except ValueError:
                st.code(step.upstream_request_body[:20000])


def render_guardrails(step: Step) -> None:
    if not step.findings:
        return
    st.markdown("**Guardrail findings**" + (" — the call was blocked" if step.guardrail_blocked else ""))
    for f in step.findings:
        line = f"**{f.guardrail}** · {f.stage} · `{f.entity}` · {f.action}" + (
            f" · score {f.score:.2f}" if f.score is not None else ""
        )
        if f.message:
            line += f" — {f.message}"
        spans = replay_view.placeholder_spans(f.text, {f.entity}) if f.entity else []
        if spans:  # where its placeholder sits in the stored text (the value itself is never stored)
            text, a, b = replay_view.excerpt(f.text, spans[0][0], spans[0][1], context=60)
            line += f"\n\n> …{_md_escape(text[:a])}:red-background[**{_md_escape(text[a:b])}**]{_md_escape(text[b:])}…"
        (st.error if f.action == "blocked" else st.warning)(line)


def render_instructions(step: Step, session_id: str) -> None:
    if not step.instructions_changed:
        return
    since = step.instructions_changed_from
    ref = f" since {step_link(session_id, since + 1)}" if since is not None else ""
    st.warning(f"The instructions (system/developer prompt) changed{ref}.")
    if step.instructions_diff:
        st.code(step.instructions_diff, language="diff")
    else:
        st.caption("The prompt text was not recorded, only its hash changed.")


def render_rerun(step: Step, viewer: auth.Viewer) -> None:
    with st.expander("Re-run this step"):
        if not step.request_body:
            st.caption("No recorded request body (privacy mode), so this step cannot be re-run.")
            return
        st.caption(
            f"Sends the recorded request again through the gateway ({rerun.gateway_url()}), non-streamed."
        )
        model = st.text_input("Model", value=step.model or "", key=f"rerun_model_{step.trace_id}")
        key = viewer.gateway_key
        if not key:
            key = st.text_input("Your gateway key", type="password", key="rerun_key")
        result_key = f"rerun_result_{step.trace_id}"
        if st.button("Re-run", key=f"rerun_go_{step.trace_id}", type="primary"):
            try:
                with st.spinner("Calling the gateway…"):
                    st.session_state[result_key] = rerun.rerun_step(
                        step.request_body, step.api, key or "", model=model or None
                    )
            except rerun.RerunError as exc:
                st.error(str(exc))
        result: rerun.RerunResult | None = st.session_state.get(result_key)
        if result is None:
            return
        recorded, new = st.columns(2)
        with recorded:
            st.markdown(f"**Recorded** · {step.model} · HTTP {step.status_code}")
            st.markdown(step.output_text or "*(no text)*")
            for call in step.tool_calls:
                st.code(f"{call.name}({call.arguments or ''})", language=None)
        with new:
            st.markdown(
                f"**New** · {result.model or model} · HTTP {result.status_code} · {result.elapsed_ms:,.0f} ms"
            )
            if result.error:
                st.error(result.error)
            st.markdown(result.text or "*(no text)*")
            for call in result.tool_calls:
                st.code(f"{call.get('name')}({call.get('arguments') or ''})", language=None)
            if result.usage:
                st.caption("usage: " + json.dumps(result.usage))


def render_step(step: Step, n: int, session_id: str, viewer: auth.Viewer) -> None:
    st.subheader(f"Step {step.number} of {n} — {step.summary()}")
    when = f"{step.start_time:%Y-%m-%d %H:%M:%S}" if step.start_time else "?"
    served = step.response_model if step.response_model and step.response_model != step.model else None
    st.caption(
        f"call #{step.call_index} · {when} UTC · {step.model}{' → ' + served if served else ''} · "
        f"{step.provider or '—'} · {step.api} · HTTP {step.status_code or '—'} · "
        f"{(step.duration_ms or 0) / 1000:,.2f} s"
        + (f" · first token after {step.ttft_ms / 1000:,.2f} s" if step.ttft_ms is not None else "")
    )
    render_instructions(step, session_id)
    left, right = st.columns(2, gap="large")
    with left:
        render_new_input(step, session_id)
    with right:
        render_answer(step, session_id)
    render_usage(step)
    render_attempts(step)
    render_guardrails(step)
    render_rerun(step, viewer)


def render() -> None:
    data.use_app_navigation()
    viewer = auth.require_viewer()
    data.require_store()
    st.title("Replay")
    session_id = pick_session(viewer.scope)
    if not session_id:
        return
    calls = data.run("session_calls", viewer.scope, session_id)
    if calls.is_empty():
        st.warning(f"Session `{session_id}` was not found, or it is not visible to you.")
        return
    steps = sessions.replay_steps(calls)
    n = len(steps)
    first = steps[0]
    total_s = max(((s.offset_ms + (s.duration_ms or 0)) for s in steps), default=0) / 1000
    errors = sum(1 for s in steps if not s.ok)
    st.caption(
        f"Session `{session_id}` · {calls['developer'][0] or '—'} ({calls['team'][0] or '—'}) · "
        f"{first.model} · started {first.start_time:%Y-%m-%d %H:%M} UTC"
    )
    cols = st.columns(4)
    cols[0].metric("Calls", n)
    cols[1].metric("Cost", f"${steps[-1].cumulative_cost_usd:.4f}")
    cols[2].metric("Wall time", f"{total_s:,.0f} s")
    cols[3].metric("Failed calls", errors)
    current = step_navigation(session_id, n)
    with st.expander("Timeline", expanded=True):
        st.altair_chart(waterfall(steps, current), width="stretch")
        st.caption("Bars: start → end of each call; black tick: first token.")
    render_step(steps[current - 1], n, session_id, viewer)


render()
