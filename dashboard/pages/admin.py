"""Admin: a team admin (or org admin) creates, rotates and revokes their teams' gateway keys.

Edits go through ``VaultStore.edit`` — the same locked, atomic, audited write path as the admin
API — with the signed-in identity as the actor and its role's boundaries (``codexgate.admin.roles``);
a refused action is shown with the role and the boundary and is audited. A new or rotated key is
shown once, on the run that made it, and never kept in the session."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import streamlit as st

from codexgate.admin.audit import AuditLog, default_anchor, default_audit_dir
from codexgate.admin.roles import Forbidden, Principal
from codexgate.admin.store import EditContext, VaultStore
from codexgate.admin.views import key_view
from codexgate.core.vault import VaultError, load_secret, split_team
from dashboard import auth, data


def vault_store() -> VaultStore | None:
    path = os.environ.get("CODEXGATE_VAULT")
    if not path:
        return None
    key_file = os.environ.get("CODEXGATE_VAULT_KEY_FILE")
    secret = load_secret(Path(key_file) if key_file else None)
    return VaultStore(Path(path), secret, AuditLog(default_audit_dir(Path(path)), default_anchor()))


def _deny(store: VaultStore, p: Principal, exc: Forbidden, action: str) -> None:
    store.audit.append(
        actor=p.actor,
        role=p.role,
        action=action,
        target=exc.action,
        outcome="denied",
        source="dashboard",
        detail=exc.boundary,
    )
    st.error(f"403 — {exc.message}")


def _show_once(what: str, key_id: str, plain: str) -> None:
    st.success(f"{what} key `{key_id}`. Copy it now: it is shown once and codexgate keeps only its hash.")
    st.code(plain, language=None)


def render() -> None:
    data.use_app_navigation()
    viewer = auth.require_viewer()
    st.title("Admin")
    p = viewer.principal
    if p is None or p.role not in ("org_admin", "team_admin"):
        st.error(
            f"403 — {viewer.role} may not administer keys here: only an org admin or a team admin "
            "(developers rotate or revoke their own keys with the CLI or the admin API)."
        )
        return
    try:
        store = vault_store()
        vault = store.read() if store is not None else None
    except VaultError as exc:
        st.error(f"The vault cannot be opened: {exc}")
        return
    if store is None or vault is None:
        st.error("No vault is configured (CODEXGATE_VAULT).")
        return
    teams = sorted(t for t in vault.teams if p.can_read_team(t))
    if not teams:
        st.info(f"No teams within the {p.describe()}.")
        return
    team = st.selectbox("Team", teams, key="admin_team")
    st.caption(f"Signed in as {p.actor} — {p.describe()}")

    with st.form("create_key", clear_on_submit=True):
        st.subheader("Create a key")
        c1, c2 = st.columns(2)
        developer = c1.text_input("Developer", key="admin_developer")
        project = c2.text_input("Project", value="default", key="admin_project")
        models = st.text_input("Allowed models (globs, space-separated)", value="*", key="admin_models")
        create = st.form_submit_button("Create key", key="admin_create")
    if create:
        try:
            p.require_team_write(team, f"create a key in {team}")
            org, name = split_team(team)
            ctx = EditContext(actor=p.actor, role=p.role, action="key.create", source="dashboard")
            with store.edit(ctx) as v:
                entry, plain = v.create_key(
                    org=org,
                    team=name,
                    project=project.strip(),
                    developer=developer.strip(),
                    models=models.split() or None,
                )
            _show_once("Created", entry.key_id, plain)
            vault = store.read()
        except Forbidden as exc:
            _deny(store, p, exc, "key.create")
        except VaultError as exc:
            st.error(str(exc))

    now = datetime.now(UTC)
    keys = sorted(
        (k for k in vault.keys.values() if k.team_path == team),
        key=lambda k: (k.status(now) != "active", k.developer, k.created_at),
    )
    st.subheader(f"Keys of {team}")
    if not keys:
        st.info("No keys yet.")
        return
    rows = [key_view(vault, k, now) for k in keys]
    st.dataframe(
        pl.DataFrame(
            [
                {c: r[c] for c in ("key_id", "developer", "project", "status", "models", "created_at")}
                for r in rows
            ]
        ).with_columns(pl.col("models").list.join(" ")),
        hide_index=True,
        width="stretch",
    )
    active = [k.key_id for k in keys if k.status(now) == "active" or k.status(now) == "disabled"]
    if not active:
        return
    key_id = st.selectbox("Key", active, key="admin_key")
    c1, c2 = st.columns(2)
    for col, op in ((c1, "rotate"), (c2, "revoke")):
        if col.button(op.capitalize(), key=f"admin_{op}"):
            try:
                p.require_key(vault.key(key_id), f"{op} key {key_id}", developer_may=True)
                ctx = EditContext(
                    actor=p.actor, role=p.role, action=f"key.{op}", target=f"key:{key_id}", source="dashboard"
                )
                with store.edit(ctx) as v:
                    if op == "rotate":
                        plain = v.rotate_key(key_id, datetime.now(UTC))
                    else:
                        v.revoke_key(key_id)
                if op == "rotate":
                    _show_once("Rotated", key_id, plain)
                    st.caption(f"The previous secret stays valid for {vault.rotation_grace_seconds} s.")
                else:
                    st.success(f"Revoked key `{key_id}`; the gateway refuses it within a second.")
            except Forbidden as exc:
                _deny(store, p, exc, f"key.{op}")
            except VaultError as exc:
                st.error(str(exc))


render()
