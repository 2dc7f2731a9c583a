"""A real HAProxy (from apt) in front of several gateway instances, for tests: free loopback
port, temp config, foreground (``-db``), round robin, stopped by PID at teardown."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codexgate.cli.launch import listening
from tests.helpers.redis import free_port

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
SKIP_REASON = "haproxy is not installed (scripts/setup.sh --test installs it from apt)"


def config(port: int, backends: list[int]) -> str:
    """The sample configuration of docs/LIMITS.md, on loopback ports. Long server timeouts:
    Codex streams may run for minutes."""
    servers = "\n".join(f"    server gw{i} 127.0.0.1:{p} check inter 1s" for i, p in enumerate(backends))
    return f"""global
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    option http-buffer-request

frontend codexgate
    bind 127.0.0.1:{port}
    default_backend gateways

backend gateways
    balance roundrobin
{servers}
"""


@contextmanager
def haproxy(tmp: Path, backends: list[int]) -> Iterator[str]:
    """Start HAProxy balancing over ``backends`` (ports on 127.0.0.1); yield its base URL."""
    if HAPROXY is None:
        raise RuntimeError(SKIP_REASON)
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(config(port, backends))
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {proc.stderr.read().decode(errors='replace')[-500:]}")
            if listening(port, timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("haproxy did not listen within 10 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
