"""Audit log and admin API benchmark: what governance costs per admin action.

    .venv/bin/python bench/audit_bench.py [--entries 2000] [--calls 200] [--dir DIR]

* ``append``: ``AuditLog.append`` (one ``os.write`` + ``fsync`` under ``flock``), with and without
  the head anchor file (a second fsync): median and p95 per entry;
* ``verify``: ``verify()`` over the whole log, total and per entry;
* ``api``: a real ``codexgate admin serve`` over a vault of ``--calls`` keys: median and p95 round
  trip of ``GET /v1/keys`` (read: decrypt + scope) and ``POST /v1/keys/{id}/disable`` (write: lock,
  decrypt, diff, audit append, encrypt, atomic save), side by side with a bare ``VaultStore.edit``
  in-process (the same write without HTTP) so the HTTP and process overhead is visible.

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codexgate.admin.audit import AuditLog, verify  # noqa: E402
from codexgate.admin.store import EditContext  # noqa: E402


def stats(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[int(len(ms) * 0.95) - 1] if len(ms) >= 20 else ms[-1]
    return f"median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ms)})"


def bench_append(work: Path, n: int) -> None:
    for label, anchor in (("append (no anchor)", None), ("append + anchor", work / "anchor.jsonl")):
        log = AuditLog(work / label.replace(" ", "_"), anchor)
        times = []
        for i in range(n):
            t = time.perf_counter()
            log.append(
                actor="bench",
                role="org_admin",
                action="key.create",
                target=f"key:{i:012x}",
                before={f"key:{i:012x}": None},
                after={f"key:{i:012x}": {"developer": "a", "models": ["*"]}},
            )
            times.append(time.perf_counter() - t)
        print(f"{label:<22} {stats(times)}")
        t = time.perf_counter()
        result = verify(log.directory, anchor)
        took = time.perf_counter() - t
        assert result.ok
        print(
            f"{'verify ' + label[7:] if anchor else 'verify':<22} {took * 1000:7.1f} ms for {result.entries} "
            f"entries ({took / result.entries * 1e6:.1f} µs/entry)"
        )


def bench_api(work: Path, calls: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from codexgate.core.vault import Vault  # noqa: PLC0415
    from tests.test_admin_api import build_vault, serve  # noqa: PLC0415 - reuse the test's real server start

    path, key_file, secret = build_vault(work / "api")
    server = serve(work / "api", path, key_file, secret)
    try:
        with server.edit() as v:
            v.add_team("acme", "platform")
            ids = [
                v.create_key(org="acme", team="platform", project="p", developer=f"d{i}")[0].key_id
                for i in range(calls)
            ]
            _, cred = v.create_admin(name="root@acme", role="org_admin", org="acme")
        server.creds["org_admin"] = cred
        reads, writes, bare = [], [], []
        with httpx.Client(trust_env=False, timeout=30) as client:
            headers = {"authorization": f"Bearer {cred}"}
            for key_id in ids:
                t = time.perf_counter()
                assert client.get(server.url + "/v1/keys", headers=headers).status_code == 200
                reads.append(time.perf_counter() - t)
                t = time.perf_counter()
                assert client.post(
                    server.url + f"/v1/keys/{key_id}/disable", headers=headers, json={}
                ).is_success
                writes.append(time.perf_counter() - t)
        for key_id in ids:
            t = time.perf_counter()
            with server.store.edit(EditContext(actor="bench", role="break_glass", action="key.enable")) as v:
                v.set_key_enabled(key_id, True)
            bare.append(time.perf_counter() - t)
        size = len(Vault.load(path, secret).keys)
        print(f"GET /v1/keys ({size} keys)   {stats(reads)}")
        print(f"POST …/disable via API   {stats(writes)}")
        print(f"VaultStore.edit in-proc  {stats(bare)}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--dir", help="work directory (kept); default: a temporary one, removed")
    args = parser.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="audit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        bench_append(work, args.entries)
        bench_api(work, args.calls)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
