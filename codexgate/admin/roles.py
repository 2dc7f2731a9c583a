"""Admin roles and the boundaries the admin API enforces.

- ``org_admin``: everything in its org — keys, teams, routes, providers (fingerprints only; their
  secrets can be set, never read), limits, guardrail policies, admin credentials, the audit log.
- ``team_admin``: keys, limits and guardrail policies of its own teams; reads routes; never sees
  providers.
- ``developer``: lists, rotates and revokes their own keys; reads their own usage.
- ``auditor``: reads everything in its org, including the audit log; changes nothing.

``break_glass`` is the role recorded for edits made straight on the vault file by the CLI (whoever
holds the vault key can do anything; the audit log records the local OS user).

Every refusal is a ``Forbidden`` whose message names the role, the actor and the boundary; the API
turns it into a 403 and an audit entry with ``outcome = denied``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codexgate.core.vault import AdminCredential, GatewayKey

ROLES = ("org_admin", "team_admin", "developer", "auditor")
BREAK_GLASS = "break_glass"


class Forbidden(Exception):
    """A refused action: ``message`` names the role and the boundary (no secret)."""

    def __init__(self, principal: Principal, action: str, boundary: str) -> None:
        self.principal, self.action, self.boundary = principal, action, boundary
        self.message = f"{principal.role} {principal.actor} may not {action}: {boundary}"
        super().__init__(self.message)


@dataclass(frozen=True)
class Principal:
    actor: str
    role: str
    org: str
    teams: tuple[str, ...] = field(default_factory=tuple)
    developer: str | None = None
    cred_id: str | None = None

    @classmethod
    def of(cls, cred: AdminCredential) -> Principal:
        return cls(cred.name, cred.role, cred.org, tuple(cred.teams), cred.developer, cred.cred_id)

    def describe(self) -> str:
        if self.role == "team_admin":
            return f"team_admin of {', '.join(self.teams)}"
        if self.role == "developer":
            return f"developer {self.developer} in {self.org}"
        return f"{self.role} of org {self.org}"

    # ------------------------------------------------------------ checks (raise Forbidden)
    def require(self, roles: tuple[str, ...], action: str) -> None:
        if self.role not in roles:
            raise Forbidden(self, action, f"only {' or '.join(roles)} may do this")

    def in_org(self, team_path: str) -> bool:
        return team_path.partition("/")[0] == self.org

    def can_read_team(self, team_path: str) -> bool:
        if self.role in ("org_admin", "auditor"):
            return self.in_org(team_path)
        if self.role == "team_admin":
            return team_path in self.teams
        return False

    def require_team_write(self, team_path: str, action: str) -> None:
        """Keys, limits and policies of ``team_path``: org admins of its org, its team admins."""
        if self.role == "org_admin" and self.in_org(team_path):
            return
        if self.role == "team_admin" and team_path in self.teams:
            return
        if self.role in ("org_admin", "team_admin"):
            raise Forbidden(self, action, f"team {team_path} is outside the {self.describe()}")
        raise Forbidden(self, action, "only org_admin or team_admin may change a team's settings")

    def can_read_key(self, key: GatewayKey) -> bool:
        if self.role == "developer":
            return key.org == self.org and key.developer == self.developer
        return self.can_read_team(key.team_path)

    def require_key(self, key: GatewayKey, action: str, *, developer_may: bool) -> None:
        """Write access to a key: team writers; its own developer for rotate/revoke."""
        if self.role == "developer":
            if not developer_may:
                raise Forbidden(self, action, "a developer may only list, rotate and revoke their own keys")
            if key.org != self.org or key.developer != self.developer:
                raise Forbidden(
                    self, action, f"key {key.key_id} belongs to another developer ({key.developer})"
                )
            return
        if self.role == "auditor":
            raise Forbidden(self, action, "an auditor has read-only access")
        self.require_team_write(key.team_path, action)

    def require_usage(self, developer: str | None, team_path: str | None, action: str) -> None:
        if self.role == "developer":
            if developer != self.developer:
                raise Forbidden(self, action, f"a developer may read only their own usage ({self.developer})")
            return
        if self.role == "team_admin":
            if team_path is None or team_path not in self.teams:
                raise Forbidden(self, action, f"usage outside the {self.describe()} (pass team=ORG/TEAM)")
            return
        if team_path is not None and not self.in_org(team_path):
            raise Forbidden(self, action, f"team {team_path} is outside org {self.org}")
