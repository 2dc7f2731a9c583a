"""Start the project's processes on loopback — the gateway under mitmdump and the simulated
provider — the one way the demo, the benchmarks and the tests all use.

Invariants: ports are chosen while held open together, so two chosen at once never collide;
a start waits until the process itself answers (mitmproxy 12 listens before the script's
addons are configured), and a process that dies while starting raises with its log tail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))
GATEWAY_SCRIPT = ROOT / "addons" / "gateway.py"
# mitmproxy options every gateway start gets (a caller's own value wins): mitmproxy's onboarding
# app (the CA download page at mitm.it) is of no use to a gateway, whose CA file is in its confdir,
# and its request hook parsed every call's Host header (~1% of the gateway's CPU under load).
GATEWAY_MITMPROXY_OPTIONS = {"onboarding": "false"}
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def self_connected(sock: socket.socket) -> bool:
    """A TCP socket connected to itself: connecting to a loopback port nobody listens on can
    succeed when the kernel picks that same port as the source (TCP simultaneous open)."""
    try:
        return sock.getsockname() == sock.getpeername()
    except OSError:
        return False


def listening(port: int, timeout: float = 0.5) -> bool:
    """Whether something listens on 127.0.0.1:``port``. A self-connection does not count: it
    would also hold the port, so the server about to bind it fails with "address in use"."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            return not self_connected(sock)
    except OSError:
        return False


def wait_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        if listening(port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_gateway_ready(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the gateway's own addons answer (a keyless call gets its 401, marked with
    ``x-codexgate-error``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/responses", json={}, timeout=2, trust_env=False)
            if r.headers.get("x-codexgate-error"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("gateway addons not ready")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without proxy variables (loopback calls must not be proxied)."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env.update(extra or {})
    return env


def gateway_command(
    options: Mapping[str, str],
    *,
    port: int,
    proxy_port: int | None = None,
    reverse_target: str = "http://127.0.0.1:9",
    script: Path = GATEWAY_SCRIPT,
    quiet: bool = False,
) -> list[str]:
    """``mitmdump -s addons/gateway.py`` in base-URL mode on ``port`` (and forward-proxy mode on
    ``proxy_port``). Each option is given once (mitmproxy ignores a script option set twice)."""
    cmd = [MITMDUMP, *(["-q"] if quiet else []), "-s", str(script), "--listen-host", "127.0.0.1"]
    cmd += ["--mode", f"reverse:{reverse_target}@{port}"]
    if proxy_port is not None:
        cmd += ["--mode", f"regular@{proxy_port}"]
    for option, value in {**GATEWAY_MITMPROXY_OPTIONS, **options}.items():
        cmd += ["--set", f"{option}={value}"]
    return cmd


def start_gateway_process(
    options: Mapping[str, str],
    log_path: Path,
    *,
    port: int,
    proxy_port: int | None = None,
    reverse_target: str = "http://127.0.0.1:9",
    quiet: bool = False,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    """Start the gateway and wait until its addons answer; its output goes to ``log_path``."""
    cmd = gateway_command(options, port=port, proxy_port=proxy_port, reverse_target=reverse_target, quiet=quiet)
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=clean_env(env), cwd=ROOT)
    log.close()
    try:
        wait_port(port, proc=proc)
        if proxy_port is not None:
            wait_port(proxy_port, proc=proc)
        wait_gateway_ready(port, proc)
    except Exception:
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"gateway failed to start:\n{log_path.read_text(errors='replace')[-3000:]}") from None
    return proc


def start_sim_process(port: int, env: Mapping[str, str], log_path: Path | None = None) -> subprocess.Popen:
    """The simulated provider on ``port`` (keys in ``env``: SIM_OPENAI_KEY, SIM_ANTHROPIC_KEY, …)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "codexgate.simprovider", "--host", "127.0.0.1", "--port", str(port)],
        env=clean_env({"PYTHONPATH": str(ROOT), **env}),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    if log_path:
        out.close()  # type: ignore[union-attr]
    wait_port(port, proc=proc)
    return proc


def stop(proc: subprocess.Popen, sig: str = "term", timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.kill() if sig == "kill" else proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_dashboard_process(
    port: int, env: Mapping[str, str], log_path: Path, timeout: float = 60.0
) -> subprocess.Popen:
    """``streamlit run dashboard/app.py`` on loopback ``port``; waits until its health check
    answers. ``env`` is added to this process's (proxy-free) environment."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
           "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1"]  # fmt: skip
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(env), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2, trust_env=False).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError("streamlit did not start:\n" + log_path.read_text(errors="replace")[-3000:])
        time.sleep(0.3)
