"""Plugin notices for the model hub: what became of each ``ATLAS_PLUGINS`` module, and which models cannot be
analysed because their architecture's plugin is not loaded."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import streamlit as st

# Characters Streamlit's markdown would read as formatting, links, HTML or LaTeX in a path or an error message.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~$])")


# The architectures the Atlas ships, by name: a model of another architecture came from a plugin. Listed here so the
# hub tells them apart without importing the engine (torch) on every visit; tests/app/test_hub_plugins.py checks the
# list against core.models' registry.
SHIPPED_ARCHS = frozenset({"lenet", "mlp", "patchnet", "preact_resnet18", "smallcnn", "wideresnet"})


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


def unloaded_archs(archs: Iterable[str]) -> dict[str, str]:
    """For each architecture of ``archs`` that no loaded plugin registers, why, in words: its models are listed
    (their accuracy was measured when they were imported or trained) but cannot be loaded until the plugin is."""
    foreign = sorted({arch for arch in archs if arch not in SHIPPED_ARCHS})
    if not foreign:
        return {}
    from core.models import ARCHS, plugin_reports

    reports = plugin_reports()
    failed = [report.entry for report in reports if not report.ok]
    if failed:
        why = f"a plugin failed to load ({', '.join(_plain(entry) for entry in failed)}: see the error above)"
    elif not os.environ.get("ATLAS_PLUGINS", "").strip():
        why = "`ATLAS_PLUGINS` is not set"
    else:
        why = "no plugin in `ATLAS_PLUGINS` registers it"
    return {arch: (f"Its architecture `{arch}` comes from a plugin that is not loaded here ({why}): restart the "
                   "dashboard with the plugin's module in `ATLAS_PLUGINS` (README, *Bring your own model*) to "
                   "analyse it. Its accuracy was measured when it was added.")
            for arch in foreign if arch not in ARCHS}


def unloaded_runs(runs: Iterable[dict]) -> dict[str, str]:
    """{run id: why it cannot be analysed} for the runs in ``runs`` whose architecture's plugin is not loaded."""
    runs = list(runs)
    unloaded = unloaded_archs(run["arch"] for run in runs)
    return {run["id"]: unloaded[run["arch"]] for run in runs if run["arch"] in unloaded}
