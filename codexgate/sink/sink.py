"""``TraceSink``: trace rows -> durable spool -> hive-partitioned Parquet, exactly once.

The gateway calls ``write(row)`` on mitmproxy's event loop: the row is encoded and appended to
the current spool segment with one ``os.write`` (``codexgate.sink.spool``), no fsync. Two background
threads do the rest:

* the *sync* thread fsyncs the segment every ``fsync_interval_s`` (and keeps disk blocks reserved
  ahead of it, so appends do not wait on the journal while it fsyncs), and rotates the segment
  every ``flush_interval_s`` or ``flush_rows`` rows;
* the *convert* thread turns closed segments into Parquet (``codexgate.sink.convert``) and deletes
  each segment only once its files are in place. A slow conversion therefore never delays an
  fsync or a rotation. With ``convert_in="process"`` (the default) it only hands each segment to
  a supervised converter process (``codexgate.sink.converter``: same ``convert_segment``, dies
  with this process, restarted when it dies) and waits for the answer without the GIL; with
  ``convert_in="thread"`` it converts here.

Why the process is the default (``bench/sink_bench.py``, 2 cores, quiet machine, ~19 KB rows,
three runs): while 10,000 spooled rows are converted, the writer's event loop sees lag p99
0.5-1.4 ms, max 3-5 ms and 0-1 probes over 5 ms with the process, against p99 0.9-3.0 ms, max
6-7 ms and 2-3 probes over 5 ms with the thread (Arrow's parser and the Parquet writer release
the GIL; the reader and the Python between Arrow calls hold it for ~8-15% of a conversion). The
first conversion after start stalls the loop 1-2 ms max with the process, 7-9 ms in a thread.
Flat out the writer sustains 4,200-4,600 traces/s against 3,450-4,100, and paced at 5,000/s
the loop has ~42 probes over 5 ms against ~58. The conversion rate is that of the same code
either way (5,400-7,700 rows/s here). The price: one more process (~83 MB RSS, ~0.5 s CPU at
start), one pipe round trip per segment, and a restart path; ``convert_in="thread"`` remains.

``start`` first converts what dead gateways (and a dead namesake of this instance) left in the
spool, in the calling thread (before any traffic; a later retry of it goes to the converter).
If the spool cannot be written, ``write`` raises ``SinkError``, ``healthy`` turns false and
``on_error`` hears about it once; while no writes arrive the sync thread probes the disk
every second, so a fail-closed gateway (which stops writing) still sees the disk come back.

Nothing is dropped silently: a row over ``spool.MAX_RECORD_BYTES`` is refused by ``write`` with a
``SinkError`` (and ``on_error`` hears of it; the sink stays healthy), and every record conversion or
recovery keeps aside in ``_rejected/`` is reported through ``on_error`` (or, without a callback,
the ``codexgate.sink`` logger), counts and paths only, never row contents. ``close`` reports nothing
(mitmproxy's logging is shut down by then); ``codexgate traces stats`` shows ``_rejected/``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from codexgate.sink import convert, converter, spool
from codexgate.sink import recover as recovery

__all__ = ["CONVERT_IN", "SinkError", "TraceSink", "recover"]

log = logging.getLogger("codexgate.sink")

_INSTANCE_ID = re.compile(r"[A-Za-z0-9_]+")
_TICK_S = 0.05
_PROBE_EVERY_S = 1.0
_RETRY_EVERY_S = 1.0
_MAX_SEGMENT_BYTES = 128 << 20  # rotate early whatever flush_rows says: bounds conversion work
CONVERT_IN = ("thread", "process")  # where closed segments become Parquet (see the module docstring)


class SinkError(Exception):
    """The spool cannot be written (disk full, read-only, I/O error) or the sink is not running."""


def recover(traces_dir: Path) -> int:
    """Convert the orphaned spools of dead gateways to Parquet; returns the rows recovered."""
    return recovery.recover_all(Path(traces_dir)).rows


class TraceSink:
    def __init__(
        self,
        traces_dir: Path,
        *,
        flush_interval_s: float = 5.0,
        flush_rows: int = 10_000,
        fsync_interval_s: float = 0.2,
        instance_id: str | None = None,
        on_error: Callable[[str], None] | None = None,
        convert_in: str = "process",
    ) -> None:
        if convert_in not in CONVERT_IN:
            raise ValueError(f"convert_in must be one of {CONVERT_IN}, not {convert_in!r}")
        if flush_interval_s <= 0 or fsync_interval_s <= 0 or flush_rows < 1:
            raise ValueError("flush_interval_s, fsync_interval_s and flush_rows must be positive")
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        if not _INSTANCE_ID.fullmatch(self.instance_id):
            raise ValueError(f"instance_id must be letters, digits and '_': {self.instance_id!r}")
        self.traces_dir = Path(traces_dir)
        self.flush_interval_s = flush_interval_s
        self.flush_rows = flush_rows
        self.fsync_interval_s = fsync_interval_s
        self.on_error = on_error
        self.convert_in = convert_in
        self.recovered_rows = 0  # rows start() recovered from leftover spools
        self._spool = spool.Spool(self.traces_dir, self.instance_id)
        self._converter: converter.ConverterProcess | None = None
        if convert_in == "process":
            self._converter = converter.ConverterProcess(
                self.traces_dir, self.instance_id, self._spool.dir, self._report
            )
        self._state = threading.Lock()  # health transitions
        self._error: str | None = None  # the spool cannot be written
        self._flush_error: str | None = None  # Parquet cannot be written (rows stay in the spool)
        self._quiet = False  # set by close(): no on_error calls (logging is shut down by then)
        self._last_write_attempt = 0.0
        self._convert_lock = threading.Lock()  # one conversion at a time (thread or flush())
        self._pending_lock = threading.Lock()
        self._pending: list[Path] = []  # closed segments not yet converted
        self._wake = threading.Event()  # segments to convert
        self._recovery_due = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running = False
        self._closed = False

    @property
    def spool_dir(self) -> Path:
        return self._spool.dir

    @property
    def converter_pid(self) -> int | None:
        """The pid of the converter process (``convert_in="process"``) while it runs, else None."""
        return self._converter.pid if self._converter is not None else None

    @property
    def healthy(self) -> bool:
        """False while the spool cannot be written."""
        return self._error is None

    @property
    def last_error(self) -> str | None:
        """Why the spool cannot be written, or None."""
        return self._error

    @property
    def flush_error(self) -> str | None:
        """Why converting the spool to Parquet fails (its rows are safe in the spool), or None."""
        return self._flush_error

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Take this instance's spool, recover leftover spools, start the threads.

        Raises ``OSError`` if the traces directory cannot be used at all, ``SinkError`` if another
        running process uses the same instance id.
        """
        if self._running or self._closed:
            return
        self.traces_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._spool.acquire()
        except BlockingIOError as exc:
            raise SinkError(str(exc.strerror)) from None
        self._recover()
        if self._converter is not None:
            self._converter.start()  # it imports pyarrow meanwhile; see converter's docstring on threads
        self._running = True
        for name, target in (("sync", self._sync_loop), ("convert", self._convert_loop)):
            thread = threading.Thread(target=target, name=f"codexgate-trace-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Flush and stop. Never logs (mitmproxy's ``done``); idempotent; never raises for I/O."""
        if self._closed:
            return
        self._closed = True
        self._quiet = True
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join()
        self._threads = []
        if self._running:
            try:
                self.flush()
            except SinkError:
                pass  # the segments stay in the spool; the next start recovers them
            self._running = False
        if self._converter is not None:
            self._converter.close()
        try:
            self._spool.release()
        except OSError:
            pass

    # ---------------------------------------------------------------- event loop side
    def write(self, row: Mapping[str, Any]) -> None:
        """Append a row to the spool. Bad rows raise ``KeyError``/``ValueError``/``TypeError``.

        A row too big for one spool record raises ``SinkError`` (reported through ``on_error``);
        it is refused whole, never truncated, and the sink stays healthy.
        """
        try:
            record = spool.encode(row)
        except spool.RecordTooLarge as exc:
            message = f"trace not recorded: {exc}"
            self._report(message)
            raise SinkError(message) from None
        self._last_write_attempt = time.monotonic()
        try:
            if not self._running:
                raise spool.SpoolClosed(f"trace sink for {self.traces_dir} is not running")
            self._spool.append(record)
        except spool.SpoolClosed as exc:
            raise SinkError(str(exc)) from None
        except OSError as exc:
            message = f"trace spool {self._spool.dir} not writable: {exc.strerror or exc}"
            self._set_error(message)
            raise SinkError(message) from None
        if self._error is not None:
            self._clear_error()

    # ---------------------------------------------------------------- flushing
    def flush(self) -> None:
        """Rotate the current segment and convert every closed one to Parquet (blocking).

        Raises ``SinkError`` if a segment cannot be converted now (it stays in the spool).
        """
        if not self._running:
            return
        with self._convert_lock:
            self._rotate()
            self._convert_pending()

    def _rotate(self) -> None:
        closed = self._spool.rotate()
        if closed:
            with self._pending_lock:
                self._pending.extend(closed)
            self._wake.set()

    def _convert_pending(self) -> None:
        """Convert the closed segments (caller holds ``_convert_lock``)."""
        with self._pending_lock:
            todo = list(self._pending)
        failed: list[Path] = []
        problem = ""
        for segment in todo:
            try:
                problems = self._convert_one(segment)
            except OSError as exc:
                failed.append(segment)
                problem = str(exc.strerror or exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the thread; keep the rows
                failed.append(segment)
                problem = f"{type(exc).__name__}: {exc}"
                continue
            for problem_line in problems:
                self._report(problem_line)
        with self._pending_lock:
            self._pending = failed + [p for p in self._pending if p not in todo]
        if failed:
            message = (
                f"cannot write trace Parquet under {self.traces_dir}: {problem} "
                f"(rows are kept in {self._spool.dir} and retried)"
            )
            self._set_flush_error(message)
            raise SinkError(message)
        if not self._recovery_due:
            self._flush_error = None

    def _convert_one(self, segment: Path) -> list[str]:
        """Convert one closed segment here or in the converter process; the problems to report."""
        if self._converter is None:
            return convert.convert_segment(self.traces_dir, segment, self.instance_id).problems()
        return self._converter.convert(segment).problems

    def _recover(self) -> None:
        """Convert this instance's leftover segments and those of dead gateways."""
        try:
            if self._converter is not None and self._running:  # a retry: off this process too
                with self._convert_lock:
                    answer = self._converter.recover()
                self.recovered_rows += answer.rows
                for line in answer.problems:
                    self._report(line)
                self._recovery_due = False
                return
            result = recovery.Recovered()
            recovery.recover_dir(self.traces_dir, self._spool.dir, result)
            self.recovered_rows += result.rows
            for line in result.problems:
                self._report(line)
            others = recovery.recover_all(self.traces_dir, skip=self.instance_id)
            self.recovered_rows += others.rows
            for line in others.problems:
                self._report(line)
            self._recovery_due = False
        except (OSError, RuntimeError, converter.ConverterDied) as exc:
            self._recovery_due = True
            self._set_flush_error(
                f"cannot recover the trace spool under {self.traces_dir}: "
                f"{getattr(exc, 'strerror', None) or exc} (retrying)"
            )

    # ---------------------------------------------------------------- threads
    def _sync_loop(self) -> None:
        next_sync = time.monotonic() + self.fsync_interval_s
        next_probe = 0.0
        while not self._stop.wait(min(_TICK_S, self.fsync_interval_s)):
            now = time.monotonic()
            try:
                self._spool.reserve_ahead()
            except OSError:
                pass  # best effort
            if now >= next_sync:
                next_sync = now + self.fsync_interval_s
                try:
                    self._spool.sync()
                except OSError as exc:
                    self._set_error(f"trace spool {self._spool.dir} cannot be synced: {exc.strerror or exc}")
            if self._rotation_due():
                self._rotate()
            if self._error is not None and now >= next_probe and now - self._last_write_attempt > 1.0:
                next_probe = now + _PROBE_EVERY_S
                self._probe()

    def _rotation_due(self) -> bool:
        s = self._spool
        return bool(
            s.has_retired
            or s.rows >= self.flush_rows
            or s.size >= _MAX_SEGMENT_BYTES
            or (s.rows and s.age >= self.flush_interval_s)
        )

    def _convert_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_RETRY_EVERY_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self._recovery_due:
                self._recover()
            with self._pending_lock:
                pending = bool(self._pending)
            if pending:
                with self._convert_lock:
                    try:
                        self._convert_pending()
                    except SinkError:
                        pass  # reported; retried after _RETRY_EVERY_S (or the next rotation)

    def _probe(self) -> None:
        try:
            self._spool.probe()
        except OSError:
            return
        self._clear_error()

    # ---------------------------------------------------------------- health
    def _report(self, message: str) -> None:
        """Tell ``on_error`` (else the ``codexgate.sink`` logger); silent once ``close`` began."""
        if self._quiet:
            return
        if self.on_error is None:
            log.warning("%s", message)
            return
        try:
            self.on_error(message)
        except Exception:  # noqa: BLE001 - a broken callback must not break tracing
            pass

    def _set_error(self, message: str) -> None:
        with self._state:
            if self._error == message:
                return
            self._error = message
        self._report(message)

    def _clear_error(self) -> None:
        with self._state:
            self._error = None

    def _set_flush_error(self, message: str) -> None:
        with self._state:
            if self._flush_error == message:
                return
            self._flush_error = message
        self._report(message)
