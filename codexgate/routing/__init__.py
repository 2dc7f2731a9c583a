"""Routing policy engines below the addons: the per-target circuit breaker (``breaker``).

Layer: same as ``codexgate.limits`` (imports ``core``/``wire`` only)."""
