"""codexgate: run with ``mitmdump -s addons/gateway.py --set codexgate_vault=... [mode options]``.

The addons run in request order:
  intake -> identity -> scope (policy) -> routing -> [upstream] -> tracing -> sink
Each is one concern; they share per-flow state in ``flow.metadata["codexgate"]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# mitmproxy loads this file as a script; make the project importable when it is not installed.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from addons.identity import Identity  # noqa: E402
from addons.intake import Intake  # noqa: E402
from addons.provider_hosts import ProviderHosts  # noqa: E402
from addons.routing import Routing  # noqa: E402
from addons.scope import Scope  # noqa: E402
from addons.tracing import Tracing  # noqa: E402
from addons.vault_watch import VaultHolder  # noqa: E402

_vault = VaultHolder()
_hosts = ProviderHosts(_vault)

addons = [
    Intake(_hosts),
    Identity(_vault),
    Scope(_vault, _hosts),
    Routing(_hosts),
    Tracing(),
]
