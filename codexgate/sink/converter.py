"""The converter process: closed spool segments -> Parquet outside the gateway's process (and GIL).

``TraceSink(convert_in="process")`` hands each closed segment to a child process running
``python -m codexgate.sink.converter``, which calls the same ``convert.convert_segment`` the
thread would, so the exactly-once rules are those of ``codexgate.sink.convert``: the Parquet files
are written under deterministic names and renamed into place, and only then is the segment
deleted. A converter killed at any moment therefore leaves either the segment (converted again,
overwriting, by its successor or by recovery) or nothing to do.

The child runs ``python -c`` calling ``main`` here (as ``python -m codexgate.sink.converter``
would, without runpy's warning about a module its package already imported).

Protocol: one JSON line per request on the child's stdin (``{"op": "convert", "segment": PATH}``
or ``{"op": "recover"}``), one JSON line per answer on its stdout (``{"rows": N, "problems":
[...]}`` or ``{"error": "os"|"other", "message": ...}``). A segment that no longer exists was
converted by a converter killed before it could answer; that is answered as done with 0 rows.

Lifetime:

* the child dies with its parent: on Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (set by the child
  itself, then it checks that its parent is still the process that started it); everywhere, a
  thread reading its stdin exits the process at end of file, which is what the parent's death
  (or its ``close``) produces. The kernel delivers the death signal when the *thread* that
  started the child ends, not the process, so every child is started from one thread that lives
  as long as the ``ConverterProcess`` (a ``flush()`` from a short-lived thread must not take the
  converter with it when that thread ends).
* the parent restarts a converter that died (``ConverterDied`` is raised only after
  ``_ATTEMPTS`` converters in a row died on the same request: a segment that kills every
  converter stays in the spool and is reported, instead of being retried in a tight loop).
* the child runs at nice 10 (see ``_NICE``), ignores SIGINT (a Ctrl-C on the gateway's terminal
  reaches the whole process group; the gateway decides when conversion stops) and holds no fd of
  the parent's: ``subprocess`` closes them, so the spool's lock dies with the gateway as before.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
_ATTEMPTS = 3
_STOP_WAIT_S = 5.0
# Conversion is background work: at nice 10 the kernel gives the gateway's loop the CPU first
# (sink_bench, paced 5,000 rows/s on 2 cores: loop lag p99 2.2-3.0 ms, max ~20 ms; at nice 0
# p99 ~3.9 ms, max ~25 ms; the spool keeps whatever waits, and the backlog drained as fast).
_NICE = 10
# ``-m codexgate.sink.converter`` would work too, but runpy warns: the package imports this module first
_CHILD = "import sys; from codexgate.sink.converter import main; sys.exit(main(sys.argv[1:]))"


class ConverterDied(Exception):
    """The converter process died ``_ATTEMPTS`` times in a row on the same request."""


@dataclass
class Answer:
    rows: int = 0
    problems: list[str] = field(default_factory=list)


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the stdin watcher still ends us
    if os.getppid() != parent_pid:
        os._exit(0)  # the parent died before the death signal was armed


# ------------------------------------------------------------------------------------ parent side


class ConverterProcess:
    """The parent's handle on one converter child (restarted as needed). Not thread-safe: the
    sink serialises every call under its conversion lock."""

    def __init__(
        self, traces_dir: Path, instance: str, spool_dir: Path, report: Callable[[str], None]
    ) -> None:
        self.traces_dir = Path(traces_dir)
        self.instance = instance
        self.spool_dir = Path(spool_dir)
        self.report = report
        self.restarts = 0  # converters that died and were replaced
        self._proc: subprocess.Popen[bytes] | None = None
        # the one thread that starts children (see the module docstring: the death signal follows it)
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="codexgate-converter-spawn")

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start the child now (it imports pyarrow while the caller goes on); replace a dead one."""
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            code = self._reap(proc)
            self.restarts += 1
            self.report(
                f"trace converter process {proc.pid} died ({_describe(code)}) while idle; restarting it"
            )
        if self._proc is None:
            self._spawn()

    def convert(self, segment: Path) -> Answer:
        """Convert one closed segment in the child; raises ``OSError`` as ``convert_segment`` would."""
        return self._ask({"op": "convert", "segment": str(segment)})

    def recover(self) -> Answer:
        """Recover this instance's leftover segments and dead gateways' spools in the child."""
        return self._ask({"op": "recover"})

    def close(self) -> None:
        """Let the child finish and exit (end of its stdin); kill it if it does not. Never raises."""
        proc, self._proc = self._proc, None
        self._spawner.shutdown(wait=False)
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    # ---------------------------------------------------------------- internals
    def _spawn(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the directory holding codexgate/
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self._proc = self._spawner.submit(
            subprocess.Popen,
            [
                sys.executable,
                "-c",
                _CHILD,
                str(os.getpid()),
                str(self.traces_dir),
                self.instance,
                str(self.spool_dir),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        ).result()

    def _ask(self, request: dict[str, Any]) -> Answer:
        line = (json.dumps(request) + "\n").encode()
        for attempt in range(1, _ATTEMPTS + 1):
            self.start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
                reply = proc.stdout.readline()  # blocks without the GIL
            except (BrokenPipeError, ConnectionResetError):
                reply = b""
            if reply:
                return _answer(json.loads(reply))
            code = self._reap(proc)
            self.restarts += 1
            self.report(
                f"trace converter process {proc.pid} died ({_describe(code)}) during {request['op']}"
                f"{' of ' + Path(request['segment']).name if 'segment' in request else ''}; "
                f"restarting it (attempt {attempt} of {_ATTEMPTS})"
            )
        raise ConverterDied(f"trace converter process died {_ATTEMPTS} times in a row on {request}")

    def _reap(self, proc: subprocess.Popen[bytes]) -> int | None:
        if self._proc is proc:
            self._proc = None
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        try:
            return proc.wait(_STOP_WAIT_S)
        except subprocess.TimeoutExpired:  # answered EOF but still alive: not ours to keep
            proc.kill()
            return proc.wait()


def _describe(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _answer(data: dict[str, Any]) -> Answer:
    error = data.get("error")
    if error == "os":
        raise OSError(data.get("message", "converter: I/O error"))
    if error is not None:
        raise RuntimeError(data.get("message", "converter failed"))
    return Answer(rows=int(data.get("rows", 0)), problems=list(data.get("problems", [])))


# ------------------------------------------------------------------------------------ child side


def _handle(request: dict[str, Any], traces_dir: Path, instance: str, spool_dir: Path) -> dict[str, Any]:
    from codexgate.sink import convert, recover

    try:
        if request.get("op") == "convert":
            segment = Path(request["segment"])
            if not segment.exists():
                return {"rows": 0, "problems": [], "missing": True}  # converted before a kill
            done = convert.convert_segment(traces_dir, segment, instance)
            return {"rows": done.rows, "problems": done.problems()}
        if request.get("op") == "recover":
            result = recover.Recovered()
            if spool_dir.is_dir():
                recover.recover_dir(traces_dir, spool_dir, result)
            others = recover.recover_all(traces_dir, skip=instance)
            return {"rows": result.rows + others.rows, "problems": result.problems + others.problems}
        return {"error": "other", "message": f"unknown request {request!r}"}
    except OSError as exc:
        return {"error": "os", "message": str(exc.strerror or exc)}
    except Exception as exc:  # noqa: BLE001 - answer it; the parent keeps the segment and reports
        return {"error": "other", "message": f"{type(exc).__name__}: {exc}"}


def _watch_stdin(stdin: IO[bytes], requests: queue.Queue[bytes]) -> None:
    """Queue each request line; exit the process at end of file (the parent closed us or died)."""
    for line in stdin:
        requests.put(line)
    os._exit(0)


def main(argv: list[str]) -> int:
    parent_pid, traces_dir, instance, spool_dir = int(argv[0]), Path(argv[1]), argv[2], Path(argv[3])
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(_NICE)
    except OSError:
        pass  # not allowed here: convert at the parent's priority
    out = os.fdopen(os.dup(1), "wb")  # answers only; stray prints go to stderr
    os.dup2(2, 1)
    # import what conversion needs now, not on the first request
    from codexgate.sink import convert, recover  # noqa: F401

    requests: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=_watch_stdin, args=(sys.stdin.buffer, requests), daemon=True).start()
    while True:
        request = json.loads(requests.get())
        answer = _handle(request, traces_dir, instance, spool_dir)
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
