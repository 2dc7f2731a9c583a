"""The control plane: admin roles, the admin API service and the tamper-evident audit log.

Layering: imports ``codexgate.core`` only (never ``addons``, ``analytics``, ``dashboard`` or
mitmproxy); ``codexgate.cli`` and ``dashboard`` build on it.
"""
