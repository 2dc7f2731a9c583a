"""The audit log: every break-glass CLI edit (through the console script) appends exactly one entry
— including edits by other modules' commands built on ``edit_vault`` — the chain verifies, every
kind of tampering (edit, delete, insert, swap) fails ``codexgate audit verify`` at that line, a
truncated tail is caught against the anchored head, segments chain across files, DuckDB reads the
log, and no secret reaches it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import duckdb
import pytest

from codexgate.admin.audit import AuditLog, read_entries, segments, verify
from codexgate.cli.admin import edit_vault

REPO = Path(__file__).resolve().parents[1]
CODEXGATE = str(REPO / ".venv" / "bin" / "codexgate")
PROVIDER_SECRET = "sk-audit-provider-secret-3e5d7f"
ROTATED_SECRET = "sk-audit-provider-rotated-8a1c2b"


def run(
    tmp: Path, *args: str, stdin: str | None = None, anchor: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")}
    env.update(
        {
            "CODEXGATE_VAULT": str(tmp / "vault" / "vault.enc"),
            "CODEXGATE_VAULT_KEY_FILE": str(tmp / "secrets" / "vault.key"),
            "PROVIDER_KEY": PROVIDER_SECRET,
            "ROTATED_KEY": ROTATED_SECRET,
        }
    )
    if anchor:
        env["CODEXGATE_AUDIT_ANCHOR"] = str(tmp / "elsewhere" / "head.jsonl")
    return subprocess.run(
        [CODEXGATE, *args], env=env, capture_output=True, text=True, input=stdin, timeout=60, cwd=tmp
    )


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[tuple[str, ...], str]]]:
    """A vault edited by every break-glass command; returns (dir, [(command, expected action)])."""
    tmp = tmp_path_factory.mktemp("audit")
    steps: list[tuple[tuple[str, ...], str | None]] = [
        (("init",), "vault.init"),
        (
            (
                "provider",
                "add",
                "openai",
                "--kind",
                "openai",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--api-key-env",
                "PROVIDER_KEY",
            ),
            "provider.add",
        ),
        (
            (
                "provider",
                "add",
                "spare",
                "--kind",
                "openai",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--api-key-env",
                "PROVIDER_KEY",
            ),
            "provider.add",
        ),
        (("provider", "rotate", "openai", "--api-key-env", "ROTATED_KEY"), "provider.rotate"),
        (("provider", "remove", "spare"), "provider.remove"),
        (("provider", "list"), None),
        (("team", "add", "acme/platform", "--admin", "alice"), "team.add"),
        (("team", "list"), None),
        (("route", "add", "--model", "gpt-*", "--provider", "openai"), "route.add"),
        (("route", "add", "--model", "o3*", "--provider", "openai"), "route.add"),
        (("route", "remove", "1"), "route.remove"),
        (
            ("key", "create", "--team", "acme/platform", "--project", "p", "--developer", "alice", "--json"),
            "key.create",
        ),
        (
            (
                "admin",
                "credential",
                "create",
                "--name",
                "root@acme",
                "--role",
                "org_admin",
                "--org",
                "acme",
                "--json",
            ),
            "admin.credential.create",
        ),
    ]
    done: list[tuple[tuple[str, ...], str]] = []
    key_id = cred_id = ""
    secrets_seen = [PROVIDER_SECRET, ROTATED_SECRET]
    for args, action in steps:
        before = len(read_entries(tmp / "vault" / "audit"))
        if args == ("init",):
            args = ("init", "--key-file", str(tmp / "secrets" / "vault.key"))
        result = run(tmp, *args)
        assert result.returncode == 0, (args, result.stderr)
        if "--json" in args and "create" in args:
            out = json.loads(result.stdout)
            secrets_seen.append(out.get("key") or out.get("credential"))
            key_id = out.get("key_id", key_id)
            cred_id = out.get("cred_id", cred_id)
        added = read_entries(tmp / "vault" / "audit")[before:]
        assert len(added) == (1 if action else 0), (args, added)
        if action:
            assert added[0]["action"] == action and added[0]["role"] == "break_glass"
            done.append((args, action))
    for args, action in [
        (("key", "rotate", key_id, "--json"), "key.rotate"),
        (("key", "disable", key_id), "key.disable"),
        (("key", "enable", key_id), "key.enable"),
        (("key", "revoke", key_id), "key.revoke"),
        (("admin", "credential", "revoke", cred_id), "admin.credential.revoke"),
    ]:
        before = len(read_entries(tmp / "vault" / "audit"))
        result = run(tmp, *args)
        assert result.returncode == 0, (args, result.stderr)
        if "rotate" in args:
            secrets_seen.append(json.loads(result.stdout)["key"])
        added = read_entries(tmp / "vault" / "audit")[before:]
        assert [e["action"] for e in added] == [action]
        done.append((args, action))
    (tmp / "secrets.json").write_text(json.dumps(secrets_seen))
    return tmp, done


def test_every_cli_edit_writes_exactly_one_entry(populated: tuple[Path, list]) -> None:
    tmp, done = populated
    entries = read_entries(tmp / "vault" / "audit")
    assert [e["action"] for e in entries] == [a for _, a in done]
    assert [e["seq"] for e in entries] == list(range(1, len(done) + 1))
    assert len({e["actor"] for e in entries}) == 1 and entries[0]["actor"]  # the local OS user
    key_create = next(e for e in entries if e["action"] == "key.create")
    (target,) = [t for t in key_create["after"] if t.startswith("key:")]
    assert key_create["before"][target] is None and key_create["after"][target]["developer"] == "alice"
    rotate = next(e for e in entries if e["action"] == "provider.rotate")
    assert (
        rotate["before"]["provider:openai"]["fingerprint"]
        != rotate["after"]["provider:openai"]["fingerprint"]
    )


def test_edit_vault_records_other_modules_sections(populated: tuple[Path, list], tmp_path: Path) -> None:
    """``codexgate limits set`` and ``codexgate guardrail …`` edit through ``edit_vault``: one entry
    each, named after their command, with the raw section before/after."""
    tmp, _ = populated
    os.environ["CODEXGATE_AUDIT_ANCHOR"] = str(tmp / "elsewhere" / "head.jsonl")
    try:
        for command, sub, section, value in (
            ("limits", "set", "limits", {"acme/platform": {"rpm": 60}}),
            ("guardrail", "set", "guardrail_policies", {"acme/platform": {"pii": "block"}}),
        ):
            args = argparse.Namespace(
                command=command,
                **{f"{command}_command": sub},
                vault=str(tmp / "vault" / "vault.enc"),
                key_file=str(tmp / "secrets" / "vault.key"),
            )
            before = len(read_entries(tmp / "vault" / "audit"))
            with edit_vault(args) as vault:
                vault.sections[section] = value
            added = read_entries(tmp / "vault" / "audit")[before:]
            assert len(added) == 1 and added[0]["action"] == f"{command}.{sub}"
            assert added[0]["target"] == f"section:{section}"
            assert added[0]["before"] == {f"section:{section}": None}
            assert added[0]["after"] == {f"section:{section}": value}
    finally:
        os.environ.pop("CODEXGATE_AUDIT_ANCHOR", None)
    assert run(tmp, "audit", "verify").returncode == 0


def test_verify_passes_and_duckdb_reads_the_log(populated: tuple[Path, list]) -> None:
    tmp, done = populated
    result = run(tmp, "audit", "verify")
    assert result.returncode == 0 and "audit log OK" in result.stdout
    files = f"{tmp}/vault/audit/audit-*.jsonl"
    con = duckdb.connect()
    rows = con.sql(
        f"select seq, action, actor from read_json('{files}', format = 'newline_delimited') order by seq"
    ).fetchall()
    assert [r[1] for r in rows] == [e["action"] for e in read_entries(tmp / "vault" / "audit")]
    shown = run(tmp, "audit", "show", "--action", "key.*")
    assert shown.returncode == 0 and shown.stdout.count("key.") == 5


def test_no_secret_reaches_the_audit_log(populated: tuple[Path, list]) -> None:
    tmp, _ = populated
    secrets_seen = json.loads((tmp / "secrets.json").read_text())
    text = "".join(p.read_text() for p in segments(tmp / "vault" / "audit"))
    text += (tmp / "elsewhere" / "head.jsonl").read_text()
    assert len(secrets_seen) >= 5
    for secret in secrets_seen:
        assert secret not in text


def _copy_log(src: Path, dst: Path) -> list[bytes]:
    dst.mkdir(parents=True)
    lines: list[bytes] = []
    for seg in segments(src):
        lines += seg.read_bytes().splitlines(keepends=True)
    return lines


def _verify_lines(
    tmp: Path, lines: list[bytes], anchor: Path | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp / "audit-000001.jsonl").write_bytes(b"".join(lines))
    args = ["audit", "verify", "--audit-dir", str(tmp)] + (["--anchor", str(anchor)] if anchor else [])
    return run(tmp, *args, anchor=False)


@pytest.mark.parametrize("kind", ["edit", "delete", "insert", "swap"])
@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_tampering_fails_at_that_line(
    populated: tuple[Path, list], tmp_path: Path, kind: str, position: str
) -> None:
    tmp, _ = populated
    lines = _copy_log(tmp / "vault" / "audit", tmp_path / "log")
    n = len(lines)
    i = {"first": 0, "middle": n // 2, "last": n - 2 if kind == "swap" else n - 1}[position]
    tampered = list(lines)
    if kind == "edit":
        entry = json.loads(tampered[i])
        entry["actor"] = "someone-else"
        tampered[i] = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
    elif kind == "delete":
        del tampered[i]
    elif kind == "insert":
        tampered.insert(i, lines[(i + 3) % n])
    else:
        tampered[i], tampered[i + 1] = tampered[i + 1], tampered[i]
    result = _verify_lines(tmp_path / "log", tampered)
    if kind == "delete" and position == "last":
        # deleting the newest line leaves a valid shorter chain: only the anchor can tell (below)
        assert result.returncode == 0
        return
    assert result.returncode == 1, result.stdout
    assert f"audit-000001.jsonl:{i + 1}:" in result.stdout, result.stdout


def test_tampering_with_a_recomputed_hash_still_fails_at_the_next_link(
    populated: tuple[Path, list], tmp_path: Path
) -> None:
    from codexgate.admin.audit import entry_hash

    tmp, _ = populated
    lines = _copy_log(tmp / "vault" / "audit", tmp_path / "log")
    entry = json.loads(lines[2])
    entry["actor"] = "forger"
    entry["hash"] = entry_hash(entry)
    lines[2] = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
    result = _verify_lines(tmp_path / "log", lines)
    assert result.returncode == 1 and "audit-000001.jsonl:4:" in result.stdout


def test_truncated_tail_is_detected_against_the_anchor(populated: tuple[Path, list], tmp_path: Path) -> None:
    tmp, _ = populated
    anchor = tmp / "elsewhere" / "head.jsonl"
    lines = _copy_log(tmp / "vault" / "audit", tmp_path / "log")
    assert _verify_lines(tmp_path / "log", lines, anchor).returncode == 0
    short = _verify_lines(tmp_path / "log", lines[:-2])
    assert short.returncode == 0  # without the anchor a truncated chain is still a valid chain
    caught = _verify_lines(tmp_path / "log", lines[:-2], anchor)
    assert caught.returncode == 1 and "truncated" in caught.stdout and "2 entries" in caught.stdout


def test_segments_chain_across_files(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a", tmp_path / "anchor.jsonl", segment_bytes=600)
    for i in range(12):
        log.append(actor="t", role="org_admin", action="key.create", target=f"key:{i:012x}", after={"i": i})
    segs = segments(tmp_path / "a")
    assert len(segs) > 2
    assert verify(tmp_path / "a", tmp_path / "anchor.jsonl").ok
    second = segs[1].read_bytes().splitlines(keepends=True)
    segs[1].write_bytes(b"".join([second[0].replace(b'"t"', b'"x"'), *second[1:]]))
    result = verify(tmp_path / "a")
    assert not result.ok and result.bad_file == segs[1].name and result.bad_line == 1


def test_concurrent_writers_keep_one_chain(populated: tuple[Path, list]) -> None:
    """Eight break-glass CLI processes at once: every edit lands in the vault, each has exactly one
    entry, and the chain (and the anchor) still verifies."""
    tmp, _ = populated
    before = len(read_entries(tmp / "vault" / "audit"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")}
    env.update(
        {
            "CODEXGATE_VAULT": str(tmp / "vault" / "vault.enc"),
            "CODEXGATE_VAULT_KEY_FILE": str(tmp / "secrets" / "vault.key"),
            "CODEXGATE_AUDIT_ANCHOR": str(tmp / "elsewhere" / "head.jsonl"),
        }
    )
    procs = [
        subprocess.Popen(
            [CODEXGATE, "team", "add", f"acme/conc{i}"],
            env=env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(8)
    ]
    assert all(p.wait(60) == 0 for p in procs)
    added = read_entries(tmp / "vault" / "audit")[before:]
    assert sorted(e["target"] for e in added) == sorted(f"team:acme/conc{i}" for i in range(8))
    listed = run(tmp, "team", "list", "--json")
    assert {f"acme/conc{i}" for i in range(8)} <= {t["team"] for t in json.loads(listed.stdout)}
    assert run(tmp, "audit", "verify").returncode == 0
