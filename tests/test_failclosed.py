"""Fail closed: each reproduction of issue 8 against a real gateway (mitmdump) whose reverse-mode
target is a catch-all logger — anything that reaches the catch-all was forwarded without the
gateway's decision — and the simulated provider as the only vault provider."""

from __future__ import annotations

import codecs
import gzip
import json
import os
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import brotli
import httpx
import pytest
import zstandard

from tests.conftest import read_traces
from tests.helpers.catchall import CatchAll
from tests.helpers.gateway import DemoVault, Gateway, make_vault, start_gateway
from tests.helpers.sim import SimProvider


@pytest.fixture(scope="module")
def catchall() -> Iterator[CatchAll]:
    c = CatchAll()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def fc_vault(module_tmp: Path, sim: SimProvider) -> DemoVault:
    demo = make_vault(module_tmp, sim.url, sim.openai_key, sim.anthropic_key, sim.azure_key)
    vault = demo.load()
    vault.keys[demo.key_ids["carol"]].privacy_mode = "redacted"
    vault.keys[demo.key_ids["carol"]].providers = ["*"]
    demo.save(vault)
    return demo


@pytest.fixture(scope="module")
def gw(module_tmp: Path, fc_vault: DemoVault, catchall: CatchAll) -> Iterator[Gateway]:
    g = start_gateway(
        module_tmp,
        fc_vault,
        reverse_target=catchall.url,
        opts={
            "codexgate_max_body_bytes": str(4 * 1024 * 1024),
            "codexgate_header_timeout": "1",
            "codexgate_body_timeout": "1",
            "codexgate_keepalive_timeout": "1",
            "codexgate_max_client_connections": "40",
        },
    )
    yield g
    g.stop()


def post(gw: Gateway, path: str, key: str | None, content: bytes, headers: dict[str, str] | None = None):
    h = {"content-type": "application/json", **(headers or {})}
    if key is not None:
        h["authorization"] = f"Bearer {key}"
    return httpx.post(f"{gw.base_url}{path}", content=content, headers=h, timeout=30, trust_env=False)


def body(model: object = "gpt-5-codex", **extra: object) -> bytes:
    return json.dumps({"model": model, "input": "hi", **extra}).encode()


def assert_nothing_leaked(sim: SimProvider, catchall: CatchAll, vault: DemoVault) -> None:
    assert catchall.log == [], f"forwarded without a decision: {catchall.log[:3]}"
    gateway_digests = {sim.digest(k) for k in vault.keys.values()}
    for entry in sim.requests():
        assert entry["credential"] in (sim.digest(sim.openai_key), sim.digest(sim.anthropic_key), sim.digest(sim.azure_key))
        flat = json.dumps(entry)
        assert not any(d in flat for d in gateway_digests)
        assert not any(k in flat for k in vault.keys.values())


def gateway_rss_kb(gw: Gateway) -> tuple[int, int]:
    status = Path(f"/proc/{gw.proc.pid}/status").read_text()
    fields = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith(("VmRSS", "VmHWM"))}
    return fields["VmRSS"], fields["VmHWM"]


# ---------------------------------------------------------------------------- 1. exceptions


def test_hostile_codex_headers_never_skip_authentication(gw, sim, catchall, fc_vault) -> None:
    sim.clear()
    deep = "[" * 1000 + "]" * 1000
    hostile = [
        {"x-codex-turn-metadata": '{"session_id":[1]}'},
        {"x-codex-turn-metadata": '{"session_id":{"a":1},"thread_id":7,"turn_id":null}'},
        {"x-codex-turn-metadata": deep},
        {"x-codexgate-metadata": deep},
        {"x-codexgate-metadata": '{"a":' * 1000 + "1" + "}" * 1000},
    ]
    for h in hostile:
        # the client's own provider key, no gateway key: must never be served
        r = post(gw, "/v1/responses", sim.openai_key, body("gpt-4o"), h)
        assert r.status_code in (400, 401), (h, r.status_code, r.text[:200])
        assert r.json()["error"]["code"] in ("invalid_api_key", "invalid_metadata")
        # a valid gateway key: served or refused, never forwarded with the gateway key
        r = post(gw, "/v1/responses", fc_vault.keys["bob"], body("gpt-5-codex"), h)
        assert r.status_code in (200, 400), (h, r.status_code, r.text[:200])
    r = post(gw, "/v1/responses", fc_vault.keys["bob"], b'{"model":"gpt-5-codex","input":' + deep.encode() + b"}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert "nested deeper" in r.json()["error"]["message"]
    assert_nothing_leaked(sim, catchall, fc_vault)


def test_every_refusal_and_error_has_exactly_one_row(gw, sim, fc_vault) -> None:
    marker = f"rowcheck-{time.time_ns()}"
    sends = [
        (None, body(), 401),
        (fc_vault.keys["bob"], body("gpt-4o"), 403),
        (fc_vault.keys["bob"], b"\x00\x01garbage", 400),
        (fc_vault.keys["bob"], body(), 200),
    ]
    for key, content, status in sends:
        assert post(gw, "/v1/responses", key, content, {"x-client-request-id": marker}).status_code == status
    rows = read_traces(gw.traces, "client_request_id = ?", [marker], wait_for=4, timeout=40)
    assert sorted(r["status_code"] for r in rows) == [200, 400, 401, 403]
    assert sorted(r["outcome"] for r in rows) == ["ok", "refused", "refused", "refused"]


# ---------------------------------------------------------------------------- 2. model scope


@pytest.mark.parametrize(
    "encode",
    [
        lambda b: codecs.BOM_UTF8 + b,
        lambda b: b.decode().encode("utf-16"),
        lambda b: b.decode().encode("utf-16-le"),
        lambda b: b.decode().encode("utf-32"),
    ],
    ids=["utf8-bom", "utf16-bom", "utf16le", "utf32"],
)
def test_encoded_bodies_are_scoped(gw, sim, catchall, fc_vault, encode) -> None:
    sim.clear()
    r = post(gw, "/v1/responses", fc_vault.keys["bob"], encode(body("gpt-4o")))
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    r = post(gw, "/v1/responses", fc_vault.keys["bob"], encode(body("gpt-5-codex")))
    assert r.status_code == 200, r.text
    assert [e["model"] for e in sim.requests() if e["path"].endswith("/responses")] == ["gpt-5-codex"]
    assert_nothing_leaked(sim, catchall, fc_vault)


@pytest.mark.parametrize("model", [4, ["gpt-5"], {"x": 1}, "", None, True])
def test_model_must_be_a_string(gw, sim, catchall, fc_vault, model) -> None:
    sim.clear()
    content = json.dumps({"model": model, "input": "hi"} if model is not None else {"input": "hi"}).encode()
    r = post(gw, "/v1/responses", fc_vault.keys["bob"], content)
    assert r.status_code == 400
    assert r.json()["error"]["code"] in ("invalid_model", "missing_model")
    assert sim.requests() == []
    assert_nothing_leaked(sim, catchall, fc_vault)


def test_azure_deployment_in_the_path_is_what_scope_checks(gw, sim, catchall, fc_vault) -> None:
    sim.clear()
    path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    content = json.dumps({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}).encode()
    r = post(gw, path, fc_vault.keys["bob"], content)
    assert r.status_code == 403 and "gpt-4o" in r.json()["error"]["message"]
    path = "/openai/deployments/gpt-5/chat/completions?api-version=2024-10-21"
    content = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
    r = post(gw, path, fc_vault.keys["bob"], content)
    assert r.status_code == 403 and "gpt-4o" in r.json()["error"]["message"]
    assert sim.requests() == []
    assert_nothing_leaked(sim, catchall, fc_vault)


# ---------------------------------------------------------------------------- 3. endpoints


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/files", 404),
        ("POST", "/v1/organization/admin_api_keys", 404),
        ("POST", "/v1/../../admin", 400),
        ("POST", "//responses", 400),
        ("POST", "/v1/%2e%2e/responses", 400),
        ("POST", "/v1/responses/../files", 400),
        ("GET", "/v1/responses", 405),
        ("PUT", "/v1/responses", 405),
        ("DELETE", "/v1/responses", 405),
        ("OPTIONS", "/v1/responses", 405),
        ("TRACE", "/v1/responses", 405),
        ("GET", "/v1/responses/resp_123", 404),
        ("POST", "/openai/deployments/gpt-5/files", 404),
    ],
)
def test_only_known_endpoints_get_credentials(gw, sim, catchall, fc_vault, method, path, status) -> None:
    sim.clear()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        # raw socket: httpx would normalise the path
        req = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {fc_vault.keys['alice']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body())}\r\nConnection: close\r\n\r\n"
        ).encode() + body()
        s.sendall(req)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert int(head.split()[1]) == status, head[:200]
    if method != "HEAD":
        assert b'"error"' in rest
    if status == 405:
        assert b"allow: post" in head.lower()
    assert sim.requests() == []
    assert_nothing_leaked(sim, catchall, fc_vault)


def test_models_listing_is_allowed(gw, sim, fc_vault) -> None:
    r = httpx.get(f"{gw.base_url}/v1/models", headers={"authorization": f"Bearer {fc_vault.keys['alice']}"},
                  trust_env=False, timeout=10)
    assert r.status_code != 404 or "codexgate" not in r.text


# ---------------------------------------------------------------------------- 4. bombs


def _bomb(encoding: str, size: int) -> bytes:
    zeros = b" " * (1 << 20)
    if encoding == "gzip":
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
    elif encoding == "deflate":
        c = zlib.compressobj(9, zlib.DEFLATED, 15)
    elif encoding == "zstd":
        c = zstandard.ZstdCompressor(level=3).compressobj()
    else:
        b = brotli.Compressor(quality=5)
        head = b.process(b'{"model":"gpt-5-codex","input":"')
        return head + b"".join(b.process(zeros) for _ in range(size >> 20)) + b.finish()
    head = c.compress(b'{"model":"gpt-5-codex","input":"')
    return head + b"".join(c.compress(zeros) for _ in range(size >> 20)) + c.flush()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "br"])
def test_decompression_bombs_are_refused_without_expanding(gw, sim, catchall, fc_vault, encoding) -> None:
    sim.clear()
    bomb = _bomb(encoding, 256 << 20)  # 256 MiB of JSON text once expanded
    rss_before, _ = gateway_rss_kb(gw)
    t0 = time.monotonic()
    r = post(gw, "/v1/responses", fc_vault.keys["alice"], bomb, {"content-encoding": encoding})
    assert r.status_code == 413, r.text[:300]
    assert r.json()["error"]["code"] == "request_too_large"
    # while the bomb was refused, another client was served
    ok = post(gw, "/v1/responses", fc_vault.keys["alice"], body())
    assert ok.status_code == 200
    rss_after, _ = gateway_rss_kb(gw)
    assert rss_after - rss_before < 150 * 1024, f"gateway RSS grew by {(rss_after - rss_before) // 1024} MB"
    assert time.monotonic() - t0 < 20
    assert [e["path"] for e in sim.requests()] == ["/v1/responses"]  # only the good call
    assert_nothing_leaked(sim, catchall, fc_vault)


def test_announced_large_body_is_refused_at_the_headers(gw, fc_vault) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(
            f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {fc_vault.keys['alice']}\r\n"
            f"Content-Length: {1 << 30}\r\n\r\n".encode()
        )
        head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 413"), head[:100]  # mitmproxy's body_size_limit, before reading it
    rows = read_traces(gw.traces, "status_code = 413 OR refusal_reason = 'request_too_large'", wait_for=1)
    assert rows


def test_plain_and_gzip_bodies_still_served(gw, fc_vault) -> None:
    r = post(gw, "/v1/responses", fc_vault.keys["alice"], gzip.compress(body()), {"content-encoding": "gzip"})
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------------------- 5. privacy


def test_redacted_mode_stores_no_secret_anywhere(gw, sim, fc_vault) -> None:
    secrets = {  # realistic values: the engine ignores documentation domains and low-entropy keys
        "openai": "sk-proj-Hq3vN8xR2mT7kL9pW4zY6bC1dF5gJ0aS-Uo8iE3rQ7tX2vB9nM4",
        "aws": "AKIAQ3EGRVYUXW4LM7PA",
        "gateway": fc_vault.keys["alice"],
        "mail": "jane.doe@corpmail.io",
    }
    content = json.dumps(
        {"model": "gpt-5-codex", "input": f"keys {secrets['openai']} {secrets['aws']} mail {secrets['mail']}"}
    ).encode()
    headers = {
        "x-my-auth": secrets["openai"],
        "x-custom-token-thing": secrets["gateway"],
        "x-codexgate-metadata": json.dumps({"ticket": secrets["openai"], "owner": secrets["mail"]}),
        "x-codex-turn-metadata": json.dumps({"session_id": "s-redact", "note": secrets["gateway"]}),
        "session-id": "s-redact",
    }
    r = post(gw, "/v1/responses", fc_vault.keys["carol"], content, headers)
    assert r.status_code == 200, r.text
    rows = read_traces(gw.traces, "session_id = 's-redact'", wait_for=1)
    assert len(rows) == 1 and rows[0]["privacy_mode"] == "redacted"
    flat = json.dumps(rows[0], default=str)
    for name, value in secrets.items():
        assert value not in flat, name
    spool = b"".join(p.read_bytes() for p in gw.traces.glob("_spool/**/*") if p.is_file())
    for name, value in secrets.items():
        assert value.encode() not in spool, name
    assert json.loads(rows[0]["request_headers"])["x-my-auth"] == "[redacted]"


# ---------------------------------------------------------------------------- 6. slow clients


def _open_fds(gw: Gateway) -> int:
    return len(os.listdir(f"/proc/{gw.proc.pid}/fd"))


def test_slow_and_idle_clients_are_closed(gw, fc_vault) -> None:
    before = _open_fds(gw)
    socks = []
    for i in range(10):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        if i % 3 == 0:
            s.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\n")  # head never finishes
        elif i % 3 == 1:
            s.sendall(
                f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {fc_vault.keys['alice']}\r\n"
                "Content-Length: 100\r\n\r\n{".encode()
            )  # body never finishes
        socks.append(s)  # i % 3 == 2: connects and says nothing
    # keep-alive: one good request, then silence
    ka = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    b = body()
    ka.sendall(
        f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {fc_vault.keys['alice']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n".encode() + b
    )
    assert ka.recv(65536).startswith(b"HTTP/1.1 200")
    socks.append(ka)
    time.sleep(3.5)
    for s in socks:
        s.settimeout(2)
        try:
            data = s.recv(65536)
            while data:
                data = s.recv(65536)
        except ConnectionResetError:
            pass
        s.close()  # recv returned b"" (closed by the gateway) or raised reset
    assert _open_fds(gw) <= before + 2


def test_connections_per_address_are_capped(gw) -> None:
    socks = [socket.create_connection(("127.0.0.1", gw.port), timeout=5) for _ in range(45)]
    time.sleep(0.3)
    closed = 0
    for s in socks:
        s.settimeout(0.5)
        try:
            if s.recv(1) == b"":
                closed += 1
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed += 1
        s.close()
    assert closed >= 5


def test_announced_trailers_get_a_clean_400(gw, fc_vault) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        b = body()
        s.sendall(
            f"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {fc_vault.keys['alice']}\r\n"
            f"Transfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n{len(b):x}\r\n".encode()
            + b
            + b"\r\n0\r\nx-checksum: 1\r\n\r\n"
        )
        head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 400"), head[:200]
    assert b"trailers_not_supported" in head


# ---------------------------------------------------------------------------- 7. smaller items


def test_websocket_probe_is_traced(gw, fc_vault) -> None:
    r = httpx.get(
        f"{gw.base_url}/v1/responses",
        headers={"upgrade": "websocket", "connection": "Upgrade", "authorization": f"Bearer {fc_vault.keys['alice']}",
                 "x-client-request-id": "ws-probe-1"},
        trust_env=False,
        timeout=10,
    )
    assert r.status_code == 426
    rows = read_traces(gw.traces, "refusal_reason = 'websocket_not_supported'", wait_for=1)
    assert rows and rows[0]["status_code"] == 426


def test_unreachable_upstream_non_streaming_is_provider_json(module_tmp, sim) -> None:
    demo = make_vault(module_tmp / "down", sim.url, sim.openai_key, sim.anthropic_key)
    vault = demo.load()
    vault.providers["openai"].base_url = "http://127.0.0.1:9/v1"  # nothing listens
    demo.save(vault)
    g = start_gateway(module_tmp / "down", demo, name="down")
    try:
        r = post(g, "/v1/responses", demo.keys["alice"], body())
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "upstream_unreachable"
    finally:
        g.stop()


def test_vault_unavailable_message_names_no_path(module_tmp, sim) -> None:
    demo = make_vault(module_tmp / "v503", sim.url, sim.openai_key, sim.anthropic_key)
    g = start_gateway(module_tmp / "v503", demo, name="v503")
    try:
        demo.path.write_bytes(b"corrupt")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = post(g, "/v1/responses", demo.keys["alice"], body())
            if r.status_code == 503:
                break
            time.sleep(0.1)
        assert r.status_code == 503
        assert str(demo.path) not in r.text and str(demo.key_file) not in r.text
        assert "vault" in r.json()["error"]["message"]
    finally:
        g.stop()


def test_same_size_same_mtime_vault_edit_is_picked_up(module_tmp, sim) -> None:
    """Disable a key with an in-place edit that keeps the file's inode and size and restores its
    mtime: only ctime tells the watcher."""
    demo = make_vault(module_tmp / "vctime", sim.url, sim.openai_key, sim.anthropic_key)
    g = start_gateway(module_tmp / "vctime", demo, name="vctime")
    try:
        assert post(g, "/v1/responses", demo.keys["alice"], body()).status_code == 200
        st = os.stat(demo.path)
        scratch = demo.path.with_name("scratch.enc")
        for grace in range(3600, 3600 + 64):  # vary the length until the token has the same size
            vault = demo.load()
            vault.set_key_enabled(demo.key_ids["alice"], False)
            vault.rotation_grace_seconds = grace
            vault.save(scratch, demo.secret)
            if scratch.stat().st_size == st.st_size:
                break
        new = scratch.read_bytes()
        assert len(new) == st.st_size
        with open(demo.path, "r+b") as f:
            f.write(new)
        os.utime(demo.path, ns=(st.st_atime_ns, st.st_mtime_ns))
        now = os.stat(demo.path)
        assert (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            r = post(g, "/v1/responses", demo.keys["alice"], body())
            if r.status_code == 401:
                break
            time.sleep(0.1)
        assert r.status_code == 401
    finally:
        g.stop()


def test_client_leaving_during_a_stall_is_client_aborted(gw, fc_vault) -> None:
    """The stream stalls for 2 s after its first events; the client hangs up during the stall.
    The relay then drains the rest: the row has the usage and says the client left."""
    with httpx.stream(
        "POST",
        f"{gw.base_url}/v1/responses",
        json={"model": "gpt-5-codex", "input": "stall then leave", "stream": True},
        headers={
            "authorization": f"Bearer {fc_vault.keys['alice']}",
            "x-sim-fault": "stall_after_events=2;stall_ms=2000",
            "x-client-request-id": "stall-leave-1",
        },
        timeout=30,
        trust_env=False,
    ) as resp:
        next(resp.iter_raw())
        time.sleep(0.5)  # inside the stall
    rows = read_traces(gw.traces, "client_request_id = 'stall-leave-1'", wait_for=1, timeout=20)
    assert rows[0]["client_aborted"] is True and rows[0]["outcome"] == "client_aborted"
    assert rows[0]["usage_complete"] is True
