"""Theory Lab: Li & Li's patch data and two-layer network, standard and adversarial training side by side, live."""

from __future__ import annotations

import streamlit as st

from core.errors import AtlasError
from core.theory import TheoryConfig
from core.theory.views import (AGREES, DISAGREES, MASKED, NOT_EVIDENCE, absent_features, divergence, example_input,
                               patch_heatmap, verdict)
from dashboard import theory_runner
from dashboard.components import theory_views as views
from dashboard.components.layout import panels
from dashboard.components.teaching import explain

st.title("Theory Lab")
explain(
    "A model problem where robustness can be proved. Each input is P patches; one (or a few) carries the class's "
    "**robust** feature u_y strongly (α), many carry its **non-robust** feature v_y weakly (β), the rest is noise. "
    "The attacker may move every patch by ε in ℓ2. A non-robust feature is useful (there are many copies) but "
    "fragile (β < ε wipes it out); the robust one survives. Li & Li prove that standard training, a race between "
    "features, learns the dense non-robust ones, while adversarial training learns the sparse robust ones. U(t) and "
    "V(t) measure how far the network has aligned with u and v.", "lili")

D = TheoryConfig()
# Rows per run. Each row evaluates robustness (two 10-step PGDs and a probe on 300 test points): at 30 rows that
# was 86 % of ST's time. 20 rows draw the same curves a little coarser, and the final row is always t = iterations.
RECORDS = 20
# The live charts redraw this often (s) while the runs go: each redraw re-sends five charts to the browser.
POLL_S = 2.0
# Four inputs a row: with eight, a 1024 px window (sidebar open) broke labels mid-word ("# robus / t").
# Short labels; what each symbol means is in its help.
# Folded once a run is asked for: open, the settings filled a 1366 × 768 window and the charts appeared below it.
# A refused start leaves them open, with the fields its message names.
with st.expander("Settings: data, network and training", expanded=not st.session_state.get("th_runs"),
                 icon=":material/tune:"):
    with st.form("th_form"):
        st.markdown("**Data**")
        c = st.columns(4) + st.columns(4)
        k = c[0].number_input("k classes", 2, 8, D.k, key="th_k", help="Number of classes; each has features u_j, v_j")
        d = c[1].number_input("d (patch dim)", 4, 256, D.d, key="th_d", help="Dimension of each patch; needs d ≥ 2k")
        p = c[2].number_input("P patches", 2, 256, D.P, key="th_P", help="Patches per input")
        n_robust = c[3].number_input("\\# robust", 0, 256, D.n_robust, key="th_nr",
                                     help="Patches per input that carry the robust feature α·u_y (|J_R|)")
        n_nonrobust = c[4].number_input("\\# non-robust", 0, 256, D.n_nonrobust, key="th_nnr",
                                        help="Patches per input that carry the non-robust feature β·v_y (|J_NR|)")
        alpha = c[5].number_input("α (robust)", 0.0, 10.0, D.alpha, step=0.1, key="th_alpha",
                                  help="Strength of the robust feature on its patches")
        beta = c[6].number_input("β (non-robust)", 0.0, 10.0, D.beta, step=0.02, key="th_beta",
                                 help="Strength of the non-robust feature; β < ε lets the attacker erase it")
        sigma_n = c[7].number_input("σₙ (noise)", 0.0, 1.0, D.sigma_n, step=0.01, format="%g", key="th_sigma",
                                    help="Standard deviation of the Gaussian noise on every patch")
        st.markdown("**Network and training**")
        c = st.columns(4) + st.columns(4)
        m = c[0].number_input("m per class", 1, 32, D.m, key="th_m", help="Neurons per class")
        q = c[1].number_input("q (σ̃ power)", 3, 8, D.q, key="th_q",
                              help="σ̃(z) = z^q/(q·ϱ^(q−1)) below the knee ϱ")
        rho = c[2].number_input("ϱ (σ̃ knee)", 0.01, 5.0, D.rho, key="th_rho", help="σ̃ is linear above ϱ")
        sigma0 = c[3].number_input("σ₀ (init)", 0.001, 1.0, D.sigma0, format="%g", key="th_sigma0",
                                   help="Standard deviation of the initial weights")
        lr = c[4].number_input("learning rate", 0.001, 10.0, D.lr, key="th_lr",
                               help="Full-batch gradient descent step; above ≈ 2 training oscillates or diverges")
        iterations = c[5].number_input("iterations", 10, 3000, D.iterations, step=50, key="th_iters")
        eps = c[6].number_input("ε per patch", 0.0, 5.0, D.eps, step=0.05, key="th_eps",
                                help="Attack budget: every patch may move by ε in ℓ2 (training and evaluation)")
        steps = c[7].number_input("attack steps", 1, 20, D.train_pgd_steps, key="th_steps",
                                  help="PGD steps per iteration of adversarial training (evaluation uses "
                                       f"{D.test_pgd_steps})")
        init_seed = st.columns([1, 3])[0].number_input("init seed", 0, 10_000, D.init_seed, key="th_seed",
                                                       help="The race between features depends on the initial weights")
        go = st.form_submit_button("Run standard and adversarial training", type="primary",
                                   icon=":material/play_arrow:")

if go and float(eps) <= 0:
    st.error("Not started: ε must be > 0, otherwise adversarial training is standard training.")
elif go:
    try:
        base = TheoryConfig(k=int(k), d=int(d), P=int(p), n_robust=int(n_robust), n_nonrobust=int(n_nonrobust),
                            alpha=float(alpha), beta=float(beta), sigma_n=float(sigma_n), m=int(m), q=int(q),
                            rho=float(rho), sigma0=float(sigma0), lr=float(lr), iterations=int(iterations),
                            eps=float(eps), train_pgd_steps=int(steps), init_seed=int(init_seed),
                            record_every=max(1, int(iterations) // RECORDS))
        for old in st.session_state.get("th_runs", {}).values():
            old.stop.set()
        st.session_state["th_runs"] = {
            "st": theory_runner.start(TheoryConfig(**{**base.to_dict(), "adversarial": False})),
            "at": theory_runner.start(TheoryConfig(**{**base.to_dict(), "adversarial": True}))}
    except AtlasError as exc:
        st.error(f"Not started: {exc}")
    else:
        st.rerun()  # drawn again with the settings folded, now that the runs go

runs = st.session_state.get("th_runs")
if not runs:
    st.info("Press **Run** to train both networks on the same data. The defaults are the paper's setting: there AT "
            "learns the robust feature as the theorem says, but it is robust only against the paper's own measure "
            "(PGD started at x); a gradient-free probe still breaks it. The verdict under the charts says which "
            "claims reproduce.")
    st.stop()


@st.cache_data(max_entries=8, show_spinner=False)
def first_test_input(params: tuple) -> tuple:
    return example_input(dict(params))


def example_heat(run: theory_runner.TheoryRun) -> dict | None:
    if run.weights is None:
        return None
    x, _, roles = first_test_input(tuple(sorted(run.config.data_params().items())))
    return patch_heatmap(run.weights, x, roles, alpha=run.config.alpha, beta=run.config.beta)


for note in absent_features(runs["st"].config):
    st.info(note, icon=":material/info:")
finished = all(r.done for r in runs.values())
NAMES = {"st": "Standard training", "at": "Adversarial training"}
MARKS = {AGREES: (":green[:material/check_circle:]", "agrees"),
         MASKED: (":orange[:material/warning:]", "holds only against PGD from x, which is masked; not in the "
                 "worst case"),
         DISAGREES: (":red[:material/cancel:]", "does not agree"),
         NOT_EVIDENCE: (":gray[:material/block:]", "not evidence")}


@st.fragment(run_every=None if finished else POLL_S)
def live() -> None:
    """Redraws from the runs' histories as they grow; stops polling once both have finished."""
    histories = {key: list(run.history) for key, run in runs.items()}  # snapshots: the workers keep appending
    diverged = {key: divergence(history) for key, history in histories.items()}
    k = runs["st"].config.k
    # One y range for both runs, so that their U and V compare; a diverged run keeps its own (it squashed the other).
    shared = max([views.finite_max(h, k) for key, h in histories.items() if h and not diverged[key]] + [0.0])
    columns = panels(2, "th-runs", "large")
    finals = {}
    for column, (key, name) in zip(columns, NAMES.items()):
        run, history = runs[key], histories[key]
        with column:
            st.markdown(f"#### {name}")
            if run.status == "failed":
                st.error(f"The run failed: {run.error}")
                continue
            st.progress(run.progress(), text=views.progress_text(run.status, history, run.config.iterations))
            if diverged[key]:
                st.error(f"{name} diverged: {diverged[key]}. Its curves are not evidence for or against the "
                         f"theorem; lower the learning rate (now {run.config.lr:g}; the paper's setting is "
                         f"{D.lr:g}).", icon=":material/error:")
            if not history:
                continue
            top = views.finite_max(history, k) if diverged[key] else shared
            st.plotly_chart(views.features_figure(history, k, views.FEATURE_TITLE, 1.1 * top + 0.05),
                            key=f"th_feat_{key}")
            st.plotly_chart(views.accuracy_figure(history, views.ACCURACY_TITLE, 1 / k), key=f"th_acc_{key}")
            if run.done:
                finals[key] = history[-1]
    heats = {NAMES[key]: example_heat(run) for key, run in runs.items() if run.status != "failed"}
    if any(h is not None for h in heats.values()):
        st.plotly_chart(views.heatmap_figure(heats, views.HEATMAP_TITLE), key="th_heat")
        st.caption(f"Red: the neuron's weights point along the patch; blue: against it. Each panel has its own "
                   f"colour range, ± the {views.SATURATE_PERCENTILE}th percentile of its |⟨w, x_p⟩| (on its colour "
                   "bar): a few much larger values would wash out the rest, so they are drawn at full colour — "
                   "the bar gives their largest. Compare patterns between the panels, read values on the bars or "
                   "by hovering. Narrow patch groups are drawn wider than one patch.")
    if len(finals) == 2:
        st.subheader("What the theorem says, and this run")
        for row in verdict(finals["st"], finals["at"], 1 / k, st_diverged=diverged["st"],
                           at_diverged=diverged["at"]):
            icon, word = MARKS[row["status"]]
            st.markdown(f"{icon} **{row['claim']}** — {row['value']}: {word}.")
        st.caption("Both robustness claims are judged by the worst case over PGD started at x (the paper's "
                   "measure), PGD from a random start, and a gradient-free probe that moves every patch by ε "
                   "toward another class's feature, all at the training ε. PGD from x is masked: the smoothed ReLU "
                   "is flat near 0, so it cannot see that small shifts of all P patches add up. With the defaults, "
                   "AT learns the robust feature (U ≫ V) and PGD from x finds it ≈ 76 % robust, yet the probe "
                   "fools every input: ε·U ≈ 0.64 is past the knee ϱ = 0.5, and 64 patches shifted toward another "
                   "class outweigh the one robust patch (at ε = 0.1 the probe does no better than PGD from x). So "
                   "the feature-learning claims reproduce here, the robustness claim only against PGD from x. The "
                   "race also depends on the initial weights: change the init seed and see.")
    if not finished and all(r.done for r in runs.values()):
        st.rerun()  # once, so the page is drawn again without the polling timer


live()
