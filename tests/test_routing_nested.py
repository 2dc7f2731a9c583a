"""Nested strategies (one level) and per-target timeouts: the vault model (round trip, old
documents, deeper nesting refused), the route table's expansion into the ordered attempt list,
the admin CLI (``--group``, ``--connect-timeout`` / ``--first-byte-timeout`` / ``--idle-timeout``,
``route list``), and the admin API (``POST /v1/routes`` with targets and groups, audited; the
CLI through ``--admin-url``)."""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from addons import route_table
from codexgate.admin.audit import read_entries
from codexgate.core.vault import ProviderCredential, Route, RouteGroup, RouteTarget, Vault, VaultError
from tests.test_admin_api import CODEXGATE, AdminServer, clean_env, start_admin


def _vault() -> Vault:
    v = Vault()
    for name in ("openai-a", "openai-b", "openai-c"):
        v.providers[name] = ProviderCredential(name, "openai", f"https://{name}.example/v1", "sk-" + "a" * 30)
    v.providers["anthropic"] = ProviderCredential(
        "anthropic", "anthropic", "https://api.anthropic.com", "sk-x" * 8
    )
    return v


NESTED = [
    RouteGroup(
        "loadbalance", [RouteTarget("openai-a", weight=3.0), RouteTarget("openai-b", idle_timeout_s=30.0)]
    ),
    RouteTarget("anthropic", "claude-sonnet-4-5", connect_timeout_s=2.0, first_byte_timeout_s=5.0),
]


# ------------------------------------------------------------------ the vault model


def test_nested_route_round_trips_and_old_documents_load_unchanged() -> None:
    v = _vault()
    v.add_route("gpt-5*", targets=NESTED, api="responses")
    v.add_route("gpt-4*", "openai-a")
    doc = json.loads(json.dumps(v.to_dict()))
    assert doc["routes"][0]["targets"][0] == {
        "strategy": "loadbalance",
        "targets": [
            {"provider": "openai-a", "weight": 3.0},
            {"provider": "openai-b", "idle_timeout_s": 30.0},
        ],
    }
    back = Vault.from_dict(doc)
    assert back.routes[0].targets == NESTED and back.routes[0].provider == "openai-a"
    assert back.routes[0].providers() == ["openai-a", "openai-b", "anthropic"]
    assert doc["routes"][1] == {"model": "gpt-4*", "provider": "openai-a", "api": "*"}
    assert back.routes[0].describe() == (
        "fallback: loadbalance[openai-a@3 | openai-b (idle 30s)] | "
        "anthropic:claude-sonnet-4-5 (connect 2s, first byte 5s)"
    )
    old = {
        "model": "m",
        "provider": "openai-a",
        "targets": [{"provider": "openai-a"}, {"provider": "openai-b"}],
    }
    assert Route.from_dict(old).targets == [RouteTarget("openai-a"), RouteTarget("openai-b")]


def test_deeper_nesting_and_bad_groups_are_refused() -> None:
    v = _vault()
    deep = {"model": "m", "targets": [{"strategy": "fallback", "targets": [
        {"provider": "openai-a"}, {"strategy": "loadbalance", "targets": [{"provider": "openai-b"}]}]}]}  # fmt: skip
    with pytest.raises(VaultError, match="nest one level only"):
        Vault.from_dict({"routes": [deep]})
    inner = RouteGroup("fallback", [RouteTarget("openai-a"), RouteTarget("openai-b")])
    with pytest.raises(VaultError, match="nest one level only"):
        v.add_route("m", targets=[RouteGroup("fallback", [inner, RouteTarget("openai-c")])])  # type: ignore[list-item]
    with pytest.raises(VaultError, match="unknown strategy"):
        v.add_route("m", targets=[RouteGroup("random", [RouteTarget("openai-a"), RouteTarget("openai-b")])])
    with pytest.raises(VaultError, match="at least two"):
        v.add_route("m", targets=[RouteGroup("loadbalance", [RouteTarget("openai-a")])])
    with pytest.raises(VaultError, match="ghost"):
        v.add_route("m", targets=[RouteGroup("loadbalance", [RouteTarget("openai-a"), RouteTarget("ghost")])])
    with pytest.raises(VaultError, match="first byte timeout"):
        v.add_route("m", targets=[RouteTarget("openai-a", first_byte_timeout_s=0.0)])
    with pytest.raises(VaultError, match="cannot serve the anthropic_messages API"):
        v.add_route("m", api="anthropic_messages", targets=[
            RouteGroup("fallback", [RouteTarget("anthropic"), RouteTarget("openai-a")])])  # fmt: skip
    assert v.routes == []
    v.add_route("m", targets=NESTED)
    with pytest.raises(VaultError, match="used by route"):
        v.remove_provider("openai-b")  # a group member counts as a use


# ------------------------------------------------------------------ expansion into attempts


def test_fallback_over_a_loadbalance_group_keeps_the_group_together_then_falls_back() -> None:
    v = _vault()
    v.add_route("gpt-5*", targets=NESTED, api="responses")
    choice = route_table.choose(v, "responses", "gpt-5-codex", requested=None, host_provider=None)
    rng = random.Random(11)
    orders = Counter(
        tuple(t.label for t in route_table.order(choice.targets, choice.strategy, rng)) for _ in range(4000)
    )
    claude = "anthropic:claude-sonnet-4-5"
    assert set(orders) == {("openai-a", "openai-b", claude), ("openai-b", "openai-a", claude)}
    assert 0.70 < orders[("openai-a", "openai-b", claude)] / 4000 < 0.80  # weight 3 of 4 picks first
    plan = route_table.order(choice.targets, choice.strategy, rng)
    assert plan[-1].translate == "anthropic" and plan[-1].spec.connect_timeout_s == 2.0
    assert [t.spec.idle_timeout_s for t in plan if t.provider.name == "openai-b"] == [30.0]


def test_loadbalance_between_a_group_and_a_target_uses_the_group_weight() -> None:
    v = _vault()
    group = RouteGroup("fallback", [RouteTarget("openai-a"), RouteTarget("openai-b")], weight=1.0)
    v.add_route("m", targets=[group, RouteTarget("openai-c", weight=3.0)], strategy="loadbalance")
    choice = route_table.choose(v, "responses", "m", requested=None, host_provider=None)
    rng = random.Random(5)
    orders = Counter(
        tuple(t.label for t in route_table.order(choice.targets, choice.strategy, rng)) for _ in range(4000)
    )
    assert set(orders) == {("openai-c", "openai-a", "openai-b"), ("openai-a", "openai-b", "openai-c")}
    assert 0.70 < orders[("openai-c", "openai-a", "openai-b")] / 4000 < 0.80
    # a key that may not use openai-a: the group keeps its other member, in place
    usable = tuple(t for t in choice.targets if t.provider.name != "openai-a")
    assert sorted(t.label for t in route_table.order(usable, "fallback")) == ["openai-b", "openai-c"]


# ------------------------------------------------------------------ the admin CLI (vault file)


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"CODEXGATE_VAULT": str(tmp / "v" / "vault.enc"), "CODEXGATE_VAULT_KEY_FILE": str(tmp / "k" / "vault.key"),
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    return subprocess.run([CODEXGATE, *args], env=env, cwd=tmp, capture_output=True, text=True, timeout=60)


def test_cli_adds_a_nested_route_with_per_target_timeouts_and_lists_it(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "k").mkdir()
    assert _cli(tmp_path, "init").returncode == 0
    path, secret = tmp_path / "v" / "vault.enc", (tmp_path / "k" / "vault.key").read_bytes()
    v = Vault.load(path, secret)
    v.providers.update(_vault().providers)
    v.save(path, secret)
    add = _cli(tmp_path, "route", "add", "--model", "gpt-5*", "--api", "responses",
               "--group", "loadbalance:openai-a@3,openai-b", "--first-byte-timeout", "20",
               "--target", "anthropic:claude-sonnet-4-5", "--connect-timeout", "2", "--idle-timeout", "60")  # fmt: skip
    assert add.returncode == 0, add.stderr
    rows = json.loads(_cli(tmp_path, "route", "list", "--json").stdout)
    assert rows[0]["strategy"] == "fallback" and rows[0]["targets"] == [
        {"strategy": "loadbalance", "targets": [
            {"provider": "openai-a", "first_byte_timeout_s": 20.0, "weight": 3.0},
            {"provider": "openai-b", "first_byte_timeout_s": 20.0}]},
        {"provider": "anthropic", "model": "claude-sonnet-4-5", "connect_timeout_s": 2.0, "idle_timeout_s": 60.0},
    ]  # fmt: skip
    table = _cli(tmp_path, "route", "list").stdout
    assert "loadbalance[openai-a@3 (first byte 20s) | openai-b (first byte 20s)]" in table
    assert "anthropic:claude-sonnet-4-5 (connect 2s, idle 60s)" in table
    plain = _cli(tmp_path, "route", "add", "--model", "plain-*", "--target", "openai-c")
    assert (
        plain.returncode == 0
        and "targets" not in json.loads(_cli(tmp_path, "route", "list", "--json").stdout)[1]
    )
    for bad, words in (
        (["--connect-timeout", "2", "--target", "openai-a"], "before it"),
        (["--group", "loadbalance:openai-a"], "at least two"),
        (["--group", "loadbalance"], "STRATEGY"),
        (["--target", "openai-a", "--idle-timeout", "-1"], "idle timeout"),
        (["--provider", "openai-a", "--target", "openai-b"], "not both"),
    ):
        r = _cli(tmp_path, "route", "add", "--model", "x", *bad)
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
    assert len(json.loads(_cli(tmp_path, "route", "list", "--json").stdout)) == 2
    helptext = _cli(tmp_path, "route", "add", "--help").stdout
    assert "--group" in helptext and "--first-byte-timeout" in helptext and "loadbalance[openai-a" in helptext


# ------------------------------------------------------------------ the admin API


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory):
    server = start_admin(tmp_path_factory.mktemp("routing-admin"))
    with server.edit() as v:
        for name in ("openai-b", "anthropic"):
            kind = "anthropic" if name == "anthropic" else "openai"
            v.add_provider(
                ProviderCredential(name, kind, "http://127.0.0.1:9/v1", "sk-" + "b" * 30, hosts=[])
            )
    try:
        yield server
    finally:
        server.stop()


def test_admin_api_takes_multi_target_routes_with_groups_and_timeouts(admin: AdminServer) -> None:
    body = {"model": "api-nested-*", "api": "responses", "strategy": "fallback", "targets": [
        {"strategy": "loadbalance", "targets": [{"provider": "openai", "weight": 2}, {"provider": "openai-b"}]},
        {"provider": "anthropic", "model": "claude-sonnet-4-5", "first_byte_timeout_s": 5}]}  # fmt: skip
    before = admin.audit_count()
    for role in ("team_admin", "developer", "auditor"):
        assert admin.call(role, "POST", "/v1/routes", body).status_code == 403
    r = admin.call("org_admin", "POST", "/v1/routes", body)
    assert r.status_code == 201, r.text
    row = r.json()
    assert row["targets"][0]["strategy"] == "loadbalance" and row["targets"][1]["first_byte_timeout_s"] == 5.0
    entries = read_entries(admin.audit_dir)
    assert len(entries) == before + 4  # three refusals and the change, one entry each
    change = entries[-1]
    assert change["action"] == "route.add" and change["actor"] == "root@acme.example"
    assert change["after"]["routes"][-1]["targets"][0]["targets"][1] == {"provider": "openai-b"}
    listed = admin.call("auditor", "GET", "/v1/routes").json()
    assert listed[row["index"]] == row and listed[0] == {
        "index": 0,
        "model": "gpt-*",
        "api": "*",
        "provider": "openai",
    }
    stored = admin.store.read().routes[row["index"]]
    assert isinstance(stored.targets[0], RouteGroup) and stored.describe().startswith(
        "fallback: loadbalance["
    )


@pytest.mark.parametrize(
    ("targets", "words"),
    [
        (
            [
                {
                    "strategy": "fallback",
                    "targets": [
                        {"provider": "openai"},
                        {"strategy": "fallback", "targets": [{"provider": "openai-b"}]},
                    ],
                }
            ],
            "nest one level",
        ),  # fmt: skip
        ([{"provider": "openai", "weight": "heavy"}], "must be a number"),
        ([{"provider": "openai", "secret": "x"}], "unknown field"),
        ([{"provider": "ghost"}], "ghost"),
        ([{"provider": "openai", "idle_timeout_s": 0}], "idle timeout"),
        ([], "1 to 32"),
        ("openai", "must be list"),
    ],
)
def test_admin_api_refuses_bad_route_bodies(admin: AdminServer, targets: object, words: str) -> None:
    r = admin.call("org_admin", "POST", "/v1/routes", {"model": "bad-*", "targets": targets})
    assert r.status_code == 400 and words in r.text, r.text


def test_cli_admin_url_adds_and_lists_a_multi_target_route(admin: AdminServer, tmp_path: Path) -> None:
    env = clean_env(
        {"CODEXGATE_ADMIN_URL": admin.url, "CODEXGATE_ADMIN_CREDENTIAL": admin.creds["org_admin"]}
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CODEXGATE, *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
        )

    before = admin.audit_count()
    add = cli("route", "add", "--model", "cli-nested-*", "--strategy", "loadbalance",
              "--group", "fallback@2:openai,openai-b", "--target", "anthropic:claude-sonnet-4-5", "--idle-timeout", "9")  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert "loadbalance: fallback[openai | openai-b]@2 | anthropic:claude-sonnet-4-5 (idle 9s)" in add.stdout
    assert admin.audit_count() == before + 1 and read_entries(admin.audit_dir)[-1]["source"] == "api"
    table = cli("route", "list").stdout
    assert "fallback[openai | openai-b]@2" in table
    index = json.loads(cli("route", "list", "--json").stdout)[-1]["index"]
    gone = cli("route", "remove", str(index))
    assert gone.returncode == 0 and "anthropic:claude-sonnet-4-5 (idle 9s)" in gone.stdout
