"""Routes with ordered targets: the vault model (old vaults keep loading), the admin CLI
(``route add --target … --strategy``, ``route list``, ``route remove``), the route table's
choice and load-balancing order, and scope's fail-closed filtering of targets by the key."""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from addons import route_table
from addons.flowstate import get_state
from codexgate.core.vault import ProviderCredential, Route, RouteTarget, Vault, VaultError
from tests.gateway.flows import Pipeline, demo_vault, error_of, model_flow

REPO = Path(__file__).resolve().parents[1]
CODEXGATE = str(REPO / ".venv" / "bin" / "codexgate")


def _vault() -> Vault:
    v = Vault()
    v.providers["openai"] = ProviderCredential("openai", "openai", "https://api.openai.com/v1", "sk-a" * 8)
    v.providers["azure-eu"] = ProviderCredential(
        "azure-eu", "azure", "https://eu.example/openai/v1", "az" * 16
    )
    v.providers["anthropic"] = ProviderCredential(
        "anthropic", "anthropic", "https://api.anthropic.com", "sk-x" * 8
    )
    return v


def test_targets_round_trip_and_old_vault_documents_still_load() -> None:
    v = _vault()
    targets = [RouteTarget("openai"), RouteTarget("azure-eu", "gpt-5", first_byte_timeout_s=5.0),
               RouteTarget("anthropic", "claude-sonnet-4-5", weight=2.0)]  # fmt: skip
    v.add_route("gpt-5*", targets=targets, strategy="loadbalance", api="responses")
    v.add_route("gpt-4*", "openai")  # single provider, as before targets existed
    back = Vault.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back.routes[0].targets == targets and back.routes[0].strategy == "loadbalance"
    assert back.routes[0].provider == "openai"
    assert back.routes[1].all_targets() == [RouteTarget("openai")]
    assert v.to_dict()["routes"][1] == {"model": "gpt-4*", "provider": "openai", "api": "*"}  # old shape kept
    old = {"format_version": 1, "routes": [{"model": "claude-*", "provider": "anthropic"}]}
    assert Vault.from_dict(old).routes == [Route("claude-*", "anthropic", "*")]


def test_route_validation() -> None:
    v = _vault()
    with pytest.raises(VaultError, match="unknown provider|ghost"):
        v.add_route("x-*", targets=[RouteTarget("ghost")])
    with pytest.raises(VaultError, match="cannot serve the anthropic_messages API"):
        v.add_route(
            "x-*", targets=[RouteTarget("anthropic"), RouteTarget("openai")], api="anthropic_messages"
        )
    with pytest.raises(VaultError, match="unknown strategy"):
        v.add_route("x-*", targets=[RouteTarget("openai")], strategy="random")
    with pytest.raises(VaultError, match="weight"):
        v.add_route("x-*", targets=[RouteTarget("openai", weight=0)])
    v.add_route("x-*", targets=[RouteTarget("openai"), RouteTarget("anthropic", "claude-sonnet-4-5")])
    with pytest.raises(VaultError, match="used by route"):
        v.remove_provider("anthropic")  # a fallback target counts as a use
    assert RouteTarget.parse("azure-eu:gpt-5@3") == RouteTarget("azure-eu", "gpt-5", 3.0)
    assert RouteTarget.parse("openai:llama3#chat") == RouteTarget(
        "openai", "llama3", upstream_api="chat_completions"
    )
    with pytest.raises(VaultError, match="Chat translation"):
        v.add_route("y-*", targets=[RouteTarget("anthropic", upstream_api="chat_completions")])


def test_choice_orders_targets_and_filters_what_cannot_serve_the_api() -> None:
    v = _vault()
    v.add_route("gpt-5*", targets=[RouteTarget("openai"), RouteTarget("anthropic", "claude-sonnet-4-5")])
    resp = route_table.choose(v, "responses", "gpt-5-codex", requested=None, host_provider=None)
    assert [(t.label, t.translate) for t in resp.targets] == [("openai", None),
                                                              ("anthropic:claude-sonnet-4-5", "anthropic")]  # fmt: skip
    chat = route_table.choose(v, "chat_completions", "gpt-5-codex", requested=None, host_provider=None)
    assert [t.label for t in chat.targets] == ["openai"]  # no Chat -> Anthropic translation


def test_loadbalance_order_follows_the_weights() -> None:
    v = _vault()
    v.add_route("m", targets=[RouteTarget("openai", weight=3.0), RouteTarget("azure-eu", weight=1.0)],
                strategy="loadbalance")  # fmt: skip
    choice = route_table.choose(v, "responses", "m", requested=None, host_provider=None)
    rng = random.Random(7)
    firsts = Counter(route_table.order(choice.targets, choice.strategy, rng)[0].label for _ in range(4000))
    assert 0.70 < firsts["openai"] / 4000 < 0.80  # weight 3 of 4
    assert all(len(route_table.order(choice.targets, "loadbalance", rng)) == 2 for _ in range(10))
    assert [t.label for t in route_table.order(choice.targets, "fallback")] == ["openai", "azure-eu"]


# ------------------------------------------------------------------ scope: fail closed per target


async def test_scope_plans_only_targets_the_key_may_use(tmp_path: Path) -> None:
    demo = demo_vault(tmp_path)
    v = demo.load()
    v.add_route("gpt-5*", targets=[RouteTarget("openai"), RouteTarget("anthropic", "claude-sonnet-4-5")],
                api="responses")  # fmt: skip
    v.add_route("only-openai", targets=[RouteTarget("openai")])
    demo.save(v)
    p = Pipeline(demo)
    with taddons.context(*p.chain) as tctx:
        tctx.options.update(codexgate_unknown_hosts="passthrough")
        alice = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hi"})
        await p.run(alice)
        carol = model_flow(demo.keys["carol"], {"model": "gpt-5-codex", "input": "hi"})  # anthropic only
        await p.run(carol, upto=3)
        refused = model_flow(demo.keys["carol"], {"model": "only-openai", "input": "hi"})
        await p.run(refused)
    assert [t.label for t in get_state(alice).upstream.plan] == ["openai", "anthropic:claude-sonnet-4-5"]
    assert [t.label for t in get_state(carol).upstream.plan] == ["anthropic:claude-sonnet-4-5"]
    assert "1 target(s) not allowed" in get_state(carol).verdict.decisions[-1]["reason"]
    assert refused.response.status_code == 403 and error_of(refused)["code"] == "provider_not_allowed"
    assert get_state(refused).upstream.plan == []


async def test_without_the_relay_the_first_untranslated_target_is_used(tmp_path: Path) -> None:
    demo = demo_vault(tmp_path)
    v = demo.load()
    v.add_route("gpt-5*", targets=[RouteTarget("anthropic", "claude-sonnet-4-5"), RouteTarget("openai", "gpt-5")],
                api="responses")  # fmt: skip
    demo.save(v)
    p = Pipeline(demo)
    with taddons.context(*p.chain) as tctx:
        tctx.options.update(codexgate_unknown_hosts="passthrough")
        f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hi"})
        await p.run(f)
    assert f.response is None and f.request.url.startswith("http://127.0.0.1:1/v1/responses")
    assert json.loads(f.request.content)["model"] == "gpt-5"  # the route's upstream model
    state = get_state(f)
    assert state.upstream.served_by == "openai:gpt-5" and state.upstream.attempts[0].model == "gpt-5"


# ------------------------------------------------------------------ the admin CLI


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"CODEXGATE_VAULT": str(tmp / "v" / "vault.enc"), "CODEXGATE_VAULT_KEY_FILE": str(tmp / "k" / "vault.key"),
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    return subprocess.run([CODEXGATE, *args], env=env, cwd=tmp, capture_output=True, text=True, timeout=60)


def test_route_cli_add_list_remove(tmp_path: Path) -> None:
    demo = demo_vault(tmp_path)
    (tmp_path / "v").mkdir()
    (tmp_path / "k").mkdir()
    demo.path.rename(tmp_path / "v" / "vault.enc")
    demo.key_file.rename(tmp_path / "k" / "vault.key")
    add = _cli(tmp_path, "route", "add", "--model", "gpt-5*", "--target", "openai", "--target",
               "anthropic:claude-sonnet-4-5", "--strategy", "fallback", "--api", "responses")  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert "openai | anthropic:claude-sonnet-4-5" in add.stdout
    lb = _cli(tmp_path, "route", "add", "--model", "lb-*", "--target", "openai@3", "--target", "openai:gpt-5@1",
              "--strategy", "loadbalance")  # fmt: skip
    assert lb.returncode == 0, lb.stderr
    rows = json.loads(_cli(tmp_path, "route", "list", "--json").stdout)
    assert rows[1]["targets"] == [
        {"provider": "openai"},
        {"provider": "anthropic", "model": "claude-sonnet-4-5"},
    ]
    assert rows[2]["strategy"] == "loadbalance" and rows[2]["targets"][0]["weight"] == 3.0
    assert "targets" not in rows[0]  # the demo's single-provider route keeps its old row shape
    table = _cli(tmp_path, "route", "list").stdout
    assert "loadbalance: openai@3 | openai:gpt-5" in table
    bad = _cli(tmp_path, "route", "add", "--model", "x", "--target", "ghost")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "ghost" in bad.stderr
    gone = _cli(tmp_path, "route", "remove", "1")
    assert gone.returncode == 0 and "fallback: openai | anthropic:claude-sonnet-4-5" in gone.stdout
    assert len(json.loads(_cli(tmp_path, "route", "list", "--json").stdout)) == 2
