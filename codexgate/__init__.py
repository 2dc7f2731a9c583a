"""codexgate: an observability-first gateway for coding-agent traffic."""

__version__ = "0.1.0"
