"""Vault size benchmark: how long loading and authenticating take as the vault grows.

    .venv/bin/python bench/vault_bench.py [--keys 100 1000 5000] [--loads 9]

For each size: the file size, median and worst ``Vault.load`` (decrypt + parse, what the gateway
does on every reload), and the median ``authenticate`` per key over every key. Figures are
printed, not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codexgate.core.vault import ProviderCredential, Vault, generate_secret  # noqa: E402

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def build(n: int) -> tuple[Vault, list[str]]:
    v = Vault()
    v.add_provider(
        ProviderCredential(
            "openai", "openai", "https://api.openai.com/v1", "sk-bench-" + "q" * 24, default=True
        )
    )
    v.add_team("acme", "platform")
    v.add_team("acme", "mobile")
    plains = []
    for i in range(n):
        _, plain = v.create_key(
            org="acme",
            team="platform" if i % 2 else "mobile",
            project=f"p{i % 7}",
            developer=f"dev{i}@example.com",
            models=["gpt-5*", "o4-mini"],
            expires_at=NOW + timedelta(days=i + 1),
            tags={"cost_center": f"cc-{i % 13}", "ticket": f"T-{i}"},
        )
        plains.append(plain)
    for kid in list(v.keys)[: n // 10]:
        v.rotate_key(kid, NOW)
    return v, plains


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, nargs="+", default=[100, 1000, 5000])
    ap.add_argument("--loads", type=int, default=9)
    args = ap.parse_args()
    print(f"{'keys':>6} {'file KB':>8} {'load p50 ms':>12} {'load max ms':>12} {'auth µs/key':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.keys:
            v, plains = build(n)
            path, secret = Path(tmp) / f"vault-{n}.enc", generate_secret()
            v.save(path, secret)
            loads = []
            for _ in range(args.loads):
                t0 = time.perf_counter()
                loaded = Vault.load(path, secret)
                loads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for plain in plains:
                loaded.authenticate(plain, NOW)
            per_auth = (time.perf_counter() - t0) / len(plains)
            print(
                f"{n:>6} {path.stat().st_size / 1024:>8.0f} {statistics.median(loads) * 1e3:>12.1f}"
                f" {max(loads) * 1e3:>12.1f} {per_auth * 1e6:>12.1f}"
            )


if __name__ == "__main__":
    main()
