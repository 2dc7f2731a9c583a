"""The trace sink: rows -> crash-safe spool -> hive-partitioned Parquet, exactly once.

Modules, each with one job: ``spool`` (CRC-framed append-only segments), ``convert`` (segment ->
Parquet; what cannot be converted goes to ``_rejected/``), ``recover`` (dead gateways' spools),
``compact`` (merging small files, crash-safe), ``stats`` (what a traces directory holds), ``sink``
(``TraceSink``: the event-loop API and its fsync and conversion threads), ``converter`` (the
supervised converter process that conversion runs in by default).

Only ``TraceSink`` and ``SinkError`` are exported here, so ``codexgate.sink.compact`` and
``codexgate.sink.recover`` stay the modules (``compact.compact``, ``recover.recover_all``).

Layer: imports only ``codexgate.core``, the standard library and pyarrow; never ``addons``,
``analytics`` or mitmproxy.
"""

from codexgate.sink.sink import SinkError, TraceSink

__all__ = ["SinkError", "TraceSink"]
