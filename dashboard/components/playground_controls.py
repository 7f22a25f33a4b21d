"""Widgets of the Playground page: the settings form, the click-to-pick helper and the Langevin panel's numbers
with their explanation (the figures are in playground_views)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.playground import (
    ACTIVATION_LABELS, ACTIVATIONS, DATASET_LABELS, DATASETS, LIMITS, METHOD_LABELS, SIZE_CAPS_COST, LangevinPanel,
    PlaygroundConfig, default_noise, eps_limit,
)
from dashboard.components import playground_views as views

ADVERSARIAL = ("pgd-at", "fgsm-rs", "trades", "dale")
DEFAULT = PlaygroundConfig()
SIZE_NOTE = (f"Points n, width and hidden layers are capped at {LIMITS['n']:,}, {LIMITS['width']:g} and "
             f"{LIMITS['depth']:g}: with all three at their caps a run takes about {SIZE_CAPS_COST}× as long as with "
             "the defaults.")
LANGEVIN_TEXT = (
    "The heatmap is the loss of the true class (log colour scale) at every place the attacker may move "
    "the point to; the cyan line, where the ball reaches it, is the decision boundary. **PGD** climbs the loss to a "
    "peak, the star: a local maximum. The loss of a neural network is not concave, so the ball may hold "
    "a higher peak elsewhere. **DALE** (Robey et al., 2021) trains on samples of a distribution that "
    "favours high loss, drawn by Langevin steps: PGD's signed gradient steps plus Laplace noise inside "
    "the sign, scaled by T. Lower T and the cloud collapses to one point (T = 0 *is* PGD's fixed steps, "
    "which end on the star unless they zigzag across a kink of the loss); raise it and the samples spread "
    "over the high-loss region, and can find peaks PGD missed, until at large T they are almost random "
    "noise — data augmentation.")


def settings_form() -> dict:
    """The settings as raw values (checked and capped by PlaygroundConfig.capped).

    No upper bounds on the widgets: a value the browser refuses (a red icon) never reaches the page, which would
    silently keep the old one. PlaygroundConfig.capped lowers a value above its limit with a note saying so.
    Five columns per row, so every label fits on one line at 1280 px.
    """
    widths = [1.35, 1, 1, 1, 1]
    with st.container(border=True):
        c = st.columns(widths)
        dataset = c[0].selectbox("Toy data", DATASETS, format_func=DATASET_LABELS.__getitem__, key="pg_dataset")
        n = c[1].number_input("Points n", None, None, DEFAULT.n, step=50, key="pg_n",
                              help=f"Training points. {SIZE_NOTE}")
        noise = c[2].number_input("Noise", None, None, default_noise(dataset), step=0.01, format="%g",
                                  key=f"pg_noise_{dataset}", help=f"At most {LIMITS['noise']:g}")
        seed = c[3].number_input("Seed", None, None, DEFAULT.seed, key="pg_seed", help="Data and initial weights")
        steps = c[4].number_input("Steps", None, None, DEFAULT.steps, step=100, key="pg_steps",
                                  help=f"Optimiser steps (at most {LIMITS['steps']:,g}); a run's time grows with them")
        c = st.columns(widths)
        depth = c[0].number_input("Hidden layers", None, None, DEFAULT.depth, key="pg_depth",
                                  help=f"0 = a linear model. {SIZE_NOTE}")
        width = c[1].number_input("Width", None, None, DEFAULT.width, step=8, key="pg_width",
                                  help=f"Units per hidden layer. {SIZE_NOTE}")
        activation = c[2].selectbox("Activation", ACTIVATIONS, format_func=ACTIVATION_LABELS.__getitem__,
                                    key="pg_activation")
        lr = c[3].number_input("Learning rate", None, None, DEFAULT.lr, step=0.005, format="%g", key="pg_lr",
                               help=f"Adam's learning rate, at most {LIMITS['lr']:g}")
        batch = c[4].number_input("Batch size", None, None, 0, step=16, key="pg_batch", help="0 = full batch")
        c = st.columns(widths)
        method = c[0].selectbox("Adversarial method", ADVERSARIAL, format_func=METHOD_LABELS.__getitem__,
                                key="pg_method", help="Trained next to standard training (ERM)")
        eps = c[1].number_input("ε", None, None, DEFAULT.eps, step=0.01, format="%g", key="pg_eps",
                                help=f"The attacker's budget in input units (the plane is [0, 1]²): 0 to "
                                     f"{eps_limit('linf'):g} for ℓ∞, to {eps_limit('l2'):g} for ℓ2")
        norm = c[2].selectbox("Norm", ("linf", "l2"), key="pg_norm", format_func={"linf": "ℓ∞", "l2": "ℓ2"}.get,
                              help="The shape of the attacker's ball on the plane: ℓ∞ a square, ℓ2 a circle")
        attack_steps = c[3].number_input("Attack steps", None, None, DEFAULT.attack_steps, key="pg_attack_steps",
                                         help=f"Steps of the training attack (PGD-AT, TRADES, DALE), at most "
                                              f"{LIMITS['attack_steps']:g}")
        with st.expander("More settings"):
            c = st.columns(4)
            grid = c[0].number_input("Grid resolution", None, None, DEFAULT.grid, step=10, key="pg_grid",
                                     help=f"The decision regions are drawn on grid × grid cells (capped at "
                                          f"{LIMITS['grid']:g})")
            beta = c[1].number_input("TRADES β", None, None, DEFAULT.trades_beta, key="pg_beta")
            eval_steps = c[2].number_input("PGD steps for 'robust at ε'", None, None, DEFAULT.eval_steps,
                                           key="pg_eval_steps")
            test_n = c[3].number_input("Held-out points", None, None, DEFAULT.test_n, step=50, key="pg_test_n")
    return dict(dataset=dataset, n=int(n), noise=float(noise), seed=int(seed), depth=int(depth), width=int(width),
                activation=activation, method=method, eps=float(eps), norm=norm, lr=float(lr), steps=int(steps),
                batch_size=int(batch) or None, attack_steps=int(attack_steps), trades_beta=float(beta),
                eval_steps=int(eval_steps), grid=int(grid), test_n=int(test_n))


def clicked_point(event: object, x: np.ndarray) -> int | None:
    """The training point nearest to a click or selection on the plane, if any."""
    points = getattr(getattr(event, "selection", None), "points", None) or []
    if not points or "x" not in points[0]:
        return None
    where = np.array([points[0]["x"], points[0]["y"]], dtype=np.float32)
    return int(np.argmin(((x - where) ** 2).sum(1)))


def langevin_numbers(panel: LangevinPanel, caption: str) -> None:
    """The Langevin panel's key numbers beside its figure, the note on PGD's point, and what the panel shows."""
    # Short labels and short deltas: the right-hand column is narrow, and Streamlit cuts long ones off.
    m = st.columns(2)
    m[0].metric("Samples fooling", f"{panel.sample_fooled.mean():.0%}",
                help="Share of the Langevin samples the model misclassifies.")
    m[1].metric("PGD's point", "fools it" if panel.pgd_fooled else "correct")
    m = st.columns(2)
    mean_loss = float(panel.sample_loss.mean())
    delta, arrow = views.loss_delta(mean_loss, panel.pgd_loss)
    m[0].metric("Samples' mean loss", views.loss_text(mean_loss), delta=delta, delta_color="off",
                delta_arrow=arrow, help="Mean cross-entropy of the true class over the samples; below it, the "
                "difference from the loss at PGD's point")
    m[1].metric("PGD's loss", views.loss_text(panel.pgd_loss), help="Cross-entropy of the true class at PGD's "
                "point, the star: a local maximum of the loss in the ball")
    st.metric("Spread", f"{panel.spread:.4f}", help="Mean distance of the samples to PGD's point (the star), in "
              "input units; 0 means every sample is PGD's point")
    st.caption(caption)
    note = views.pgd_note(panel)
    if note:
        st.info(note, icon=":material/landscape:")
    st.markdown(LANGEVIN_TEXT)
