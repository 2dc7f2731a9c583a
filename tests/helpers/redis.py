"""A real ``redis-server`` for tests: free loopback port, temp config, no persistence
(``--save ''``, no AOF), not daemonised; stopped by PID at teardown."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
SKIP_REASON = "redis-server is not installed (scripts/setup.sh --test installs it from apt)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """Start redis-server and yield its URL (``redis://127.0.0.1:PORT/0``)."""
    if REDIS_SERVER is None:
        raise RuntimeError(SKIP_REASON)
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "redis.conf"
    conf.write_text(
        f"bind 127.0.0.1\nport {port}\nsave ''\nappendonly no\ndaemonize no\ndir {tmp}\nprotected-mode yes\n"
    )
    proc = subprocess.Popen(
        [REDIS_SERVER, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {proc.stderr.read().decode(errors='replace')[-300:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING within 10 s")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
