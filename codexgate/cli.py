"""The one console script, ``codexgate``: admin, trace, report and replay commands.

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
    "codexgate.admin_cli",  # init, provider, team, key, route
    "codexgate.sink_cli",  # traces compact / recover
    "analytics.report_cli",  # report spend|latency|errors|guardrails|sessions
    "codexgate.replay_cli",  # replay SESSION_ID
    "codexgate.demo_cli",  # demo: embedded defaults, simulated provider
]


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2 by default."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codexgate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command group not installed in this build
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
