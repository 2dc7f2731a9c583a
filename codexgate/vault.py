"""The encrypted vault: provider credentials, teams, gateway keys (as hashes) and routes.

File format: a Fernet token (AES-128-CBC + HMAC-SHA256, from ``cryptography``) over a JSON
document with ``format_version``. The 32-byte Fernet key comes from the environment variable
``CODEXGATE_VAULT_KEY`` or a key file, never from beside the vault.

Gateway keys look like ``cgk_<key_id>_<secret>``; only ``sha256:<hex>`` of the whole key is
stored. The secret is 256 random bits, so a fast hash is enough (there is nothing to
brute-force; slow password hashes such as argon2 would only slow down every request).
Saving is atomic: a temp file in the same directory, fsync, ``os.replace``, fsync of the
directory — a reader sees the old vault or the new one, never half of one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

FORMAT_VERSION = 1
KEY_ENV = "CODEXGATE_VAULT_KEY"
PROVIDER_KINDS = ("openai", "azure", "anthropic", "openai_compatible")
PRIVACY_MODES = ("full", "metrics_only", "redacted")
BUDGET_PERIODS = ("day", "week", "month")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DEVELOPER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")  # developers are often e-mail addresses
_KEY = re.compile(r"^cgk_([0-9a-f]{12})_([A-Za-z0-9_\-]{20,})$")


class VaultError(Exception):
    """The vault cannot be used, or an edit is invalid. One line; never contains a secret."""


class AuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def validate_name(kind: str, value: str) -> str:
    if not _NAME.match(value or ""):
        raise VaultError(f"invalid {kind} name {value!r}: use letters, digits, '.', '_' or '-' (max 64)")
    return value


def validate_glob(value: str) -> str:
    if not value or value != value.strip() or any(c.isspace() for c in value):
        raise VaultError(f"invalid glob {value!r}: empty or contains whitespace")
    depth = 0
    for c in value:
        if c == "[":
            if depth:
                raise VaultError(f"invalid glob {value!r}: nested '['")
            depth = 1
        elif c == "]" and depth:
            depth = 0
    if depth:
        raise VaultError(f"invalid glob {value!r}: unbalanced '['")
    return value


def hash_key(full_key: str) -> str:
    return "sha256:" + hashlib.sha256(full_key.encode()).hexdigest()


def parse_key(presented: str) -> tuple[str, str]:
    """``(key_id, full_key)`` of a presented gateway key, or ``AuthError``."""
    m = _KEY.match(presented.strip())
    if not m:
        raise AuthError("invalid_api_key", "This is not a valid codexgate key (expected cgk_<id>_<secret>).")
    return m.group(1), presented.strip()


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
        return "sha256:" + hashlib.sha256(self.api_key.encode()).hexdigest()[:12] + "…"


@dataclass
class KeyHash:
    hash: str
    not_after: datetime | None = None


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

    def status(self, now: datetime) -> str:
        if not self.enabled:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
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


@dataclass
class Route:
    model: str
    provider: str
    api: str = "*"


def _check_budget(amount: float | None, period: str | None) -> None:
    if (amount is None) != (period is None):
        raise VaultError("a budget needs both an amount and a period (day, week or month)")
    if amount is not None and amount <= 0:
        raise VaultError("a budget must be a positive amount of USD")
    if period is not None and period not in BUDGET_PERIODS:
        raise VaultError(f"unknown budget period {period!r} (use day, week or month)")


@dataclass
class Vault:
    providers: dict[str, ProviderCredential] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    keys: dict[str, GatewayKey] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    rotation_grace_seconds: int = 3600
    org_admin_key_ids: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------- file
    @classmethod
    def load(cls, path: Path, secret: bytes) -> Vault:
        path = Path(path)
        try:
            token = path.read_bytes()
        except FileNotFoundError:
            raise VaultError(f"vault {path} does not exist (create it with `codexgate init`)") from None
        except OSError as exc:
            raise VaultError(f"vault {path} cannot be read: {exc.strerror}") from None
        try:
            plain = Fernet(secret).decrypt(token)
        except (InvalidToken, ValueError, TypeError):
            raise VaultError(
                f"vault {path} cannot be decrypted with the given key (wrong {KEY_ENV} or key file?)"
            ) from None
        try:
            return cls.from_dict(json.loads(plain))
        except (ValueError, KeyError, TypeError) as exc:
            raise VaultError(f"vault {path} is corrupt ({type(exc).__name__})") from None

    def save(self, path: Path, secret: bytes) -> None:
        path = Path(path)
        try:
            token = Fernet(secret).encrypt(json.dumps(self.to_dict()).encode())
        except (ValueError, TypeError):
            raise VaultError(
                "the vault key is not a valid key (expected 32 url-safe base64-encoded bytes)"
            ) from None
        directory = path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(token)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "providers": {n: asdict(p) for n, p in self.providers.items()},
            "teams": {n: asdict(t) for n, t in self.teams.items()},
            "keys": {
                kid: {
                    **asdict(k),
                    "hashes": [{"hash": h.hash, "not_after": _ts(h.not_after)} for h in k.hashes],
                    "expires_at": _ts(k.expires_at),
                    "created_at": _ts(k.created_at),
                }
                for kid, k in self.keys.items()
            },
            "routes": [asdict(r) for r in self.routes],
            "rotation_grace_seconds": self.rotation_grace_seconds,
            "org_admin_key_ids": list(self.org_admin_key_ids),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Vault:
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError("unsupported vault format_version")
        keys = {}
        for kid, k in doc.get("keys", {}).items():
            k = dict(k)
            k["hashes"] = [KeyHash(h["hash"], _dt(h.get("not_after"))) for h in k.get("hashes", [])]
            k["expires_at"] = _dt(k.get("expires_at"))
            k["created_at"] = _dt(k.get("created_at")) or datetime.now(UTC)
            keys[kid] = GatewayKey(**k)
        return cls(
            providers={n: ProviderCredential(**p) for n, p in doc.get("providers", {}).items()},
            teams={n: Team(**t) for n, t in doc.get("teams", {}).items()},
            keys=keys,
            routes=[Route(**r) for r in doc.get("routes", [])],
            rotation_grace_seconds=int(doc.get("rotation_grace_seconds", 3600)),
            org_admin_key_ids=list(doc.get("org_admin_key_ids", [])),
        )

    # ---------------------------------------------------------------- authentication
    def authenticate(self, presented: str, now: datetime) -> GatewayKey:
        key_id, full = parse_key(presented)
        entry = self.keys.get(key_id)
        digest = hash_key(full)
        matched = False
        if entry is not None:
            for h in entry.hashes:  # compare against every hash: no early exit on the secret
                ok = hmac.compare_digest(h.hash, digest) and (h.not_after is None or now < h.not_after)
                matched = matched or ok
        if entry is None or not matched:
            raise AuthError(
                "invalid_api_key", f"Unknown gateway key (key id {key_id}): not a valid codexgate key."
            )
        status = entry.status(now)
        if status == "revoked":
            raise AuthError("revoked_api_key", f"Gateway key {key_id} has been revoked.")
        if status == "expired":
            raise AuthError(
                "expired_api_key", f"Gateway key {key_id} expired at {entry.expires_at:%Y-%m-%d %H:%M} UTC."
            )
        return entry

    # ---------------------------------------------------------------- edits
    def team(self, path: str) -> Team:
        team = self.teams.get(path)
        if team is None:
            known = ", ".join(sorted(self.teams)) or "none yet"
            raise VaultError(
                f"unknown team {path!r} (known: {known}; add it with `codexgate team add ORG/TEAM`)"
            )
        return team

    def add_team(self, org: str, name: str, **kwargs: Any) -> Team:
        validate_name("org", org)
        validate_name("team", name)
        if kwargs.get("privacy_mode", "full") not in PRIVACY_MODES:
            raise VaultError(
                f"unknown privacy mode {kwargs['privacy_mode']!r} (use {', '.join(PRIVACY_MODES)})"
            )
        _check_budget(kwargs.get("budget_usd"), kwargs.get("budget_period"))
        team = Team(org=org, name=name, **kwargs)
        self.teams[team.path] = team
        return team

    def add_provider(self, provider: ProviderCredential) -> None:
        validate_name("provider", provider.name)
        if provider.kind not in PROVIDER_KINDS:
            raise VaultError(f"unknown provider kind {provider.kind!r} (use {', '.join(PROVIDER_KINDS)})")
        parts = urlsplit(provider.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise VaultError(f"invalid base URL {provider.base_url!r} (expected http(s)://host/...)")
        if not provider.api_key:
            raise VaultError("a provider needs a non-empty API key")
        if provider.default:
            for other in self.providers.values():
                other.default = other.default and other.kind != provider.kind
        self.providers[provider.name] = provider

    def add_route(self, model: str, provider: str, api: str = "*") -> Route:
        validate_glob(model)
        if provider not in self.providers:
            raise VaultError(
                f"unknown provider {provider!r} (known: {', '.join(sorted(self.providers)) or 'none'})"
            )
        if api not in ("*", "responses", "chat_completions", "anthropic_messages"):
            raise VaultError(f"unknown api {api!r}")
        route = Route(model=model, provider=provider, api=api)
        self.routes.append(route)
        return route

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
    ) -> tuple[GatewayKey, str]:
        team_entry = self.team(f"{org}/{team}")
        validate_name("project", project)
        if not _DEVELOPER.match(developer or ""):
            raise VaultError(f"invalid developer name {developer!r}: letters, digits, '.', '_', '-', '+', '@' (max 128)")
        providers = [validate_glob(g) for g in (providers or ["*"])]
        models = [validate_glob(g) for g in (models or ["*"])]
        mode = privacy_mode or team_entry.privacy_mode
        if mode not in PRIVACY_MODES:
            raise VaultError(f"unknown privacy mode {mode!r} (use {', '.join(PRIVACY_MODES)})")
        _check_budget(budget_usd, budget_period)
        key_id = secrets.token_hex(6)
        while key_id in self.keys:
            key_id = secrets.token_hex(6)
        plain = f"cgk_{key_id}_{secrets.token_urlsafe(32)}"
        entry = GatewayKey(
            key_id=key_id,
            org=org,
            team=team,
            project=project,
            developer=developer,
            hashes=[KeyHash(hash_key(plain))],
            providers=providers,
            models=models,
            expires_at=expires_at,
            tags=dict(tags or {}),
            privacy_mode=mode,
            budget_usd=budget_usd,
            budget_period=budget_period,
            description=description,
        )
        self.keys[key_id] = entry
        return entry, plain

    def key(self, key_id: str) -> GatewayKey:
        entry = self.keys.get(key_id)
        if entry is None:
            raise VaultError(f"unknown key id {key_id!r}")
        return entry

    def rotate_key(self, key_id: str, now: datetime, grace_seconds: int | None = None) -> str:
        entry = self.key(key_id)
        grace = self.rotation_grace_seconds if grace_seconds is None else grace_seconds
        until = now + timedelta(seconds=grace)
        kept = [h for h in entry.hashes if h.not_after is None or h.not_after > now]
        for h in kept:
            if h.not_after is None or h.not_after > until:
                h.not_after = until
        plain = f"cgk_{key_id}_{secrets.token_urlsafe(32)}"
        entry.hashes = [KeyHash(hash_key(plain)), *kept]
        return plain

    def revoke_key(self, key_id: str) -> None:
        self.key(key_id).enabled = False


def generate_secret() -> bytes:
    return Fernet.generate_key()


def load_secret(key_file: Path | None = None, env: Mapping[str, str] = os.environ) -> bytes:
    """The vault's encryption key: from ``key_file`` if given, else ``CODEXGATE_VAULT_KEY``."""
    if key_file is not None:
        try:
            raw = Path(key_file).read_bytes().strip()
        except OSError as exc:
            raise VaultError(f"vault key file {key_file} cannot be read: {exc.strerror}") from None
    elif env.get(KEY_ENV):
        raw = env[KEY_ENV].strip().encode()
    else:
        raise VaultError(f"no vault key: set {KEY_ENV} or pass a key file")
    try:
        if len(base64.urlsafe_b64decode(raw)) != 32:
            raise ValueError
    except ValueError:
        raise VaultError("the vault key is malformed (expected 32 url-safe base64-encoded bytes)") from None
    return raw
