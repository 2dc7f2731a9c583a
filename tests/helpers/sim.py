"""Start the simulated model provider (``python -m codexgate.simprovider``) as a real subprocess.

Usage::

    from tests.helpers.sim import SimProvider

    with SimProvider() as sim:          # or: sim = SimProvider(); ...; sim.stop()
        client = openai.OpenAI(base_url=f"{sim.url}/v1", api_key=sim.openai_key)
        sim.queue_fault("status=429;retry_after=2", times=1, match_path="/responses")
        ...
        assert all(r["auth_ok"] for r in sim.requests())

API: ``.url`` (``http://127.0.0.1:PORT``, no ``/v1``), ``.openai_key``, ``.anthropic_key``,
``.azure_key`` (random per instance, from ``secrets``; handed to the server through the
environment, never argv), ``.requests()`` (the server's request log, see
:mod:`codexgate.simprovider`), ``.clear()``, ``.queue_fault(spec, times=1, match_path=None)``,
``.clear_faults()``, ``.stop()`` (terminate, then kill). Extras: ``.clear_cache()`` (forget the
emulated prompt cache) and ``SimProvider.digest(value)`` (the ``sha256:<hex>`` form the log uses
for credentials). Only the stdlib and httpx are used.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

READY_PREFIX = "SIMPROVIDER READY "
START_TIMEOUT_S = 20.0
ROOT = Path(__file__).resolve().parents[2]


class SimProvider:
    """A running simulated provider; starts in the constructor."""

    def __init__(self) -> None:
        self.openai_key = "sk-sim-" + secrets.token_hex(16)
        self.anthropic_key = "sk-ant-sim-" + secrets.token_hex(16)
        self.azure_key = "az-sim-" + secrets.token_hex(16)
        env = {
            **os.environ,
            "SIM_OPENAI_KEY": self.openai_key,
            "SIM_ANTHROPIC_KEY": self.anthropic_key,
            "SIM_AZURE_KEY": self.azure_key,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codexgate.simprovider", "--host", "127.0.0.1", "--port", "0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.url = self._wait_ready()
        self._http = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def _wait_ready(self) -> str:
        lines: list[str] = []
        stdout = self.proc.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while reader.is_alive() and time.monotonic() < deadline:
            reader.join(0.05)
        if lines and lines[0].startswith(READY_PREFIX):
            return lines[0][len(READY_PREFIX) :].strip()
        self._kill()
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace")[-2000:]
        raise RuntimeError(f"simulated provider did not start within {START_TIMEOUT_S:.0f}s: {tail}")

    # ------------------------------------------------------------------ control API

    def requests(self) -> list[dict[str, Any]]:
        response = self._http.get("/_sim/requests")
        response.raise_for_status()
        return response.json()

    def clear(self) -> None:
        self._http.delete("/_sim/requests").raise_for_status()

    def queue_fault(self, spec: str, times: int = 1, match_path: str | None = None) -> None:
        """Apply ``spec`` to the next ``times`` API requests whose path contains ``match_path``."""
        response = self._http.post(
            "/_sim/faults", json={"spec": spec, "times": times, "match_path": match_path}
        )
        if response.status_code != 200:
            raise ValueError(f"fault {spec!r} refused: {response.text}")

    def clear_faults(self) -> None:
        self._http.delete("/_sim/faults").raise_for_status()

    def clear_cache(self) -> None:
        self._http.delete("/_sim/cache").raise_for_status()

    @staticmethod
    def digest(value: str) -> str:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()

    # ------------------------------------------------------------------ lifetime

    def stop(self) -> None:
        if getattr(self, "_http", None) is not None:
            self._http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self._kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> SimProvider:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
