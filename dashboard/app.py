"""codexgate dashboard entry point: ``streamlit run dashboard/app.py``.

Multipage via ``st.navigation``; every page also runs standalone (each one logs the viewer in and
reads its own data), which is how the AppTest tests render them.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="codexgate", page_icon="🛰️", layout="wide")

navigation = st.navigation(
    [
        st.Page(PAGES / "overview.py", title="Overview", icon="📊", url_path="overview", default=True),
        st.Page(PAGES / "attribution.py", title="Attribution", icon="💸", url_path="attribution"),
        st.Page(PAGES / "sessions.py", title="Sessions", icon="🗂️", url_path="sessions"),
        st.Page(PAGES / "replay.py", title="Replay", icon="⏯️", url_path="replay"),
        st.Page(PAGES / "guardrails.py", title="Guardrails", icon="🛡️", url_path="guardrails"),
        st.Page(PAGES / "errors.py", title="Errors", icon="🚨", url_path="errors"),
        st.Page(PAGES / "admin.py", title="Admin", icon="🔑", url_path="admin"),
        st.Page(PAGES / "audit.py", title="Audit", icon="📜", url_path="audit"),
    ]
)
navigation.run()
