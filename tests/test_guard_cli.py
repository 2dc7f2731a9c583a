"""``codexgate guardrail set|show|clear`` through the real console script against a real vault;
the stored section resolves with ``codexgate.guard.policy``."""

from __future__ import annotations

import json

import pytest

from codexgate.guard.policy import SECTION, Rule, from_section, resolve
from tests.helpers.cli import Cli, one_line_error


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, str]:
    c = Cli(tmp_path_factory.mktemp("guardrail"))
    c("init")
    c("team", "add", "acme/platform")
    out = c("key", "create", "--team", "acme/platform", "--project", "gw", "--developer", "alice", "--json").stdout
    return c, json.loads(out)["key_id"]


def test_set_show_clear_and_resolution(cli: tuple[Cli, str]) -> None:
    c, key_id = cli
    c("guardrail", "set", "--org", "acme", "--detector", "pii", "--action", "flag", "--stage", "async")
    c("guardrail", "set", "--team", "acme/platform", "--detector", "secrets", "--action", "redact",
      "--max-bytes", "2000000", "--banned-term", "aurora", "--banned-regex", r"ZX-\d{4}")
    c("guardrail", "set", "--key", key_id, "--detector", "secrets", "--action", "block", "--on-incomplete", "block")
    scopes = from_section(c.load().sections[SECTION])
    policy = resolve(scopes, "acme", "acme/platform", "gw", key_id)
    assert policy.rules == {"pii": Rule("flag", "async"), "secrets": Rule("block")}
    assert policy.max_bytes == 2_000_000 and policy.banned_terms == ("aurora",) and policy.on_incomplete == "block"

    shown = json.loads(c("guardrail", "show", "--json").stdout)
    assert set(shown) == {"org:acme", "team:acme/platform", f"key:{key_id}"}
    text = c("guardrail", "show", "--team", "acme/platform").stdout
    assert "secrets=redact/pre" in text and "banned=1 terms/1 regexes" in text and "aurora" not in text

    c("guardrail", "clear", "--key", key_id, "--detector", "secrets")
    policy = resolve(from_section(c.load().sections[SECTION]), "acme", "acme/platform", "gw", key_id)
    assert policy.rules["secrets"] == Rule("redact")
    c("guardrail", "clear", "--team", "acme/platform")
    assert "team:acme/platform" not in json.loads(c("guardrail", "show", "--json").stdout)


def test_errors_are_one_line(cli: tuple[Cli, str]) -> None:
    c, _ = cli
    one_line_error(c("guardrail", "set", "--team", "acme/nope", "--detector", "pii", "--action", "flag", ok=False),
                   "unknown team")
    one_line_error(c("guardrail", "set", "--org", "acme", "--detector", "secrets", "--action", "block",
                     "--stage", "async", ok=False), "needs stage 'pre'")
    one_line_error(c("guardrail", "set", "--team", "acme", "--detector", "pii", "--action", "flag", ok=False),
                   "ORG/TEAM")
    one_line_error(c("guardrail", "set", "--org", "acme", "--banned-regex", "(unclosed", ok=False),
                   "banned regex #1 does not compile")
    one_line_error(c("guardrail", "clear", "--project", "acme/none", ok=False), "no guardrail policy")
