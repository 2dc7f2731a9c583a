"""``codexgate init|provider|team|key|route``: administer the encrypted vault.

Every command reads the vault (``--vault``, default ``$CODEXGATE_VAULT`` or
``./codexgate-data/vault/vault.enc``) with the key from ``--key-file`` (default
``$CODEXGATE_VAULT_KEY_FILE``, else ``$CODEXGATE_VAULT_KEY``). A mutation loads, edits and saves
atomically while holding an exclusive lock, so two admins editing at once cannot lose an edit.

With ``--admin-url`` (or ``$CODEXGATE_ADMIN_URL``) the commands go through the admin API instead,
authenticated with the admin credential in ``$CODEXGATE_ADMIN_CREDENTIAL`` (or the file named by
``$CODEXGATE_ADMIN_CREDENTIAL_FILE``) and bounded by its role. Without it they edit the vault file
directly — break-glass for whoever holds the vault key — and every such edit is audited too:
``edit_vault`` appends exactly one audit entry per edit (actor: the local OS user, role
``break_glass``), which also covers other modules' commands built on it.

Secrets never travel through argv: a provider key comes from an environment variable
(``--api-key-env``) or stdin (``--api-key-stdin``); a gateway key is printed once, by
``key create`` or ``key rotate``, and only its hash is stored. Listings show fingerprints.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from codexgate.admin.audit import AuditError, AuditLog, default_anchor, default_audit_dir
from codexgate.admin.roles import BREAK_GLASS
from codexgate.admin.store import EditContext, VaultStore
from codexgate.admin.views import provider_view, route_view
from codexgate.cli import CliError
from codexgate.core.vault import (
    BUDGET_PERIODS,
    KEY_ENV,
    PRIVACY_MODES,
    PROVIDER_KINDS,
    ROUTE_APIS,
    ROUTE_STRATEGIES,
    GatewayKey,
    ProviderCredential,
    Route,
    RouteEntry,
    RouteGroup,
    RouteTarget,
    Vault,
    VaultError,
    generate_secret,
    load_secret,
    split_team,
    write_private_atomic,
)

DEFAULT_VAULT = "codexgate-data/vault/vault.enc"
VAULT_ENV = "CODEXGATE_VAULT"
KEY_FILE_ENV = "CODEXGATE_VAULT_KEY_FILE"
ADMIN_URL_ENV = "CODEXGATE_ADMIN_URL"
ADMIN_CREDENTIAL_ENV = "CODEXGATE_ADMIN_CREDENTIAL"
ADMIN_CREDENTIAL_FILE_ENV = "CODEXGATE_ADMIN_CREDENTIAL_FILE"
_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

Handler = Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------------- parser


def register(sub: argparse._SubParsersAction) -> None:
    _register_init(sub)
    _register_provider(sub)
    _register_team(sub)
    _register_key(sub)
    _register_route(sub)


def _vault_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--vault", help=f"vault file (default: ${VAULT_ENV} or ./{DEFAULT_VAULT})")
    p.add_argument(
        "--key-file", help=f"file holding the vault's key (default: ${KEY_FILE_ENV}, else ${KEY_ENV})"
    )
    p.add_argument(
        "--admin-url",
        metavar="URL",
        help=f"use the admin API at URL (default: ${ADMIN_URL_ENV}); credential from ${ADMIN_CREDENTIAL_ENV}",
    )
    return p


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def _budget_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--budget-usd", type=float, metavar="X", help="spending limit in USD (with --budget-period)"
    )
    p.add_argument("--budget-period", choices=BUDGET_PERIODS, help="budget period")


def _secret_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--api-key-env", metavar="VAR", help="read the provider's API key from this env variable"
    )
    src.add_argument("--api-key-stdin", action="store_true", help="read the provider's API key from stdin")
    # Without an exact "--api-key", argparse would answer "--api-key=sk-..." with "ambiguous option:
    # --api-key=sk-... could match ..." and so print the secret; take it and refuse it instead.
    src.add_argument("--api-key", dest="api_key_argv", metavar="KEY", help=argparse.SUPPRESS)


def _group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    p = sub.add_parser(name, help=help)
    g = p.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    g.required = True
    return g


def _register_init(sub: argparse._SubParsersAction) -> None:
    p = _vault_args(sub.add_parser("init", help="create an empty vault and a new key file"))
    p.add_argument("--force", action="store_true", help="overwrite an existing vault and key file")
    p.set_defaults(func=run_init)


def _register_provider(sub: argparse._SubParsersAction) -> None:
    g = _group(sub, "provider", "model provider credentials (add, rotate, list, remove)")

    a = _vault_args(g.add_parser("add", help="add a provider and its API key"))
    a.add_argument("name")
    a.add_argument("--kind", required=True, choices=PROVIDER_KINDS)
    a.add_argument("--base-url", required=True, metavar="URL")
    a.add_argument("--api-version", metavar="V", help="e.g. Azure's api-version")
    a.add_argument(
        "--host", action="append", metavar="H", help="host to intercept (repeatable; default: base URL's)"
    )
    a.add_argument("--no-intercept", action="store_true", help="never intercept traffic to this provider")
    a.add_argument("--default", action="store_true", help="default provider of its API family")
    _secret_args(a)
    a.set_defaults(func=run_provider_add)

    r = _vault_args(g.add_parser("rotate", help="replace a provider's API key"))
    r.add_argument("name")
    _secret_args(r)
    r.set_defaults(func=run_provider_rotate)

    ls = _vault_args(g.add_parser("list", help="providers with key fingerprints (never the key)"))
    _json_arg(ls)
    ls.set_defaults(func=run_provider_list)

    rm = _vault_args(g.add_parser("remove", help="remove a provider (no route may use it)"))
    rm.add_argument("name")
    rm.set_defaults(func=run_provider_remove)


def _register_team(sub: argparse._SubParsersAction) -> None:
    g = _group(sub, "team", "teams (add, list)")
    a = _vault_args(g.add_parser("add", help="add a team"))
    a.add_argument("team", metavar="ORG/TEAM")
    a.add_argument("--privacy", choices=PRIVACY_MODES, default="full")
    _budget_args(a)
    a.add_argument("--admin", action="append", metavar="DEV", help="team admin (repeatable)")
    a.set_defaults(func=run_team_add)

    ls = _vault_args(g.add_parser("list", help="list teams"))
    _json_arg(ls)
    ls.set_defaults(func=run_team_list)


def _register_key(sub: argparse._SubParsersAction) -> None:
    g = _group(sub, "key", "gateway keys (create, list, show, revoke, rotate, enable, disable)")

    c = _vault_args(g.add_parser("create", help="create a gateway key (printed once)"))
    c.add_argument("--team", required=True, metavar="ORG/TEAM")
    c.add_argument("--project", required=True, metavar="P")
    c.add_argument("--developer", required=True, metavar="D")
    c.add_argument("--providers", nargs="+", action="extend", metavar="GLOB", help="allowed providers")
    c.add_argument("--models", nargs="+", action="extend", metavar="GLOB", help="allowed models")
    c.add_argument("--expires", metavar="WHEN", help="2026-12-31 (valid through that UTC day), 30d or 12h")
    c.add_argument("--tag", nargs="+", action="extend", metavar="K=V", help="attribution tags")
    c.add_argument("--privacy", choices=PRIVACY_MODES, help="default: the team's")
    _budget_args(c)
    c.add_argument("--description", default="")
    c.add_argument("--org-admin", action="store_true", help="may see the whole org in the dashboard")
    _json_arg(c)
    c.set_defaults(func=run_key_create)

    ls = _vault_args(g.add_parser("list", help="list keys (never their hashes)"))
    ls.add_argument("--team", metavar="ORG/TEAM")
    _json_arg(ls)
    ls.set_defaults(func=run_key_list)

    s = _vault_args(g.add_parser("show", help="a key's scope, expiry, tags and status"))
    s.add_argument("key_id")
    _json_arg(s)
    s.set_defaults(func=run_key_show)

    r = _vault_args(g.add_parser("rotate", help="new secret; the old one stays valid for the grace period"))
    r.add_argument("key_id")
    r.add_argument("--grace", metavar="DURATION", help="e.g. 1h or 3600 (default: the vault's, 1h)")
    _json_arg(r)
    r.set_defaults(func=run_key_rotate)

    for name, func, text in (
        ("revoke", run_key_revoke, "revoke a key permanently"),
        ("enable", run_key_enable, "enable a disabled key"),
        ("disable", run_key_disable, "disable a key (can be enabled again)"),
    ):
        p = _vault_args(g.add_parser(name, help=text))
        p.add_argument("key_id")
        p.set_defaults(func=func)


class _RouteEntryAction(argparse.Action):
    """Keeps ``--target``, ``--group`` and the timeout options in command-line order (a timeout
    applies to the entry before it)."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        entries = list(getattr(namespace, "entries", None) or [])
        entries.append((self.const, values))
        namespace.entries = entries


_ROUTE_EPILOG = """targets, in the route's order (repeat; --target and --group may be mixed):
  --target PROVIDER[:UPSTREAM_MODEL][@WEIGHT][#chat]
  --group  STRATEGY[@WEIGHT]:TARGET,TARGET,...    a nested fallback or loadbalance group
           (one level: a group's members are plain targets)
per-target timeouts, in seconds, for the --target (or every member of the --group) before them:
  --connect-timeout S   --first-byte-timeout S   --idle-timeout S
(unset: the gateway's codexgate_connect_timeout / _first_byte_timeout / _idle_timeout)

examples:
  codexgate route add --model 'gpt-5*' --target openai --target azure-eu:gpt-5 \\
      --target anthropic:claude-sonnet-4-5 --strategy fallback
  codexgate route add --model 'gpt-5*' --api responses \\
      --group loadbalance:openai-a@3,openai-b --first-byte-timeout 20 \\
      --target anthropic:claude-sonnet-4-5 --connect-timeout 2 --idle-timeout 60
    = fallback[ loadbalance[openai-a, openai-b], anthropic:claude-sonnet-4-5 ]
"""


def _register_route(sub: argparse._SubParsersAction) -> None:
    g = _group(sub, "route", "model -> provider routes, first match wins (add, list, remove)")
    a = _vault_args(
        g.add_parser(
            "add",
            help="append a route",
            description="Add a route: a model glob -> ordered targets (or one provider).",
            epilog=_ROUTE_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    a.add_argument("--model", required=True, metavar="GLOB")
    a.add_argument("--provider", metavar="NAME", help="one provider (same as one --target NAME)")
    a.add_argument(
        "--target",
        action=_RouteEntryAction,
        const="target",
        metavar="PROVIDER[:UPSTREAM_MODEL][@WEIGHT][#chat]",
        help="a target, in the route's order (repeat for more); UPSTREAM_MODEL replaces the model asked for",
    )
    a.add_argument(
        "--group",
        action=_RouteEntryAction,
        const="group",
        metavar="STRATEGY[@WEIGHT]:TARGET,TARGET,...",
        help="a nested group of targets with its own strategy, e.g. loadbalance:openai-a,openai-b",
    )
    for flag, field_name, what in (
        ("--connect-timeout", "connect_timeout_s", "connecting"),
        ("--first-byte-timeout", "first_byte_timeout_s", "the answer's first byte (a stream: first event)"),
        ("--idle-timeout", "idle_timeout_s", "silence between chunks of a committed stream"),
    ):
        a.add_argument(
            flag,
            action=_RouteEntryAction,
            const=field_name,
            type=float,
            metavar="S",
            help=f"seconds allowed for {what}, for the --target/--group before it",
        )
    a.add_argument(
        "--strategy",
        choices=ROUTE_STRATEGIES,
        default="fallback",
        help="fallback: targets in order; loadbalance: weighted random order",
    )
    a.add_argument("--api", choices=ROUTE_APIS, default="*")
    a.add_argument("--position", type=int, metavar="INDEX", help="insert at INDEX instead of appending")
    a.set_defaults(func=run_route_add, entries=[])

    ls = _vault_args(g.add_parser("list", help="list routes in match order"))
    _json_arg(ls)
    ls.set_defaults(func=run_route_list)

    rm = _vault_args(g.add_parser("remove", help="remove a route by its index"))
    rm.add_argument("index", type=int)
    rm.set_defaults(func=run_route_remove)


# ---------------------------------------------------------------------------- plumbing


def _vault_path(args: argparse.Namespace) -> Path:
    return Path(args.vault or os.environ.get(VAULT_ENV) or DEFAULT_VAULT)


def _key_file(args: argparse.Namespace) -> Path | None:
    value = args.key_file or os.environ.get(KEY_FILE_ENV)
    return Path(value) if value else None


def _secret(args: argparse.Namespace) -> bytes:
    return load_secret(_key_file(args))


def cli_errors(func: Handler) -> Handler:
    """Vault and OS errors become one-line ``CliError``s."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except VaultError as exc:
            raise CliError(str(exc)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise CliError(f"{exc.strerror or exc}{where}") from None

    return wrapper


def _read(args: argparse.Namespace) -> Vault:
    return Vault.load(_vault_path(args), _secret(args))


def audit_log_for(vault_path: Path, audit_dir: str | None = None, anchor: str | None = None) -> AuditLog:
    """The audit log of a vault: ``audit_dir``, else ``$CODEXGATE_AUDIT_DIR``, else ``audit/`` beside
    the vault; head anchor ``anchor``, else ``$CODEXGATE_AUDIT_ANCHOR`` (none by default)."""
    directory = Path(audit_dir) if audit_dir else default_audit_dir(vault_path)
    return AuditLog(directory, Path(anchor) if anchor else default_anchor())


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def command_action(args: argparse.Namespace) -> str:
    """``key.create``, ``limits.set``, ``admin.credential.create``: the command path of ``args``."""
    parts = [str(getattr(args, "command", None) or "edit")]
    parts += [v for k, v in sorted(vars(args).items()) if k.endswith("_command") and isinstance(v, str)]
    return ".".join(parts)


@contextlib.contextmanager
def edit_vault(args: argparse.Namespace) -> Iterator[Vault]:
    """Load, let the caller change, save atomically — under an exclusive lock on a lock file
    beside the vault, so concurrent admin commands serialise instead of losing edits.

    Every completed edit appends exactly one audit entry (actor: the local OS user, role
    ``break_glass``, action: the command path such as ``limits.set``, before/after: public views of
    what changed, never secrets) before the vault is saved; an exception inside the block writes
    neither."""
    path = _vault_path(args)
    store = VaultStore(path, _secret(args), audit_log_for(path, getattr(args, "audit_dir", None)))
    ctx = EditContext(actor=os_user(), role=BREAK_GLASS, action=command_action(args), source="cli")
    try:
        with store.edit(ctx) as vault:
            yield vault
    except AuditError as exc:
        raise CliError(f"not saved: {exc}") from None


def admin_url(args: argparse.Namespace) -> str | None:
    value = getattr(args, "admin_url", None) or os.environ.get(ADMIN_URL_ENV, "")
    return value.strip().rstrip("/") or None


def _admin_credential() -> str:
    value = os.environ.get(ADMIN_CREDENTIAL_ENV, "").strip()
    file = os.environ.get(ADMIN_CREDENTIAL_FILE_ENV, "").strip()
    if not value and file:
        try:
            value = Path(file).read_text().strip()
        except OSError as exc:
            raise CliError(f"admin credential file {file} cannot be read: {exc.strerror}") from None
    if not value:
        raise CliError(
            f"--admin-url needs an admin credential: set {ADMIN_CREDENTIAL_ENV} or {ADMIN_CREDENTIAL_FILE_ENV}"
        )
    return value


def api_request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One admin API call; an error response becomes a one-line ``CliError`` with the API's message."""
    import httpx

    url = admin_url(args)
    assert url is not None
    headers = {"authorization": f"Bearer {_admin_credential()}"}
    try:
        r = httpx.request(method, url + path, json=body, headers=headers, timeout=30, trust_env=False)
    except httpx.HTTPError as exc:
        raise CliError(f"admin API {url} unreachable: {type(exc).__name__}") from None
    try:
        data = r.json()
    except ValueError:
        raise CliError(f"admin API {url} answered {r.status_code} without JSON") from None
    if r.status_code >= 400:
        message = data.get("error", {}).get("message") if isinstance(data, dict) else None
        raise CliError(
            f"admin API: {r.status_code} {message or r.reason_phrase}", 3 if r.status_code == 403 else 2
        )
    return data


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _table(rows: list[list[str]], header: list[str]) -> None:
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def parse_duration(value: str) -> int:
    """``"3600"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"30d"``, ``"2w"`` -> seconds."""
    m = _DURATION.match(value.strip().lower())
    if not m:
        raise CliError(f"invalid duration {value!r}: use e.g. 3600, 90s, 15m, 12h, 30d or 2w")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def parse_expiry(value: str, now: datetime) -> datetime:
    """A duration from ``now`` (``30d``, ``12h``), a date (valid through that UTC day) or an
    ISO datetime (naive = UTC). Must lie in the future."""
    value = value.strip()
    if _DURATION.match(value.lower()):
        when = now + timedelta(seconds=parse_duration(value))
    else:
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                day = datetime.fromisoformat(value).replace(tzinfo=UTC)
                when = day + timedelta(days=1)
            else:
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
                when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
        except ValueError:
            raise CliError(
                f"invalid expiry {value!r}: use a date (2026-12-31), an ISO datetime or a duration (30d, 12h)"
            ) from None
    if when <= now:
        raise CliError(f"expiry {value!r} is not in the future")
    return when


def _read_api_key(args: argparse.Namespace) -> str:
    if args.api_key_argv is not None:
        raise CliError(
            "refusing an API key on the command line (shell history, ps): use --api-key-env VAR or --api-key-stdin"
        )
    if args.api_key_env:
        value = os.environ.get(args.api_key_env, "").strip()
        if not value:
            raise CliError(f"environment variable {args.api_key_env} is not set or empty")
        return value
    if sys.stdin.isatty():
        value = getpass.getpass("provider API key: ")
    else:
        value = sys.stdin.read()
    value = value.strip()
    if not value:
        raise CliError("no API key on stdin")
    return value


# ---------------------------------------------------------------------------- init


def _audit_init(path: Path) -> None:
    try:
        audit_log_for(path).append(
            actor=os_user(), role=BREAK_GLASS, action="vault.init", target=str(path), source="cli"
        )
    except AuditError as exc:
        raise CliError(f"vault not created: {exc}") from None


@cli_errors
def run_init(args: argparse.Namespace) -> int:
    if admin_url(args):
        raise CliError("init creates a vault file; it does not go through the admin API (drop --admin-url)")
    path = _vault_path(args)
    key_file = _key_file(args)
    if path.exists() and not args.force:
        raise CliError(f"vault {path} already exists (use --force to replace it with an empty one)")
    if key_file is None:
        if not os.environ.get(KEY_ENV, "").strip():
            raise CliError(f"init needs --key-file (or ${KEY_FILE_ENV}) to write the new vault key to")
        path.parent.mkdir(parents=True, exist_ok=True)
        _audit_init(path)
        Vault().save(path, load_secret(None))
        print(f"created empty vault {path}, encrypted with the key in ${KEY_ENV}")
        return 0
    if key_file.parent.resolve() == path.parent.resolve():
        raise CliError(
            f"key file {key_file} is in the vault's directory: the key is never stored beside the vault "
            f"(put it in another directory, or keep it in ${KEY_ENV})"
        )
    if key_file.exists() and not args.force:
        raise CliError(f"key file {key_file} already exists (use --force to overwrite it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = generate_secret()
    _audit_init(path)
    write_private_atomic(key_file, secret + b"\n")
    Vault().save(path, secret)
    print(f"created empty vault {path}")
    print(f"wrote its key to {key_file} (mode 0600); keep it off backups of the vault")
    print(f"use it with --key-file {key_file} or CODEXGATE_VAULT_KEY_FILE={key_file},")
    print(f'or without a file: export {KEY_ENV}="$(cat {key_file})" and delete the file')
    return 0


# ---------------------------------------------------------------------------- providers


@cli_errors
def run_provider_add(args: argparse.Namespace) -> int:
    if args.no_intercept and args.host:
        raise CliError("--host and --no-intercept contradict each other")
    api_key = _read_api_key(args)
    hosts: list[str] | None = [] if args.no_intercept else args.host
    if admin_url(args):
        body = {
            "name": args.name,
            "kind": args.kind,
            "base_url": args.base_url,
            "api_key": api_key,
            "api_version": args.api_version,
            "hosts": hosts,
            "default": args.default,
        }
        row = api_request(args, "POST", "/v1/providers", body)
        print(f"added provider {row['name']} ({row['kind']}, key {row['fingerprint']})")
        return 0
    with edit_vault(args) as vault:
        provider = ProviderCredential(
            name=args.name,
            kind=args.kind,
            base_url=args.base_url,
            api_key=api_key,
            api_version=args.api_version,
            hosts=hosts,
            default=args.default,
        )
        vault.add_provider(provider)
    print(f"added provider {provider.name} ({provider.kind}, key {provider.fingerprint()})")
    return 0


@cli_errors
def run_provider_rotate(args: argparse.Namespace) -> int:
    api_key = _read_api_key(args)
    if admin_url(args):
        fp = api_request(args, "POST", f"/v1/providers/{args.name}/rotate", {"api_key": api_key})[
            "fingerprint"
        ]
        print(f"rotated the key of provider {args.name} (now {fp})")
        return 0
    with edit_vault(args) as vault:
        vault.rotate_provider_key(args.name, api_key)
        fp = vault.provider(args.name).fingerprint()
    print(f"rotated the key of provider {args.name} (now {fp})")
    return 0


@cli_errors
def run_provider_list(args: argparse.Namespace) -> int:
    if admin_url(args):
        rows = api_request(args, "GET", "/v1/providers")
    else:
        rows = [provider_view(p) for p in sorted(_read(args).providers.values(), key=lambda p: p.name)]
    if args.json:
        _print_json(rows)
        return 0
    _table(
        [
            [
                r["name"],
                r["kind"],
                r["base_url"],
                ",".join(r["hosts"]) or "(not intercepted)",
                "yes" if r["default"] else "",
                r["fingerprint"],
            ]
            for r in rows
        ],
        ["NAME", "KIND", "BASE URL", "HOSTS", "DEFAULT", "KEY"],
    )
    return 0


@cli_errors
def run_provider_remove(args: argparse.Namespace) -> int:
    if admin_url(args):
        api_request(args, "DELETE", f"/v1/providers/{args.name}")
        print(f"removed provider {args.name}")
        return 0
    with edit_vault(args) as vault:
        vault.remove_provider(args.name)
    print(f"removed provider {args.name}")
    return 0


# ---------------------------------------------------------------------------- teams


@cli_errors
def run_team_add(args: argparse.Namespace) -> int:
    org, name = split_team(args.team)
    if admin_url(args):
        body = {
            "team": args.team,
            "privacy_mode": args.privacy,
            "budget_usd": args.budget_usd,
            "budget_period": args.budget_period,
            "admins": args.admin,
        }
        api_request(args, "POST", "/v1/teams", body)
        print(f"added team {org}/{name}")
        return 0
    with edit_vault(args) as vault:
        vault.add_team(
            org,
            name,
            privacy_mode=args.privacy,
            budget_usd=args.budget_usd,
            budget_period=args.budget_period,
            admins=args.admin,
        )
    print(f"added team {org}/{name}")
    return 0


@cli_errors
def run_team_list(args: argparse.Namespace) -> int:
    teams = [] if admin_url(args) else sorted(_read(args).teams.values(), key=lambda t: t.path)
    rows = (
        api_request(args, "GET", "/v1/teams")
        if admin_url(args)
        else [
            {
                "team": t.path,
                "privacy_mode": t.privacy_mode,
                "budget_usd": t.budget_usd,
                "budget_period": t.budget_period,
                "admins": list(t.admins),
            }
            for t in teams
        ]
    )
    if args.json:
        _print_json(rows)
        return 0
    _table(
        [
            [
                r["team"],
                r["privacy_mode"],
                f"${r['budget_usd']:g}/{r['budget_period']}" if r["budget_usd"] is not None else "",
                ",".join(r["admins"]),
            ]
            for r in rows
        ],
        ["TEAM", "PRIVACY", "BUDGET", "ADMINS"],
    )
    return 0


# ---------------------------------------------------------------------------- keys


def _parse_tags(values: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in values or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise CliError(f"invalid tag {item!r}: expected KEY=VALUE")
        tags[k] = v
    return tags


def _key_summary(vault: Vault, k: GatewayKey, now: datetime) -> dict[str, Any]:
    return {
        "key_id": k.key_id,
        "team": k.team_path,
        "project": k.project,
        "developer": k.developer,
        "status": k.status(now),
        "expires_at": _ts(k.expires_at),
        "org_admin": k.key_id in vault.org_admin_key_ids,
    }


def _key_detail(vault: Vault, k: GatewayKey, now: datetime) -> dict[str, Any]:
    valid = [h for h in k.hashes if h.not_after is None or h.not_after > now]
    grace_until = [h.not_after for h in valid if h.not_after is not None]
    return {
        **_key_summary(vault, k, now),
        "providers": list(k.providers),
        "models": list(k.models),
        "tags": dict(k.tags),
        "privacy_mode": k.privacy_mode,
        "budget_usd": k.budget_usd,
        "budget_period": k.budget_period,
        "description": k.description,
        "enabled": k.enabled,
        "created_at": _ts(k.created_at),
        "revoked_at": _ts(k.revoked_at),
        "valid_secrets": len(valid),
        "previous_secret_valid_until": _ts(max(grace_until)) if grace_until else None,
    }


def _print_new_key(key_id: str, plain: str, as_json: bool, what: str) -> None:
    if as_json:
        print(json.dumps({"key": plain, "key_id": key_id}))
        return
    print(f"{what} key {key_id}:")
    print(plain)
    print("This key is shown once; codexgate keeps only its hash.", file=sys.stderr)


@cli_errors
def run_key_create(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    org, team = split_team(args.team)
    expires = parse_expiry(args.expires, now) if args.expires else None
    tags = _parse_tags(args.tag)
    if admin_url(args):
        body = {
            "team": args.team,
            "project": args.project,
            "developer": args.developer,
            "providers": args.providers,
            "models": args.models,
            "expires_at": _ts(expires),
            "tags": tags,
            "privacy_mode": args.privacy,
            "budget_usd": args.budget_usd,
            "budget_period": args.budget_period,
            "description": args.description,
            "org_admin": args.org_admin,
        }
        result = api_request(args, "POST", "/v1/keys", body)
        _print_new_key(result["key_id"], result["key"], args.json, "created")
        return 0
    with edit_vault(args) as vault:
        entry, plain = vault.create_key(
            org=org,
            team=team,
            project=args.project,
            developer=args.developer,
            providers=args.providers,
            models=args.models,
            expires_at=expires,
            tags=tags,
            privacy_mode=args.privacy,
            budget_usd=args.budget_usd,
            budget_period=args.budget_period,
            description=args.description,
            org_admin=args.org_admin,
            now=now,
        )
    _print_new_key(entry.key_id, plain, args.json, "created")
    return 0


@cli_errors
def run_key_list(args: argparse.Namespace) -> int:
    if admin_url(args):
        rows = api_request(args, "GET", "/v1/keys" + (f"?team={args.team}" if args.team else ""))
    else:
        vault = _read(args)
        now = datetime.now(UTC)
        if args.team:
            vault.team(args.team)  # unknown team: an error, not an empty list
        keys = [k for k in vault.keys.values() if not args.team or k.team_path == args.team]
        keys.sort(key=lambda k: (k.team_path, k.project, k.developer, k.created_at))
        rows = [_key_summary(vault, k, now) for k in keys]
    if args.json:
        _print_json(rows)
        return 0
    _table(
        [
            [r["key_id"], r["team"], r["project"], r["developer"], r["status"], r["expires_at"] or "never"]
            for r in rows
        ],
        ["KEY ID", "TEAM", "PROJECT", "DEVELOPER", "STATUS", "EXPIRES"],
    )
    return 0


@cli_errors
def run_key_show(args: argparse.Namespace) -> int:
    if admin_url(args):
        detail = api_request(args, "GET", f"/v1/keys/{args.key_id}")
    else:
        vault = _read(args)
        detail = _key_detail(vault, vault.key(args.key_id), datetime.now(UTC))
    if args.json:
        _print_json(detail)
        return 0
    width = max(len(k) for k in detail)
    for k, v in detail.items():
        if isinstance(v, list):
            v = ", ".join(v)
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        print(f"{k.ljust(width)}  {'' if v is None else v}")
    return 0


@cli_errors
def run_key_rotate(args: argparse.Namespace) -> int:
    grace = parse_duration(args.grace) if args.grace is not None else None
    now = datetime.now(UTC)
    if admin_url(args):
        result = api_request(args, "POST", f"/v1/keys/{args.key_id}/rotate", {"grace_seconds": grace})
        _print_new_key(args.key_id, result["key"], args.json, "rotated")
        return 0
    with edit_vault(args) as vault:
        plain = vault.rotate_key(args.key_id, now, grace_seconds=grace)
        grace_s = vault.rotation_grace_seconds if grace is None else grace
    _print_new_key(args.key_id, plain, args.json, "rotated")
    if not args.json:
        until = (now + timedelta(seconds=grace_s)).isoformat(timespec="seconds")
        print(f"The previous secret stays valid until {until}.", file=sys.stderr)
    return 0


@cli_errors
def run_key_revoke(args: argparse.Namespace) -> int:
    if admin_url(args):
        api_request(args, "POST", f"/v1/keys/{args.key_id}/revoke", {})
        print(f"revoked key {args.key_id}")
        return 0
    with edit_vault(args) as vault:
        vault.revoke_key(args.key_id)
    print(f"revoked key {args.key_id}")
    return 0


@cli_errors
def run_key_enable(args: argparse.Namespace) -> int:
    if admin_url(args):
        api_request(args, "POST", f"/v1/keys/{args.key_id}/enable", {})
        print(f"enabled key {args.key_id}")
        return 0
    with edit_vault(args) as vault:
        vault.set_key_enabled(args.key_id, True)
    print(f"enabled key {args.key_id}")
    return 0


@cli_errors
def run_key_disable(args: argparse.Namespace) -> int:
    if admin_url(args):
        api_request(args, "POST", f"/v1/keys/{args.key_id}/disable", {})
        print(f"disabled key {args.key_id}")
        return 0
    with edit_vault(args) as vault:
        vault.set_key_enabled(args.key_id, False)
    print(f"disabled key {args.key_id}")
    return 0


# ---------------------------------------------------------------------------- routes


def route_entries(items: list[tuple[str, Any]]) -> list[RouteEntry]:
    """The route entries of ``--target`` / ``--group`` / timeout options in command-line order."""
    entries: list[RouteEntry] = []
    for kind, value in items:
        if kind == "target":
            entries.append(RouteTarget.parse(value))
        elif kind == "group":
            entries.append(RouteGroup.parse(value))
        else:
            flag = "--" + kind.removesuffix("_s").replace("_", "-")
            if not entries:
                raise VaultError(f"{flag} applies to the --target or --group before it; put it after one")
            last = entries[-1]
            members = last.targets if isinstance(last, RouteGroup) else [last]
            for i, t in enumerate(members):
                members[i] = dataclasses.replace(t, **{kind: value})
            if isinstance(last, RouteTarget):
                entries[-1] = members[0]
    return entries


@cli_errors
def run_route_add(args: argparse.Namespace) -> int:
    entries = route_entries(args.entries or [])
    if args.provider and entries:
        raise VaultError("use --provider or --target/--group, not both")
    if not args.provider and not entries:
        raise VaultError("a route needs --provider NAME or at least one --target/--group")
    only = entries[0] if len(entries) == 1 else None
    # one plain target with nothing of its own is the single-provider route it always was
    simple = not entries or (isinstance(only, RouteTarget) and only == RouteTarget(only.provider))
    provider = args.provider or (only.provider if isinstance(only, RouteTarget) and simple else None)
    if admin_url(args):
        body: dict[str, Any] = {"model": args.model, "api": args.api, "position": args.position}
        if simple and args.strategy == "fallback":
            body["provider"] = provider
        else:
            body["strategy"] = args.strategy
            body["targets"] = [e.to_dict() for e in entries] if entries else [{"provider": provider}]
        row = api_request(args, "POST", "/v1/routes", body)
        print(f"added route {row['index']}: {args.model} ({args.api}) -> {_targets_text(row)}")
        return 0
    with edit_vault(args) as vault:
        route = vault.add_route(
            args.model,
            provider,
            args.api,
            position=args.position,
            targets=None if simple else entries,
            strategy=args.strategy,
        )
        index = args.position if args.position is not None else len(vault.routes) - 1
    print(f"added route {index}: {args.model} ({args.api}) -> {route.describe()}")
    return 0


@cli_errors
def run_route_list(args: argparse.Namespace) -> int:
    if admin_url(args):
        rows = api_request(args, "GET", "/v1/routes")
    else:
        rows = [route_view(i, r) for i, r in enumerate(_read(args).routes)]
    if args.json:
        _print_json(rows)
        return 0
    _table(
        [[str(r["index"]), r["model"], r["api"], _targets_text(r)] for r in rows],
        ["#", "MODEL", "API", "TARGETS"],
    )
    return 0


def _targets_text(row: dict[str, Any]) -> str:
    if not row.get("targets"):
        return str(row["provider"])
    return Route.from_dict(row).describe()


@cli_errors
def run_route_remove(args: argparse.Namespace) -> int:
    if admin_url(args):
        r = api_request(args, "DELETE", f"/v1/routes/{args.index}")
        print(f"removed route {args.index}: {r['model']} ({r['api']}) -> {_targets_text(r)}")
        return 0
    with edit_vault(args) as vault:
        route = vault.remove_route(args.index)
    print(f"removed route {args.index}: {route.model} ({route.api}) -> {route.describe()}")
    return 0
