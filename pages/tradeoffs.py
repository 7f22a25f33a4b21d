"""Trade-off Explorer: clean vs robust, worst class vs mean, training curves of DALE and friends, class-wise
defences (weighted training from here, a logit bias at inference)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.errors import AtlasError
from core.training.config import TrainConfig, archs_for, default_eps, norms_for
from dashboard import cache, state
from dashboard.components import tradeoff_charts as tc
from dashboard.components.charts import run_colours
from dashboard.components.jobs import jobs_panel
from dashboard.components.labels import ARCH_LABELS, METHOD_LABELS, NORM_LABELS, label, md
from dashboard.components.layout import panels
from dashboard.components.train_form import (DALE_METHODS, KEEP, RangedFields, checked_eps, checked_number,
                                             class_weight_fields, dale_fields, eps_field, queue_training,
                                             weighting_select)
from dashboard.components.teaching import explain

st.title("Trade-off Explorer")
explain(
    "Every robust model trades something: clean accuracy, or the robustness of its weakest classes. The top charts "
    "place every model of this dataset; the curves below show how a run got there.", "dale", "classwise")
with st.expander("The constrained-learning view (DALE)", icon=":material/balance:", expanded=False):
    st.markdown(
        "Robey et al. write adversarial training as a **constrained** problem: make the robust loss ℓ_ro small "
        "*subject to* the clean loss ℓ_nom ≤ ρ. Its Lagrangian is ℓ_ro + ν·(ℓ_nom − ρ); the dual variable ν is "
        "learned alongside the weights by **dual ascent**: after every SGD step ν ← max(0, ν + η_d·(ℓ_nom − ρ)), so "
        "it **grows while the clean loss is above ρ** and shrinks while the constraint holds. The dual step η_d is "
        "small (10⁻³ in the paper), so below ρ ν falls by at most η_d·ρ per step: over a short run it barely moves, "
        "and the clean loss keeps a weight near its peak long after it has dropped under ρ. "
        "The perturbations are not one worst case per point but **samples** from a distribution that favours "
        "high-loss δ, drawn by Langevin steps: a sign-gradient step plus noise (T → 0 gives back PGD). "
        "Watch the loss chart: ℓ_nom settles at or below the dotted ρ line while ν adjusts.")

dataset = st.session_state[state.DATASET]
device = st.session_state[state.DEVICE]
runs = [r for r in cache.runs(dataset) if r["final_metrics"]]
if not runs:
    st.info("No model of this dataset has results yet: train one below or pick another dataset.")
by_id = {r["id"]: r for r in runs}
roles = {st.session_state.get(state.PRIMARY_RUN): "primary", st.session_state.get(state.COMPARISON_RUN): "comparison"}
roles = {run_id: role for run_id, role in roles.items() if run_id in by_id}
highlight = list(roles)

if runs:
    left, right = panels(2, "to-frontier")
    left.plotly_chart(tc.pareto(cache.runs_table(dataset), roles), key="to_pareto")
    left.caption("One dot per model (circles shipped, diamonds trained or imported here; labelled: primary and "
                 "comparison); ringed models are the ones no other beats on both axes (a dotted staircase joins them "
                 "when there are several); an inset zooms in where dots overlap.")
    table = tc.class_table(runs)
    if len(table):
        right.plotly_chart(tc.worst_vs_mean(table), key="to_worst")
        right.caption("Below the dotted diagonal, the weakest class lags the average; class-wise defences try to "
                      "lift it without lowering the mean.")

    st.subheader("How the runs trained")
    # Keyed by dataset: another dataset's runs are no option here, and a shared key would come back empty.
    # DALE runs after the sidebar's two, the shipped one first: new short runs must not push its full curves out.
    dale = sorted((r for r in runs if r["method"].startswith("dale")), key=lambda r: r["source"] != "shipped")
    default = [r for r in highlight + [r["id"] for r in dale] if r in by_id]
    chosen = st.multiselect("Runs", list(by_id), default=list(dict.fromkeys(default))[:4],
                            format_func=lambda r: by_id[r]["name"], key=f"to_runs_{dataset}", max_selections=6)
    histories = {by_id[r]["name"]: tc.with_split_losses(cache.run_history(r), by_id[r]["method"]) for r in chosen}
    colours = run_colours({by_id[r]["name"]: by_id[r]["method"] for r in chosen})
    groups = tc.by_step({k: v for k, v in histories.items() if v})
    if "epoch" in groups:
        rho = {by_id[r]["name"]: float(by_id[r]["config"].get("dale_rho", 0.1)) for r in chosen
               if by_id[r]["method"].startswith("dale")}
        left, right = panels(2, "to-epochs")
        left.plotly_chart(tc.accuracy_curves(groups["epoch"], colours=colours), key="to_acc")
        left.caption("One colour per run: its method's, as in the charts above (a second run of a method gets "
                     "its own). Solid: clean test accuracy; dashed: PGD robust accuracy on the held-out points; "
                     "dotted: FGSM (single-step methods).")
        right.plotly_chart(tc.loss_curves(groups["epoch"], rho, colours=colours), key="to_loss")
        lossless = tc.without_losses(groups["epoch"])
        right.caption("Mean training losses per epoch (solid ℓ_nom, dashed ℓ_ro); the dotted line is a DALE run's "
                      "bound ρ on the clean loss. ERM trains on ℓ_nom alone, PGD-AT, FGSM-RS and N-FGSM on ℓ_ro "
                      "alone."
                      + (f" Not drawn: {', '.join(md(n) for n in lossless)}, whose history records only the "
                         "combined loss."
                         if lossless else ""))
    if "t" in groups:
        st.markdown("**Patch models** are trained by the Li & Li simulation (full-batch gradient descent), so their "
                    "curves run over iterations t, not epochs.")
        left, right = panels(2, "to-iterations")
        left.plotly_chart(tc.accuracy_curves(groups["t"], "t", colours), key="to_acc_t")
        left.caption("One colour per run, as above. Solid: clean test accuracy; dashed: worst case over PGD from x, "
                     "PGD from a random start and the feature-shift probe; dotted: PGD from x alone (the paper's "
                     "measure).")
        right.plotly_chart(tc.loss_curves(groups["t"], {}, "t", colours), key="to_loss_t")
        right.caption("Cross-entropy on the whole training set (on the adversarial inputs for AT) at each recorded "
                      "iteration.")
    if None in groups:
        st.info("No training curves for " + ", ".join(groups[None]) + ": its history records neither epochs nor "
                "iterations.")
    per_epoch = groups.get("epoch", {})
    per_class = {by_id[r]["name"]: by_id[r]["final_metrics"].get("per_class_robust_acc") for r in chosen}
    per_class = {k: v for k, v in per_class.items() if v}
    left, right = panels(2, "to-classes")
    if any("nu" in h for v in per_epoch.values() for h in v):
        left.plotly_chart(tc.nu_curves(per_epoch, colours), key="to_nu")
        ratios = {name: v[-1].get("noise_to_grad") for name, v in per_epoch.items() if "noise_to_grad" in v[-1]}
        configs = {by_id[r]["name"]: by_id[r]["config"] for r in chosen}
        noise = ("" if not ratios else " Langevin noise ÷ gradient (last epoch): "
                 + ", ".join(f"{n}: {r:.3g}" for n, r in ratios.items())
                 + " — with Laplacian noise it grows with the batch size, because the attack ascends a batch mean.")
        left.caption(tc.nu_caption(per_epoch, configs) + noise)
    if per_class:
        right.plotly_chart(tc.per_class_bars(per_class, "PGD at each run's ε", colours), key="to_bars")
        right.caption("Final per-class robust accuracy of the chosen runs side by side.")
    if chosen and not groups:
        st.info("The chosen runs have no per-epoch history (imported checkpoints carry none).")
    elif no_history := [name for name, v in histories.items() if not v]:
        st.caption(f"No training curves for {', '.join(no_history)}: no per-epoch history came with "
                   f"{'its' if len(no_history) == 1 else 'their'} checkpoint (an import). The scatter above shows "
                   f"{'it' if len(no_history) == 1 else 'them'}, and so do the bars when per-class figures exist.")


def show_bias(result: Any, bound: float) -> None:
    """The tuned bias on the held-out half, and a plain verdict where it does not help."""
    before, after, biased = result.before, result.after, result.worst_class
    if max(result.bias) == 0:
        st.info(f"No bias on the grid lifts the weakest class (class {biased}, "
                f"{100 * result.rows[0]['biased_class_robust_acc']:.1f} % robust on the tuning half) there "
                f"within the clean-accuracy bound of {bound:g} percentage point{'' if bound == 1 else 's'}: "
                "leave this model unbiased.", icon=":material/info:")
        return

    def figures(report: dict) -> list[float]:
        return [100 * report["clean_acc"], 100 * report["robust_acc"],
                100 * report["per_class_robust_acc"][biased], 100 * report["worst_robust_acc"]]

    # Percent with one decimal in every cell ("percent" alone printed 92% beside 92.44%).
    st.dataframe(pd.DataFrame({"without bias": figures(before), "with bias": figures(after)},
                              index=["clean accuracy", "mean robust accuracy",
                                     f"class {biased} robust accuracy (biased)",
                                     "worst-class robust accuracy"]),
                 column_config={c: st.column_config.NumberColumn(format="%.1f %%")
                                for c in ("without bias", "with bias")}, key="to_bias_table")
    worst = (f"class {before['worst_class']} both without and with the bias"
             if before["worst_class"] == after["worst_class"] else
             f"class {before['worst_class']} without the bias, class {after['worst_class']} with it")
    st.caption(f"Bias {max(result.bias):g} on class {biased}'s logit (the weakest on the tuning half), "
               f"chosen on half of the test split (clean accuracy allowed to drop by at most {bound:g} "
               f"percentage point{'' if bound == 1 else 's'} there) and reported on the other half, where the "
               f"weakest is {worst}. Worst-class accuracy is the lowest over all classes, so it can stay put "
               "when lifting one class leaves another as weak. Each candidate is attacked afresh with the bias "
               "in place (white-box).")
    drop = 100 * (before["clean_acc"] - after["clean_acc"])
    if after["worst_robust_acc"] <= before["worst_robust_acc"] or drop > bound + 1e-9:
        # What it did on the tuning half did not carry over: said, not left for the table to imply.
        problems = ([f"does not lift the weakest class ({100 * before['worst_robust_acc']:.1f} % → "
                     f"{100 * after['worst_robust_acc']:.1f} %)"]
                    if after["worst_robust_acc"] <= before["worst_robust_acc"] else [])
        problems += [f"costs {drop:.1f} points of clean accuracy, over the {bound:g} allowed"] \
            if drop > bound + 1e-9 else []
        other = (f" (there the weakest is class {before['worst_class']}, not class {biased}, the one biased)"
                 if before["worst_class"] != biased else "")
        st.warning(f"On the held-out half this bias {' and '.join(problems)}{other}: its gain on the tuning half "
                   "did not carry over, so leave the model unbiased (or tune on more data).",
                   icon=":material/warning:")


st.subheader("Logit bias for the weakest class (inference time)")
if not runs:
    st.caption("No finished runs on this dataset yet: train one (below) to tune its bias.")
else:
    # The button on a line of its own: in a fifth of the page it read "Tune t…" at 1024 px with the sidebar open.
    c1, c2 = st.columns([3, 2])
    bias_run = c1.selectbox("Model", list(by_id), format_func=lambda r: by_id[r]["name"], key="to_bias_run",
                            index=list(by_id).index(highlight[0]) if highlight else 0)
    bound, bound_problem = checked_number(c2, "Max clean-accuracy drop (points)", 0.0, 20.0, value=1.0, step=0.5,
                                          key="to_bias_bound")
    run = by_id[bias_run]
    if run["norm"] not in ("linf", "l2"):
        st.caption(f"The bias is tuned against PGD in ℓ∞ or ℓ2; this model's threat model is "
                   f"{label(NORM_LABELS, run['norm'])}, so there is nothing to tune here.")
    elif (tune := st.button("Tune the bias", key="to_bias_go", icon=":material/tune:")) and bound_problem:
        st.error(f"Not tuned: {bound_problem}", icon=":material/error:")
    elif tune:
        try:
            with st.spinner("Trying each bias against a fresh PGD-10 attack on the biased model…"):
                result = cache.logit_bias(bias_run, dataset, float(run["eps"] or default_eps(dataset)),
                                          run["norm"], bound / 100, device)
            show_bias(result, bound)
        except AtlasError as exc:
            st.error(str(exc))

st.subheader("Launch a DALE or class-weighted run")
LAUNCH_METHODS = ("dale", "dale-kl", "mart", "pgd-at", "trades")
LAUNCH_BATCH = 32
NORM = "linf"  # DALE's Langevin steps support ℓ∞ and ℓ2 only, so this launcher keeps ℓ∞ on every dataset.


@st.fragment
def launcher() -> None:
    """Its own fragment: choosing the method or the weighting redraws the launcher, not the charts above."""
    spec = cache.dataset_specs()[dataset]
    if NORM not in norms_for(spec["input_shape"]):
        st.info(f"This launcher trains ℓ∞ defences; {dataset} is patch data, attacked per patch in ℓ2. Train its "
                "models on the Train page (PGD-AT, TRADES or MART with the per-patch ℓ2 threat model) or in the "
                "Theory Lab.", icon=":material/info:")
        return
    arch = archs_for(spec["input_shape"])[0]
    # Outside the form, because the fields below follow them.
    c1, c2 = st.columns(2)
    method = c1.selectbox("Method", LAUNCH_METHODS, key="to_method", persist_state=KEEP,
                          format_func=lambda m: label(METHOD_LABELS, m))
    weighting = weighting_select(c2, key="to")
    ranged = RangedFields()
    # No Enter-to-submit: its "Press Enter to submit form" hint overflowed these fields and covered the next one.
    with st.form("to_launch", enter_to_submit=False):
        c1, c2, c3 = st.columns(3)
        eps, eps_high = eps_field(c1, NORM, spec["input_shape"], key="to_eps", default=default_eps(dataset),
                                  ranged=ranged, method=method)
        epochs = ranged.number(c2, "Epochs", 1, 200, value=10, key="to_epochs")
        steps = ranged.number(c3, "Attack / Langevin steps", 1, 50, value=5, key="to_steps")
        dale = dale_fields("to", ranged) if method in DALE_METHODS else {}
        weight_fields = class_weight_fields(weighting, len(spec["classes"]), ranged, key="to")
        beta = {"trades": f", TRADES β = {TrainConfig.trades_beta:g}",
                "mart": f", MART β = {TrainConfig.mart_beta:g}"}.get(method, "")
        st.caption(f"Fixed here: {label(ARCH_LABELS, arch)}, ℓ∞ threat model, batch size {LAUNCH_BATCH}, one-cycle "
                   f"schedule{beta}. The Train page sets these.")
        launched = st.form_submit_button("Start training", type="primary")

    def fields() -> dict:
        ranged.check()
        return dict(dataset=dataset, arch=arch, method=method, norm=NORM, eps=checked_eps(eps, eps_high),
                    epochs=int(epochs), attack_steps=int(steps), batch_size=LAUNCH_BATCH, schedule="onecycle",
                    **dale, **weight_fields(), device=device)

    if launched and (job_id := queue_training(fields)):
        # A toast, not a note: this fragment is not rerun by a Cancel in the jobs panel, so a note stayed after it
        # (the panel itself announces a job while it waits for its turn).
        st.toast(f"Queued job `{job_id}`: its live charts are below, and it is listed on the Train page too.",
                 icon=":material/check_circle:")


launcher()
jobs_panel()
