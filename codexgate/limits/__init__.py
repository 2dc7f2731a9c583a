"""Budgets and rate limits: configuration per level, period windows, call estimates and the
ledger (SQLite embedded, Redis for several gateway instances) that reserves before forwarding
and settles after the response. Policy layer: imports only ``codexgate.core``."""
