"""Start the simulated provider as a real subprocess for a test."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading

import httpx


class SimProvider:
    def __init__(self) -> None:
        self.openai_key = "sk-sim-" + secrets.token_hex(16)
        self.anthropic_key = "sk-ant-sim-" + secrets.token_hex(16)
        self.azure_key = "az-sim-" + secrets.token_hex(16)
        env = {
            **os.environ,
            "SIM_OPENAI_KEY": self.openai_key,
            "SIM_ANTHROPIC_KEY": self.anthropic_key,
            "SIM_AZURE_KEY": self.azure_key,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codexgate.simprovider", "--host", "127.0.0.1", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(20)
        if not line or "SIMPROVIDER READY" not in line[0]:
            self.proc.kill()
            raise RuntimeError("simulated provider did not start")
        self.url = line[0].split()[-1].strip()
        self._http = httpx.Client(base_url=self.url, timeout=10)

    def requests(self) -> list[dict]:
        return self._http.get("/_sim/requests").json()

    def clear(self) -> None:
        self._http.delete("/_sim/requests")

    def queue_fault(self, spec: str, times: int = 1, match_path: str | None = None) -> None:
        self._http.post("/_sim/faults", json={"spec": spec, "times": times, "match_path": match_path})

    def clear_faults(self) -> None:
        self._http.delete("/_sim/faults")

    def stop(self) -> None:
        self._http.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
