"""The real dashboard (``streamlit run dashboard/app.py``) in headless Chromium: the Replay page of a
generated session at step 3 shows that call's tool call name and arguments. Also saves a screenshot
to ``test-artifacts/replay.png``."""

from __future__ import annotations

import html
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from analytics.access import ViewerScope
from analytics.db import TraceStore
from analytics.sessions import list_sessions, replay_steps, session_calls
from analytics.synth import write_dataset
from codexgate.cli import launch

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser") / "traces"
    write_dataset(folder, 250, seed=21, bodies=True)
    return folder


@pytest.fixture(scope="module")
def dashboard(traces: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "CODEXGATE_TRACES": str(traces),
        "CODEXGATE_DASHBOARD_AUTH": "off",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    try:
        proc = launch.start_dashboard_process(port, env, log)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_replay_page_in_chromium(dashboard: str, traces: Path, tmp_path: Path) -> None:
    store = TraceStore(traces)
    chosen = None
    for sid in list_sessions(store, ViewerScope(), with_titles=False, order_by="calls")[
        "session_id"
    ].to_list():
        steps = replay_steps(session_calls(store, sid, ViewerScope()))
        if len(steps) >= 3 and steps[2].tool_calls:
            chosen = (sid, steps[2].tool_calls[0])
            break
    assert chosen is not None, "no generated session with a tool call at step 3"
    sid, call = chosen
    url = f"{dashboard}/replay?session={quote(sid)}&step=3"

    # Under --virtual-time-budget, Chromium sometimes dumps the DOM before Streamlit's websocket has
    # delivered the page (an empty shell); a few fresh attempts give the page time to render.
    text = ""
    for attempt in range(5):
        dom = chromium(url, tmp_path / f"profile-dom-{attempt}", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        text = html.unescape(dom.stdout)
        if "Step 3 of" in text:
            break
    assert "Step 3 of" in text
    assert ">Attribution<" in dom.stdout  # served through app.py's st.navigation (page titles)
    assert call.name in text
    args = call.arguments_json
    assert isinstance(args, dict) and args
    for key, value in args.items():
        assert f'"{key}"' in text
        if isinstance(value, str):
            assert value.splitlines()[0] in text

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "replay.png"
    shot.unlink(missing_ok=True)
    for attempt in range(5):
        result = chromium(
            url,
            tmp_path / f"profile-shot-{attempt}",
            "--run-all-compositor-stages-before-draw",
            f"--screenshot={shot}",
            "--window-size=1400,1800",
        )
        assert result.returncode == 0, result.stderr[-2000:]
        if shot.exists() and shot.stat().st_size > 60_000:  # an empty shell is a ~10 KB blank image
            break
    assert shot.exists() and shot.stat().st_size > 60_000


# ---------------------------------------------------------------------------------------------
# the demo's data, signed in with the admin token, every page in Chromium
# ---------------------------------------------------------------------------------------------

DEMO_PAGES = ["overview", "attribution", "sessions", "replay", "guardrails", "errors", "admin", "audit"]

# Counts drawn marks with an area (bars, areas, points) or a length (lines, rules) in each Vega chart;
# axes, grids and legends are not marks. An "empty frame" is a chart with axes and nothing drawn.
CHART_PROBE = """
(() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].map(chart => {
  let drawn = 0;
  for (const el of chart.querySelectorAll('g.role-mark path, g.role-mark line, g.role-mark rect')) {
    const b = el.getBBox();
    if ((b.width >= 1 && b.height >= 1) || (el.tagName === 'line' && (b.width >= 1 || b.height >= 1))) drawn++;
  }
  return drawn;
}))()
"""


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``codexgate demo --check`` (built-in agent: no Codex CLI needed) into a fresh folder: the data
    folder and the recorded session id."""
    from tests.helpers.gateway import free_port as gw_port

    data = tmp_path_factory.mktemp("demo") / "data"
    ports = [str(gw_port()) for _ in range(3)]
    cmd = [str(Path(sys.executable).with_name("codexgate")), "demo", "--data", str(data), "--check"]
    cmd += ["--port", ports[0], "--proxy-port", ports[1], "--sim-port", ports[2], "--agent", "builtin"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return data, run.stdout.split("demo check: ok, session ", 1)[1].split()[0]


@pytest.fixture(scope="module")
def demo_dashboard(demo_data: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard as ``codexgate demo`` starts it (live + synthetic folders, vault, admin token)."""
    data, _ = demo_data
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")},
        "CODEXGATE_TRACES": str(data / "traces"),
        "CODEXGATE_SYNTHETIC_TRACES": str(data / "synthetic" / "traces"),
        "CODEXGATE_VAULT": str(data / "vault" / "vault.enc"),
        "CODEXGATE_VAULT_KEY_FILE": str(data / "secrets" / "vault.key"),
        "CODEXGATE_ADMIN_TOKEN": "browser-test-token",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    log = tmp_path_factory.mktemp("streamlit-demo") / "streamlit.log"
    try:
        proc = launch.start_dashboard_process(port, env, log)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _evaluate(browser, expression: str):  # noqa: ANN001, ANN202 - Browser from the auth browser test
    result = browser.send("Runtime.evaluate", expression=expression, returnByValue=True)
    return result.get("result", {}).get("value")


def _settled(browser, title: str, timeout: float = 60) -> str:  # noqa: ANN001
    """The page text once ``title`` is shown, nothing is running and every chart has drawn."""
    deadline = time.monotonic() + timeout
    text, stable = "", 0
    while time.monotonic() < deadline:
        text = browser.text()
        running = _evaluate(browser, "!!document.querySelector('[data-testid=\"stStatusWidget\"]')")
        svgs = _evaluate(
            browser,
            "[...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')].every(c => c.querySelector('svg'))",
        )
        stable = stable + 1 if (title in text and not running and svgs) else 0
        if stable >= 3:
            return text
        time.sleep(0.5)
    return text


def test_demo_dashboard_in_chromium(demo_data: tuple[Path, str], demo_dashboard: str, tmp_path: Path) -> None:
    """Sign in with the admin token on a Replay deep link (the link survives sign-in), then open every
    page on live and synthetic demo data: no exception, no empty chart frame; screenshots saved to
    ``test-artifacts/demo-*.png``."""
    import base64

    from tests.test_dashboard_auth_browser import SIGN_IN_FORM, Browser

    _, session = demo_data
    browser = Browser(tmp_path / "profile")
    try:
        browser.send(
            "Emulation.setDeviceMetricsOverride", width=1440, height=1800, deviceScaleFactor=1, mobile=False
        )
        for path in ("/", "/overview"):  # the root forwards to Overview's own URL; that URL opens it
            browser.send("Page.navigate", url=demo_dashboard + path)
            assert SIGN_IN_FORM in browser.wait_for(SIGN_IN_FORM, "Page not found")
            deadline = time.monotonic() + 20
            while not str(_evaluate(browser, "location.pathname")).endswith("/overview"):
                assert time.monotonic() < deadline, _evaluate(browser, "location.href")
                time.sleep(0.25)
        browser.send("Page.navigate", url=f"{demo_dashboard}/replay?session={quote(session)}&step=3")
        assert SIGN_IN_FORM in browser.wait_for(SIGN_IN_FORM)
        _evaluate(browser, "document.querySelector('input[type=password]').focus()")
        browser.send("Input.insertText", text="browser-test-token")
        time.sleep(0.3)
        _evaluate(
            browser,
            "[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Sign in').click()",
        )
        text = _settled(browser, "Step 3 of")
        assert "Step 3 of" in text and "exec_command" in text  # landed where the link pointed
        assert f"session={session}" in _evaluate(browser, "location.href")
        # a reload (a new Streamlit session) stays signed in through the ticket cookie, on the same step
        time.sleep(1)
        browser.send("Page.reload", ignoreCache=True)
        time.sleep(0.5)
        text = browser.wait_for("Step 3 of", SIGN_IN_FORM)
        assert "Step 3 of" in text and SIGN_IN_FORM not in text
        cookie = _evaluate(browser, "document.cookie")
        assert "codexgate_signin=" in cookie and "browser-test-token" not in cookie

        ARTIFACTS.mkdir(exist_ok=True)
        problems: list[str] = []
        for source in ("live", "synthetic"):
            if source == "synthetic":  # the sidebar switch (on Overview); the choice stays in this session
                _evaluate(
                    browser,
                    'document.querySelector(\'[data-testid="stSidebarNav"] a[href$="/overview"]\').click()',
                )
                _settled(browser, "Spend per")
                _evaluate(
                    browser,
                    "[...document.querySelectorAll('[data-testid=\"stRadioOption\"], label')]"
                    ".find(e => e.innerText.trim() === 'Synthetic history (demo)').click()",
                )
                time.sleep(1)
            for name in DEMO_PAGES:
                # in-app navigation (the sidebar link) keeps the token sign-in of this session
                _evaluate(
                    browser,
                    f'document.querySelector(\'[data-testid="stSidebarNav"] a[href$="/{name}"]\').click()',
                )
                title = "Replay" if name == "replay" else name.capitalize()
                text = _settled(browser, title)
                where = f"{source} {name}"
                if SIGN_IN_FORM in text:
                    problems.append(f"{where}: asked to sign in again")
                if _evaluate(browser, "document.querySelectorAll('[data-testid=\"stException\"]').length"):
                    problems.append(f"{where}: exception shown: {text[-600:]}")
                drawn = _evaluate(browser, CHART_PROBE) or []
                if any(n == 0 for n in drawn):
                    problems.append(f"{where}: empty chart frame (marks drawn per chart: {drawn})")
                if source == "synthetic" and name not in ("admin", "audit") and "SYNTHETIC DATA" not in text:
                    problems.append(f"{where}: no synthetic-data badge")
                if source == "live" and "SYNTHETIC DATA" in text:
                    problems.append(f"{where}: live data shown with the synthetic badge")
                shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                (ARTIFACTS / f"demo-{source}-{name}.png").write_bytes(base64.b64decode(shot["data"]))
        assert not problems, "\n".join(problems)
    finally:
        browser.close()
