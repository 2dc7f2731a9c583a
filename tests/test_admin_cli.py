"""The admin CLI through the real console script: a full round trip, secrets that never show up
in any output or in the vault file, key rotation and revocation, routes, and one-line errors
(no traceback) for every kind of bad input. Independent calls run in parallel to save time."""

from __future__ import annotations

import io
import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from codexgate.core.vault import AuthError, Vault, generate_secret, hash_key, load_secret

REPO = Path(__file__).resolve().parents[1]
CODEXGATE = str(REPO / ".venv" / "bin" / "codexgate")
OPENAI_SECRET = "sk-cli-openai-secret-7f3a9b2c"
ANTHROPIC_SECRET = "sk-ant-cli-secret-41d0e8aa"
ROTATED_SECRET = "sk-cli-openai-rotated-5e6f7a8b"


@dataclass
class Result:
    args: list[str]
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")}
    env.update(extra or {})
    return env


def run_many(calls: list[tuple[list[str], dict[str, str] | None, str | None]], cwd: Path) -> list[Result]:
    """Run independent ``codexgate`` invocations concurrently: (args, extra env, stdin)."""
    procs = []
    for args, env, stdin in calls:
        p = subprocess.Popen(
            [CODEXGATE, *args],
            cwd=cwd,
            env=_env(env),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append((args, p, stdin))
    results = []
    for args, p, stdin in procs:
        out, err = p.communicate(stdin, timeout=60)
        results.append(Result(args, p.returncode, out, err))
    return results


class Admin:
    """One vault (its key in a separate directory) and a way to run commands against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.vault = root / "data" / "vault" / "vault.enc"
        self.key_file = root / "secrets" / "vault.key"
        self.outputs: list[Result] = []

    @property
    def env(self) -> dict[str, str]:
        return {"CODEXGATE_VAULT": str(self.vault), "CODEXGATE_VAULT_KEY_FILE": str(self.key_file)}

    def many(self, *calls: list[str] | tuple[list[str], dict[str, str] | None, str | None]) -> list[Result]:
        full = []
        for c in calls:
            args, extra, stdin = (c, None, None) if isinstance(c, list) else c
            full.append((args, {**self.env, **(extra or {})}, stdin))
        results = run_many(full, self.root)
        self.outputs.extend(results)
        return results

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None, ok: bool = True
    ) -> Result:
        (r,) = self.many((list(args), env, stdin))
        if ok:
            assert r.code == 0, r.text
        return r

    def load(self) -> Vault:
        return Vault.load(self.vault, load_secret(self.key_file))


def assert_one_line_error(r: Result, *fragments: str) -> None:
    assert r.code != 0, r.text
    assert "Traceback" not in r.text
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codexgate: error: "), r.err
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Admin:
    """init -> two providers (env var, stdin) -> team -> key create --json."""
    a = Admin(tmp_path_factory.mktemp("admin"))
    r = a("init")
    assert "CODEXGATE_VAULT_KEY" in r.out
    assert oct(a.key_file.stat().st_mode & 0o777) == "0o600"
    assert a.key_file.parent != a.vault.parent
    add_openai, add_anthropic, add_team = a.many(
        (
            [
                "provider", "add", "openai", "--kind", "openai", "--base-url", "https://api.openai.com/v1",
                "--default", "--api-key-env", "OPENAI_SECRET_FOR_TEST",
            ],
            {"OPENAI_SECRET_FOR_TEST": OPENAI_SECRET},
            None,
        ),
        (
            [
                "provider", "add", "anthropic", "--kind", "anthropic",
                "--base-url", "https://api.anthropic.com", "--api-key-stdin",
            ],
            None,
            ANTHROPIC_SECRET + "\n",
        ),
        ["team", "add", "acme/core", "--budget-usd", "25", "--budget-period", "week", "--admin", "lead@acme.io"],
    )  # fmt: skip
    for r in (add_openai, add_anthropic, add_team):
        assert r.code == 0, r.text
    return a


@pytest.fixture(scope="module")
def created(admin: Admin) -> dict[str, str]:
    r = admin(
        "key", "create", "--team", "acme/core", "--project", "web", "--developer", "alice@acme.io",
        "--models", "gpt-4o*", "o3*", "--providers", "openai", "--expires", "30d",
        "--tag", "cost_center=42", "--tag", "env=dev", "--json",
    )  # fmt: skip
    doc = json.loads(r.out)
    assert set(doc) == {"key", "key_id"} and doc["key"].startswith(f"cgk_{doc['key_id']}_")
    return doc


def test_round_trip_show_and_list(admin: Admin, created: dict[str, str]) -> None:
    key_id = created["key_id"]
    show, listing, providers, teams = admin.many(
        ["key", "show", key_id, "--json"],
        ["key", "list", "--team", "acme/core", "--json"],
        ["provider", "list", "--json"],
        ["team", "list", "--json"],
    )
    detail = json.loads(show.out)
    assert detail["key_id"] == key_id and detail["team"] == "acme/core"
    assert detail["developer"] == "alice@acme.io" and detail["project"] == "web"
    assert detail["models"] == ["gpt-4o*", "o3*"] and detail["providers"] == ["openai"]
    assert detail["tags"] == {"cost_center": "42", "env": "dev"}
    assert detail["status"] == "active" and detail["valid_secrets"] == 1
    expires = datetime.fromisoformat(detail["expires_at"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
    assert "hash" not in show.out and "sha256" not in show.out
    assert [k["key_id"] for k in json.loads(listing.out)] == [key_id]

    by_name = {p["name"]: p for p in json.loads(providers.out)}
    assert set(by_name) == {"openai", "anthropic"}
    assert by_name["openai"]["default"] is True and by_name["openai"]["hosts"] == ["api.openai.com"]
    assert by_name["anthropic"]["fingerprint"].startswith("sha256:")
    assert json.loads(teams.out) == [
        {
            "team": "acme/core",
            "privacy_mode": "full",
            "budget_usd": 25.0,
            "budget_period": "week",
            "admins": ["lead@acme.io"],
        }
    ]

    # the vault holds the provider secrets (it must) and the gateway key only as a hash
    v = admin.load()
    assert v.providers["openai"].api_key == OPENAI_SECRET
    assert v.providers["anthropic"].api_key == ANTHROPIC_SECRET
    assert v.keys[key_id].hashes[0].hash == hash_key(created["key"])
    text = json.dumps(v.to_dict())
    assert created["key"] not in text and created["key"].split("_", 2)[2] not in text
    assert v.authenticate(created["key"], datetime.now(UTC)).key_id == key_id


def test_rotate_revoke_enable_disable(admin: Admin) -> None:
    r = admin("key", "create", "--team", "acme/core", "--project", "api", "--developer", "bob")
    first = r.out.strip().splitlines()[-1]
    key_id = first.split("_")[1]
    assert "shown once" in r.err

    rotated = json.loads(admin("key", "rotate", key_id, "--grace", "1h", "--json").out)
    second = rotated["key"]
    assert rotated["key_id"] == key_id and second != first
    detail = json.loads(admin("key", "show", key_id, "--json").out)
    assert detail["valid_secrets"] == 2
    until = datetime.fromisoformat(detail["previous_secret_valid_until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    v = admin.load()
    now = datetime.now(UTC)
    assert v.authenticate(first, now).key_id == key_id and v.authenticate(second, now).key_id == key_id

    third = admin("key", "rotate", key_id, "--grace", "0").out.strip().splitlines()[-1]
    v = admin.load()
    now = datetime.now(UTC)
    assert v.authenticate(third, now).key_id == key_id
    for old in (first, second):
        with pytest.raises(AuthError) as info:
            v.authenticate(old, now)
        assert info.value.code == "invalid_api_key"

    admin("key", "disable", key_id)
    assert admin.load().keys[key_id].status(datetime.now(UTC)) == "disabled"
    admin("key", "enable", key_id)
    assert admin.load().keys[key_id].status(datetime.now(UTC)) == "active"
    admin("key", "revoke", key_id)
    show, enable, rotate = admin.many(
        ["key", "show", key_id, "--json"], ["key", "enable", key_id], ["key", "rotate", key_id]
    )
    assert json.loads(show.out)["status"] == "revoked"
    assert_one_line_error(enable, "revoked")
    assert_one_line_error(rotate, "revoked")


def test_concurrent_edits_are_serialised_routes_and_provider_rotation(admin: Admin) -> None:
    """Six admin commands at once, each a load-edit-save: the lock loses none of the edits."""
    results = admin.many(
        ["route", "add", "--model", "claude-*", "--provider", "anthropic", "--api", "anthropic_messages"],
        (["provider", "rotate", "openai", "--api-key-stdin"], None, ROTATED_SECRET),
        *(["team", "add", f"acme/t{i}", "--privacy", "metrics_only"] for i in range(4)),
    )
    for r in results:
        assert r.code == 0, r.text
    v = admin.load()
    assert {f"acme/t{i}" for i in range(4)} <= set(v.teams)
    assert v.teams["acme/t0"].privacy_mode == "metrics_only"
    assert v.providers["openai"].api_key == ROTATED_SECRET
    assert v.providers["openai"].fingerprint() in results[1].out

    admin("route", "add", "--model", "gpt-*", "--provider", "openai")
    routes = json.loads(admin("route", "list", "--json").out)
    assert routes == [
        {"index": 0, "model": "claude-*", "api": "anthropic_messages", "provider": "anthropic"},
        {"index": 1, "model": "gpt-*", "api": "*", "provider": "openai"},
    ]
    in_use, gone = admin.many(["provider", "remove", "openai"], ["route", "remove", "7"])
    assert_one_line_error(in_use, "route")
    assert_one_line_error(gone, "no route 7")
    admin("route", "remove", "0")
    assert [r.model for r in admin.load().routes] == ["gpt-*"]


def test_bad_input_is_one_line_without_traceback(admin: Admin, tmp_path: Path) -> None:
    other_key = tmp_path / "other.key"
    other_key.write_bytes(generate_secret())
    create = ["key", "create", "--team", "acme/core", "--project", "p", "--developer", "d"]
    before = admin.vault.read_bytes()
    results = admin.many(
        ["key", "list", "--key-file", str(other_key)],
        ["key", "list", "--vault", str(tmp_path / "missing.enc")],
        (["key", "list"], {"CODEXGATE_VAULT_KEY_FILE": ""}, None),
        ["key", "create", "--team", "acme/ghost", "--project", "p", "--developer", "d"],
        [*create, "--expires", "2020-01-01"],
        [*create, "--expires", "next tuesday"],
        [*create, "--models", "gpt-["],
        ["key", "rotate", "000000000000", "--grace", "1 hour"],
        ["route", "add", "--model", "x-*", "--provider", "ghost"],
    )
    expected = [
        ("cannot be decrypted",),
        ("does not exist", "codexgate init"),
        ("no vault key",),
        ("unknown team 'acme/ghost'",),
        ("not in the future",),
        ("invalid expiry",),
        ("invalid glob",),
        ("invalid duration",),
        ("unknown provider 'ghost'",),
    ]
    for r, fragments in zip(results, expected, strict=True):
        assert_one_line_error(r, *fragments)
    assert admin.vault.read_bytes() == before  # refused edits do not rewrite the vault


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (["key", "list", "--key-file", "/nonexistent/vault.key"], None, "cannot be read"),
        (["key", "create", "--team", "acme/core", "--project", "p", "--developer", "d", "--tag", "novalue"], None, "invalid tag"),
        (["key", "show", "000000000000"], None, "unknown key id"),
        (["key", "list", "--team", "acme/ghost"], None, "unknown team"),
        (["route", "add", "--model", "gpt [4]", "--provider", "openai"], None, "invalid glob"),
        (["route", "add", "--model", "gpt-*", "--provider", "openai", "--api", "anthropic_messages"], None, "cannot serve"),
        (["team", "add", "acme/budget", "--budget-usd", "5"], None, "budget"),
        (["team", "add", "no-slash"], None, "invalid team"),
        (["team", "add", "acme/core"], None, "already exists"),
        (["provider", "add", "p2", "--kind", "openai", "--base-url", "https://x.example", "--api-key-env", "UNSET_VAR_X"], None, "UNSET_VAR_X"),
        (["provider", "add", "p3", "--kind", "openai", "--base-url", "ftp://x.example", "--api-key-stdin"], "sk-secret-value-99", "base URL"),
        (["provider", "add", "p4", "--kind", "openai", "--base-url", "https://x.example", "--host", "x", "--no-intercept", "--api-key-stdin"], "sk-secret-value-99", "contradict"),
        (["provider", "add", "p5", "--kind", "openai", "--base-url", "https://x.example", "--api-key-stdin"], "", "no API key"),
        (["provider", "rotate", "ghost", "--api-key-stdin"], "sk-secret-value-99", "unknown provider"),
    ],
)  # fmt: skip
def test_more_bad_input_in_process(
    admin: Admin,
    args: list[str],
    stdin: str | None,
    fragment: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same dispatcher in-process (each console-script start costs about a second)."""
    from codexgate.cli import main

    for k, v in admin.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin or ""))
    before = admin.vault.read_bytes()
    code = main(args)
    out, err = capsys.readouterr()
    assert_one_line_error(Result(args, code, out, err), fragment)
    assert "sk-secret-value-99" not in out + err
    assert admin.vault.read_bytes() == before


def test_init_refusals(admin: Admin, tmp_path: Path) -> None:
    secret = admin.key_file.read_bytes().strip()
    beside, no_key, exists, ok, from_env = run_many(
        [
            (["init", "--vault", str(tmp_path / "x" / "vault.enc"), "--key-file", str(tmp_path / "x" / "k")], None, None),
            (["init", "--vault", str(tmp_path / "n" / "vault.enc")], None, None),
            (["init", "--vault", str(admin.vault), "--key-file", str(tmp_path / "s2" / "k")], None, None),
            (["init", "--vault", str(tmp_path / "v" / "vault.enc"), "--key-file", str(tmp_path / "s" / "k")], None, None),
            (["init", "--vault", str(tmp_path / "w" / "vault.enc")], {"CODEXGATE_VAULT_KEY": secret.decode()}, None),
        ],
        tmp_path,
    )  # fmt: skip
    assert_one_line_error(beside, "never stored beside the vault")
    assert not (tmp_path / "x").exists()
    assert_one_line_error(no_key, "--key-file")
    assert_one_line_error(exists, "already exists")
    assert not (tmp_path / "s2").exists()
    assert ok.code == 0, ok.text
    new_secret = (tmp_path / "s" / "k").read_bytes().strip()
    assert new_secret != secret and Vault.load(tmp_path / "v" / "vault.enc", new_secret).keys == {}
    assert oct((tmp_path / "s" / "k").stat().st_mode & 0o777) == "0o600"
    assert from_env.code == 0 and Vault.load(tmp_path / "w" / "vault.enc", secret).teams == {}
    for r in (beside, no_key, exists, ok, from_env):
        assert secret.decode() not in r.text and new_secret.decode() not in r.text


def test_api_key_on_the_command_line_is_refused_without_echoing_it(tmp_path: Path) -> None:
    leak = "sk-argv-secret-9c8b7a6d"
    add = ["provider", "add", "p", "--kind", "openai", "--base-url", "https://x.example/v1"]
    refused_eq, refused_sep, rotate, mixed = run_many(
        [
            ([*add, f"--api-key={leak}"], None, None),
            ([*add, "--api-key", leak], None, None),
            (["provider", "rotate", "openai", f"--api-key={leak}"], None, None),
            ([*add, "--api-key-env", "X", f"--api-key={leak}"], None, None),
        ],
        tmp_path,
    )
    for r in (refused_eq, refused_sep, rotate):
        assert_one_line_error(r, "refusing an API key on the command line")
    assert mixed.code != 0
    for r in (refused_eq, refused_sep, rotate, mixed):
        assert leak not in r.text  # argparse's "ambiguous option" message used to print it


def test_secrets_never_appear_in_any_output(admin: Admin, created: dict[str, str]) -> None:
    """Runs last in this module: every output the module produced is in ``admin.outputs``."""
    # listings after all the edits above, to cover them too
    admin.many(["key", "list"], ["provider", "list"])
    provider_secrets = (OPENAI_SECRET, ANTHROPIC_SECRET, ROTATED_SECRET)
    creating = [r for r in admin.outputs if r.args[:2] in (["key", "create"], ["key", "rotate"])]
    for r in admin.outputs:
        for s in provider_secrets:
            assert s not in r.text, r.args
        if r not in creating:
            assert "cgk_" not in r.text, r.args
    assert sum(created["key"] in r.text for r in admin.outputs) == 1
    raw = admin.vault.read_bytes()
    for s in (*provider_secrets, created["key"], created["key_id"]):
        assert s.encode() not in raw
