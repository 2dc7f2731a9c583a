"""Start the real gateway (``mitmdump -s addons/gateway.py``) on loopback for tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from codexgate.cli.demo_setup import DemoVault, create_demo_vault

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))
CODEX = ROOT / ".tools" / "codex" / "node_modules" / ".bin" / "codex"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (held open together while chosen, so they cannot repeat)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def make_vault(
    tmp: Path, sim_url: str, openai_key: str, anthropic_key: str, azure_key: str | None = None
) -> DemoVault:
    return create_demo_vault(tmp, sim_url, openai_key, anthropic_key, azure_key)


def wait_addons_ready(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """mitmproxy 12 may listen before the script's addons are configured: wait until the gateway
    itself answers (a keyless call gets its own 401, marked with x-codexgate-error)."""
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


@dataclass
class Gateway:
    proc: subprocess.Popen
    port: int  # base-URL (reverse) mode
    proxy_port: int  # forward-proxy mode
    traces: Path
    confdir: Path
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: str = "term") -> None:
        if self.proc.poll() is None:
            if sig == "kill":
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_gateway(
    tmp: Path,
    vault: DemoVault,
    *,
    traces: Path | None = None,
    opts: dict[str, str] | None = None,
    name: str = "gw",
    reverse_target: str = "http://127.0.0.1:9",
) -> Gateway:
    port, proxy_port = free_ports(2)
    traces = traces or tmp / "traces"
    confdir = tmp / f"{name}-conf"
    confdir.mkdir(exist_ok=True)
    log_path = tmp / f"{name}.log"
    options = {
        "connection_strategy": "lazy",
        "confdir": str(confdir),
        "codexgate_vault": str(vault.path),
        "codexgate_vault_key_file": str(vault.key_file),
        "codexgate_traces": str(traces),
        "codexgate_flush_seconds": "0.5",
        **(opts or {}),  # mitmproxy ignores the script when an option is --set twice, so merge here
    }
    cmd = [MITMDUMP, "-s", str(ROOT / "addons" / "gateway.py"), "--listen-host", "127.0.0.1"]
    cmd += ["--mode", f"reverse:{reverse_target}@{port}", "--mode", f"regular@{proxy_port}"]
    for option, value in options.items():
        cmd += ["--set", f"{option}={value}"]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    }
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        wait_port(port, proc=proc)
        wait_port(proxy_port, proc=proc)
        wait_addons_ready(port, proc)
    except Exception:
        proc.kill()
        raise RuntimeError(
            f"gateway failed to start:\n{log_path.read_text(errors='replace')[-3000:]}"
        ) from None
    return Gateway(proc, port, proxy_port, traces, confdir, log_path)


def codex_available() -> bool:
    return CODEX.exists() and shutil.which("node") is not None


def now() -> datetime:
    return datetime.now(UTC)
