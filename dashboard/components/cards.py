"""Model cards: the facts of one run at a glance."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Iterable

import streamlit as st

from dashboard.components.charts import robust_measure
from dashboard.components.labels import NORM_LABELS, md

SOURCE_BADGE = {"shipped": ("shipped", "gray"), "imported": ("imported", "violet"), "trained": ("trained", "blue")}


def fmt_pct(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f} %"


def threat_text(norm: str | None, eps: float | None) -> str:
    """Norm and ε in one short table cell, e.g. "ℓ∞ 0.1"; "—" for what is not known (in a table column a missing
    norm is NaN, which is truthy: an import without a norm or ε showed "None")."""
    text = NORM_LABELS.get(norm, norm) if isinstance(norm, str) and norm else "—"
    return text if eps is None or math.isnan(eps) else f"{text} {eps:g}"


def status_text(run: dict[str, Any], unloaded: bool) -> str:
    """A model's status in the hub's table: what stops it from being analysed (its plugin is not loaded), or what
    makes comparing with it meaningless (it ended at chance level, core.jobs.ended_at_chance), before the run's own
    status."""
    if unloaded:
        return "no plugin"
    return "at chance" if (run.get("final_metrics") or {}).get("at_chance") else run["status"]


def model_card(run: dict[str, Any], role: str | None = None) -> None:
    """A bordered card: name, badges, clean and robust accuracy, architecture and provenance."""
    metrics = run["final_metrics"]
    with st.container(border=True, key=f"card_{role or 'run'}_{run['id']}"):
        st.markdown(f"**{md(run['name'])}**" + (f" · _{role}_" if role else ""))
        label, colour = SOURCE_BADGE.get(run["source"], (run["source"], "gray"))
        # ERM is not trained at an ε: its ε is only the radius of the robustness check.
        eps = "" if run["eps"] is None or run["method"] == "erm" else f" ε={run['eps']:g}"
        status = "" if run["status"] == run["source"] else f" :gray-badge[{run['status']}]"
        st.markdown(f":{colour}-badge[{label}] :orange-badge[{run['method']}{eps}] :blue-badge[{run['arch']}]"
                    + status)
        # Plain text, not st.metric: a metric's big value is cut to "10…" in a narrow card (a 1024 px projector).
        measured = robust_measure([metrics["attack"]])[1] if metrics.get("attack") else "PGD"
        attack = f"{measured} at ε={metrics.get('eps', run['eps'])}"
        points = f"{metrics['n']} test points" if metrics.get("n") else "the test split"
        st.markdown(f"Clean **{fmt_pct(metrics.get('clean_acc'))}** · robust **{fmt_pct(metrics.get('robust_acc'))}**",
                    help=f"On {points}: clean accuracy, and robust accuracy under {attack}.")
        if metrics.get("at_chance"):
            # Listed with the others, it read like any model: a comparison with it says nothing.
            st.warning("**Ended at chance level**: it has learned nothing usable, so comparing with it says nothing.",
                       icon=":material/warning:")
            why = metrics.get("warning", "")
            st.caption(why[:1].upper() + why[1:])
        created = datetime.fromtimestamp(run["created_at"], timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        reported = (" · **accuracy as reported by its .json file** (the dataset's files are not here to measure it)"
                    if metrics.get("reported") else "")
        st.caption(f"{run['dataset']} · {run['norm'] or '—'} · id `{run['id']}` · {created}{reported}")


def masked_note(runs: Iterable[dict[str, Any]]) -> None:
    """Explain models whose worst-case robust accuracy is far below PGD's from x (the shipped patch models: PGD sees
    no gradient where the smoothed ReLU is flat, and a gradient-free probe breaks them), so the hub does not seem to
    contradict the Theory Lab's story that adversarial training learns the robust feature."""
    masked = [r for r in runs if "robust_acc_pgd_no_start" in r["final_metrics"]
              and r["final_metrics"].get("robust_acc") is not None]
    if not masked:
        return
    figures = "; ".join(f"**{r['name']}**: {r['final_metrics']['robust_acc_pgd_no_start']:.0%} under PGD from x, "
                        f"{r['final_metrics']['robust_acc']:.0%} worst case" for r in masked)
    st.info("Robust accuracy here is the **worst case** over PGD (from x and from a random start) and a "
            "gradient-free probe that moves every patch by ε towards another class's feature. Adversarial training "
            "does learn the robust feature (Theory Lab: U grows, V stays small) and PGD from x, the paper's measure, "
            "calls it robust; but the smoothed ReLU is flat at 0, so PGD sees no gradient towards the other class, "
            f"and the probe breaks it — gradient masking, not robustness. {figures}.",
            icon=":material/visibility_off:")


def no_model_yet(dataset: str, files_missing: bool) -> None:
    """The empty state of an analysis page for a dataset without a finished model: what to do next. "Train one"
    alone misled where the dataset's files are not on this machine (the Train page refuses it until they are)."""
    if files_missing:
        st.info(f"**{dataset}** has no model yet, and its standard files are not on this machine: run `python -m "
                f"core data download {dataset}` (with a network) or place them in the data folder, then train a model "
                "on the Train page or import one in the Model hub. digits, the default, ships with models.",
                icon=":material/folder_off:")
    else:
        st.info(f"**{dataset}** has no finished model yet: train one on the Train page or import one in the Model "
                "hub, or pick digits (the default), which ships with models.")
