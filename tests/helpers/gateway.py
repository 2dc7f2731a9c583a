"""Start the real gateway (``mitmdump -s addons/gateway.py``) on loopback for tests."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from codexgate.cli import launch
from codexgate.cli.demo_setup import DemoVault, create_demo_vault
from codexgate.cli.launch import free_port, free_ports, wait_port  # noqa: F401 - re-exported for tests

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = launch.MITMDUMP
CODEX = ROOT / ".tools" / "codex" / "node_modules" / ".bin" / "codex"


def make_vault(
    tmp: Path, sim_url: str, openai_key: str, anthropic_key: str, azure_key: str | None = None
) -> DemoVault:
    return create_demo_vault(tmp, sim_url, openai_key, anthropic_key, azure_key)


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
        launch.stop(self.proc, sig)


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
    proc = launch.start_gateway_process(
        options, log_path, port=port, proxy_port=proxy_port, reverse_target=reverse_target
    )
    return Gateway(proc, port, proxy_port, traces, confdir, log_path)


def codex_available() -> bool:
    return CODEX.exists() and shutil.which("node") is not None


def now() -> datetime:
    return datetime.now(UTC)
