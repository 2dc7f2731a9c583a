"""Dashboard sign-in: every way in becomes a ``Viewer`` — the ``ViewerScope`` every query gets, plus
the admin ``Principal`` the Admin and Audit pages enforce (the same roles as the admin API).

Ways in, checked in this order:

1. ``CODEXGATE_DASHBOARD_AUTH=off``: full access, with a visible banner.
2. A trusted reverse proxy (e.g. oauth2-proxy): the identity header (``X-Forwarded-Email``, or
   ``CODEXGATE_DASHBOARD_PROXY_HEADER``) is believed only when the connection comes from an address
   in ``CODEXGATE_DASHBOARD_TRUSTED_PROXIES`` (comma-separated IPs or CIDRs; Streamlit reports a
   loopback peer as no address, which counts as ``127.0.0.1``). From anywhere else the header is
   ignored. The proxy sends it with every request, so a reload stays signed in.
3. Streamlit's own OIDC (``st.login``) when ``CODEXGATE_DASHBOARD_OIDC`` names the provider
   configured in ``.streamlit/secrets.toml`` (``[auth]``; ``1`` for the default one): the
   identity is ``st.user.email``; Streamlit's identity cookie survives a reload.
4. The token box: the value of ``CODEXGATE_ADMIN_TOKEN`` (full access), a gateway key or an admin
   credential (``cga_…``). The credential stays on the server (the Streamlit session, and a table of
   sign-in tickets in the dashboard process); the browser gets only a random ticket in a
   ``SameSite=Strict`` cookie (12 h), so a reload or a link opened in a new tab stays signed in. The
   ticket is checked again on every new session (a revoked key or credential stops working), is
   forgotten at sign-out and when the dashboard restarts, and never contains the credential.
   Deep links keep their query string through sign-in (``/replay?session=…&step=3`` lands on step 3).

An identity (proxy or OIDC) maps onto the vault: an admin credential named after it (its role:
org admin, team admin, developer, auditor), else a team listing it in ``admins`` (team admin), else
gateway keys whose developer it is (developer). Unknown identities are refused.

The vault comes from ``CODEXGATE_VAULT`` with ``CODEXGATE_VAULT_KEY_FILE`` or ``CODEXGATE_VAULT_KEY``.
Credentials stay in the Streamlit session (for re-running a step) and are never shown or logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from analytics.access import ViewerScope
from codexgate.admin.roles import Principal
from codexgate.core.vault import AuthError, Vault, VaultError, load_secret

_SESSION_KEY = "codexgate_viewer"
TRUSTED_PROXIES_ENV = "CODEXGATE_DASHBOARD_TRUSTED_PROXIES"
PROXY_HEADER_ENV = "CODEXGATE_DASHBOARD_PROXY_HEADER"
OIDC_ENV = "CODEXGATE_DASHBOARD_OIDC"
DEFAULT_PROXY_HEADER = "X-Forwarded-Email"
TICKET_COOKIE = "codexgate_signin"
TICKET_TTL_SECONDS = 12 * 3600
_TICKET_KEY = "codexgate_ticket"  # session_state: this session's ticket
_TICKET_PENDING = "codexgate_ticket_pending"  # session_state: the cookie still has to be set


class LoginError(Exception):
    """The presented credential does not open the dashboard (message safe to show)."""


@dataclass(frozen=True)
class Viewer:
    scope: ViewerScope
    role: str  # admin | org_admin | team_admin | developer | auditor | open
    gateway_key: str | None = field(default=None, repr=False)
    principal: Principal | None = None  # for the Admin and Audit pages; None: no admin rights
    source: str = "token"  # token | proxy | oidc | open

    def describe(self) -> str:
        who = f" ({self.principal.actor})" if self.principal is not None and self.source != "token" else ""
        return f"{self.role}{who} · {self.scope.describe()}"


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


def _viewer_of_principal(p: Principal, source: str, credential: str | None = None) -> Viewer:
    if p.role in ("org_admin", "auditor"):
        return Viewer(ViewerScope(org=p.org, label=f"{p.role} · org={p.org}"), p.role, None, p, source)
    if p.role == "team_admin":
        org, _, team = p.teams[0].partition("/")
        label = f"team admin · {p.teams[0]}"
        return Viewer(ViewerScope(org=org, team=team, label=label), "team_admin", None, p, source)
    scope = ViewerScope(org=p.org, developer=p.developer, label=f"developer · {p.developer}")
    return Viewer(scope, "developer", None, p, source)


def resolve_viewer(
    credential: str, env: Mapping[str, str] | None = None, now: datetime | None = None
) -> Viewer:
    """The viewer a credential from the token box signs in as. Raises ``LoginError``."""
    env = os.environ if env is None else env
    credential = credential.strip()
    if not credential:
        raise LoginError("Enter a gateway key, an admin credential or the admin token.")
    admin_token = env.get("CODEXGATE_ADMIN_TOKEN", "")
    if admin_token and hmac.compare_digest(credential.encode(), admin_token.encode()):
        return Viewer(ViewerScope(label="admin (all traces)"), "admin")
    try:
        vault = load_vault(env)
    except VaultError as exc:
        raise LoginError(f"The vault cannot be opened: {exc}") from None
    if vault is None:
        raise LoginError("Unknown admin token, and no vault is configured (CODEXGATE_VAULT) to check keys.")
    if credential.startswith("cga_"):
        try:
            cred = vault.authenticate_admin(credential)
        except AuthError as exc:
            raise LoginError(f"Login refused ({exc.code}).") from None
        return _viewer_of_principal(Principal.of(cred), "token")
    try:
        entry = vault.authenticate(credential, now or datetime.now(UTC))
    except AuthError as exc:
        raise LoginError(f"Login refused ({exc.code}).") from None
    except ValueError:
        raise LoginError("Login refused (not a codexgate key).") from None
    actor = f"{entry.developer} (key {entry.key_id})"
    if entry.key_id in vault.org_admin_key_ids:
        scope = ViewerScope(org=entry.org, label=f"org admin · org={entry.org}")
        return Viewer(scope, "org_admin", credential, Principal(actor, "org_admin", entry.org))
    team = vault.teams.get(f"{entry.org}/{entry.team}")
    if team is not None and entry.developer in team.admins:
        scope = ViewerScope(org=entry.org, team=entry.team, label=f"team admin · {entry.org}/{entry.team}")
        principal = Principal(actor, "team_admin", entry.org, (team.path,))
        return Viewer(scope, "team_admin", credential, principal)
    scope = ViewerScope(
        org=entry.org, team=entry.team, developer=entry.developer, label=f"developer · {entry.developer}"
    )
    principal = Principal(actor, "developer", entry.org, (), entry.developer)
    return Viewer(scope, "developer", credential, principal)


def viewer_for_identity(identity: str, source: str, env: Mapping[str, str] | None = None) -> Viewer:
    """The viewer of an authenticated identity (an e-mail from a trusted proxy or OIDC), mapped onto
    the vault's roles. Raises ``LoginError`` for an identity the vault does not know."""
    identity = identity.strip()
    if not identity:
        raise LoginError("The identity provider sent an empty identity.")
    try:
        vault = load_vault(env)
    except VaultError as exc:
        raise LoginError(f"The vault cannot be opened: {exc}") from None
    if vault is None:
        raise LoginError("No vault is configured (CODEXGATE_VAULT) to map identities to roles.")
    creds = [a for a in vault.admins.values() if a.name.lower() == identity.lower() and a.revoked_at is None]
    if creds:
        rank = {"org_admin": 0, "auditor": 1, "team_admin": 2, "developer": 3}
        cred = min(creds, key=lambda a: rank.get(a.role, 9))
        return _viewer_of_principal(Principal.of(cred), source)
    teams = sorted(t.path for t in vault.teams.values() if identity.lower() in (a.lower() for a in t.admins))
    if teams:
        org = teams[0].partition("/")[0]
        principal = Principal(identity, "team_admin", org, tuple(t for t in teams if t.startswith(f"{org}/")))
        return _viewer_of_principal(principal, source)
    keys = [k for k in vault.keys.values() if k.developer.lower() == identity.lower()]
    if keys:
        principal = Principal(identity, "developer", keys[0].org, (), keys[0].developer)
        return _viewer_of_principal(principal, source)
    raise LoginError(f"{identity} is not known to codexgate (no admin role, team or gateway key).")


def trusted_proxy_identity(
    headers: Mapping[str, str], peer: str | None, env: Mapping[str, str] | None = None
) -> str | None:
    """The identity header's value when ``peer`` (``None`` = loopback) is a trusted proxy, else
    ``None`` — a header from anywhere else is ignored, however it looks."""
    env = os.environ if env is None else env
    trusted = [t.strip() for t in env.get(TRUSTED_PROXIES_ENV, "").split(",") if t.strip()]
    if not trusted:
        return None
    name = env.get(PROXY_HEADER_ENV, "").strip() or DEFAULT_PROXY_HEADER
    value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    if not value:
        return None
    try:
        address = ipaddress.ip_address(peer or "127.0.0.1")
    except ValueError:
        return None
    for entry in trusted:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return value.strip()
        except ValueError:
            continue
    return None


def _oidc_provider(env: Mapping[str, str]) -> str | None:
    value = env.get(OIDC_ENV, "").strip()
    return None if value.lower() in ("", "0", "off", "false", "no") else value


def _identity_viewer() -> Viewer | None:
    """A viewer from the proxy header or OIDC, or None. Draws the error and stops for a refused one."""
    identity, source = None, "proxy"
    try:
        headers = dict(st.context.headers.items())
        identity = trusted_proxy_identity(headers, st.context.ip_address)
    except Exception:  # noqa: BLE001 - no client context (e.g. a bare script run)
        identity = None
    provider = _oidc_provider(os.environ)
    if identity is None and provider is not None and getattr(st.user, "is_logged_in", False):
        identity, source = str(st.user.get("email") or ""), "oidc"
    if identity is None:
        return None
    # mapped again on every run (a vault read, a few ms): a role change or a revoked credential
    # applies at the next interaction, not at the next sign-in
    try:
        viewer = viewer_for_identity(identity, source)
    except LoginError as exc:
        st.title("codexgate dashboard")
        st.error(str(exc))
        st.stop()
        raise RuntimeError("unreachable") from None
    st.session_state[_SESSION_KEY] = viewer
    return viewer


class _Tickets:
    """Sign-in tickets of this dashboard process: ticket -> (credential, expiry). Bounded (oldest
    dropped beyond 10,000); thread-safe (Streamlit runs sessions on threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, float]] = {}

    def issue(self, credential: str) -> str:
        ticket = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            while len(self._entries) >= 10_000:
                self._entries.pop(next(iter(self._entries)))
            self._entries[ticket] = (credential, now + TICKET_TTL_SECONDS)
        return ticket

    def credential(self, ticket: str) -> str | None:
        with self._lock:
            entry = self._entries.get(ticket)
            if entry is None or entry[1] <= time.time():
                self._entries.pop(ticket, None)
                return None
            return entry[0]

    def revoke(self, ticket: str | None) -> None:
        with self._lock:
            self._entries.pop(ticket or "", None)


@st.cache_resource(show_spinner=False)
def _tickets() -> _Tickets:
    return _Tickets()


def _ticket_cookie() -> str | None:
    try:
        value = st.context.cookies.get(TICKET_COOKIE)
    except Exception:  # noqa: BLE001 - no client context (AppTest, bare run)
        return None
    return value if isinstance(value, str) and value else None


def _set_cookie(value: str, max_age: int) -> None:
    """Set (or, with max_age 0, clear) the ticket cookie in the browser; the value is a random ticket
    (``token_urlsafe``: letters, digits, ``-``, ``_``), never a credential."""
    st.html(
        f"<script>document.cookie = '{TICKET_COOKIE}={value}; path=/; max-age={max_age}; SameSite=Strict';</script>",
        unsafe_allow_javascript=True,
    )


def _viewer_from_ticket() -> Viewer | None:
    """The token-box viewer of a previous session of this browser (its ticket cookie), checked again."""
    ticket = _ticket_cookie()
    if ticket is None:
        return None
    credential = _tickets().credential(ticket)
    if credential is None:
        return None
    try:
        viewer = resolve_viewer(credential)
    except LoginError:  # revoked or expired since: the ticket goes too
        _tickets().revoke(ticket)
        return None
    st.session_state[_SESSION_KEY], st.session_state[_TICKET_KEY] = viewer, ticket
    return viewer


def require_viewer() -> Viewer:
    """The signed-in viewer; otherwise draws the sign-in form and stops the page."""
    if auth_disabled():
        st.warning("Authentication is off (CODEXGATE_DASHBOARD_AUTH=off): every trace is visible.", icon="🔓")
        return Viewer(ViewerScope(label="all (auth off)"), "open", source="open")
    viewer = _identity_viewer()
    if viewer is None:
        viewer = st.session_state.get(_SESSION_KEY)
        if isinstance(viewer, Viewer) and viewer.source != "token":
            viewer = None  # the proxy/OIDC identity is gone: do not keep its session
            del st.session_state[_SESSION_KEY]
        if viewer is None:
            viewer = _viewer_from_ticket()
    if isinstance(viewer, Viewer):
        if st.session_state.pop(_TICKET_PENDING, False) and st.session_state.get(_TICKET_KEY):
            _set_cookie(st.session_state[_TICKET_KEY], TICKET_TTL_SECONDS)
        with st.sidebar:
            st.caption(f"Signed in as **{viewer.describe()}**")
            if viewer.source == "token" and st.button("Sign out", key="codexgate_sign_out"):
                del st.session_state[_SESSION_KEY]
                _tickets().revoke(st.session_state.pop(_TICKET_KEY, None))
                st.rerun()
            if viewer.source == "oidc" and st.button("Sign out", key="codexgate_sign_out"):
                st.session_state.pop(_SESSION_KEY, None)
                st.logout()
        return viewer
    st.title("codexgate dashboard")
    if _ticket_cookie() is not None:  # a ticket this process does not know (signed out, restarted)
        _set_cookie("", 0)
    provider = _oidc_provider(os.environ)
    if provider is not None and st.button("Sign in with single sign-on", key="codexgate_sso"):
        st.login() if provider in ("1", "default") else st.login(provider)
    with st.form("codexgate_login"):
        credential = st.text_input("Gateway key, admin credential or admin token", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        try:
            st.session_state[_SESSION_KEY] = resolve_viewer(credential)
        except LoginError as exc:
            st.error(str(exc))
        else:
            st.session_state[_TICKET_KEY] = _tickets().issue(credential.strip())
            st.session_state[_TICKET_PENDING] = True
            st.rerun()  # the query string stays: a deep link lands where it pointed
    st.stop()
    raise RuntimeError("unreachable")  # st.stop() raises
