"""Model cards: the facts of one run at a glance."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import streamlit as st

SOURCE_BADGE = {"shipped": ("shipped", "gray"), "imported": ("imported", "violet"), "trained": ("trained", "blue")}


def fmt_pct(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f} %"


def model_card(run: dict[str, Any], role: str | None = None) -> None:
    """A bordered card: name, badges, clean and robust accuracy, architecture and provenance."""
    metrics = run["final_metrics"]
    with st.container(border=True, key=f"card_{role or 'run'}_{run['id']}"):
        st.markdown(f"**{run['name']}**" + (f" · _{role}_" if role else ""))
        label, colour = SOURCE_BADGE.get(run["source"], (run["source"], "gray"))
        # ERM is not trained at an ε: its ε is only the radius of the robustness check.
        eps = "" if run["eps"] is None or run["method"] == "erm" else f" ε={run['eps']:g}"
        status = "" if run["status"] == run["source"] else f" :gray-badge[{run['status']}]"
        st.markdown(f":{colour}-badge[{label}] :orange-badge[{run['method']}{eps}] :blue-badge[{run['arch']}]"
                    + status)
        left, right = st.columns(2)
        left.metric("clean accuracy", fmt_pct(metrics.get("clean_acc")))
        right.metric("robust accuracy", fmt_pct(metrics.get("robust_acc")),
                     help=f"{metrics.get('attack', 'PGD')} at ε={metrics.get('eps', run['eps'])}")
        created = datetime.fromtimestamp(run["created_at"], timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        st.caption(f"{run['dataset']} · {run['norm'] or '—'} · id `{run['id']}` · {created}")
