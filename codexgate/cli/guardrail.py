"""``codexgate guardrail set|show|clear``: guardrail policies per org / team / project / key.

Policies live in the vault's ``guardrail_policies`` section (``codexgate.guard.policy``); one
level is chosen with exactly one of ``--org ORG``, ``--team ORG/TEAM``, ``--project ORG/PROJECT``
or ``--key KEY_ID``; the most specific level wins, detector by detector. Edits go through
``edit_vault`` (locked, atomic, audited).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from codexgate.cli import CliError
from codexgate.cli.admin import _read, _vault_args, admin_url, cli_errors, edit_vault
from codexgate.guard.names import DETECTORS
from codexgate.guard.policy import ACTIONS, SECTION, STAGES, PolicyError, from_section, scope_name, to_section

LEVELS = ("org", "team", "project", "key")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("guardrail", help="guardrail policies (PII, secrets, injection, limits) per level")
    g = p.add_subparsers(dest="guardrail_command", metavar="ACTION")
    g.required = True
    s = _level_args(_vault_args(g.add_parser("set", help="set a detector's rule (and limits) of one level")))
    s.add_argument("--detector", choices=DETECTORS, help="detector the rule is for")
    s.add_argument("--action", choices=ACTIONS, help="block, redact or flag")
    s.add_argument("--stage", choices=STAGES, default="pre", help="pre (before forwarding, default) or async")
    s.add_argument("--max-bytes", type=int, metavar="N", help="largest request body (detector 'limits')")
    s.add_argument("--max-input-tokens", type=int, metavar="N", help="estimated input tokens (detector 'limits')")
    s.add_argument("--banned-term", action="append", metavar="WORD", help="banned word (repeatable; detector 'banned')")
    s.add_argument("--banned-regex", action="append", metavar="RX", help="banned regex (repeatable)")
    s.add_argument("--on-incomplete", choices=("pass", "block"), help="when the scan runs out of time")
    s.set_defaults(func=run_set)
    sh = _level_args(_vault_args(g.add_parser("show", help="show guardrail policies")), required=False)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=run_show)
    c = _level_args(_vault_args(g.add_parser("clear", help="remove one detector's rule, or the whole level")))
    c.add_argument("--detector", choices=DETECTORS, help="clear only this detector's rule")
    c.set_defaults(func=run_clear)


def _level_args(p: argparse.ArgumentParser, required: bool = True) -> argparse.ArgumentParser:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--org", metavar="ORG")
    g.add_argument("--team", metavar="ORG/TEAM")
    g.add_argument("--project", metavar="ORG/PROJECT")
    g.add_argument("--key", metavar="KEY_ID")
    return p


def _chosen(args: argparse.Namespace) -> str | None:
    for level in LEVELS:
        value = getattr(args, level, None)
        if value is not None:
            try:
                return scope_name(level, value)
            except PolicyError as exc:
                raise CliError(str(exc)) from None
    return None


def _no_admin_api(args: argparse.Namespace) -> None:
    if admin_url(args):
        raise CliError("guardrail policies are edited on the vault file; the admin API has no guardrail endpoint yet")


def _scopes(vault: Any) -> dict[str, dict[str, Any]]:
    try:
        return from_section(vault.sections.get(SECTION))
    except PolicyError as exc:
        raise CliError(f"the vault's {SECTION} section is invalid: {exc}") from None


@cli_errors
def run_set(args: argparse.Namespace) -> int:
    _no_admin_api(args)
    scope = _chosen(args)
    assert scope is not None  # the level group is required
    if (args.detector is None) != (args.action is None):
        raise CliError("--detector and --action go together")
    for name in ("max_bytes", "max_input_tokens"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise CliError(f"--{name.replace('_', '-')} must be a positive whole number")
    if not any(getattr(args, n) is not None for n in
               ("detector", "max_bytes", "max_input_tokens", "banned_term", "banned_regex", "on_incomplete")):
        raise CliError("nothing to set: give --detector/--action, --max-bytes, --max-input-tokens, "
                       "--banned-term, --banned-regex or --on-incomplete")
    with edit_vault(args) as vault:
        kind, _, value = scope.partition(":")
        if kind == "key" and value not in vault.keys:
            raise CliError(f"unknown key {value!r}")
        if kind == "team" and value not in vault.teams:
            raise CliError(f"unknown team {value!r} (add it with `codexgate team add {value}`)")
        scopes = _scopes(vault)
        doc = dict(scopes.get(scope, {}))
        if args.detector is not None:
            doc["detectors"] = {**doc.get("detectors", {}), args.detector: {"action": args.action, "stage": args.stage}}
        limits = dict(doc.get("limits", {}))
        for name in ("max_bytes", "max_input_tokens"):
            if getattr(args, name) is not None:
                limits[name] = getattr(args, name)
        if limits:
            doc["limits"] = limits
        if args.banned_term:
            doc["banned_terms"] = list(args.banned_term)
        if args.banned_regex:
            doc["banned_regexes"] = list(args.banned_regex)
        if args.on_incomplete:
            doc["on_incomplete"] = args.on_incomplete
        scopes[scope] = doc
        try:
            vault.sections[SECTION] = to_section(scopes)
        except PolicyError as exc:
            raise CliError(str(exc)) from None
        if doc.get("banned_regexes"):
            from codexgate.guard.limits import BannedTermsRecognizer

            try:
                BannedTermsRecognizer(regexes=doc["banned_regexes"])
            except ValueError as exc:
                raise CliError(str(exc)) from None
    print(f"{scope}: {json.dumps(vault.sections[SECTION]['scopes'][scope], sort_keys=True)}")
    return 0


@cli_errors
def run_clear(args: argparse.Namespace) -> int:
    _no_admin_api(args)
    scope = _chosen(args)
    assert scope is not None
    with edit_vault(args) as vault:
        scopes = _scopes(vault)
        doc = scopes.get(scope)
        if doc is None:
            raise CliError(f"{scope} has no guardrail policy")
        if args.detector is not None:
            detectors = dict(doc.get("detectors", {}))
            if detectors.pop(args.detector, None) is None:
                raise CliError(f"{scope} has no rule for detector {args.detector!r}")
            scopes[scope] = {**doc, "detectors": detectors}
        else:
            del scopes[scope]
        vault.sections[SECTION] = to_section(scopes)
    print(f"{scope}: cleared" + (f" {args.detector}" if args.detector else ""))
    return 0


@cli_errors
def run_show(args: argparse.Namespace) -> int:
    _no_admin_api(args)
    scopes = _scopes(_read(args))
    chosen = _chosen(args)
    if chosen is not None:
        if chosen not in scopes:
            raise CliError(f"{chosen} has no guardrail policy")
        scopes = {chosen: scopes[chosen]}
    if args.json:
        print(json.dumps(scopes, indent=2, sort_keys=True))
        return 0
    if not scopes:
        print("no guardrail policies configured")
    for name, doc in sorted(scopes.items()):
        rules = [f"{d}={r['action']}/{r.get('stage', 'pre')}" for d, r in sorted(doc.get("detectors", {}).items())]
        extra = [f"{k}={v}" for k, v in sorted(doc.get("limits", {}).items())]
        if doc.get("banned_terms") or doc.get("banned_regexes"):
            extra.append(f"banned={len(doc.get('banned_terms', []))} terms/{len(doc.get('banned_regexes', []))} regexes")
        if "on_incomplete" in doc:
            extra.append(f"on_incomplete={doc['on_incomplete']}")
        print(f"{name}  " + "  ".join(rules + extra))
    return 0
