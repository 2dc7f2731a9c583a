"""``codexgate replay SESSION_ID``: serve a recorded session back, offline, and report divergences."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from aiohttp import web

from analytics.db import TracesNotFound, TraceStore
from analytics.session_replay import ReplayServer, load_session
from codexgate.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="serve a recorded session's responses back in order (offline re-execution)"
    )
    p.add_argument("session_id")
    p.add_argument("--traces", default=os.environ.get("CODEXGATE_TRACES", "codexgate-data/traces"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--exit-after-last", action="store_true", help="stop once every recorded call was served")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        calls = load_session(TraceStore(Path(args.traces)), args.session_id)
    except TracesNotFound as exc:
        raise CliError(str(exc)) from None
    if not calls:
        raise CliError(f"no recorded calls with bodies for session {args.session_id} in {args.traces}")
    server = ReplayServer(calls)
    print(
        f"replaying {len(calls)} calls of session {args.session_id} on http://{args.host}:{args.port}/v1",
        flush=True,
    )
    try:
        asyncio.run(_serve(server, args))
    except KeyboardInterrupt:
        pass
    print(server.report.summary(), flush=True)
    return 0 if not server.report.divergences else 3


async def _serve(server: ReplayServer, args: argparse.Namespace) -> None:
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    try:
        while not (args.exit_after_last and server.report.served >= server.report.recorded):
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # let the last response drain
    finally:
        await runner.cleanup()
