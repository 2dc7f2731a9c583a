"""codexgate dashboard entry point: ``streamlit run dashboard/app.py``.

Multipage via ``st.navigation``; every page has a stable URL (``/overview``, ``/replay?session=…&step=…``,
…) and the root ``/`` forwards to ``/overview``. Every page also runs standalone (each one logs the viewer in and
reads its own data), which is how the AppTest tests render them.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="codexgate", page_icon="🛰️", layout="wide")

OVERVIEW = st.Page(PAGES / "overview.py", title="Overview", icon="📊", url_path="overview")


def _home() -> None:
    """The app root: go to Overview at its own URL (``/overview``), keeping the query string, so every
    page — the first one too — has a stable address to bookmark and share."""
    st.switch_page(OVERVIEW, query_params=dict(st.query_params))


navigation = st.navigation(
    [
        st.Page(_home, title="Home", url_path="home", default=True, visibility="hidden"),
        OVERVIEW,
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
