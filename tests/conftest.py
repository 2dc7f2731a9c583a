"""Shared fixtures: real processes on loopback (simulated provider, gateway under mitmdump)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.helpers.gateway import DemoVault, Gateway, make_vault, start_gateway
from tests.helpers.sim import SimProvider


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProvider]:
    provider = SimProvider()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture()
def fresh(sim: SimProvider) -> SimProvider:
    """The module's simulated provider with no faults and an empty request log."""
    sim.clear_faults()
    sim.clear()
    return sim


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gw")


@pytest.fixture(scope="module")
def vault(module_tmp: Path, sim: SimProvider) -> DemoVault:
    return make_vault(module_tmp, sim.url, sim.openai_key, sim.anthropic_key, sim.azure_key)


@pytest.fixture(scope="module")
def gateway(module_tmp: Path, vault: DemoVault) -> Iterator[Gateway]:
    gw = start_gateway(module_tmp, vault)
    try:
        yield gw
    finally:
        gw.stop()
    # mitmproxy logs an exception in any hook, from start-up to shutdown (``done``), as "Addon
    # error"; an addon attribute named like a hook is one (it broke the sink's shutdown flush once).
    errors = [line for line in gw.log_text().splitlines() if "Addon error" in line]
    assert not errors, errors


def read_traces(
    traces: Path, where: str = "TRUE", params: list | None = None, wait_for: int = 0, timeout: float = 15.0
):
    """Rows of the trace Parquet files as dicts (waits until at least ``wait_for`` rows match)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = []
        if list(traces.glob("**/*.parquet")):
            con = duckdb.connect()
            rel = con.sql(
                f"select * from read_parquet('{traces}/**/*.parquet', hive_partitioning = true, union_by_name = true) "
                f"where {where} order by start_time",
                params=params or [],
            )
            cols = rel.columns
            rows = [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]
            con.close()
        if len(rows) >= wait_for or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)
