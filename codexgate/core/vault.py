"""The encrypted vault: provider credentials, teams, gateway keys (as hashes) and routes.

File format: one Fernet token (from ``cryptography``) over a UTF-8 JSON document carrying
``format_version``. Fernet rather than hand-rolled AES-GCM: its token already has a version
byte, a fresh random IV per save and authentication (AES-128-CBC, then HMAC-SHA256 over the
whole token), so a wrong key, a truncated file and a tampered file are all rejected the same
way, and there are no nonce or header decisions to get wrong. Its key is a 44-character
url-safe base64 string that fits an environment variable (``CODEXGATE_VAULT_KEY``) or a key
file, which must never lie beside the vault. The vault is small, so Fernet's base64 overhead
costs nothing that matters (1,000 keys load in a few milliseconds).

Gateway keys (see ``codexgate.core.keys``) are stored only as ``sha256:<hex>`` of the whole key.
Admin credentials (``cga_…``, the control plane's roles: org admin, team admin, developer,
auditor) live under ``admins`` and are hashed the same way; a vault written before they existed
has no ``admins`` and loads with none (the format version did not change: older readers ignore
the field).

Saving is atomic: a temp file in the same directory, fsync, ``os.replace``, fsync of the
directory — a reader (the gateway reloads on change) sees the old vault or the new one,
never half of one. ``Vault.load`` is a pure function of the file: safe from any thread.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

from codexgate.core.keys import (
    AuthError,
    fingerprint,
    hash_key,
    new_admin_credential,
    new_key,
    new_key_id,
    parse_admin_credential,
    parse_key,
)

__all__ = [
    "ADMIN_ROLES",
    "AdminCredential",
    "AuthError",
    "GatewayKey",
    "KeyHash",
    "ProviderCredential",
    "ROUTE_STRATEGIES",
    "Route",
    "RouteEntry",
    "RouteGroup",
    "RouteTarget",
    "Team",
    "Vault",
    "VaultError",
    "generate_secret",
    "hash_key",
    "load_secret",
    "parse_key",
    "validate_glob",
]

FORMAT_VERSION = 1
KEY_ENV = "CODEXGATE_VAULT_KEY"
PROVIDER_KINDS = ("openai", "azure", "anthropic", "openai_compatible")
PRIVACY_MODES = ("full", "metrics_only", "redacted")
BUDGET_PERIODS = ("day", "week", "month")
ROUTE_APIS = ("*", "responses", "chat_completions", "anthropic_messages")
ADMIN_ROLES = ("org_admin", "team_admin", "developer", "auditor")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DEVELOPER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")  # developers are often e-mail addresses
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class VaultError(Exception):
    """The vault cannot be used, or an edit is invalid. One line; never contains a secret."""


# ---------------------------------------------------------------------------- time


def _aware(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC, so comparisons never mix naive and aware."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _ts(value: datetime | None) -> str | None:
    return _aware(value).astimezone(UTC).isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return _aware(datetime.fromisoformat(value)) if value else None


# ---------------------------------------------------------------------------- validation


def validate_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise VaultError(f"invalid {kind} name {value!r}: use letters, digits, '.', '_' or '-' (max 64)")
    return value


def validate_developer(value: str) -> str:
    if not isinstance(value, str) or not _DEVELOPER.match(value):
        raise VaultError(
            f"invalid developer name {value!r}: use letters, digits, '.', '_', '-', '+' or '@' (max 128)"
        )
    return value


def validate_glob(value: str) -> str:
    """An ``fnmatch`` pattern: non-empty, no whitespace or control characters, every ``[``
    closed (fnmatch would silently treat an unclosed ``[`` as a literal)."""
    if not isinstance(value, str) or not value:
        raise VaultError("invalid glob '': a pattern cannot be empty")
    if len(value) > 200 or any(c.isspace() for c in value) or _CONTROL.search(value):
        raise VaultError(f"invalid glob {value!r}: contains whitespace or control characters, or is too long")
    i, n = 0, len(value)
    while i < n:
        if value[i] == "[":
            j = i + 1
            if j < n and value[j] == "!":
                j += 1
            if j < n and value[j] == "]":  # a ']' first in a class is a literal
                j += 1
            close = value.find("]", j)
            if close < 0:
                raise VaultError(f"invalid glob {value!r}: unbalanced '['")
            i = close + 1
        else:
            i += 1
    return value


def validate_globs(values: Iterable[str] | None) -> list[str]:
    globs = ["*"] if values is None else [validate_glob(v) for v in values]
    if not globs:
        raise VaultError("a scope needs at least one pattern (use '*' for all)")
    return globs


def validate_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (tags or {}).items():
        validate_name("tag", k)
        if not isinstance(v, str) or not v or len(v) > 256 or _CONTROL.search(v):
            raise VaultError(f"invalid value for tag {k!r}: 1-256 printable characters")
        out[k] = v
    return out


def validate_host(value: str) -> str:
    if not isinstance(value, str) or not _HOST.match(value):
        raise VaultError(
            f"invalid host {value!r}: a bare hostname such as api.openai.com (no scheme or port)"
        )
    return value.lower()


def validate_api_key(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise VaultError("a provider needs a non-empty API key")
    if any(c.isspace() for c in value) or _CONTROL.search(value) or not value.isascii():
        # it is sent as an HTTP header: refuse anything that could break or inject one
        raise VaultError("the provider API key contains whitespace, control or non-ASCII characters")
    return value


def validate_privacy(value: str) -> str:
    if value not in PRIVACY_MODES:
        raise VaultError(f"unknown privacy mode {value!r} (use {', '.join(PRIVACY_MODES)})")
    return value


def validate_budget(amount: float | None, period: str | None) -> None:
    if (amount is None) != (period is None):
        raise VaultError("a budget needs both an amount (USD) and a period (day, week or month)")
    if amount is not None and (not math.isfinite(amount) or amount <= 0):
        raise VaultError("a budget must be a positive, finite amount of USD")
    if period is not None and period not in BUDGET_PERIODS:
        raise VaultError(f"unknown budget period {period!r} (use day, week or month)")


def split_team(path: str) -> tuple[str, str]:
    """``"org/team"`` -> ``("org", "team")``, validated."""
    org, sep, name = (path or "").partition("/")
    if not sep:
        raise VaultError(f"invalid team {path!r}: expected ORG/TEAM")
    return validate_name("org", org), validate_name("team", name)


def api_family(kind: str) -> str:
    return "anthropic" if kind == "anthropic" else "openai"


# ---------------------------------------------------------------------------- data model


@dataclass
class ProviderCredential:
    name: str
    kind: str
    base_url: str
    api_key: str = field(repr=False)
    api_version: str | None = None
    hosts: list[str] | None = None  # None: the host of base_url; []: never intercepted
    default: bool = False

    def __post_init__(self) -> None:
        if self.hosts is None:
            host = urlsplit(self.base_url).hostname
            self.hosts = [host] if host else []

    def fingerprint(self) -> str:
        return fingerprint(self.api_key)

    def validate(self) -> None:
        validate_name("provider", self.name)
        if self.kind not in PROVIDER_KINDS:
            raise VaultError(f"unknown provider kind {self.kind!r} (use {', '.join(PROVIDER_KINDS)})")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise VaultError(f"invalid base URL {self.base_url!r} (expected http(s)://host[:port]/path)")
        if parts.query or parts.fragment:
            raise VaultError(f"invalid base URL {self.base_url!r}: no query or fragment")
        validate_api_key(self.api_key)
        if self.api_version is not None and (not self.api_version or _CONTROL.search(self.api_version)):
            raise VaultError("invalid api version")
        self.hosts = [validate_host(h) for h in self.hosts or []]


@dataclass
class KeyHash:
    hash: str
    not_after: datetime | None = None  # None: the current hash; set on rotation to now + grace


@dataclass
class GatewayKey:
    key_id: str
    org: str
    team: str
    project: str
    developer: str
    hashes: list[KeyHash] = field(default_factory=list, repr=False)
    providers: list[str] = field(default_factory=lambda: ["*"])
    models: list[str] = field(default_factory=lambda: ["*"])
    expires_at: datetime | None = None
    enabled: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    privacy_mode: str = "full"
    budget_usd: float | None = None
    budget_period: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    description: str = ""
    revoked_at: datetime | None = None  # set by revoke_key: a revoked key cannot be enabled again

    @property
    def team_path(self) -> str:
        return f"{self.org}/{self.team}"

    def status(self, now: datetime) -> str:
        """``active``, ``disabled``, ``revoked`` or ``expired`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if not self.enabled:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= _aware(now):
            return "expired"
        return "active"


@dataclass
class Team:
    org: str
    name: str
    privacy_mode: str = "full"
    budget_usd: float | None = None
    budget_period: str | None = None
    admins: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"{self.org}/{self.name}"


ROUTE_STRATEGIES = ("fallback", "loadbalance")
# provider kinds a Responses call can be translated to (codexgate.wire.translate)
TRANSLATABLE_KINDS = {"responses": ("anthropic",)}
# per-target timeouts (seconds) and how `route list` names them
TIMEOUT_FIELDS = {
    "connect_timeout_s": "connect",
    "first_byte_timeout_s": "first byte",
    "idle_timeout_s": "idle",
}
MAX_ROUTE_TARGETS = 32  # leaves of one route, groups included
MAX_TIMEOUT_S = 3600.0


@dataclass
class RouteTarget:
    """One place a route may send a call: a vault provider, the model name to ask it for
    (None keeps the client's), a load-balancing weight and optional per-target timeouts in
    seconds (None: the gateway's options)."""

    provider: str
    model: str | None = None
    weight: float = 1.0
    connect_timeout_s: float | None = None
    first_byte_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    upstream_api: str | None = None  # "chat_completions": reach an OpenAI-compatible provider through Chat

    def label(self) -> str:
        base = f"{self.provider}:{self.model}" if self.model else self.provider
        return base + ("#chat" if self.upstream_api == "chat_completions" else "")

    def describe(self) -> str:
        """The label, its weight unless 1, and its own timeouts (``route list``)."""
        text = self.label() + (f"@{self.weight:g}" if self.weight != 1.0 else "")
        timeouts = [
            f"{name} {getattr(self, f):g}s"
            for f, name in TIMEOUT_FIELDS.items()
            if getattr(self, f) is not None
        ]
        return text + (f" ({', '.join(timeouts)})" if timeouts else "")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider}
        for name in ("model", *TIMEOUT_FIELDS, "upstream_api"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.weight != 1.0:
            out["weight"] = self.weight
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RouteTarget:
        def opt(name: str) -> float | None:
            return float(doc[name]) if doc.get(name) is not None else None

        return cls(
            provider=str(doc["provider"]),
            model=str(doc["model"]) if doc.get("model") else None,
            weight=float(doc.get("weight", 1.0)),
            connect_timeout_s=opt("connect_timeout_s"),
            first_byte_timeout_s=opt("first_byte_timeout_s"),
            idle_timeout_s=opt("idle_timeout_s"),
            upstream_api=str(doc["upstream_api"]) if doc.get("upstream_api") else None,
        )

    @classmethod
    def parse(cls, spec: str) -> RouteTarget:
        """``PROVIDER[:UPSTREAM_MODEL][@WEIGHT][#chat]`` as the CLI takes it (``#chat``: the
        provider speaks Chat Completions only; Responses calls are translated)."""
        upstream_api = None
        if spec.endswith("#chat"):
            spec, upstream_api = spec[: -len("#chat")], "chat_completions"
        weight = 1.0
        if "@" in spec:
            spec, _, w = spec.rpartition("@")
            try:
                weight = float(w)
            except ValueError:
                raise VaultError(f"target weight {w!r} is not a number") from None
        provider, _, model = spec.partition(":")
        return cls(
            provider=provider.strip(), model=model.strip() or None, weight=weight, upstream_api=upstream_api
        )


@dataclass
class RouteGroup:
    """A nested strategy: one entry of a route's targets that is itself a ``fallback`` or
    ``loadbalance`` over plain targets, e.g. fallback[loadbalance[openai-a, openai-b],
    anthropic:claude-sonnet-4-5]. One level only: a group's members are never groups.
    ``weight`` counts when the route itself load-balances between its entries."""

    strategy: str
    targets: list[RouteTarget] = field(default_factory=list)
    weight: float = 1.0

    def describe(self) -> str:
        inner = " | ".join(t.describe() for t in self.targets)
        return f"{self.strategy}[{inner}]" + (f"@{self.weight:g}" if self.weight != 1.0 else "")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": self.strategy, "targets": [t.to_dict() for t in self.targets]}
        if self.weight != 1.0:
            out["weight"] = self.weight
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RouteGroup:
        members = list(doc.get("targets") or [])
        if any(isinstance(m, Mapping) and "targets" in m for m in members):
            raise VaultError("route groups nest one level only: a group's targets must be plain targets")
        return cls(
            strategy=str(doc.get("strategy", "fallback")),
            targets=[RouteTarget.from_dict(m) for m in members],
            weight=float(doc.get("weight", 1.0)),
        )

    @classmethod
    def parse(cls, spec: str) -> RouteGroup:
        """``STRATEGY[@WEIGHT]:TARGET,TARGET,...`` as the CLI takes it (each TARGET as for
        ``--target``), e.g. ``loadbalance:openai-a@3,openai-b``."""
        head, sep, members = spec.partition(":")
        if not sep or not members.strip():
            raise VaultError(f"group {spec!r}: use STRATEGY[@WEIGHT]:TARGET,TARGET,...")
        strategy, _, w = head.strip().partition("@")
        weight = 1.0
        if w:
            try:
                weight = float(w)
            except ValueError:
                raise VaultError(f"group weight {w!r} is not a number") from None
        return cls(strategy, [RouteTarget.parse(m) for m in members.split(",") if m.strip()], weight)


RouteEntry = RouteTarget | RouteGroup


def route_entry_from_dict(doc: Mapping[str, Any]) -> RouteEntry:
    """One entry of a route's ``targets``: a group when it has its own ``targets``."""
    return RouteGroup.from_dict(doc) if "targets" in doc else RouteTarget.from_dict(doc)


@dataclass
class Route:
    """A model glob (what the client asks for) -> ordered targets.

    ``provider`` is the first target's provider, kept so vaults and tools from before targets
    existed keep working; ``targets`` empty means the single target ``provider``. Strategy
    ``fallback`` tries targets in order, ``loadbalance`` in a weighted random order. An entry
    of ``targets`` may be a ``RouteGroup`` (one level of nesting)."""

    model: str
    provider: str
    api: str = "*"
    targets: list[RouteEntry] = field(default_factory=list)
    strategy: str = "fallback"

    def entries(self) -> list[RouteEntry]:
        """The route's top-level entries: targets and groups, as configured."""
        return list(self.targets) if self.targets else [RouteTarget(self.provider)]

    def all_targets(self) -> list[RouteTarget]:
        """Every plain target, groups flattened, in configured order."""
        out: list[RouteTarget] = []
        for e in self.entries():
            out.extend(e.targets if isinstance(e, RouteGroup) else [e])
        return out

    def providers(self) -> list[str]:
        return [t.provider for t in self.all_targets()]

    def describe(self) -> str:
        entries = self.entries()
        text = " | ".join(e.describe() for e in entries)
        return (
            text if len(entries) == 1 and isinstance(entries[0], RouteTarget) else f"{self.strategy}: {text}"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "provider": self.provider, "api": self.api}
        if self.targets:
            out["targets"] = [t.to_dict() for t in self.targets]
        if self.strategy != "fallback":
            out["strategy"] = self.strategy
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Route:
        targets = [route_entry_from_dict(t) for t in doc.get("targets") or []]
        leaves = [x for e in targets for x in (e.targets if isinstance(e, RouteGroup) else [e])]
        provider = doc.get("provider") or (leaves[0].provider if leaves else "")
        return cls(
            model=doc["model"],
            provider=str(provider),
            api=doc.get("api", "*"),
            targets=targets,
            strategy=doc.get("strategy", "fallback"),
        )


@dataclass
class AdminCredential:
    """A control-plane credential (``cga_…``) bound to one role; never valid for model traffic.

    ``name`` is the actor written to the audit log (often an e-mail address; the dashboard maps a
    proxy/OIDC identity onto it). Scope by role: ``org_admin`` and ``auditor`` -> ``org``;
    ``team_admin`` -> ``teams`` (``org/team`` paths, all inside ``org``); ``developer`` ->
    ``developer`` in ``org``. Only ``sha256:`` hashes of the secret are stored."""

    cred_id: str
    name: str
    role: str
    org: str
    teams: list[str] = field(default_factory=list)
    developer: str | None = None
    hashes: list[str] = field(default_factory=list, repr=False)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    revoked_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        """Everything but the hashes (safe for an API response or an audit entry)."""
        return {
            "cred_id": self.cred_id,
            "name": self.name,
            "role": self.role,
            "org": self.org,
            "teams": list(self.teams),
            "developer": self.developer,
            "created_at": _ts(self.created_at),
            "revoked_at": _ts(self.revoked_at),
        }


def _admin_to_dict(a: AdminCredential) -> dict[str, Any]:
    return {**a.public(), "hashes": list(a.hashes)}


def _admin_from_dict(d: Mapping[str, Any]) -> AdminCredential:
    return AdminCredential(
        cred_id=d["cred_id"],
        name=d["name"],
        role=d["role"],
        org=d["org"],
        teams=list(d.get("teams") or []),
        developer=d.get("developer"),
        hashes=list(d.get("hashes") or []),
        created_at=_dt(d.get("created_at")) or datetime(1970, 1, 1, tzinfo=UTC),
        revoked_at=_dt(d.get("revoked_at")),
    )


# ---------------------------------------------------------------------------- (de)serialisation


def _provider_to_dict(p: ProviderCredential) -> dict[str, Any]:
    return {
        "name": p.name,
        "kind": p.kind,
        "base_url": p.base_url,
        "api_key": p.api_key,
        "api_version": p.api_version,
        "hosts": list(p.hosts or []),
        "default": p.default,
    }


def _key_to_dict(k: GatewayKey) -> dict[str, Any]:
    return {
        "key_id": k.key_id,
        "org": k.org,
        "team": k.team,
        "project": k.project,
        "developer": k.developer,
        "hashes": [{"hash": h.hash, "not_after": _ts(h.not_after)} for h in k.hashes],
        "providers": list(k.providers),
        "models": list(k.models),
        "expires_at": _ts(k.expires_at),
        "enabled": k.enabled,
        "tags": dict(k.tags),
        "privacy_mode": k.privacy_mode,
        "budget_usd": k.budget_usd,
        "budget_period": k.budget_period,
        "created_at": _ts(k.created_at),
        "description": k.description,
        "revoked_at": _ts(k.revoked_at),
    }


def _key_from_dict(d: Mapping[str, Any]) -> GatewayKey:
    return GatewayKey(
        key_id=d["key_id"],
        org=d["org"],
        team=d["team"],
        project=d["project"],
        developer=d["developer"],
        hashes=[KeyHash(h["hash"], _dt(h.get("not_after"))) for h in d.get("hashes", ())],
        providers=list(d.get("providers", ["*"])),
        models=list(d.get("models", ["*"])),
        expires_at=_dt(d.get("expires_at")),
        enabled=bool(d.get("enabled", True)),
        tags=dict(d.get("tags") or {}),
        privacy_mode=d.get("privacy_mode", "full"),
        budget_usd=d.get("budget_usd"),
        budget_period=d.get("budget_period"),
        created_at=_dt(d.get("created_at")) or datetime(1970, 1, 1, tzinfo=UTC),
        description=d.get("description", ""),
        revoked_at=_dt(d.get("revoked_at")),
    )


def _team_from_dict(d: Mapping[str, Any]) -> Team:
    return Team(
        org=d["org"],
        name=d["name"],
        privacy_mode=d.get("privacy_mode", "full"),
        budget_usd=d.get("budget_usd"),
        budget_period=d.get("budget_period"),
        admins=list(d.get("admins", [])),
    )


def _provider_from_dict(d: Mapping[str, Any]) -> ProviderCredential:
    hosts = d.get("hosts")
    return ProviderCredential(
        name=d["name"],
        kind=d["kind"],
        base_url=d["base_url"],
        api_key=d["api_key"],
        api_version=d.get("api_version"),
        hosts=list(hosts) if hosts is not None else None,
        default=bool(d.get("default", False)),
    )


# ---------------------------------------------------------------------------- the vault


def write_private_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600: a temp file in the same directory
    (mkstemp creates it 0600), fsync, ``os.replace``, then fsync of the directory. A reader sees
    the old file or the new one, never half of one."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass
class Vault:
    providers: dict[str, ProviderCredential] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)  # "org/team" -> Team
    keys: dict[str, GatewayKey] = field(default_factory=dict)  # key_id -> GatewayKey
    routes: list[Route] = field(default_factory=list)  # first match wins
    rotation_grace_seconds: int = 3600
    org_admin_key_ids: list[str] = field(default_factory=list)
    # Admin credentials (control plane), cred_id -> AdminCredential. Absent from vaults written
    # before roles existed: such a vault loads with none, and only break-glass CLI edits work.
    admins: dict[str, AdminCredential] = field(default_factory=dict)
    # Raw JSON sections owned by other modules (e.g. "limits", "guardrail_policies"): the vault
    # stores and round-trips them without interpreting them; their owners parse and validate.
    sections: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ file
    @classmethod
    def load(cls, path: Path, secret: bytes) -> Vault:
        """Read and decrypt ``path``. Raises ``VaultError`` (one line, no secret) on any problem."""
        path = Path(path)
        try:
            token = path.read_bytes()
        except FileNotFoundError:
            raise VaultError(f"vault {path} does not exist (create it with `codexgate init`)") from None
        except IsADirectoryError:
            raise VaultError(f"vault {path} is a directory, not a vault file") from None
        except OSError as exc:
            raise VaultError(f"vault {path} cannot be read: {exc.strerror}") from None
        fernet = _fernet(secret)
        try:
            plain = fernet.decrypt(token)
        except (InvalidToken, ValueError, TypeError):
            raise VaultError(
                f"vault {path} cannot be decrypted with the given key (wrong {KEY_ENV} or key file?)"
            ) from None
        try:
            doc = json.loads(plain)
        except ValueError:
            raise VaultError(f"vault {path} is corrupt (not JSON after decryption)") from None
        version = doc.get("format_version") if isinstance(doc, dict) else None
        if version != FORMAT_VERSION:
            if isinstance(version, int) and version > FORMAT_VERSION:
                raise VaultError(
                    f"vault {path} has format_version {version}; this codexgate reads {FORMAT_VERSION} (upgrade it)"
                )
            raise VaultError(f"vault {path} is corrupt (missing or unknown format_version)")
        try:
            return cls.from_dict(doc)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise VaultError(f"vault {path} is corrupt ({type(exc).__name__} in its contents)") from None

    def save(self, path: Path, secret: bytes) -> None:
        """Encrypt and write atomically (temp file + fsync + ``os.replace`` + fsync of the dir)."""
        path = Path(path)
        token = _fernet(secret).encrypt(json.dumps(self.to_dict(), separators=(",", ":")).encode())
        directory = path.parent
        if not directory.is_dir():
            raise VaultError(f"cannot save vault {path}: directory {directory} does not exist")
        write_private_atomic(path, token)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "providers": {n: _provider_to_dict(p) for n, p in self.providers.items()},
            "teams": {
                n: {
                    "org": t.org,
                    "name": t.name,
                    "privacy_mode": t.privacy_mode,
                    "budget_usd": t.budget_usd,
                    "budget_period": t.budget_period,
                    "admins": list(t.admins),
                }
                for n, t in self.teams.items()
            },
            "keys": {kid: _key_to_dict(k) for kid, k in self.keys.items()},
            "routes": [r.to_dict() for r in self.routes],
            "rotation_grace_seconds": self.rotation_grace_seconds,
            "org_admin_key_ids": list(self.org_admin_key_ids),
            "admins": {cid: _admin_to_dict(a) for cid, a in self.admins.items()},
            "sections": dict(self.sections),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Vault:
        """The vault of a decrypted document (fields unknown to this version are ignored)."""
        return cls(
            providers={n: _provider_from_dict(p) for n, p in doc.get("providers", {}).items()},
            teams={n: _team_from_dict(t) for n, t in doc.get("teams", {}).items()},
            keys={kid: _key_from_dict(k) for kid, k in doc.get("keys", {}).items()},
            routes=[Route.from_dict(r) for r in doc.get("routes", [])],
            rotation_grace_seconds=int(doc.get("rotation_grace_seconds", 3600)),
            org_admin_key_ids=list(doc.get("org_admin_key_ids", [])),
            admins={cid: _admin_from_dict(a) for cid, a in (doc.get("admins") or {}).items()},
            sections=dict(doc.get("sections", {})),
        )

    # ------------------------------------------------------------ authentication
    def authenticate(self, presented: str, now: datetime) -> GatewayKey:
        """The key entry of a presented gateway key, or ``AuthError``.

        Unknown key id, wrong secret or a rotated-out hash past its grace: ``invalid_api_key``
        (said before anything about the key's state, so only a holder of the secret learns
        it); then ``revoked_api_key`` (revoked or disabled) and ``expired_api_key``.
        """
        now = _aware(now)
        key_id, full = parse_key(presented)
        entry = self.keys.get(key_id)
        digest = hash_key(full)
        matched = False
        if entry is not None:
            for h in entry.hashes:  # compare against every hash: no early exit that depends on the secret
                ok = hmac.compare_digest(h.hash, digest) and (h.not_after is None or now < h.not_after)
                matched = matched or ok
        if entry is None or not matched:
            raise AuthError("invalid_api_key", f"Invalid codexgate key (key id {key_id}).")
        if entry.revoked_at is not None:
            raise AuthError("revoked_api_key", f"Gateway key {key_id} has been revoked.")
        if not entry.enabled:
            raise AuthError("revoked_api_key", f"Gateway key {key_id} is disabled.")
        if entry.expires_at is not None and entry.expires_at <= now:
            raise AuthError(
                "expired_api_key", f"Gateway key {key_id} expired at {entry.expires_at:%Y-%m-%d %H:%M} UTC."
            )
        return entry

    # ------------------------------------------------------------ admin credentials
    def create_admin(
        self,
        *,
        name: str,
        role: str,
        org: str,
        teams: list[str] | None = None,
        developer: str | None = None,
        now: datetime | None = None,
    ) -> tuple[AdminCredential, str]:
        """A new admin credential and its plaintext (returned once; only its hash is kept)."""
        validate_developer(name)
        validate_name("org", org)
        if role not in ADMIN_ROLES:
            raise VaultError(f"unknown role {role!r} (use {', '.join(ADMIN_ROLES)})")
        team_paths = list(teams or [])
        if role == "team_admin":
            if not team_paths:
                raise VaultError("a team_admin needs at least one team (--team ORG/TEAM)")
            for path in team_paths:
                if split_team(path)[0] != org:
                    raise VaultError(f"team {path} is not in org {org}")
                self.team(path)
        elif team_paths:
            raise VaultError(f"only a team_admin is bound to teams, not a {role}")
        if role == "developer":
            validate_developer(developer or "")
        elif developer is not None:
            raise VaultError(f"only a developer credential names a developer, not a {role}")
        cred_id = new_key_id()
        while cred_id in self.admins:
            cred_id = new_key_id()
        plain = new_admin_credential(cred_id)
        cred = AdminCredential(
            cred_id=cred_id,
            name=name,
            role=role,
            org=org,
            teams=team_paths,
            developer=developer,
            hashes=[hash_key(plain)],
            created_at=_aware(now) if now is not None else datetime.now(UTC),
        )
        self.admins[cred_id] = cred
        return cred, plain

    def admin(self, cred_id: str) -> AdminCredential:
        cred = self.admins.get(cred_id)
        if cred is None:
            raise VaultError(f"unknown admin credential {cred_id!r}")
        return cred

    def revoke_admin(self, cred_id: str, now: datetime | None = None) -> None:
        cred = self.admin(cred_id)
        if cred.revoked_at is None:
            cred.revoked_at = _aware(now) if now is not None else datetime.now(UTC)

    def authenticate_admin(self, presented: str) -> AdminCredential:
        """The admin credential of a presented ``cga_…`` secret, or ``AuthError`` (whose message
        never contains the presented secret)."""
        cred_id, full = parse_admin_credential(presented)
        cred = self.admins.get(cred_id)
        digest = hash_key(full)
        matched = False
        if cred is not None:
            for h in cred.hashes:
                matched = hmac.compare_digest(h, digest) or matched
        if cred is None or not matched:
            raise AuthError("invalid_credential", f"Invalid admin credential (id {cred_id}).")
        if cred.revoked_at is not None:
            raise AuthError("revoked_credential", f"Admin credential {cred_id} has been revoked.")
        return cred

    # ------------------------------------------------------------ teams
    def team(self, path: str) -> Team:
        team = self.teams.get(path)
        if team is None:
            known = ", ".join(sorted(self.teams)) or "none yet"
            raise VaultError(
                f"unknown team {path!r} (known: {known}; add it with `codexgate team add ORG/TEAM`)"
            )
        return team

    def add_team(
        self,
        org: str,
        name: str,
        *,
        privacy_mode: str = "full",
        budget_usd: float | None = None,
        budget_period: str | None = None,
        admins: list[str] | None = None,
    ) -> Team:
        validate_name("org", org)
        validate_name("team", name)
        if f"{org}/{name}" in self.teams:
            raise VaultError(f"team {org}/{name} already exists")
        validate_privacy(privacy_mode)
        validate_budget(budget_usd, budget_period)
        team = Team(
            org, name, privacy_mode, budget_usd, budget_period, [validate_developer(a) for a in admins or []]
        )
        self.teams[team.path] = team
        return team

    def update_team(
        self,
        path: str,
        *,
        privacy_mode: str | None = None,
        budget_usd: float | None = None,
        budget_period: str | None = None,
        clear_budget: bool = False,
        admins: list[str] | None = None,
    ) -> Team:
        team = self.team(path)
        if privacy_mode is not None:
            validate_privacy(privacy_mode)
        amount, period = team.budget_usd, team.budget_period
        if clear_budget:
            amount, period = None, None
        if budget_usd is not None or budget_period is not None:
            amount, period = budget_usd, budget_period
        validate_budget(amount, period)
        new_admins = [validate_developer(a) for a in admins] if admins is not None else team.admins
        team.privacy_mode = privacy_mode or team.privacy_mode
        team.budget_usd, team.budget_period, team.admins = amount, period, new_admins
        return team

    # ------------------------------------------------------------ providers
    def provider(self, name: str) -> ProviderCredential:
        p = self.providers.get(name)
        if p is None:
            raise VaultError(
                f"unknown provider {name!r} (known: {', '.join(sorted(self.providers)) or 'none'})"
            )
        return p

    def add_provider(self, provider: ProviderCredential, *, replace: bool = False) -> None:
        provider.validate()
        if provider.name in self.providers and not replace:
            raise VaultError(
                f"provider {provider.name} already exists (change its secret with `codexgate provider rotate`)"
            )
        if provider.default:  # one default per API family
            for other in self.providers.values():
                if other.name != provider.name and api_family(other.kind) == api_family(provider.kind):
                    other.default = False
        self.providers[provider.name] = provider

    def rotate_provider_key(self, name: str, api_key: str) -> None:
        self.provider(name).api_key = validate_api_key(api_key)

    def remove_provider(self, name: str) -> None:
        self.provider(name)
        used = [str(i) for i, r in enumerate(self.routes) if name in r.providers()]
        if used:
            raise VaultError(
                f"provider {name} is used by route(s) {', '.join(used)}; remove those routes first"
            )
        del self.providers[name]

    def provider_for(self, model: str, api: str = "*") -> ProviderCredential | None:
        """The provider of the first route matching ``model`` and ``api`` (routing proper, with
        hosts and defaults, lives in the gateway)."""
        from fnmatch import fnmatchcase

        for r in self.routes:
            if r.api in ("*", api) and fnmatchcase(model, r.model) and r.provider in self.providers:
                return self.providers[r.provider]
        return None

    # ------------------------------------------------------------ routes
    def add_route(
        self,
        model: str,
        provider: str | None = None,
        api: str = "*",
        *,
        position: int | None = None,
        targets: list[RouteEntry] | None = None,
        strategy: str = "fallback",
    ) -> Route:
        """Add a route to one ``provider`` (as before targets existed), or to ordered ``targets``
        (a provider may then serve a Responses route through translation). An entry of
        ``targets`` may be a ``RouteGroup`` of plain targets (one level of nesting)."""
        validate_glob(model)
        if api not in ROUTE_APIS:
            raise VaultError(f"unknown api {api!r} (use {', '.join(ROUTE_APIS)})")
        if strategy not in ROUTE_STRATEGIES:
            raise VaultError(f"unknown strategy {strategy!r} (use {', '.join(ROUTE_STRATEGIES)})")
        if targets:
            route = Route(model=model, provider="", api=api, targets=list(targets), strategy=strategy)
            for e in targets:
                if isinstance(e, RouteGroup):
                    self._check_group(e)
            leaves = route.all_targets()
            if len(leaves) > MAX_ROUTE_TARGETS:
                raise VaultError(f"a route has at most {MAX_ROUTE_TARGETS} targets ({len(leaves)} given)")
            for t in leaves:
                self._check_target(t, api)
            route.provider = leaves[0].provider
        else:
            if provider is None:
                raise VaultError("a route needs a provider or at least one target")
            p = self.provider(provider)
            if api != "*" and (api == "anthropic_messages") != (p.kind == "anthropic"):
                raise VaultError(f"provider {provider} ({p.kind}) cannot serve the {api} API")
            route = Route(model=model, provider=provider, api=api, strategy=strategy)
        if position is None:
            self.routes.append(route)
        elif 0 <= position <= len(self.routes):
            self.routes.insert(position, route)
        else:
            raise VaultError(f"route position {position} out of range (0..{len(self.routes)})")
        return route

    @staticmethod
    def _check_group(g: RouteGroup) -> None:
        if not isinstance(g.targets, list) or any(not isinstance(m, RouteTarget) for m in g.targets):
            raise VaultError("route groups nest one level only: a group's targets must be plain targets")
        if g.strategy not in ROUTE_STRATEGIES:
            raise VaultError(f"group: unknown strategy {g.strategy!r} (use {', '.join(ROUTE_STRATEGIES)})")
        if len(g.targets) < 2:
            raise VaultError(f"group {g.describe()}: a group needs at least two targets")
        if not (g.weight > 0 and math.isfinite(g.weight)):
            raise VaultError(f"group {g.describe()}: weight must be positive")

    def _check_target(self, t: RouteTarget, api: str) -> None:
        if not isinstance(t, RouteTarget):
            raise VaultError("a route's targets are targets or groups of targets")
        p = self.provider(t.provider)
        if t.model is not None and (not t.model or any(c.isspace() for c in t.model)):
            raise VaultError(f"invalid upstream model {t.model!r}")
        if not (t.weight > 0 and math.isfinite(t.weight)):
            raise VaultError(f"target {t.label()}: weight must be positive")
        for name, text in TIMEOUT_FIELDS.items():
            value = getattr(t, name)
            if value is not None and not 0 < value <= MAX_TIMEOUT_S:
                raise VaultError(
                    f"target {t.label()}: {text} timeout must be between 0 and {MAX_TIMEOUT_S:g} seconds"
                )
        if t.upstream_api not in (None, "chat_completions") or (
            t.upstream_api and (p.kind == "anthropic" or api not in ("*", "responses"))
        ):
            raise VaultError(
                f"target {t.label()}: Chat translation serves Responses calls from OpenAI-style providers"
            )
        if api == "*":
            return
        native = (api == "anthropic_messages") == (p.kind == "anthropic")
        if not native and p.kind not in TRANSLATABLE_KINDS.get(api, ()):
            raise VaultError(f"provider {t.provider} ({p.kind}) cannot serve the {api} API")

    def remove_route(self, index: int) -> Route:
        if not 0 <= index < len(self.routes):
            raise VaultError(f"no route {index} (there are {len(self.routes)}; see `codexgate route list`)")
        return self.routes.pop(index)

    # ------------------------------------------------------------ gateway keys
    def key(self, key_id: str) -> GatewayKey:
        entry = self.keys.get(key_id)
        if entry is None:
            raise VaultError(f"unknown key id {key_id!r}")
        return entry

    def create_key(
        self,
        *,
        org: str,
        team: str,
        project: str,
        developer: str,
        providers: list[str] | None = None,
        models: list[str] | None = None,
        expires_at: datetime | None = None,
        tags: dict[str, str] | None = None,
        privacy_mode: str | None = None,
        budget_usd: float | None = None,
        budget_period: str | None = None,
        description: str = "",
        org_admin: bool = False,
        now: datetime | None = None,
    ) -> tuple[GatewayKey, str]:
        """A new key entry and its plaintext (returned once; only its hash is kept)."""
        team_entry = self.team(f"{org}/{team}")
        validate_name("project", project)
        validate_developer(developer)
        mode = validate_privacy(privacy_mode or team_entry.privacy_mode)
        validate_budget(budget_usd, budget_period)
        if _CONTROL.search(description) or len(description) > 500:
            raise VaultError("invalid description: at most 500 printable characters")
        key_id = new_key_id()
        while key_id in self.keys:
            key_id = new_key_id()
        plain = new_key(key_id)
        entry = GatewayKey(
            key_id=key_id,
            org=org,
            team=team,
            project=project,
            developer=developer,
            hashes=[KeyHash(hash_key(plain))],
            providers=validate_globs(providers),
            models=validate_globs(models),
            expires_at=_aware(expires_at) if expires_at is not None else None,
            tags=validate_tags(tags),
            privacy_mode=mode,
            budget_usd=budget_usd,
            budget_period=budget_period,
            created_at=_aware(now) if now is not None else datetime.now(UTC),
            description=description,
        )
        self.keys[key_id] = entry
        if org_admin:
            self.org_admin_key_ids.append(key_id)
        return entry, plain

    def rotate_key(self, key_id: str, now: datetime, grace_seconds: int | None = None) -> str:
        """A new plaintext for ``key_id``; the previous hash(es) stay valid until now + grace."""
        now = _aware(now)
        entry = self.key(key_id)
        if entry.revoked_at is not None:
            raise VaultError(f"key {key_id} is revoked; create a new key instead")
        grace = self.rotation_grace_seconds if grace_seconds is None else grace_seconds
        if not isinstance(grace, int) or grace < 0:
            raise VaultError("the rotation grace period must be a whole number of seconds >= 0")
        until = now + timedelta(seconds=grace)
        kept = [h for h in entry.hashes if h.not_after is None or h.not_after > now]
        for h in kept:
            if h.not_after is None or h.not_after > until:
                h.not_after = until
        plain = new_key(key_id)
        entry.hashes = [KeyHash(hash_key(plain)), *kept]
        return plain

    def revoke_key(self, key_id: str, now: datetime | None = None) -> None:
        """Permanently revoke: refused with ``revoked_api_key`` from now on, cannot be re-enabled."""
        entry = self.key(key_id)
        entry.enabled = False
        if entry.revoked_at is None:
            entry.revoked_at = _aware(now) if now is not None else datetime.now(UTC)

    def set_key_enabled(self, key_id: str, enabled: bool) -> None:
        entry = self.key(key_id)
        if enabled and entry.revoked_at is not None:
            raise VaultError(f"key {key_id} is revoked and cannot be enabled again; create a new key")
        entry.enabled = enabled


# ---------------------------------------------------------------------------- the encryption key


def _fernet(secret: bytes) -> Fernet:
    try:
        return Fernet(secret)
    except (ValueError, TypeError, binascii.Error):
        raise VaultError("the vault key is malformed (expected 32 url-safe base64-encoded bytes)") from None


def generate_secret() -> bytes:
    """A new vault encryption key (url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key()


def load_secret(key_file: Path | None = None, env: Mapping[str, str] = os.environ) -> bytes:
    """The vault's encryption key: from ``key_file`` if given, else ``CODEXGATE_VAULT_KEY``."""
    if key_file is not None:
        try:
            raw = Path(key_file).read_bytes().strip()
        except OSError as exc:
            raise VaultError(f"vault key file {key_file} cannot be read: {exc.strerror}") from None
        source = f"vault key file {key_file}"
    elif env.get(KEY_ENV, "").strip():
        raw = env[KEY_ENV].strip().encode()
        source = KEY_ENV
    else:
        raise VaultError(f"no vault key: set {KEY_ENV} or pass a key file (--key-file)")
    try:
        if len(base64.urlsafe_b64decode(raw)) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        raise VaultError(f"{source} is malformed (expected 32 url-safe base64-encoded bytes)") from None
    return raw
