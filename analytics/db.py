"""``TraceStore``: an in-memory DuckDB over the hive-partitioned trace Parquet files.

Files live in ``TRACES/date=YYYY-MM-DD/*.parquet``. ``relation(since, until)`` gives the SQL text
of a ``read_parquet`` over only the date partitions a time range needs (partition pruning by file
list); DuckDB's projection pushdown then reads only the columns a query names. Older files that
lack newer columns read as NULL: ``union_by_name`` covers a mix of old and new files; when every
selected file is old, the query fails to bind, and ``query``/``query_rows`` run it once more with
that relation completed by typed NULL columns (from ``codexgate.core.schema``, imported only
then). The store remembers such file sets, so later relations over them come completed at once.
One connection per store, one cursor per query, so a store can be shared between Streamlit
threads.

Importing this module loads DuckDB only: Polars and PyArrow are imported on first need
(``query`` returns Polars; the typed-NULL fallback reads the Arrow schema), so
``query_rows`` serves a command-line report without either.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from codexgate.core.timeutil import as_utc

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

_CACHE_LIMIT = 256
_SENTINEL = "\x00relation\x00"  # never in SQL we build: ``sql_string`` refuses NUL bytes


class TracesNotFound(Exception):
    """The traces folder is missing or holds no Parquet files."""


def sql_string(value: str) -> str:
    """``value`` as a single-quoted SQL string literal (for the configured paths only)."""
    if "\x00" in value:
        raise ValueError("NUL byte in SQL string")
    return "'" + value.replace("'", "''") + "'"


def duckdb_type(typ: pa.DataType) -> str:
    """DuckDB type name of an Arrow type used by the trace schema."""
    import pyarrow as pa

    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "VARCHAR"
    if pa.types.is_boolean(typ):
        return "BOOLEAN"
    if pa.types.is_int16(typ):
        return "SMALLINT"
    if pa.types.is_int32(typ):
        return "INTEGER"
    if pa.types.is_int64(typ):
        return "BIGINT"
    if pa.types.is_floating(typ):
        return "DOUBLE"
    if pa.types.is_timestamp(typ):
        return "TIMESTAMPTZ" if typ.tz else "TIMESTAMP"
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return duckdb_type(typ.value_type) + "[]"
    if pa.types.is_struct(typ):
        fields = ", ".join(
            f'"{typ.field(i).name}" {duckdb_type(typ.field(i).type)}' for i in range(typ.num_fields)
        )
        return f"STRUCT({fields})"
    raise TypeError(f"no DuckDB type for {typ}")


def _partition_date(path: Path) -> date | None:
    for part in reversed(path.parent.parts):
        if part.startswith("date="):
            try:
                return date.fromisoformat(part[5:])
            except ValueError:
                return None
    return None


class TraceStore:
    """Read-only query access to one traces folder."""

    def __init__(self, traces_dir: Path | str) -> None:
        self.traces_dir = Path(traces_dir).expanduser().resolve()
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET GLOBAL TimeZone = 'UTC'")
        self._lock = threading.Lock()
        # plain relation text -> the files it reads (to complete it if a query fails to bind)
        self._handed_out: dict[str, tuple[str, ...]] = {}
        # files -> the completed relation text, for file sets known to lack schema columns
        self._completed: dict[tuple[str, ...], str] = {}

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files ------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        """Every trace Parquet file, sorted. Raises ``TracesNotFound`` when there is none."""
        if not self.traces_dir.is_dir():
            raise TracesNotFound(f"traces folder not found: {self.traces_dir}")
        found = sorted(
            p
            for p in self.traces_dir.rglob("*.parquet")
            if p.is_file()
            and not any(part.startswith((".", "_")) for part in p.relative_to(self.traces_dir).parts)
        )
        if not found:
            raise TracesNotFound(f"no trace files (*.parquet) in {self.traces_dir}")
        return found

    def files_for(self, since: datetime | date | None, until: datetime | date | None) -> list[Path]:
        """Files whose ``date=`` partition can hold rows with ``since <= start_time < until``.

        Never empty: when no partition matches, one file is kept so the query still binds (its
        rows are then removed by the time filter) and returns an empty, well-typed result.
        """
        every = self.files()
        lo = as_utc(since)
        hi = as_utc(until)
        first = lo.date() if lo else None
        last = (hi - timedelta(microseconds=1)).date() if hi else None
        chosen = []
        for path in every:
            day = _partition_date(path)
            if day is None or ((first is None or day >= first) and (last is None or day <= last)):
                chosen.append(path)
        return chosen or every[-1:]

    # -- SQL text ---------------------------------------------------------------------------
    def traces_sql(self) -> str:
        """``read_parquet`` over every file of the folder (glob form)."""
        self.files()
        pattern = sql_string(str(self.traces_dir / "**" / "*.parquet"))
        return f"read_parquet({pattern}, hive_partitioning = true, union_by_name = true)"

    def relation(self, since: datetime | date | None = None, until: datetime | date | None = None) -> str:
        """SQL text of the traces relation pruned to the partitions of ``[since, until)``.

        Safe to put after ``FROM``. Columns missing from every selected file appear as typed NULLs:
        at once when the store already knows those files are old, else when a query over this text
        fails to bind (``query`` and ``query_rows`` then complete it and run once more).
        """
        if since is None and until is None:
            text = self.traces_sql()
            files = tuple(str(p) for p in self.files())
        else:
            files = tuple(str(p) for p in self.files_for(since, until))
            listing = ", ".join(sql_string(f) for f in files)
            text = f"read_parquet([{listing}], hive_partitioning = true, union_by_name = true)"
        with self._lock:
            completed = self._completed.get(files)
            if completed is not None:
                return completed
            if len(self._handed_out) > _CACHE_LIMIT:
                self._handed_out.clear()
            self._handed_out[text] = files
        return text

    def _complete(self, text: str, files: tuple[str, ...]) -> str | None:
        """``text`` with typed NULL columns for the schema columns its files lack; None if none."""
        from codexgate.core import schema

        cur = self._con.cursor()
        try:
            present = {row[0] for row in cur.sql(f"DESCRIBE SELECT * FROM {text}").fetchall()}
        finally:
            cur.close()
        missing = [f for f in schema.SCHEMA if f.name not in present]
        if not missing:
            return None
        extra = ", ".join(f'CAST(NULL AS {duckdb_type(f.type)}) AS "{f.name}"' for f in missing)
        completed = f"(SELECT *, {extra} FROM {text})"
        with self._lock:
            if len(self._completed) > _CACHE_LIMIT:
                self._completed.clear()
            self._completed[files] = completed
        return completed

    def _completed_sql(self, sql: str) -> str | None:
        """``sql`` with every plain relation it holds that lacks schema columns completed; None
        when there is none (the bind error was not about old files)."""
        with self._lock:
            handed = [(text, files) for text, files in self._handed_out.items() if text in sql]
        changed = sql
        for text, files in handed:
            with self._lock:
                completed = self._completed.get(files)
            if completed is None:
                completed = self._complete(text, files)
            if completed is None:
                continue
            # a completed relation already in the SQL holds the plain text: keep it whole
            changed = changed.replace(completed, _SENTINEL).replace(text, completed)
            changed = changed.replace(_SENTINEL, completed)
        return changed if changed != sql else None

    # -- running ----------------------------------------------------------------------------
    def _run(self, sql: str, params: Sequence[Any] | None, fetch: Any) -> Any:
        args = list(params) if params else None
        cur = self._con.cursor()
        try:
            try:
                return fetch(cur.sql(sql, params=args))
            except duckdb.BinderException:
                retry = self._completed_sql(sql)
                if retry is None:
                    raise
            return fetch(cur.sql(retry, params=args))
        finally:
            cur.close()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run ``sql`` with ``?`` parameters on a fresh cursor; the whole result as Polars."""
        return self._run(sql, params, lambda rel: rel.pl())

    def query_rows(
        self, sql: str, params: Sequence[Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` like ``query``; the column names and every row as a tuple of Python values
        (no Polars or PyArrow involved)."""
        return self._run(sql, params, lambda rel: (list(rel.columns), rel.fetchall()))

    def interrupt(self) -> None:
        self._con.interrupt()
