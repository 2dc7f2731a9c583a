"""Flows and a hook-by-hook pipeline for in-process addon tests (mitmproxy's taddons/tflow)."""

from __future__ import annotations

import json
from pathlib import Path

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow

from addons.identity import Identity
from addons.intake import Intake
from addons.provider_hosts import ProviderHosts
from addons.scope import Scope
from addons.upstream import Upstream
from addons.vault_watch import VaultHolder
from codexgate.cli.demo_setup import DemoVault, create_demo_vault

PROVIDER_KEY = "sk-provider-secret-0123456789"
ANTHROPIC_KEY = "sk-ant-provider-secret-0123456789"


def demo_vault(tmp_path: Path) -> DemoVault:
    return create_demo_vault(tmp_path, "http://127.0.0.1:1", PROVIDER_KEY, ANTHROPIC_KEY)


def model_flow(
    key: str | None,
    body: dict | bytes | None,
    path: str = "/v1/responses",
    *,
    method: str = "POST",
    mode: str = "reverse",
    headers: dict[str, str] | None = None,
) -> http.HTTPFlow:
    f = tflow.tflow()
    f.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:9" if mode == "reverse" else "regular")
    f.request.method = method
    f.request.path = path
    if body is not None:
        f.request.content = body if isinstance(body, bytes) else json.dumps(body).encode()
        f.request.headers["content-type"] = "application/json"
    else:
        f.request.content = b""
    if key is not None:
        f.request.headers["authorization"] = f"Bearer {key}"
    for k, v in (headers or {}).items():
        f.request.headers[k] = v
    return f


def error_of(flow: http.HTTPFlow) -> dict:
    assert flow.response is not None
    return json.loads(flow.response.content)["error"]


class Pipeline:
    """The gateway's request-path addons, run hook by hook as mitmproxy would."""

    def __init__(self, demo: DemoVault, required: tuple[str, ...] = ("identity", "scope")) -> None:
        self.holder = VaultHolder()
        self.holder.configure(demo.path, demo.key_file)
        self.hosts = ProviderHosts(self.holder)
        self.intake = Intake(self.hosts)
        self.identity = Identity(self.holder)
        self.scope = Scope(self.holder, self.hosts)
        self.upstream = Upstream(self.hosts, required)
        self.chain = [self.intake, self.identity, self.scope, self.upstream]

    async def run(self, flow: http.HTTPFlow, extra: list | None = None, upto: int | None = None) -> None:
        chain = self.chain[:3] + (extra or []) + self.chain[3:]
        if upto is not None:
            chain = chain[:upto]
        for hook in ("requestheaders", "request"):
            for addon in chain:
                fn = getattr(addon, hook, None)
                if fn is not None:
                    result = fn(flow)
                    if hasattr(result, "__await__"):
                        await result
