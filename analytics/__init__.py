"""Analytics over codexgate traces: synthetic data, access scopes, the DuckDB store, named queries."""
