"""Public views of vault resources: what the admin API returns and what an audit entry records.

Invariant: a view never contains a secret — provider API keys appear only as fingerprints,
gateway keys and admin credentials only as ids and fingerprints of their stored hashes. Raw
sections (``limits``, ``guardrail_policies``) are owned and validated elsewhere; their views drop
any value whose key looks like a credential (``*key*``, ``*secret*``, ``*token*``, ``*password*``),
as a second fence.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from codexgate.core.keys import fingerprint
from codexgate.core.vault import AdminCredential, GatewayKey, ProviderCredential, Route, Team, Vault

_SECRETISH = re.compile(r"(api_?key|secret|token|password|credential)", re.IGNORECASE)


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def route_view(index: int, r: Route) -> dict[str, Any]:
    """A route as the CLI and the admin API list it: index, model, api, provider (the first
    target's), and for multi-target routes their strategy and targets (groups nested as
    ``{"strategy", "targets", "weight"?}``). Single-provider routes keep their old four fields."""
    row: dict[str, Any] = {"index": index, "model": r.model, "api": r.api, "provider": r.provider}
    if r.targets:
        row["strategy"] = r.strategy
        row["targets"] = [t.to_dict() for t in r.targets]
    return row


def provider_view(p: ProviderCredential) -> dict[str, Any]:
    return {
        "name": p.name,
        "kind": p.kind,
        "base_url": p.base_url,
        "api_version": p.api_version,
        "hosts": list(p.hosts or []),
        "default": p.default,
        "fingerprint": p.fingerprint(),
    }


def team_view(t: Team) -> dict[str, Any]:
    return {
        "team": t.path,
        "privacy_mode": t.privacy_mode,
        "budget_usd": t.budget_usd,
        "budget_period": t.budget_period,
        "admins": list(t.admins),
    }


def key_view(vault: Vault, k: GatewayKey, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    return {
        "key_id": k.key_id,
        "team": k.team_path,
        "project": k.project,
        "developer": k.developer,
        "status": k.status(now),
        "enabled": k.enabled,
        "providers": list(k.providers),
        "models": list(k.models),
        "tags": dict(k.tags),
        "privacy_mode": k.privacy_mode,
        "budget_usd": k.budget_usd,
        "budget_period": k.budget_period,
        "expires_at": _ts(k.expires_at),
        "created_at": _ts(k.created_at),
        "revoked_at": _ts(k.revoked_at),
        "description": k.description,
        "org_admin": k.key_id in vault.org_admin_key_ids,
        # a fingerprint of each stored hash: shows that a rotation happened, reveals nothing
        "secret_fingerprints": [fingerprint(h.hash) for h in k.hashes],
    }


def admin_view(a: AdminCredential) -> dict[str, Any]:
    return {**a.public(), "secret_fingerprints": [fingerprint(h) for h in a.hashes]}


def scrub(value: Any) -> Any:
    """A copy of raw JSON with credential-looking keys replaced by a fingerprint."""
    if isinstance(value, dict):
        return {
            k: (fingerprint(str(v)) if _SECRETISH.search(str(k)) and isinstance(v, str) else scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def snapshot(vault: Vault) -> dict[str, Any]:
    """Every resource of the vault by name (``key:<id>``, ``provider:<name>``, ``team:<org/team>``,
    ``admin:<id>``, ``routes``, ``section:<name>``, ``settings``) -> its public view."""
    now = datetime(2000, 1, 1, tzinfo=UTC)  # status is time-dependent; diff on stored fields only
    out: dict[str, Any] = {}
    for name, p in vault.providers.items():
        out[f"provider:{name}"] = provider_view(p)
    for path, t in vault.teams.items():
        out[f"team:{path}"] = team_view(t)
    for kid, k in vault.keys.items():
        view = key_view(vault, k, now)
        view.pop("status")
        out[f"key:{kid}"] = view
    for cid, a in vault.admins.items():
        out[f"admin:{cid}"] = admin_view(a)
    out["routes"] = [r.to_dict() for r in vault.routes]  # single-provider routes: model, provider, api
    for name, section in vault.sections.items():
        out[f"section:{name}"] = scrub(section)
    out["settings"] = {"rotation_grace_seconds": vault.rotation_grace_seconds}
    return out


def diff(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """(changed resource names, their before views, their after views); absent = ``None``."""
    names = sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
    return names, {n: before.get(n) for n in names}, {n: after.get(n) for n in names}
