"""Theory Lab: Li & Li's patch data and two-layer network, standard and adversarial training side by side, live."""

from __future__ import annotations

import streamlit as st

from core.errors import AtlasError
from core.theory import TheoryConfig
from core.theory.views import absent_features, example_input, patch_heatmap, verdict
from dashboard import theory_runner
from dashboard.components import theory_views as views
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
with st.form("th_form"):
    st.markdown("**Data**")
    c = st.columns(8)
    k = c[0].number_input("k classes", 2, 8, D.k, key="th_k")
    d = c[1].number_input("d (patch dim)", 4, 256, D.d, key="th_d")
    p = c[2].number_input("P patches", 2, 256, D.P, key="th_P")
    n_robust = c[3].number_input("\\# robust", 0, 256, D.n_robust, key="th_nr",
                                 help="Patches per input that carry the robust feature α·u_y (|J_R|)")
    n_nonrobust = c[4].number_input("\\# non-robust", 0, 256, D.n_nonrobust, key="th_nnr",
                                    help="Patches per input that carry the non-robust feature β·v_y (|J_NR|)")
    alpha = c[5].number_input("α (robust)", 0.0, 10.0, D.alpha, step=0.1, key="th_alpha")
    beta = c[6].number_input("β (non-robust)", 0.0, 10.0, D.beta, step=0.02, key="th_beta")
    sigma_n = c[7].number_input("σ_n (noise)", 0.0, 1.0, D.sigma_n, step=0.01, format="%.3f", key="th_sigma")
    st.markdown("**Network and training**")
    c = st.columns(8)
    m = c[0].number_input("m neurons/class", 1, 32, D.m, key="th_m")
    q = c[1].number_input("q (σ̃ power)", 3, 8, D.q, key="th_q")
    rho = c[2].number_input("ϱ (σ̃ knee)", 0.01, 5.0, D.rho, key="th_rho")
    sigma0 = c[3].number_input("σ₀ (init)", 0.001, 1.0, D.sigma0, format="%.3f", key="th_sigma0")
    lr = c[4].number_input("learning rate", 0.001, 10.0, D.lr, key="th_lr")
    iterations = c[5].number_input("iterations", 10, 3000, D.iterations, step=50, key="th_iters")
    eps = c[6].number_input("ε (per patch ℓ2)", 0.0, 5.0, D.eps, step=0.05, key="th_eps")
    steps = c[7].number_input("attack steps", 1, 20, D.train_pgd_steps, key="th_steps")
    init_seed = st.columns([1, 3])[0].number_input("init seed (the race depends on it)", 0, 10_000, D.init_seed,
                                                   key="th_seed")
    go = st.form_submit_button("Run standard and adversarial training", type="primary", icon=":material/play_arrow:")

if go and float(eps) <= 0:
    st.error("Not started: ε must be > 0, otherwise adversarial training is standard training.")
elif go:
    try:
        base = TheoryConfig(k=int(k), d=int(d), P=int(p), n_robust=int(n_robust), n_nonrobust=int(n_nonrobust),
                            alpha=float(alpha), beta=float(beta), sigma_n=float(sigma_n), m=int(m), q=int(q),
                            rho=float(rho), sigma0=float(sigma0), lr=float(lr), iterations=int(iterations),
                            eps=float(eps), train_pgd_steps=int(steps), init_seed=int(init_seed),
                            record_every=max(1, int(iterations) // 30))
        for old in st.session_state.get("th_runs", {}).values():
            old.stop.set()
        st.session_state["th_runs"] = {
            "st": theory_runner.start(TheoryConfig(**{**base.to_dict(), "adversarial": False})),
            "at": theory_runner.start(TheoryConfig(**{**base.to_dict(), "adversarial": True}))}
    except AtlasError as exc:
        st.error(f"Not started: {exc}")

runs = st.session_state.get("th_runs")
if not runs:
    st.info("Press **Run** to train both networks on the same data; the defaults reproduce the paper's setting.")
    st.stop()


@st.cache_data(max_entries=8, show_spinner=False)
def first_test_input(params: tuple) -> tuple:
    return example_input(dict(params))


def example_heat(run: theory_runner.TheoryRun) -> dict:
    x, _, roles = first_test_input(tuple(sorted(run.config.data_params().items())))
    return patch_heatmap(run.weights, x, roles, alpha=run.config.alpha, beta=run.config.beta)


for note in absent_features(runs["st"].config):
    st.info(note, icon=":material/info:")
finished = all(r.done for r in runs.values())


@st.fragment(run_every=None if finished else 0.7)
def live() -> None:
    """Redraws from the runs' histories as they grow; stops polling once both have finished."""
    columns = st.columns(2, gap="large")
    finals = {}
    for column, (key, name) in zip(columns, (("st", "Standard training"), ("at", "Adversarial training"))):
        run = runs[key]
        with column:
            st.markdown(f"#### {name}")
            if run.status == "failed":
                st.error(f"The run failed: {run.error}")
                continue
            history = list(run.history)  # one snapshot: the worker thread keeps appending
            st.progress(run.progress(), text=views.progress_text(run.status, history, run.config.iterations))
            if not history:
                continue
            y_max = 1.1 * max(max(h["U"], h["V"], *(h[f"U_{j}"] for j in range(run.config.k)),
                                   *(h[f"V_{j}"] for j in range(run.config.k))) for r in runs.values()
                              for h in list(r.history)) + 0.05
            chance = 1 / run.config.k
            st.plotly_chart(views.features_figure(history, run.config.k, "Feature alignment U_j(t), V_j(t)",
                                                  y_max), key=f"th_feat_{key}")
            st.plotly_chart(views.accuracy_figure(history, "Test accuracy over t", chance), key=f"th_acc_{key}")
            if run.weights is not None:
                st.plotly_chart(views.heatmap_figure(example_heat(run), "⟨w_{j,r}, x_p⟩ on the first test input"),
                                key=f"th_heat_{key}")
            if run.done:
                finals[key] = history[-1]
    if len(finals) == 2:
        st.subheader("What the theorem says, and this run")
        for row in verdict(finals["st"], finals["at"], 1 / runs["st"].config.k):
            icon = ":material/check_circle:" if row["agrees"] else ":material/cancel:"
            st.markdown(f"{icon} **{row['claim']}** — {row['value']}: "
                        f"{'agrees' if row['agrees'] else 'does not agree'}.")
        st.caption("The paper measures robustness with PGD started at x; ST's non-robustness is judged here by the "
                   "worst case, because PGD from x is masked for ST too. The worst case over PGD from a random "
                   "start and a gradient-free probe (every patch moved by ε toward another class's feature) is much "
                   "lower for AT: the smoothed ReLU is flat near 0, which hides the gradient from PGD started at x. "
                   "Both are shown. The race also depends on the initial weights: change the init seed and see.")
    if not finished and all(r.done for r in runs.values()):
        st.rerun()  # once, so the page is drawn again without the polling timer


live()
