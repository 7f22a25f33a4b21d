"""Plugin notices for the model hub: what became of each ``ATLAS_PLUGINS`` module."""

from __future__ import annotations

import os
import re

import streamlit as st

# Characters Streamlit's markdown would read as formatting, links, HTML or LaTeX in a path or an error message.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~$])")


def _plain(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def plugin_notices() -> None:
    """An error per plugin that failed, a warning per plugin that registers nothing, a caption naming the rest.

    Without ``ATLAS_PLUGINS`` it draws nothing and imports nothing (the engine, with torch, loads only on demand).
    """
    if not os.environ.get("ATLAS_PLUGINS", "").strip():
        return
    from core.models.plugins import load_plugins

    reports = load_plugins()
    for report in reports:
        if report.error:
            st.error(f"**Plugin not loaded:** {_plain(report.error)}", icon=":material/extension_off:")
        elif report.warning:
            st.warning(_plain(report.warning), icon=":material/extension:")
    loaded = [report for report in reports if report.ok and report.archs]
    if loaded:
        st.caption("Architectures from plugins: " + "; ".join(
            f"{', '.join(f'`{arch}`' for arch in report.archs)} ({_plain(report.entry)})" for report in loaded)
            + ". Import their checkpoints below like any other.")
