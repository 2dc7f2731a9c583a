"""Nothing is imported lazily on a call's path: once the gateway has started, calls of every
kind (OpenAI Responses and Chat Completions, Anthropic Messages, streamed and not, refused,
failed upstream and retried, cut by the client, converted to Parquet) import no module in the
gateway's process.

A lazy import holds the GIL for the module's code, so it stalls every connection on the event
loop (the first priced call imported genai-prices' price table: ~8-20 ms). The probe is the
gateway's own ``codexgate_import_watch_file`` (a CPython audit hook); the first test shows it
does see an import made after start-up.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from mitmproxy.test import taddons

from addons.import_watch import ImportWatch, read_watch_file
from codexgate.guard.policy import SECTION, to_section
from tests.conftest import read_traces
from tests.helpers.gateway import DemoVault, Gateway, make_vault, start_gateway
from tests.helpers.sim import SimProvider

NEVER_REFUSES = {"budget_usd": 1e9, "period": "day", "rpm": 10**8, "tpm": 10**12, "max_concurrent": 10**6}


def test_the_probe_records_what_is_imported_after_start_up_only(tmp_path: Path) -> None:
    path = tmp_path / "imports.csv"
    (tmp_path / "cg_probe_before.py").write_text("X = 1\n")
    (tmp_path / "cg_probe_after.py").write_text("X = 2\n")
    sys.path.insert(0, str(tmp_path))
    serving = [False]
    watch = ImportWatch(serving=lambda: serving[0])
    try:
        with taddons.context(watch) as tctx:
            tctx.options.codexgate_import_watch_file = str(path)
            watch.running()
            importlib.import_module("cg_probe_before")  # still starting: not a call's import
            serving[0] = True  # the start-up gate opens
            importlib.import_module("cg_probe_after")
            importlib.import_module("cg_probe_after")  # already loaded: no second line
            worker = threading.Thread(target=importlib.import_module, args=("json.tool",), name="probe-worker")
            worker.start()
            worker.join()
            watch.done()
        importlib.import_module("colorsys")  # after done(): nothing more is written
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("cg_probe_before", "cg_probe_after"):
            sys.modules.pop(name, None)
    rows = read_watch_file(path)
    assert [(thread, module) for _, thread, module in rows] == [
        ("MainThread", "cg_probe_after"),
        ("probe-worker", "json.tool"),
    ]


@pytest.fixture(scope="module")
def controls_vault(module_tmp: Path, sim: SimProvider) -> DemoVault:
    """The demo vault with limits on every level of alice's key and a guardrail policy that
    redacts secrets and flags PII, so the ledger and the detection engine are on the path."""
    demo = make_vault(module_tmp, sim.url, sim.openai_key, sim.anthropic_key, sim.azure_key)
    v = demo.load()
    key_id = demo.key_ids["alice"]
    levels = (f"key:{key_id}", "developer:acme/alice", "project:acme/codexgate", "team:acme/platform", "org:acme")
    v.sections["limits"] = {"version": 1, "levels": dict.fromkeys(levels, NEVER_REFUSES)}
    detectors = {"secrets": {"action": "redact"}, "pii": {"action": "flag"}, "injection": {"action": "flag"}}
    v.sections[SECTION] = to_section({f"key:{key_id}": {"detectors": detectors}})
    demo.save(v)
    return demo


@pytest.fixture(scope="module", params=["process", "thread"])
def watched(request, module_tmp: Path, controls_vault: DemoVault) -> Iterator[tuple[Gateway, Path]]:
    """The gateway with the import probe on; Parquet conversion in the converter process (the
    default) or in the gateway's own thread (where conversion's imports would be the gateway's)."""
    mode = request.param
    imports = module_tmp / f"imports-{mode}.csv"
    gw = start_gateway(
        module_tmp,
        controls_vault,
        traces=module_tmp / f"traces-{mode}",
        name=f"gw-{mode}",
        opts={"codexgate_import_watch_file": str(imports), "codexgate_trace_convert": mode},
    )
    try:
        yield gw, imports
    finally:
        gw.stop()


def _calls(gw: Gateway, vault: DemoVault) -> int:
    """One call of each kind through the gateway; returns how many rows they make."""
    key = vault.developer_key
    oa = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0)
    an = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)
    text = "fix the build; my e-mail is dana.okafor@acme-corp.com, key AKIAQ7ZK2WXMB4TN5R6D"
    chat = [{"role": "user", "content": text}]
    assert oa.responses.create(model="gpt-5-codex", input=text).output_text
    assert list(oa.responses.create(model="gpt-5-codex", input=text, stream=True))
    assert oa.chat.completions.create(model="gpt-5-codex", messages=chat).choices
    assert list(oa.chat.completions.create(model="gpt-5-codex", messages=chat, stream=True))
    assert an.messages.create(model="claude-sonnet-4-5", max_tokens=32, messages=chat).content
    assert list(an.messages.create(model="claude-sonnet-4-5", max_tokens=32, messages=chat, stream=True))
    calls = 6
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="cgk_nope_nope", max_retries=0).responses.create(
            model="gpt-5-codex", input="hi"
        )
    calls += 1
    for stream in (False, True):  # the provider fails once; the relay retries
        fault = {"x-sim-fault": "status=500"}
        with pytest.raises(openai.InternalServerError):
            oa.responses.create(model="gpt-5-codex", input="hi", stream=stream, extra_headers=fault)
        calls += 1
    body = {"model": "gpt-5-codex", "input": "hi", "stream": True}
    headers = {"authorization": f"Bearer {key}", "x-sim-fault": "stall_after_events=2;stall_ms=1500"}
    with httpx.stream("POST", f"{gw.base_url}/v1/responses", json=body, headers=headers, timeout=10) as resp:
        next(resp.iter_bytes())  # the client leaves mid-stream; the relay drains the rest
    calls += 1
    return calls


def test_no_call_imports_a_module(watched: tuple[Gateway, Path], controls_vault: DemoVault) -> None:
    gw, imports = watched
    calls = _calls(gw, controls_vault)
    # every row written and converted (flush every 0.5 s), so conversion has run too
    rows = read_traces(gw.traces, wait_for=calls, timeout=30)
    assert len(rows) >= calls
    found = {f["guardrail"] for r in rows for f in r["guardrail_findings"] or ()}
    assert {"secrets", "pii"} <= found  # the detection engine was on the path
    assert imports.exists()  # the probe is on (it opens its file at start-up)
    late = read_watch_file(imports)
    assert late == [], f"modules imported on a call's path: {late}"


def test_the_probe_never_fails_an_import(tmp_path: Path) -> None:
    (tmp_path / "cg_probe_unwritable.py").write_text("X = 3\n")
    sys.path.insert(0, str(tmp_path))
    watch = ImportWatch()
    try:
        with taddons.context(watch) as tctx:
            tctx.options.codexgate_import_watch_file = str(tmp_path / "imports.csv")
            watch.running()
            assert watch._out is not None
            watch._out.close()  # its file can no longer be written (a full disk, a closed descriptor)
            module = importlib.import_module("cg_probe_unwritable")
            assert module.X == 3
            assert watch._out is None  # it stopped noting instead of failing the import
            watch.done()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cg_probe_unwritable", None)
    assert watch not in sys.meta_path
