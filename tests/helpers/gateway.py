"""Start the real gateway (``mitmdump -s addons/gateway.py``) on loopback for tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from codexgate.cli import launch
from codexgate.cli.demo_setup import DemoVault, create_demo_vault
from codexgate.cli.launch import free_port, free_ports, wait_port  # noqa: F401 - re-exported for tests
from codexgate.core.vault import Vault

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

    def vault_loads(self) -> int:
        """How often this gateway has loaded its vault (start-up and every reload), from its log."""
        return self.log_text().count(VAULT_LOADED)

    def stop(self, sig: str = "term") -> None:
        launch.stop(self.proc, sig)


VAULT_LOADED = "codexgate: vault loaded:"  # the gateway's info line for each (re)load
_running: dict[Path, list[Gateway]] = {}  # vault file -> gateways started on it


def save_vault(demo: DemoVault, vault: Vault, timeout: float = 20.0) -> None:
    """Saves ``vault`` and returns once every running gateway on it has reloaded it (its log
    shows one more load), instead of sleeping for a guessed reload time."""
    live = [g for g in _running.get(demo.path.resolve(), []) if g.proc.poll() is None]
    before = [g.vault_loads() for g in live]
    demo.save(vault)
    deadline = time.monotonic() + timeout
    for gw, n in zip(live, before, strict=True):
        while gw.vault_loads() <= n:
            if time.monotonic() > deadline or gw.proc.poll() is not None:
                raise AssertionError(f"gateway did not reload {demo.path} within {timeout} s:\n{gw.log_text()[-2000:]}")
            time.sleep(0.05)


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
    gw = Gateway(proc, port, proxy_port, traces, confdir, log_path)
    _running.setdefault(Path(vault.path).resolve(), []).append(gw)
    return gw


def codex_available() -> bool:
    return CODEX.exists() and shutil.which("node") is not None


def now() -> datetime:
    return datetime.now(UTC)
