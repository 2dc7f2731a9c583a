"""Dashboard login: a gateway key or the admin token becomes the ``ViewerScope`` every query gets.

- ``CODEXGATE_DASHBOARD_AUTH=off``: full access, with a visible banner.
- the value of ``CODEXGATE_ADMIN_TOKEN``: full access (``ViewerScope()``).
- a gateway key (checked with ``Vault.authenticate``): org admin (key id in
  ``vault.org_admin_key_ids``) sees its org; team admin (developer in the team's ``admins``) sees
  org + team; everyone else sees only their own calls (org + team + developer).

The vault comes from ``CODEXGATE_VAULT`` with ``CODEXGATE_VAULT_KEY_FILE`` or ``CODEXGATE_VAULT_KEY``.
The key stays in the Streamlit session (for re-running a step) and is never shown or logged.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from analytics.access import ViewerScope
from codexgate.core.vault import AuthError, Vault, VaultError, load_secret

_SESSION_KEY = "codexgate_viewer"


class LoginError(Exception):
    """The presented credential does not open the dashboard (message safe to show)."""


@dataclass(frozen=True)
class Viewer:
    scope: ViewerScope
    role: str  # admin | org_admin | team_admin | developer | open
    gateway_key: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        return f"{self.role} · {self.scope.describe()}"


def auth_disabled(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("CODEXGATE_DASHBOARD_AUTH", "").strip().lower() in ("off", "0", "false", "no")


def load_vault(env: Mapping[str, str] | None = None) -> Vault | None:
    """The vault named by ``CODEXGATE_VAULT`` (None when not configured)."""
    env = os.environ if env is None else env
    path = env.get("CODEXGATE_VAULT")
    if not path:
        return None
    key_file = env.get("CODEXGATE_VAULT_KEY_FILE")
    secret = load_secret(Path(key_file) if key_file else None, env=env)
    return Vault.load(Path(path), secret)


def resolve_viewer(
    credential: str, env: Mapping[str, str] | None = None, now: datetime | None = None
) -> Viewer:
    """The viewer a credential logs in as. Raises ``LoginError``."""
    env = os.environ if env is None else env
    credential = credential.strip()
    if not credential:
        raise LoginError("Enter a gateway key or the admin token.")
    admin_token = env.get("CODEXGATE_ADMIN_TOKEN", "")
    if admin_token and hmac.compare_digest(credential.encode(), admin_token.encode()):
        return Viewer(ViewerScope(label="admin (all traces)"), "admin")
    try:
        vault = load_vault(env)
    except VaultError as exc:
        raise LoginError(f"The vault cannot be opened: {exc}") from None
    if vault is None:
        raise LoginError("Unknown admin token, and no vault is configured (CODEXGATE_VAULT) to check keys.")
    try:
        entry = vault.authenticate(credential, now or datetime.now(UTC))
    except AuthError as exc:
        raise LoginError(f"Login refused ({exc.code}).") from None
    except ValueError:
        raise LoginError("Login refused (not a codexgate key).") from None
    if entry.key_id in vault.org_admin_key_ids:
        scope = ViewerScope(org=entry.org, label=f"org admin · org={entry.org}")
        return Viewer(scope, "org_admin", credential)
    team = vault.teams.get(f"{entry.org}/{entry.team}")
    if team is not None and entry.developer in team.admins:
        scope = ViewerScope(org=entry.org, team=entry.team, label=f"team admin · {entry.org}/{entry.team}")
        return Viewer(scope, "team_admin", credential)
    scope = ViewerScope(
        org=entry.org, team=entry.team, developer=entry.developer, label=f"developer · {entry.developer}"
    )
    return Viewer(scope, "developer", credential)


def require_viewer() -> Viewer:
    """The logged-in viewer; otherwise draws the login form and stops the page."""
    if auth_disabled():
        st.warning("Authentication is off (CODEXGATE_DASHBOARD_AUTH=off): every trace is visible.", icon="🔓")
        return Viewer(ViewerScope(label="all (auth off)"), "open")
    viewer = st.session_state.get(_SESSION_KEY)
    if isinstance(viewer, Viewer):
        with st.sidebar:
            st.caption(f"Signed in as **{viewer.describe()}**")
            if st.button("Sign out", key="codexgate_sign_out"):
                del st.session_state[_SESSION_KEY]
                st.rerun()
        return viewer
    st.title("codexgate dashboard")
    with st.form("codexgate_login"):
        credential = st.text_input("Gateway key or admin token", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        try:
            st.session_state[_SESSION_KEY] = resolve_viewer(credential)
        except LoginError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    st.stop()
    raise RuntimeError("unreachable")  # st.stop() raises
