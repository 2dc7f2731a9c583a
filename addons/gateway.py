"""codexgate: run with ``mitmdump -s addons/gateway.py --set codexgate_vault=... [mode options]``.

The addons run in request order, each one concern with the state it owns:
  client limits -> intake -> identity -> scope (policy) -> tracing (admission) -> upstream step
  -> [relay -> provider] -> tracing (tap, row) -> sink
They share per-flow state in ``flow.metadata["codexgate"]``. Every hook is wrapped by
``addons.failsafe.failsafe``; the upstream step forwards only a flow with an ``allow`` from
every policy in ``REQUIRED_POLICIES``; a top-level ``Backstop`` refuses anything that reaches
the end of the request hook uncleared. A new policy addon goes between scope and routing and
adds its name to ``REQUIRED_POLICIES``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# mitmproxy loads this file as a script; make the project importable when it is not installed.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from addons import dispatch  # noqa: E402
from addons.client_limits import ClientLimits  # noqa: E402
from addons.failsafe import install_backstop  # noqa: E402
from addons.guardrails import Guardrails  # noqa: E402
from addons.identity import Identity  # noqa: E402
from addons.import_watch import ImportWatch  # noqa: E402
from addons.intake import Intake  # noqa: E402
from addons.limits import Limits  # noqa: E402
from addons.looplag import LoopLag  # noqa: E402
from addons.mitm_compat import refuse_trailers  # noqa: E402
from addons.privacy import Privacy  # noqa: E402
from addons.provider_hosts import ProviderHosts  # noqa: E402
from addons.proxy_log import ProxyLogLevel  # noqa: E402
from addons.scope import Scope  # noqa: E402
from addons.startup import StartupGate  # noqa: E402
from addons.tracing import Tracing  # noqa: E402
from addons.upstream import Upstream  # noqa: E402
from addons.vault_watch import VaultHolder  # noqa: E402
from codexgate.guard.service import Guard  # noqa: E402

REQUIRED_POLICIES = ("identity", "scope", "limits", "guardrails", "tracing")

refuse_trailers()
dispatch.install()
_vault = VaultHolder()
_hosts = ProviderHosts(_vault)


class Pipeline:
    """Installs the top-level Backstop when mitmproxy loads the script."""

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        install_backstop(_hosts.is_provider_host)


# One detection engine for guardrails and privacy_mode=redacted, built at start-up (~0.5 s).
_guard = Guard(workers=2)
_tracing = Tracing(Privacy(_guard))
# Calls wait (bounded) until every addon's running hook has returned: the ledger is open, the
# relay listens; then the start-up heap is frozen out of the collector's view.
_startup = StartupGate()

addons = [
    Pipeline(),
    dispatch.FastDispatch(),
    _startup,
    LoopLag(serving=lambda: _startup.started),
    ImportWatch(serving=lambda: _startup.started),
    ProxyLogLevel(),
    ClientLimits(),
    Intake(_hosts),
    Identity(_vault),
    Scope(_vault, _hosts),
    # policy addons (limits, guardrails) go here, each adding its name to REQUIRED_POLICIES
    Limits(_vault),
    Guardrails(_vault, _guard),
    _tracing,
    Upstream(_hosts, REQUIRED_POLICIES, _tracing),
    _startup.last,
]
