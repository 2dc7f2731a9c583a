"""Lazy-import probe for tests and benchmarks: with ``codexgate_import_watch_file`` set, every
module first imported after the gateway has started (its start-up gate open) is appended to the
file as ``seconds_since_start,thread_name,module``.

Why: an import runs the module's code holding the import lock, and pandas-sized ones hold the
GIL for tens of milliseconds, so one on a call's path stalls every connection on the event loop
(the first conversion's pandas import once did; the first priced call's price-table import did
too). The invariant this checks is "nothing is imported lazily on a hot path": after start-up,
calls of every kind import nothing.

The probe is a finder first on ``sys.meta_path``: the import system asks it about every module
not yet in ``sys.modules`` (an ``import`` statement or ``importlib.import_module``; one that then
fails is recorded too, since looking for it walks ``sys.path`` on the caller's thread), and it
always answers "not mine". Installed at start-up only when the option is set, removed in ``done``;
off by default: no finder at all. It never fails an import: if its file cannot be written it
stops noting.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mitmproxy import ctx


class ImportWatch:
    def __init__(self, serving: Callable[[], bool] = lambda: True) -> None:
        """``serving``: whether the gateway has started (the gateway passes its start-up gate)."""
        self.serving = serving
        self._out: IO[str] | None = None
        self._started_at = 0.0
        self._lock = threading.Lock()

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "codexgate_import_watch_file",
            str,
            "",
            "Tests and benchmarks: append each module first imported after start-up here.",
        )

    def running(self) -> None:
        path = ctx.options.codexgate_import_watch_file
        if path and self._out is None:
            self._out = Path(path).open("a", buffering=1)
            self._started_at = time.monotonic()
            sys.meta_path.insert(0, self)  # type: ignore[arg-type]

    def done(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # type: ignore[arg-type]
        with self._lock:
            out, self._out = self._out, None
        if out is not None:
            out.close()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        """The import system's question about a module not yet loaded: noted, never answered."""
        if self.serving():
            with self._lock:
                if self._out is not None:
                    name = threading.current_thread().name
                    try:
                        self._out.write(f"{time.monotonic() - self._started_at:.3f},{name},{fullname}\n")
                    except (OSError, ValueError):
                        self._out = None


def read_watch_file(path: Path) -> list[tuple[float, str, str]]:
    """The probe's lines as (seconds since start, thread name, module)."""
    rows = []
    for line in path.read_text().splitlines() if path.exists() else ():
        at, _, rest = line.partition(",")
        thread, _, module = rest.rpartition(",")
        rows.append((float(at), thread, module))
    return rows
