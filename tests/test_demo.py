"""The README's main command: `codexgate demo` starts everything on embedded defaults and records traces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.gateway import free_port


def test_demo_check_runs_a_sample_session_end_to_end(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("codexgate")
    ports = [str(free_port()) for _ in range(3)]
    cmd = [str(exe), "demo", "--data", str(tmp_path / "data"), "--port", ports[0], "--proxy-port", ports[1]]
    cmd += ["--sim-port", ports[2], "--check"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "demo check: ok" in first.stdout
    # a second start reuses the vault (and its keys) and still works
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(list((tmp_path / "data" / "traces").glob("date=*/*.parquet"))) >= 2
