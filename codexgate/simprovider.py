"""A local simulated model provider that speaks the real wire formats, for tests and the demo.

Run ``python -m codexgate.simprovider --host 127.0.0.1 --port 0``; keys come from the environment
(never argv). Endpoints, keys, the request log and the fault specs are described in
``docs/SIMULATOR.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from codexgate.sim.app import serve
from codexgate.sim.auth import Keys


def _ready(url: str) -> None:
    print(f"SIMPROVIDER READY {url}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m codexgate.simprovider", description="codexgate's simulated model provider"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--openai-key", default=os.environ.get("SIM_OPENAI_KEY"), help="or SIM_OPENAI_KEY")
    parser.add_argument(
        "--anthropic-key", default=os.environ.get("SIM_ANTHROPIC_KEY"), help="or SIM_ANTHROPIC_KEY"
    )
    parser.add_argument("--azure-key", default=os.environ.get("SIM_AZURE_KEY"), help="or SIM_AZURE_KEY")
    args = parser.parse_args(argv)
    keys = Keys(openai=args.openai_key, anthropic=args.anthropic_key, azure=args.azure_key)
    asyncio.run(serve(args.host, args.port, keys, _ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
