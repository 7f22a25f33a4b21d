"""The trust-check panel: red / amber / green verdicts on the evaluation, each with what it means."""

from __future__ import annotations

import streamlit as st

from dashboard import cache

ICONS = {"green": ":material/check_circle:", "amber": ":material/warning:", "red": ":material/error:"}
COLOURS = {"green": "green", "amber": "orange", "red": "red"}


def trust_panel(run_id: str, dataset: str, eps: float, norm: str, device: str, *, compute: bool = True) -> None:
    """The verdicts at ε; with ``compute=False`` only stored ones are shown (nothing is run)."""
    st.markdown(f"##### Can these numbers be trusted? (ε = {eps:g})")
    if compute:
        with st.spinner("Running the trust checks…"):
            checks = cache.trust_checks(run_id, dataset, float(eps), norm, device)
    else:
        checks = cache.stored_trust_checks(run_id, dataset, float(eps), norm)
        if checks is None:
            st.info("The trust checks at this ε run with the stronger attacks (the buttons above the curve).",
                    icon=":material/hourglass_empty:")
            return
    worst = max((c["status"] for c in checks), key=("green", "amber", "red").index, default="green")
    counts = {s: sum(c["status"] == s for c in checks) for s in ("green", "amber", "red")}
    st.markdown(f":{COLOURS[worst]}-badge[{counts['green']} green · {counts['amber']} amber · {counts['red']} red]"
                " — signs of gradient masking from the attack-evaluation literature, measured on 150 test points.")
    for check in checks:
        colour = COLOURS.get(check["status"], "gray")
        with st.expander(f":{colour}[{check['title']}] — {check['finding']}",
                         icon=ICONS.get(check["status"], ":material/help:"),
                         expanded=check["status"] == "red"):
            st.markdown(check["explanation"])
