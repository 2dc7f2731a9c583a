"""The bottom layer: the trace schema, the vault and keys, prices, bounded parsing and decoding.

Imports nothing from the rest of codexgate (enforced by the import-linter contract)."""
