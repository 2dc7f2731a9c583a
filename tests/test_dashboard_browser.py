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
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from analytics.access import ViewerScope
from analytics.db import TraceStore
from analytics.sessions import list_sessions, replay_steps, session_calls
from analytics.synth import write_dataset

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
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "dashboard" / "app.py"),
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("streamlit did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.3)
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
