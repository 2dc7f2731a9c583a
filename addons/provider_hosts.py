"""Which hostnames are model-provider traffic in forward-proxy mode (from the vault's
provider entries, plus the well-known public API hosts)."""

from __future__ import annotations

from addons.vault_watch import VaultHolder

WELL_KNOWN = frozenset({"api.openai.com", "api.anthropic.com"})


class ProviderHosts:
    def __init__(self, holder: VaultHolder) -> None:
        self.holder = holder

    def is_provider_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if host in WELL_KNOWN or host.endswith(".openai.azure.com"):
            return True
        vault = self.holder.vault
        if vault is None:
            return False
        return any(host in (h.lower() for h in (p.hosts or [])) for p in vault.providers.values())

    def provider_for_host(self, host: str) -> str | None:
        vault = self.holder.vault
        if vault is None:
            return None
        host = host.lower().rstrip(".")
        for name, p in vault.providers.items():
            if host in (h.lower() for h in (p.hosts or [])):
                return name
        return None
