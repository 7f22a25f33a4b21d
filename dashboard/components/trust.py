"""The trust-check panel: red / amber / green verdicts on the evaluation, each with what it means."""

from __future__ import annotations

import streamlit as st

from core.evaluation.suite import TRUST_POINTS
from dashboard import cache

ICONS = {"green": ":material/check_circle:", "amber": ":material/warning:", "red": ":material/error:",
         "not run": ":material/remove_circle_outline:"}
COLOURS = {"green": "green", "amber": "orange", "red": "red", "not run": "gray"}
VERDICTS = ("green", "amber", "red")


def trust_panel(run_id: str, dataset: str, eps: float, norm: str, device: str, *, compute: bool = True,
                page_points: int | None = None) -> None:
    """The verdicts at ε; with ``compute=False`` only stored ones are shown (nothing is run). The checks run their
    own attacks on the first ``TRUST_POINTS`` test points (fewer where the split is smaller); ``page_points``, the
    number the page's tables use, is named beside it when it differs, so the two are not mistaken for each other."""
    heading = st.empty()
    heading.markdown(f"##### Can these numbers be trusted? (ε = {eps:g})")
    if compute:
        with st.spinner("Running the trust checks…"):
            checks = cache.trust_checks(run_id, dataset, float(eps), norm, device)
    else:
        checks = cache.stored_trust_checks(run_id, dataset, float(eps), norm)
        if checks is None:
            st.info("The trust checks at this ε run with the stronger attacks (the buttons above the curve).",
                    icon=":material/hourglass_empty:")
            return
    # The gradient check records how many points the checks ran on.
    n = next((int(c["value"]["n"]) for c in checks if "n" in c.get("value", {})), TRUST_POINTS)
    heading.markdown(f"##### Can these numbers be trusted? (ε = {eps:g}, {n} test points)")
    worst = max((c["status"] for c in checks if c["status"] in VERDICTS), key=VERDICTS.index, default="green")
    counts = {s: sum(c["status"] == s for c in checks) for s in (*VERDICTS, "not run")}
    not_run = f" · {counts['not run']} not run" if counts["not run"] else ""
    other = (f" They run their own attacks on these {n} points, not on the {page_points} of the table above, so "
             "their robust accuracies (PGD-10 included) differ from it." if page_points not in (None, n) else "")
    st.markdown(f":{COLOURS[worst]}-badge[{counts['green']} green · {counts['amber']} amber · {counts['red']} red"
                f"{not_run}]"
                f" — signs of gradient masking from the attack-evaluation literature, measured on the first "
                f"{n} test points.{other}")
    for check in checks:
        colour = COLOURS.get(check["status"], "gray")
        with st.expander(f":{colour}[{check['title']}] — {check['finding']}",
                         icon=ICONS.get(check["status"], ":material/help:"),
                         expanded=check["status"] == "red"):
            st.markdown(check["explanation"])
