"""Sign-in through a trusted reverse proxy, end to end: the real dashboard (``streamlit run
dashboard/app.py``) behind a small header-injecting reverse proxy (HTTP + WebSocket, like
oauth2-proxy), driven by headless Chromium.

- through the trusted proxy (it connects from 127.0.0.2, the configured proxy address) the team
  admin is signed in on the Admin page, and a reload in the same browser stays signed in;
- a developer's identity through the same proxy gets the Admin page's 403;
- the same header from an untrusted address (a proxy connecting from 127.0.0.1) is ignored: the
  sign-in form is shown."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from websockets.sync.client import connect as ws_connect

from codexgate.cli import launch
from tests.test_dashboard_auth import make_vault
from tests.test_dashboard_browser import CHROMIUM, free_port

ROOT = Path(__file__).resolve().parents[1]
HOP = {
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "proxy-authorization",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "x-forwarded-email",
}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")


class HeaderProxy:
    """Reverse proxy to ``upstream`` adding ``X-Forwarded-Email: identity`` to every request (and
    dropping any the client sent), connecting upstream from ``source_ip``."""

    def __init__(self, upstream: int, identity: str, source_ip: str) -> None:
        self.upstream, self.identity, self.source_ip = upstream, identity, source_ip
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        connector = aiohttp.TCPConnector(local_addr=(self.source_ip, 0))
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.sockets: set[web.WebSocketResponse] = set()
        self.runner = web.AppRunner(app, shutdown_timeout=2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def headers(self, request: web.Request) -> dict[str, str]:
        out = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        out["X-Forwarded-Email"] = self.identity
        out["Accept-Encoding"] = "identity"
        return out

    async def handle(self, request: web.Request) -> web.StreamResponse:
        url = f"http://127.0.0.1:{self.upstream}{request.path_qs}"
        if request.headers.get("upgrade", "").lower() == "websocket":
            protocols = [
                p.strip() for p in request.headers.get("sec-websocket-protocol", "").split(",") if p.strip()
            ]
            server = web.WebSocketResponse(protocols=protocols, max_msg_size=0, autoping=True)
            await server.prepare(request)
            self.sockets.add(server)
            async with self.session.ws_connect(
                url, protocols=protocols, headers=self.headers(request), max_msg_size=0
            ) as client:

                async def pump(src, dst) -> None:  # noqa: ANN001
                    async for msg in src:
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            await dst.send_bytes(msg.data)
                        elif msg.type == aiohttp.WSMsgType.TEXT:
                            await dst.send_str(msg.data)
                        else:
                            break
                    await dst.close()

                await asyncio.gather(pump(server, client), pump(client, server), return_exceptions=True)
            self.sockets.discard(server)
            return server
        async with self.session.request(
            request.method,
            url,
            headers=self.headers(request),
            data=await request.read(),
            allow_redirects=False,
        ) as r:
            body = await r.read()
            headers = {k: v for k, v in r.headers.items() if k.lower() not in HOP}
            return web.Response(status=r.status, body=body, headers=headers)

    def stop(self) -> None:
        async def close() -> None:
            for ws in list(self.sockets):
                await ws.close()
            await self.session.close()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("auth-browser")
    vault_env, _, _ = make_vault(tmp)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")},
        **vault_env,
        "CODEXGATE_TRACES": str(tmp / "no-traces"),
        "CODEXGATE_DASHBOARD_TRUSTED_PROXIES": "127.0.0.2",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    log = tmp / "streamlit.log"
    try:
        proc = launch.start_dashboard_process(port, env, log)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Browser:
    """Headless Chromium driven over the DevTools protocol: navigate, reload, read the page's text as
    it renders (real time, no virtual-time budget: Streamlit renders over its websocket)."""

    def __init__(self, profile: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={self.port}",
                "--remote-allow-origins=*",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as r:
                    pages = [t for t in json.loads(r.read()) if t.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.2)
        self.ws = ws_connect(pages[0]["webSocketDebuggerUrl"], max_size=None).__enter__()
        self.next_id = 0

    def send(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.next_id:
                return msg.get("result", {})

    def text(self) -> str:
        result = self.send(
            "Runtime.evaluate", expression="document.body ? document.body.innerText : ''", returnByValue=True
        )
        return str(result.get("result", {}).get("value") or "")

    def wait_for(self, *needles: str, timeout: float = 45) -> str:
        """The page text once it contains any of ``needles`` (or the last text after ``timeout``)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if any(n in text for n in needles):
                return text
            time.sleep(0.25)
        return text

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


SIGN_IN_FORM = "Gateway key, admin credential or admin token"


def test_trusted_proxy_signs_in_and_a_reload_keeps_the_session(dashboard: int, browser: Browser) -> None:
    proxy = HeaderProxy(dashboard, "lead@acme.example", "127.0.0.2")
    try:
        browser.send("Page.navigate", url=f"http://127.0.0.1:{proxy.port}/admin")
        first = browser.wait_for("Signed in as lead@acme.example", SIGN_IN_FORM)
        assert "Signed in as lead@acme.example" in first and "team_admin of acme/platform" in first
        assert SIGN_IN_FORM not in first
        browser.send("Page.reload", ignoreCache=True)
        time.sleep(0.5)  # let the old document go
        again = browser.wait_for("Signed in as lead@acme.example", SIGN_IN_FORM)
        assert "Signed in as lead@acme.example" in again and SIGN_IN_FORM not in again
    finally:
        proxy.stop()


def test_developer_identity_gets_the_admin_403(dashboard: int, browser: Browser) -> None:
    proxy = HeaderProxy(dashboard, "dev@acme.example", "127.0.0.2")
    try:
        browser.send("Page.navigate", url=f"http://127.0.0.1:{proxy.port}/admin")
        text = browser.wait_for("403", SIGN_IN_FORM)
        assert "developer may not administer keys" in text and SIGN_IN_FORM not in text
    finally:
        proxy.stop()


def test_spoofed_header_from_untrusted_address_is_ignored(dashboard: int, browser: Browser) -> None:
    proxy = HeaderProxy(dashboard, "root@acme.example", "127.0.0.1")
    try:
        browser.send("Page.navigate", url=f"http://127.0.0.1:{proxy.port}/admin")
        text = browser.wait_for(SIGN_IN_FORM, "Signed in as")
        assert SIGN_IN_FORM in text and "root@acme.example" not in text
    finally:
        proxy.stop()
