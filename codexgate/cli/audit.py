"""``codexgate audit verify|show|anchor``: check and read the tamper-evident audit log.

The log lives in ``--audit-dir`` (default ``$CODEXGATE_AUDIT_DIR``, else ``audit/`` beside the vault
named by ``--vault``/``$CODEXGATE_VAULT``); reading it needs no vault key. ``verify`` exits 1 and
names the first bad entry (``segment:line``) when a line was edited, removed, inserted or moved,
and — given the anchor file (``--anchor`` or ``$CODEXGATE_AUDIT_ANCHOR``) — when the tail was
truncated or history rewritten past an anchored head.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from codexgate.admin.audit import AuditLog, default_anchor, default_audit_dir, read_entries, verify
from codexgate.cli import CliError

VAULT_ENV = "CODEXGATE_VAULT"
DEFAULT_VAULT = "codexgate-data/vault/vault.enc"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="the audit log (verify, show, anchor)")
    g = p.add_subparsers(dest="audit_command", metavar="ACTION")
    g.required = True

    v = _args(g.add_parser("verify", help="check the hash chain (and the anchored head)"))
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=run_verify)

    s = _args(g.add_parser("show", help="entries, oldest first"))
    s.add_argument("--since", help="ISO time or a duration back from now (30m, 12h, 7d)")
    s.add_argument("--actor")
    s.add_argument("--action", help="e.g. key.create or 'key.*'")
    s.add_argument("--limit", type=int, help="only the newest N")
    s.add_argument("--json", action="store_true", help="JSON lines, as stored")
    s.set_defaults(func=run_show)

    a = _args(g.add_parser("anchor", help="print the head (seq, hash); with --anchor also append it there"))
    a.set_defaults(func=run_anchor)


def _args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--vault", help=f"vault file whose audit/ folder to use (default: ${VAULT_ENV})")
    p.add_argument(
        "--audit-dir", help="the audit log folder (default: $CODEXGATE_AUDIT_DIR or audit/ beside the vault)"
    )
    p.add_argument("--anchor", help="head anchor file (default: $CODEXGATE_AUDIT_ANCHOR)")
    return p


def _dir(args: argparse.Namespace) -> Path:
    if args.audit_dir:
        return Path(args.audit_dir)
    directory = default_audit_dir(Path(args.vault or os.environ.get(VAULT_ENV) or DEFAULT_VAULT))
    if not directory.is_dir():
        raise CliError(f"no audit log at {directory} (give --audit-dir or --vault)")
    return directory


def _anchor(args: argparse.Namespace) -> Path | None:
    return Path(args.anchor) if args.anchor else default_anchor()


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
    if value[:-1].isdigit() and value[-1] in units:
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"invalid --since {value!r}: an ISO time or 30m, 12h, 7d") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def run_verify(args: argparse.Namespace) -> int:
    anchor = _anchor(args)
    result = verify(_dir(args), anchor)
    if args.json:
        print(json.dumps(result.__dict__))
    elif result.ok:
        anchored = f", anchored through seq {result.anchored_seq}" if result.anchored_seq else ""
        print(
            f"audit log OK: {result.entries} entries, head seq {result.head_seq} {result.head_hash}{anchored}"
        )
    else:
        print(f"audit log FAILED: {result.problem}")
    return 0 if result.ok else 1


def run_show(args: argparse.Namespace) -> int:
    entries = read_entries(
        _dir(args), since=_since(args.since), actor=args.actor, action=args.action, limit=args.limit
    )
    for e in entries:
        if args.json:
            print(json.dumps(e, sort_keys=True))
        else:
            print(
                f"{e['seq']:>6}  {e['time'][:19]}  {e['actor']} ({e['role']})  {e['action']}  "
                f"{e['target']}  {e['outcome']}" + (f"  [{e['request_id']}]" if e.get("request_id") else "")
            )
    return 0


def run_anchor(args: argparse.Namespace) -> int:
    log = AuditLog(_dir(args), _anchor(args))
    seq, head = log.head()
    if log.anchor is not None:
        log.write_anchor(seq, head)
    print(json.dumps({"seq": seq, "hash": head, "time": datetime.now(UTC).isoformat()}))
    return 0
