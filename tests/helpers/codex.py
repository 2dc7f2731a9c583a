"""Run the real Codex CLI (npm @openai/codex) against a base URL, non-interactively."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.gateway import CODEX


@dataclass
class CodexRun:
    returncode: int
    events: list[dict]
    stdout: str
    stderr: str

    def items(self, kind: str) -> list[dict]:
        return [
            e["item"]
            for e in self.events
            if e.get("type") == "item.completed"
            and isinstance(e.get("item"), dict)
            and e["item"].get("type") == kind
        ]


def run_codex(
    tmp: Path,
    base_url: str | None,
    key: str,
    prompt: str,
    *,
    model: str = "gpt-5-codex",
    timeout: float = 180,
    extra_env=None,
    retries: int | None = 0,
) -> CodexRun:
    """``codex exec --json`` against ``base_url`` (``None``: Codex's built-in provider). ``retries``
    sets Codex's request and stream retries (0, the default here, makes failures show at once;
    ``None`` keeps Codex's own defaults). Its CODEX_HOME is ``tmp / "codex-home"``."""
    home = tmp / "codex-home"
    home.mkdir(parents=True, exist_ok=True)
    if base_url is None:  # Codex's built-in openai provider (forward-proxy mode)
        config = f'model = "{model}"\n'
    else:
        config = (
            f'model = "{model}"\n'
            'model_provider = "codexgate"\n'
            "[model_providers.codexgate]\n"
            'name = "codexgate"\n'
            f'base_url = "{base_url}"\n'
            'env_key = "CODEXGATE_KEY"\n'
            'wire_api = "responses"\n'
        )
        if retries is not None:
            config += f"request_max_retries = {retries}\nstream_max_retries = {retries}\n"
    (home / "config.toml").write_text(config)
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME")
    }
    env.update({"CODEX_HOME": str(home), "CODEXGATE_KEY": key, "HOME": str(tmp), "NO_COLOR": "1"})
    env.update(extra_env or {})
    cmd = [
        str(CODEX),
        "exec",
        "--skip-git-repo-check",
        "-s",
        "workspace-write",
        "--json",
        "-c",
        "analytics.enabled=false",
        "-c",
        "features.plugins=false",
        prompt,
    ]
    proc = subprocess.run(
        cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    events = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
    return CodexRun(proc.returncode, events, proc.stdout, proc.stderr)
