"""Render the trace schema as Markdown (``docs/TRACE_SCHEMA.md`` is generated from this)."""

from __future__ import annotations

from codexgate.core import schema


def render() -> str:
    lines = [
        "# Trace schema",
        "",
        f"Generated from `codexgate/schema.py` (schema_version {schema.SCHEMA_VERSION}); do not edit by hand:",
        "`python -m codexgate.core.schema_doc > docs/TRACE_SCHEMA.md`.",
        "",
        "One row per model call that reached the gateway (forwarded, failed or refused). Files:",
        "`TRACES/date=YYYY-MM-DD/*.parquet` (zstd). Read with",
        "`read_parquet('TRACES/**/*.parquet', hive_partitioning = true, union_by_name = true)`;",
        "`union_by_name` lets files of older schema versions read with NULLs in newer columns.",
        "",
        "| column | type | null | OpenTelemetry GenAI attribute | meaning |",
        "|---|---|---|---|---|",
    ]
    for field in schema.SCHEMA:
        otel = schema.OTEL_ATTRIBUTES.get(field.name, "")
        typ = str(field.type).replace("|", "/")
        lines.append(
            f"| `{field.name}` | `{typ}` | {'yes' if field.nullable else 'no'} | "
            f"{f'`{otel}`' if otel else ''} | {schema.DESCRIPTIONS[field.name]} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
