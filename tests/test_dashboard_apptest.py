"""Every dashboard page rendered with Streamlit's AppTest on a generated dataset: real numbers from the
analytics queries, the replay step-through (tool calls, failed calls, links, navigation), re-running a
step through a loopback stand-in for the gateway, an empty traces folder, and login scoping with a
real vault."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from analytics import queries
from analytics.access import ViewerScope
from analytics.db import TraceStore
from analytics.sessions import list_sessions, replay_steps, session_calls
from analytics.synth import write_dataset
from codexgate.core.vault import Vault, generate_secret
from dashboard import format as fmt
from dashboard.auth import LoginError, resolve_viewer

PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "pages"
ENV_KEYS = (
    "CODEXGATE_TRACES",
    "CODEXGATE_DASHBOARD_AUTH",
    "CODEXGATE_ADMIN_TOKEN",
    "CODEXGATE_VAULT",
    "CODEXGATE_VAULT_KEY",
    "CODEXGATE_VAULT_KEY_FILE",
    "CODEXGATE_GATEWAY_URL",
    "CODEXGATE_SYNTHETIC_TRACES",
)


@pytest.fixture(autouse=True)
def clean_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    for k in ENV_KEYS:
        os.environ.pop(k, None)
    os.environ["CODEXGATE_DASHBOARD_AUTH"] = "off"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dash") / "traces"
    write_dataset(folder, 400, seed=11, bodies=True)
    return folder


@pytest.fixture(scope="module")
def store(traces: Path) -> TraceStore:
    return TraceStore(traces)


def page(name: str, traces: Path | None = None, **params: str) -> AppTest:
    if traces is not None:
        os.environ["CODEXGATE_TRACES"] = str(traces)
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=30)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def default_range() -> tuple[datetime, datetime]:
    today = datetime.now(UTC).date()
    since = datetime.combine(today - timedelta(days=7), time(), tzinfo=UTC)
    return since, datetime.combine(today, time(), tzinfo=UTC) + timedelta(days=1)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.code] + [e.value for e in at.error]
    parts += [s.value for s in at.subheader] + [c.value for c in at.caption] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


def test_overview_metrics_match_the_queries(traces: Path, store: TraceStore) -> None:
    at = page("overview", traces)
    assert not at.exception
    since, until = default_range()
    spend = queries.spend(store, by=(), since=since, until=until).row(0, named=True)
    errs = queries.errors(store, by=(), since=since, until=until).row(0, named=True)
    assert spend["requests"] == 400
    assert metric(at, "Calls") == fmt.count(spend["requests"])
    assert metric(at, "Spend") == fmt.money(spend["cost_usd"])
    assert metric(at, "Error rate") == fmt.percent(errs["errors"] / errs["requests"])
    assert len(at.get("vega_lite_chart")) >= 2  # spend and error rate per day
    assert "Costliest sessions of the week" in texts(at)
    assert "SYNTHETIC DATA" not in texts(at)  # no label beside this folder


def test_synthetic_history_is_shown_with_its_badge_and_budgets(traces: Path, tmp_path: Path) -> None:
    """A labelled synthetic folder next to the live one: the live folder by default, the synthetic one
    with ``?data=synthetic`` — badge, its own numbers, and the label's budgets in the burn-down."""
    synthetic = tmp_path / "synthetic" / "traces"
    write_dataset(synthetic, 120, seed=5, bodies=False)
    label = {"synthetic": True, "days": 7, "budgets": [{"scope_kind": "team", "name": "acme/platform",
                                                        "amount_usd": 5.0, "period": "week"}]}  # fmt: skip
    (tmp_path / "synthetic" / "SYNTHETIC.json").write_text(json.dumps(label))
    os.environ["CODEXGATE_SYNTHETIC_TRACES"] = str(synthetic)
    try:
        live = page("overview", traces)
        assert not live.exception and "SYNTHETIC DATA" not in texts(live)
        assert metric(live, "Calls") == "400"
        shown = page("overview", traces, data="synthetic")
        assert not shown.exception
        assert "SYNTHETIC DATA" in texts(shown)
        since, until = default_range()
        calls = queries.spend(TraceStore(synthetic), by=(), since=since, until=until)["requests"][0]
        assert metric(shown, "Calls") == fmt.count(calls)
        assert "Spend vs budget, per team" in texts(shown) and not shown.info  # the label's budget is drawn
    finally:
        os.environ.pop("CODEXGATE_SYNTHETIC_TRACES", None)


def test_errors_guardrails_attribution_sessions_pages(traces: Path, store: TraceStore) -> None:
    since, until = default_range()
    errs = queries.errors(store, by=(), since=since, until=until).row(0, named=True)
    at = page("errors", traces)
    assert not at.exception
    assert metric(at, "Refused") == f"{errs['refused']:,}"
    assert metric(at, "Fallbacks") == f"{errs['fallbacks']:,}"

    at = page("guardrails", traces)
    assert not at.exception
    findings = queries.guardrails(store, since=since, until=until)
    assert metric(at, "Findings") == f"{int(findings['findings'].sum()):,}"
    assert metric(at, "Blocked calls") == f"{errs['guardrail_blocked']:,}"

    at = page("attribution", traces)
    assert not at.exception
    assert "No budgets are configured" in at.info[0].value
    by_team = queries.spend(store, by=("team",), since=since, until=until)
    shown = at.dataframe[0].value
    assert sorted(shown["team"].tolist()) == sorted(by_team["team"].fill_null("(none)").to_list())

    at = page("sessions", traces)
    assert not at.exception
    listed = list_sessions(store, ViewerScope(), since, until, with_titles=False)
    assert at.dataframe[0].value.shape[0] == listed.height
    assert at.dataframe[0].value["replay"].iloc[0].startswith("/replay?session=")
    sid = listed["session_id"][3]
    at.text_input(key="session_search").input(sid[:13]).run()
    assert at.dataframe[0].value["session_id"].tolist() == [sid]


def _session_with_tool_and_failure(store: TraceStore) -> tuple[str, list[Any]]:
    sessions = list_sessions(store, ViewerScope(), order_by="errors", with_titles=False)
    for sid in sessions.filter(pl.col("errors") > 0)["session_id"].to_list():
        steps = replay_steps(session_calls(store, sid, ViewerScope()))
        if len(steps) >= 4 and steps[2].tool_calls:
            return sid, steps
    pytest.fail("no generated session with a failed call and a tool call at step 3")


def test_replay_steps_through_a_session(traces: Path, store: TraceStore) -> None:
    sid, steps = _session_with_tool_and_failure(store)
    at = page("replay", traces, session=sid, step="3")
    assert not at.exception
    step = steps[2]
    assert at.subheader[0].value.startswith(f"Step 3 of {len(steps)}")
    body = texts(at)
    call = step.tool_calls[0]
    assert f"Tool call `{call.name}`" in body
    assert json.dumps(call.arguments_json, indent=2, ensure_ascii=False) in body
    if call.answered_in_step is not None:
        assert f"answered by [step {call.answered_in_step + 1}](?session={sid}&step=" in body
    assert metric(at, "Cumulative cost") == f"${step.cumulative_cost_usd:.4f}"
    assert len(at.get("vega_lite_chart")) == 1  # the waterfall

    # Next moves one step and keeps ?step= in sync; Previous goes back
    at.button[1].click().run()
    assert at.subheader[0].value.startswith("Step 4 of")
    assert at.query_params["step"] == ["4"] or at.query_params["step"] == "4"
    at.button[0].click().run()
    assert at.subheader[0].value.startswith("Step 3 of")

    # a failed call shows its error
    failed = next(s for s in steps if not s.ok)
    at = page("replay", traces, session=sid, step=str(failed.number))
    assert not at.exception
    assert any(failed.outcome in e.value for e in at.error) or failed.outcome == "refused"
    assert any(str(failed.status_code) in e.value for e in at.error)


class _Gateway(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length", 0))
        doc = json.loads(self.rfile.read(length))
        _Gateway.seen.append({"path": self.path, "body": doc, "auth": self.headers.get("authorization")})
        answer = {
            "id": "resp_rerun",
            "model": doc["model"],
            "output": [
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "RERUN-OK"}],
                }
            ],
            "usage": {"input_tokens": 10, "output_tokens": 2},
        }
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


def test_rerun_a_step_through_the_gateway(traces: Path, store: TraceStore) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        os.environ["CODEXGATE_GATEWAY_URL"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
        sid, steps = _session_with_tool_and_failure(store)
        at = page("replay", traces, session=sid, step="1")
        at.text_input(key=f"rerun_model_{steps[0].trace_id}").input("o4-mini")
        at.text_input(key="rerun_key").input("cgk_test_notarealkey")
        at.button(key=f"rerun_go_{steps[0].trace_id}").click().run()
        assert not at.exception
        assert "RERUN-OK" in texts(at)
        sent = _Gateway.seen[-1]
        assert sent["path"] == "/v1/responses"
        assert sent["body"]["stream"] is False and sent["body"]["model"] == "o4-mini"
        assert sent["auth"] == "Bearer cgk_test_notarealkey"
        assert sent["body"]["input"] == json.loads(steps[0].request_body)["input"]
    finally:
        server.shutdown()
        server.server_close()


def test_empty_traces_folder_is_a_friendly_message(tmp_path: Path) -> None:
    for name in ("overview", "attribution", "sessions", "replay", "guardrails", "errors"):
        at = page(name, tmp_path / "missing")
        assert not at.exception, name
        assert "No traces yet" in at.info[0].value


def test_login_scopes_every_query(traces: Path, store: TraceStore, tmp_path: Path) -> None:
    frame = store.query(
        f"SELECT org, team, developer FROM {store.relation()} WHERE developer IS NOT NULL LIMIT 1"
    )
    org, team, developer = frame.row(0)
    vault = Vault()
    vault.add_team(org, team, admins=["lead"])
    # the generated developers are e-mail addresses, which vault names do not allow: the key's
    # developer is set after creation, as a gateway deployment keyed on e-mails would have it
    dev_entry, dev_key = vault.create_key(org=org, team=team, project="p", developer="dev")
    dev_entry.developer = developer
    _, lead_key = vault.create_key(org=org, team=team, project="p", developer="lead")
    admin_entry, admin_key = vault.create_key(org=org, team=team, project="p", developer="boss")
    vault.org_admin_key_ids.append(admin_entry.key_id)
    secret = generate_secret()
    vault.save(tmp_path / "vault.bin", secret)
    env = {
        "CODEXGATE_VAULT": str(tmp_path / "vault.bin"),
        "CODEXGATE_VAULT_KEY": secret.decode(),
        "CODEXGATE_ADMIN_TOKEN": "admin-token-for-tests",
    }
    now = datetime.now(UTC)
    assert resolve_viewer(dev_key, env, now).scope == ViewerScope(
        org, team, developer, f"developer · {developer}"
    )
    assert resolve_viewer(lead_key, env, now).scope.developer is None
    assert resolve_viewer(lead_key, env, now).scope.team == team
    assert resolve_viewer(admin_key, env, now).scope.team is None
    assert resolve_viewer(admin_key, env, now).scope.org == org
    assert resolve_viewer("admin-token-for-tests", env, now).scope.unrestricted
    with pytest.raises(LoginError):
        resolve_viewer(dev_key[:-3] + "xyz", env, now)

    # through the page: the developer logs in and sees only their own sessions
    os.environ.pop("CODEXGATE_DASHBOARD_AUTH")
    os.environ.update(env)
    at = page("sessions", traces)
    assert not at.dataframe  # login form only
    at.text_input[0].input(dev_key)
    at.button[0].click().run()
    assert not at.exception
    since, until = default_range()
    mine = list_sessions(store, ViewerScope(org, team, developer), since, until, with_titles=False)
    shown = at.dataframe[0].value
    assert set(shown["developer"]) == {developer}
    assert shown.shape[0] == mine.height
    everyone = list_sessions(store, ViewerScope(), since, until, with_titles=False)
    assert everyone.height > mine.height
