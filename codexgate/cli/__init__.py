"""codexgate: admin, trace, report, replay and demo commands of the codexgate gateway.

Each command group lives in its own module and exposes ``register(subparsers)``; every
command sets ``func(args) -> int`` as its handler. Errors a user can fix are raised as
``CliError`` and printed as one line with a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES = [
    "codexgate.cli.admin",  # init, provider, team, key, route
    "codexgate.cli.admin_serve",  # admin serve, admin credential
    "codexgate.cli.audit",  # audit verify|show|anchor
    "codexgate.cli.sink",  # traces compact / recover / stats
    "codexgate.cli.report",  # report spend|latency|errors|guardrails|sessions
    "codexgate.cli.replay",  # replay SESSION_ID
    "codexgate.cli.demo",  # demo: embedded defaults, simulated provider
    "codexgate.cli.limits",  # limits set|show|clear|status, ledger rebuild
    "codexgate.cli.guardrail",  # guardrail set|show|clear
]
# The module that owns each command, so one command does not import every other one's
# libraries (polars, duckdb, pyarrow take ~1 s to import; admin commands need none of them).
COMMAND_OWNERS = {
    "init": "codexgate.cli.admin",
    "provider": "codexgate.cli.admin",
    "team": "codexgate.cli.admin",
    "key": "codexgate.cli.admin",
    "route": "codexgate.cli.admin",
    "admin": "codexgate.cli.admin_serve",
    "audit": "codexgate.cli.audit",
    "traces": "codexgate.cli.sink",
    "report": "codexgate.cli.report",
    "replay": "codexgate.cli.replay",
    "demo": "codexgate.cli.demo",
    "limits": "codexgate.cli.limits",
    "guardrail": "codexgate.cli.guardrail",
    "ledger": "codexgate.cli.limits",
}


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2 by default."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for every command, or only for ``command`` when its owner is known."""
    parser = argparse.ArgumentParser(prog="codexgate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    owner = COMMAND_OWNERS.get(command or "")
    for name in [owner] if owner else COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command group not installed in this build
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"codexgate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
