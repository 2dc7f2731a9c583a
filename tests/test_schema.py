"""The schema module is the one definition; its generated documentation must match it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from codexgate.core import schema, schema_doc

ROOT = Path(__file__).resolve().parents[1]


def test_generated_doc_is_current() -> None:
    assert (ROOT / "docs" / "TRACE_SCHEMA.md").read_text() == schema_doc.render()


def test_every_otel_column_exists_and_required_columns_have_defaults() -> None:
    assert set(schema.OTEL_ATTRIBUTES) <= set(schema.COLUMNS)
    row = schema.normalise_row({"trace_id": "t", "outcome": "ok"})
    for field in schema.SCHEMA:
        if not field.nullable and field.name not in (
            "trace_id",
            "start_time",
            "end_time",
            "duration_ms",
            "outcome",
        ):
            assert row[field.name] is not None, field.name


def test_conform_fills_columns_missing_from_old_files() -> None:
    old = pa.table({"trace_id": ["a"], "schema_version": pa.array([0], pa.int16())})
    table = schema.conform(old)
    assert table.schema.equals(schema.SCHEMA)
    assert table.column("cost_known").to_pylist() == [False]
    assert table.column("gen_ai_request_model").to_pylist() == [None]
