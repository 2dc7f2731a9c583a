"""A ready-to-use vault for the demo, the tests and the benchmarks: providers pointing at
the simulated provider, two teams and three developer keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codexgate.core.vault import ProviderCredential, Route, Team, Vault, generate_secret

# developer -> (team, extra key scope)
DEMO_DEVELOPERS: dict[str, tuple[str, dict[str, object]]] = {
    "alice": ("platform", {"tags": {"cost_center": "cc-10"}}),
    "bob": ("mobile", {"models": ["gpt-4.1*", "gpt-5*"], "tags": {"cost_center": "cc-42"}}),
    "carol": ("platform", {"providers": ["anthropic"]}),
}


@dataclass
class DemoVault:
    path: Path
    key_file: Path
    secret: bytes
    keys: dict[str, str] = field(default_factory=dict)  # developer -> plaintext gateway key
    key_ids: dict[str, str] = field(default_factory=dict)

    @property
    def developer_key(self) -> str:
        return self.keys["alice"]

    def load(self) -> Vault:
        return Vault.load(self.path, self.secret)

    def save(self, vault: Vault) -> None:
        vault.save(self.path, self.secret)


def create_demo_vault(
    data_dir: Path, sim_url: str, openai_key: str, anthropic_key: str, azure_key: str | None = None
) -> DemoVault:
    """Write ``data_dir/vault/vault.enc`` and its key to ``data_dir/secrets/vault.key`` (a
    different directory: the key never lies beside the vault)."""
    (data_dir / "vault").mkdir(parents=True, exist_ok=True)
    (data_dir / "secrets").mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = generate_secret()
    key_file = data_dir / "secrets" / "vault.key"
    key_file.write_bytes(secret)
    key_file.chmod(0o600)
    vault = Vault(providers={}, teams={}, keys={}, routes=[])
    vault.providers["openai"] = ProviderCredential(
        name="openai",
        kind="openai",
        base_url=f"{sim_url}/v1",
        api_key=openai_key,
        hosts=["api.openai.com"],
        default=True,
    )
    vault.providers["anthropic"] = ProviderCredential(
        name="anthropic",
        kind="anthropic",
        base_url=f"{sim_url}/v1",
        api_key=anthropic_key,
        hosts=["api.anthropic.com"],
    )
    if azure_key:
        vault.providers["azure"] = ProviderCredential(
            name="azure", kind="azure", base_url=f"{sim_url}/openai/v1", api_key=azure_key, hosts=[]
        )
    vault.routes.append(Route(model="claude-*", provider="anthropic", api="anthropic_messages"))
    for team in ("platform", "mobile"):
        vault.teams[f"acme/{team}"] = Team(org="acme", name=team)
    demo = DemoVault(data_dir / "vault" / "vault.enc", key_file, secret)
    for developer, (team, scope) in DEMO_DEVELOPERS.items():
        entry, plain = vault.create_key(
            org="acme", team=team, project="codexgate", developer=developer, **scope
        )
        demo.keys[developer], demo.key_ids[developer] = plain, entry.key_id
    demo.save(vault)
    return demo
