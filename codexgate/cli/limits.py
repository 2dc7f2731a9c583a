"""``codexgate limits set|show|clear|status`` and ``codexgate ledger rebuild``.

Limits live in the vault's ``limits`` section (``codexgate.limits.config``); one level is chosen
with exactly one of ``--org ORG``, ``--team ORG/TEAM``, ``--project ORG/PROJECT``,
``--developer ORG/DEVELOPER`` or ``--key KEY_ID``. ``status`` and ``rebuild`` read the ledger:
``--ledger PATH`` (SQLite, default ``$CODEXGATE_LEDGER`` or ``./codexgate-data/ledger.sqlite3``, the
gateway's default) or a ``redis://…`` URL.

With ``--admin-url`` (or ``$CODEXGATE_ADMIN_URL``) ``set``/``clear``/``show`` go through the admin API
(``GET /v1/limits``, ``PUT /v1/limits/scopes/{level}:{scope}``), which checks the caller's role and
audits the change; ``status`` and ``ledger rebuild`` read the ledger itself and refuse ``--admin-url``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from codexgate.cli import CliError
from codexgate.cli.admin import _read, _vault_args, admin_url, api_request, cli_errors, edit_vault
from codexgate.limits.config import (
    LEVELS,
    SECTION,
    LevelLimits,
    LimitsConfig,
    LimitsError,
    config_of,
    level_id,
    validate_scope,
)
from codexgate.limits.periods import PERIODS

DEFAULT_LEDGER = "codexgate-data/ledger.sqlite3"  # the gateway's default: beside codexgate-data/traces
LEDGER_ENV = "CODEXGATE_LEDGER"
_LIMIT_FIELDS = ("budget_usd", "period", "tz", "rpm", "tpm", "max_concurrent", "soft_threshold")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("limits", help="budgets and rate limits per org/team/project/developer/key")
    g = p.add_subparsers(dest="limits_command", metavar="ACTION")
    g.required = True
    s = _level_args(_vault_args(g.add_parser("set", help="set limits of one level (merged with existing)")))
    s.add_argument("--budget-usd", metavar="X", help="USD per period (with --period)")
    s.add_argument("--period", metavar="P", help=f"budget period: {', '.join(PERIODS)}")
    s.add_argument("--tz", metavar="ZONE", help="IANA time zone of the period reset (default UTC)")
    s.add_argument("--rpm", metavar="N", help="requests per minute")
    s.add_argument("--tpm", metavar="N", help="input + output tokens per minute")
    s.add_argument("--max-concurrent", metavar="N", help="requests in flight at once")
    s.add_argument("--soft-threshold", metavar="F", help="warn from this fraction of the budget (default 0.8)")
    s.set_defaults(func=run_set)
    sh = _level_args(_vault_args(g.add_parser("show", help="show configured limits")), required=False)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=run_show)
    c = _level_args(_vault_args(g.add_parser("clear", help="remove every limit of one level")))
    c.set_defaults(func=run_clear)
    st = _level_args(_vault_args(g.add_parser("status", help="spend, reserved, remaining per level")), False)
    _ledger_arg(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_status)

    lp = sub.add_parser("ledger", help="the limits ledger")
    lg = lp.add_subparsers(dest="ledger_command", metavar="ACTION")
    lg.required = True
    r = _vault_args(lg.add_parser("rebuild", help="recompute spend of the current windows from the traces"))
    r.add_argument("--traces", required=True, metavar="DIR")
    _ledger_arg(r)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=run_rebuild)


def _number(name: str, value: str, kind: type) -> float | int:
    """Parse one numeric option; a bad value is a one-line ``CliError`` (argparse would print a
    usage block)."""
    try:
        x = kind(value)
    except ValueError:
        whole = " whole" if kind is int else ""
        raise CliError(f"--{name.replace('_', '-')} must be a positive{whole} number, not {value!r}") from None
    if not x > 0 or x == float("inf"):
        raise CliError(f"--{name.replace('_', '-')} must be a positive, finite number, not {value!r}")
    return x


_KINDS = {"budget_usd": float, "rpm": int, "tpm": int, "max_concurrent": int, "soft_threshold": float}


def _level_args(p: argparse.ArgumentParser, required: bool = True) -> argparse.ArgumentParser:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--org", metavar="ORG")
    g.add_argument("--team", metavar="ORG/TEAM")
    g.add_argument("--project", metavar="ORG/PROJECT")
    g.add_argument("--developer", metavar="ORG/DEVELOPER")
    g.add_argument("--key", metavar="KEY_ID")
    return p


def _ledger_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ledger", metavar="PATH|URL", help=f"SQLite file or redis:// URL (default: ${LEDGER_ENV} or ./{DEFAULT_LEDGER})")


def ledger_target(args: argparse.Namespace) -> str:
    return args.ledger or os.environ.get(LEDGER_ENV) or DEFAULT_LEDGER


def _chosen(args: argparse.Namespace) -> tuple[str, str] | None:
    for level in LEVELS:
        v = getattr(args, level, None)
        if v is not None:
            try:
                return level, validate_scope(level, v)
            except LimitsError as exc:
                raise CliError(str(exc)) from None
    return None


def _save(vault: Any, cfg: LimitsConfig) -> None:
    vault.sections[SECTION] = cfg.to_section()


@cli_errors
def run_set(args: argparse.Namespace) -> int:
    level, scope = _chosen(args)  # type: ignore[misc]
    given: dict[str, Any] = {f: getattr(args, f) for f in _LIMIT_FIELDS if getattr(args, f, None) is not None}
    for name, kind in _KINDS.items():
        if name in given:
            given[name] = _number(name, given[name], kind)
    if not given:
        raise CliError("nothing to set: give --budget-usd/--period, --tz, --rpm, --tpm or --max-concurrent")
    if admin_url(args):
        return _set_via_api(args, level_id(level, scope), given)
    try:
        with edit_vault(args) as vault:
            if level == "key" and scope not in vault.keys:
                raise CliError(f"unknown key {scope!r}")
            if level == "team" and scope not in vault.teams:
                raise CliError(f"unknown team {scope!r} (add it with `codexgate team add {scope}`)")
            cfg = config_of(vault)
            ident = level_id(level, scope)
            lim = replace(cfg.levels.get(ident, LevelLimits()), **given).validate()
            cfg.levels[ident] = lim
            _save(vault, cfg)
    except LimitsError as exc:
        raise CliError(str(exc)) from None
    print(f"{ident}: {json.dumps(lim.to_dict(), sort_keys=True)}")
    return 0


def _api_entries(args: argparse.Namespace) -> dict[str, Any]:
    section = api_request(args, "GET", "/v1/limits")
    entries = section.get("levels") if isinstance(section, dict) else None
    return entries if isinstance(entries, dict) else {}


def _set_via_api(args: argparse.Namespace, ident: str, given: dict[str, Any]) -> int:
    """Merge ``given`` into the level's entry and PUT it; the API validates and audits."""
    try:
        current = LevelLimits.from_dict(_api_entries(args).get(ident) or {})
        lim = replace(current, **given).validate()
    except LimitsError as exc:
        raise CliError(str(exc)) from None
    api_request(args, "PUT", f"/v1/limits/scopes/{ident}", lim.to_dict())
    print(f"{ident}: {json.dumps(lim.to_dict(), sort_keys=True)}")
    return 0


def _refuse_api(args: argparse.Namespace, what: str) -> None:
    if admin_url(args):
        raise CliError(f"{what} reads the ledger directly, not through the admin API: drop --admin-url and pass --ledger")


@cli_errors
def run_clear(args: argparse.Namespace) -> int:
    level, scope = _chosen(args)  # type: ignore[misc]
    ident = level_id(level, scope)
    if admin_url(args):
        if ident not in _api_entries(args):
            raise CliError(
                f"{ident} has no entry in the limits section (a budget stored on the key or team itself is "
                "changed with `codexgate key|team`)"
            )
        api_request(args, "PUT", f"/v1/limits/scopes/{ident}", {})
        print(f"{ident}: cleared")
        return 0
    try:
        with edit_vault(args) as vault:
            cfg = config_of(vault)
            had = cfg.levels.pop(ident, None) is not None
            # the budget stored on the key or team itself is a limit of that level too
            legacy = vault.keys.get(scope) if level == "key" else vault.teams.get(scope) if level == "team" else None
            if legacy is not None and legacy.budget_usd is not None:
                legacy.budget_usd, legacy.budget_period, had = None, None, True
            if not had:
                raise CliError(f"{ident} has no limits")
            _save(vault, cfg)
    except LimitsError as exc:
        raise CliError(str(exc)) from None
    print(f"{ident}: cleared")
    return 0


def _selected_levels(args: argparse.Namespace) -> list:
    try:
        vault = _read(args)
        levels = config_of(vault).all_levels(vault)
    except LimitsError as exc:
        raise CliError(str(exc)) from None
    chosen = _chosen(args)
    if chosen is not None:
        levels = [lv for lv in levels if lv.id == level_id(*chosen)]
        if not levels:
            raise CliError(f"{level_id(*chosen)} has no limits")
    return levels


@cli_errors
def run_show(args: argparse.Namespace) -> int:
    if admin_url(args):
        chosen = _chosen(args)
        rows = {i: d for i, d in sorted(_api_entries(args).items()) if chosen is None or i == level_id(*chosen)}
        if chosen is not None and not rows:
            raise CliError(f"{level_id(*chosen)} has no limits")
    else:
        rows = {lv.id: lv.limits.to_dict() for lv in _selected_levels(args)}
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
    elif not rows:
        print("no limits configured")
    for ident, d in rows.items() if not args.json else ():
        print(f"{ident}  " + "  ".join(f"{k}={v}" for k, v in sorted(d.items())))
    return 0


def _open(args: argparse.Namespace) -> Any:
    from codexgate.limits.ledger import open_ledger

    target = ledger_target(args)
    if not target.startswith(("redis://", "rediss://", "unix://")) and not os.path.exists(target):
        raise CliError(f"ledger {target} does not exist (the gateway creates it; or pass --ledger)")
    return open_ledger(target)


@cli_errors
def run_status(args: argparse.Namespace) -> int:
    _refuse_api(args, "limits status")
    levels = _selected_levels(args)

    async def go() -> list:
        ledger = _open(args)
        try:
            return await ledger.status(levels, datetime.now(UTC))
        finally:
            await ledger.close()

    try:
        statuses = asyncio.run(go())
    except OSError as exc:
        raise CliError(f"ledger {ledger_target(args)} cannot be read: {exc.strerror or exc}") from None
    except Exception as exc:  # redis connection errors, sqlite errors: one line, no traceback
        if isinstance(exc, CliError):
            raise
        raise CliError(f"ledger {ledger_target(args)} cannot be read: {type(exc).__name__}: {exc}") from None
    if args.json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
        return 0
    if not statuses:
        print("no limits configured")
    for s in statuses:
        d = s.to_dict()
        parts = [d["level"]]
        if s.budget_usd is not None:
            parts.append(
                f"budget={s.budget_usd:.4f}/{s.period} spent={s.spent_usd:.6f} reserved={s.reserved_usd:.6f} "
                f"remaining={s.remaining_usd:.6f} resets_at={d['resets_at'] or 'never'}" + (" WARN" if s.warn else "")
            )
        if s.rpm is not None:
            parts.append(f"rpm={s.requests_in_window}/{s.rpm}")
        if s.tpm is not None:
            parts.append(f"tpm={s.tokens_in_window}/{s.tpm}")
        if s.max_concurrent is not None:
            parts.append(f"concurrent={s.concurrent}/{s.max_concurrent}")
        print("  ".join(parts))
    return 0


@cli_errors
def run_rebuild(args: argparse.Namespace) -> int:
    from codexgate.limits.rebuild import RebuildError, rebuild

    _refuse_api(args, "ledger rebuild")
    levels = _selected_levels(args)
    target = ledger_target(args)

    async def go() -> list:
        from codexgate.limits.ledger import open_ledger

        ledger = open_ledger(target)
        try:
            return await rebuild(ledger, levels, args.traces, datetime.now(UTC), config_of(_read(args)).settings)
        finally:
            await ledger.close()

    try:
        rows = asyncio.run(go())
    except RebuildError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['level']}  window_start={r['window_start']}  spent={r['spent_usd']:.6f}  calls={r['calls']}")
        if not rows:
            print("no budgets configured: nothing to rebuild")
    return 0
