"""The trace sink (spool, conversion, recovery, compaction), below every mitmproxy addon."""

from codexgate.sink.sink import SinkError, TraceSink

__all__ = ["SinkError", "TraceSink"]
