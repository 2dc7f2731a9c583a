"""Helpers for the limits end-to-end tests: add keys/teams with limits to a running gateway's
vault (it hot-reloads), fire concurrent streaming calls with the openai SDK, read the ledger."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai

from codexgate.core.vault import Team, Vault
from codexgate.limits.config import levels_for_key
from codexgate.limits.ledger import LevelStatus, open_ledger
from tests.conftest import read_traces
from tests.helpers.gateway import DemoVault, save_vault


@dataclass
class NewKey:
    plain: str
    key_id: str
    team: str


def add_key(
    demo: DemoVault,
    team: str,
    developer: str,
    levels: Callable[[str], dict[str, dict[str, Any]]] | None = None,
    **scope: Any,
) -> NewKey:
    """Create team ``acme/<team>`` (if new) and a key in it; ``levels(key_id)`` returns entries
    to merge into the vault's limits section; ``scope`` goes to ``create_key`` (providers, models…).
    Returns once every gateway on the vault has reloaded it."""
    vault = Vault.load(demo.path, demo.secret)
    path = f"acme/{team}"
    if path not in vault.teams:
        vault.teams[path] = Team(org="acme", name=team)
    entry, plain = vault.create_key(org="acme", team=team, project="codexgate", developer=developer, **scope)
    section = dict(vault.sections.get("limits") or {"version": 1})
    merged = dict(section.get("levels") or {})
    merged.update(levels(entry.key_id) if levels else {})
    section["levels"] = merged
    vault.sections["limits"] = section
    save_vault(demo, vault)
    return NewKey(plain, entry.key_id, path)


def ledger_status(demo: DemoVault, key_id: str, target: str) -> list[LevelStatus]:
    """The ledger's view of every level of ``key_id`` (read by a second client of the ledger)."""
    vault = Vault.load(demo.path, demo.secret)
    levels = levels_for_key(vault, vault.keys[key_id])

    async def read() -> list[LevelStatus]:
        ledger = open_ledger(target)
        try:
            return await ledger.status(levels, datetime.now(UTC))
        finally:
            await ledger.close()

    return asyncio.run(read())


@dataclass
class CallResult:
    ok: bool
    status: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    usage: Any = None


def stream_call(base_url: str, key: str, text: str, max_output_tokens: int, **headers: str) -> CallResult:
    """One streaming Responses call with the openai SDK (no SDK retries)."""
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=60)
    try:
        with client.responses.stream(
            model="gpt-5-codex", input=text, max_output_tokens=max_output_tokens, extra_headers=headers or None
        ) as stream:
            for _ in stream:
                pass
            final = stream.get_final_response()
        return CallResult(True, 200, usage=final.usage)
    except openai.APIStatusError as exc:
        try:
            body = exc.response.json()
        except (ValueError, json.JSONDecodeError):
            body = {}
        return CallResult(False, exc.status_code, body, dict(exc.response.headers))
    except (openai.APIConnectionError, httpx.HTTPError):  # the gateway went away (e.g. killed by the test)
        return CallResult(False)
    finally:
        client.close()


def concurrent_streams(base_url: str, key: str, n: int, text: str, max_output_tokens: int) -> list[CallResult]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: stream_call(base_url, key, text, max_output_tokens), range(n)))


def key_rows(traces: list[Path], key_id: str, expect: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Trace rows of ``key_id`` across the trace directories of several gateway instances."""
    deadline = time.monotonic() + timeout
    while True:
        rows = []
        for t in traces:
            if list(t.glob("**/*.parquet")):
                rows += read_traces(t, "key_id = ?", [key_id], timeout=0.5)
        if len(rows) >= expect or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def wait_settled(demo: DemoVault, key_id: str, target: str, timeout: float = 10.0) -> list[LevelStatus]:
    """Ledger status once no reservation of the key's levels is outstanding."""
    deadline = time.monotonic() + timeout
    while True:
        status = ledger_status(demo, key_id, target)
        if all(s.concurrent == 0 for s in status) or time.monotonic() > deadline:
            return status
        time.sleep(0.2)
