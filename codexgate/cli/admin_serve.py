"""``codexgate admin serve|credential``: run the admin API; manage admin credentials (roles).

``admin serve`` binds loopback by default (put TLS and network policy in front of it — it is a
control plane). ``admin credential create`` is the break-glass way to mint the first org admin
(it edits the vault file directly, audited with the local OS user as actor); later credentials
are created through the API (``POST /v1/roles``) by an org admin.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime
from typing import Any

from codexgate.cli.admin import (
    _print_json,
    _secret,
    _table,
    _vault_args,
    _vault_path,
    admin_url,
    api_request,
    audit_log_for,
    cli_errors,
    edit_vault,
)
from codexgate.core.vault import ADMIN_ROLES

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin", help="admin API service and admin credentials (roles)")
    g = p.add_subparsers(dest="admin_command", metavar="ACTION")
    g.required = True

    s = _vault_args(g.add_parser("serve", help="run the admin API (HTTP, JSON)"))
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8090)
    s.add_argument("--traces", help="traces folder, for GET /v1/usage")
    s.add_argument(
        "--audit-dir", help="audit log folder (default: $CODEXGATE_AUDIT_DIR or audit/ beside the vault)"
    )
    s.add_argument(
        "--anchor", help="append the audit head here after every entry (default: $CODEXGATE_AUDIT_ANCHOR)"
    )
    s.set_defaults(func=run_serve)

    c = g.add_parser("credential", help="admin credentials: create, list, revoke")
    cg = c.add_subparsers(dest="credential_command", metavar="ACTION")
    cg.required = True
    cc = _vault_args(cg.add_parser("create", help="a new admin credential (printed once)"))
    cc.add_argument("--name", required=True, help="the actor name recorded in the audit log (e.g. an e-mail)")
    cc.add_argument("--role", required=True, choices=ADMIN_ROLES)
    cc.add_argument("--org", required=True)
    cc.add_argument("--team", action="append", metavar="ORG/TEAM", help="team_admin: a team (repeatable)")
    cc.add_argument("--developer", help="developer: the developer name on their keys")
    cc.add_argument("--json", action="store_true")
    cc.set_defaults(func=run_credential_create)
    cl = _vault_args(cg.add_parser("list", help="admin credentials (never their hashes)"))
    cl.add_argument("--json", action="store_true")
    cl.set_defaults(func=run_credential_list)
    cr = _vault_args(cg.add_parser("revoke", help="revoke an admin credential"))
    cr.add_argument("cred_id")
    cr.set_defaults(func=run_credential_revoke)


def _usage_fn(traces: str) -> Any:
    from analytics.access import ViewerScope
    from analytics.db import TracesNotFound, TraceStore
    from analytics.queries import spend

    store = TraceStore(traces)

    def usage(developer: str | None, team: str | None, org: str, since: datetime | None) -> Any:
        team_name = team.partition("/")[2] if team else None
        scope = ViewerScope(org=org, team=team_name, developer=developer)
        try:
            frame = spend(store, by=("developer", "model"), since=since, scope=scope)
        except TracesNotFound:
            return []
        return json.loads(frame.write_json())

    return usage


def _section_validators() -> dict[str, Any]:
    """The policy engines' own parsers for their vault sections (absent engines: no check)."""
    validators: dict[str, Any] = {}
    try:
        from codexgate.limits.config import LimitsConfig

        validators["limits"] = LimitsConfig.from_section
    except ImportError:
        pass
    try:
        from codexgate.guard.policy import from_section

        validators["guardrail_policies"] = from_section
    except ImportError:
        pass
    return validators


@cli_errors
def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from codexgate.admin.api import make_app
    from codexgate.admin.store import VaultStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    path = _vault_path(args)
    store = VaultStore(path, _secret(args), audit_log_for(path, args.audit_dir, args.anchor))
    store.read()  # fail at start, in one line, when the vault cannot be opened
    app = make_app(store, _usage_fn(args.traces) if args.traces else None, _section_validators())
    print(f"codexgate admin API on http://{args.host}:{args.port} (vault {path})", flush=True)
    # uvicorn's access log names client, method, path and status only: never headers or bodies
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
    return 0


@cli_errors
def run_credential_create(args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "role": args.role,
        "org": args.org,
        "teams": args.team,
        "developer": args.developer,
    }
    if admin_url(args):
        result = api_request(args, "POST", "/v1/roles", body)
        cred_id, plain = result["cred_id"], result["credential"]
    else:
        with edit_vault(args) as vault:
            cred, plain = vault.create_admin(
                name=args.name, role=args.role, org=args.org, teams=args.team, developer=args.developer
            )
            cred_id = cred.cred_id
    if args.json:
        print(json.dumps({"credential": plain, "cred_id": cred_id}))
    else:
        print(f"created {args.role} credential {cred_id} for {args.name}:")
        print(plain)
        print("This credential is shown once; codexgate keeps only its hash.", file=sys.stderr)
    return 0


@cli_errors
def run_credential_list(args: argparse.Namespace) -> int:
    if admin_url(args):
        rows = api_request(args, "GET", "/v1/roles")
    else:
        from codexgate.admin.views import admin_view
        from codexgate.core.vault import Vault

        rows = [admin_view(a) for a in Vault.load(_vault_path(args), _secret(args)).admins.values()]
    if args.json:
        _print_json(rows)
        return 0
    _table(
        [
            [
                r["cred_id"],
                r["name"],
                r["role"],
                r["org"],
                ",".join(r["teams"]) or (r["developer"] or ""),
                "revoked" if r["revoked_at"] else "active",
            ]
            for r in rows
        ],
        ["ID", "NAME", "ROLE", "ORG", "SCOPE", "STATUS"],
    )
    return 0


@cli_errors
def run_credential_revoke(args: argparse.Namespace) -> int:
    if admin_url(args):
        api_request(args, "POST", f"/v1/roles/{args.cred_id}/revoke", {})
    else:
        with edit_vault(args) as vault:
            vault.revoke_admin(args.cred_id)
    print(f"revoked admin credential {args.cred_id}")
    return 0
