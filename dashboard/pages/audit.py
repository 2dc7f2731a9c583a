"""Audit: the admin audit log (who changed what, when) with its chain check — for auditors and org
admins (and the admin token). Reads the log named by ``CODEXGATE_AUDIT_DIR`` or the ``audit/``
folder beside ``CODEXGATE_VAULT``; checks the anchor from ``CODEXGATE_AUDIT_ANCHOR`` when set."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import streamlit as st

from codexgate.admin.audit import default_anchor, default_audit_dir, read_entries, verify
from dashboard import auth, data


def render() -> None:
    data.use_app_navigation()
    viewer = auth.require_viewer()
    st.title("Audit log")
    if viewer.role not in ("auditor", "org_admin", "admin", "open"):
        st.error(f"403 — {viewer.role} may not read the audit log: only auditors and org admins.")
        return
    vault = os.environ.get("CODEXGATE_VAULT")
    if not vault and not os.environ.get("CODEXGATE_AUDIT_DIR"):
        st.info("No vault configured (CODEXGATE_VAULT), so no audit log to show.")
        return
    directory = default_audit_dir(Path(vault or "."))
    result = verify(directory, default_anchor())
    if result.ok:
        anchored = f", anchored through seq {result.anchored_seq}" if result.anchored_seq else " (no anchor)"
        st.success(f"Chain intact: {result.entries} entries, head seq {result.head_seq}{anchored}.")
    else:
        st.error(f"Chain check FAILED: {result.problem}")
    c1, c2, c3 = st.columns(3)
    days = c1.number_input("Last N days", min_value=1, max_value=3650, value=30, key="audit_days")
    actor = c2.text_input("Actor", key="audit_actor").strip() or None
    action = c3.text_input("Action (glob, e.g. key.*)", key="audit_action").strip() or None
    since = datetime.now(UTC) - timedelta(days=int(days))
    entries = read_entries(directory, since=since, actor=actor, action=action)
    if not entries:
        st.info("No entries match.")
        return
    frame = pl.DataFrame(
        [
            {
                "seq": e["seq"],
                "time": e["time"][:19],
                "actor": e["actor"],
                "role": e["role"],
                "action": e["action"],
                "target": e["target"],
                "outcome": e["outcome"],
                "source": e.get("source"),
                "request_id": e.get("request_id"),
            }
            for e in reversed(entries)
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")
    seq = st.selectbox("Entry", [e["seq"] for e in reversed(entries)], key="audit_seq")
    chosen = next(e for e in entries if e["seq"] == seq)
    st.code(json.dumps({"before": chosen["before"], "after": chosen["after"]}, indent=2), language="json")


render()
