"""Playground: toy 2-D data, an MLP trained live with standard and adversarial training side by side, and
DALE's Langevin perturbations around a clicked point next to PGD's worst case."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.errors import AtlasError
from core.playground import METHOD_LABELS, PlaygroundConfig
from dashboard import cache
from dashboard import playground_runner as runner
from dashboard.components import playground_controls as controls
from dashboard.components import playground_views as views
from dashboard.components.layout import panels
from dashboard.components.teaching import explain

TEMPERATURES = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
ROLES = (("standard", "Standard (ERM)"), ("adversarial", "Adversarial"))

st.title("Playground")
explain(
    "A small neural network (an MLP) learns to separate two-dimensional points, live, in the spirit of the "
    "TensorFlow Playground. The background colour is the class the network predicts at each place in the "
    "plane; the black line is its decision boundary. The attacker may move every point anywhere inside its "
    "**ε-ball** (a square for ℓ∞, a circle for ℓ2; switch on *ε-balls* to draw them). A filled marker is "
    "**robust at ε**: PGD (many small gradient steps, each projected back into the ball) cannot push it across "
    "the boundary. An open marker is classified correctly but not robustly; with *Adversarial arrows* on, a red "
    "arrow shows where PGD moves it. ✕ marks a mistake even without an attacker.\n\n"
    "Both panels train the same MLP from the same starting weights on the same points. **Standard training "
    "(ERM)** only asks for correct answers, so its boundary passes close to the points. **Adversarial training** "
    "trains on the attacked points instead, which pushes the boundary at least ε away from the data where it "
    "can — watch the boundary move and the margin open up. Below, the **Langevin panel** shows what DALE "
    "trains on: not PGD's single worst-case point but samples from a distribution over the ε-ball that "
    "favours high loss; its temperature T moves it between PGD (T → 0) and random noise (large T).",
    "madry", "dale")


config, notes = None, []
try:
    config, notes = PlaygroundConfig.capped(**controls.settings_form())
except AtlasError as exc:
    st.error(f"Not started: {exc}", icon=":material/error:")
for note in notes:
    st.info(note, icon=":material/straighten:")

runs: dict[str, runner.PlaygroundRun] | None = st.session_state.get("pg_runs")
# Content-sized in a row: in columns of 1/8 of the page, at 1024 px with the sidebar open, they read "S.".
buttons = st.container(horizontal=True)
# A callback, not the button's return value: it fires exactly once per click, even when a polling rerun
# interrupts the run the click started.
buttons.button("Restart" if runs else "Start", type="primary", icon=":material/play_arrow:", key="pg_start",
            disabled=config is None, on_click=st.session_state.__setitem__, args=("pg_start_requested", True))
start = st.session_state.pop("pg_start_requested", False)
changed = runs is not None and config is not None and runs["adversarial"].config != config
if config is not None and (start or changed):
    runner.stop_all(runs, last_frame=False)
    runs = st.session_state["pg_runs"] = runner.start_pair(config)
    if changed and not start:
        st.toast("Settings changed: both runs restarted", icon=":material/restart_alt:")
# Drawn after a (re)start, so it is enabled for the runs just started; the polling fragment reruns the whole page
# once both runs have ended, which disables it again.
buttons.button("Stop", icon=":material/stop:", key="pg_stop", disabled=not runner.running(runs),
            on_click=lambda: runner.stop_all(st.session_state.get("pg_runs")))

if not runs:
    st.info("Press **Start** to train both networks; every later change of a setting restarts them.")
    st.stop()

if "pg_clicked" in st.session_state:  # a click on a plane selects the Langevin panel's point
    st.session_state["pg_point"] = st.session_state.pop("pg_clicked")
# Off at first: on they covered the standard model's boundary (the filled and open markers already say which
# points are robust); a lecturer turns them on to show the attack.
show = st.container(horizontal=True, gap="medium")
show_balls = show.toggle("ε-balls", value=False, key="pg_show_balls")
show_arrows = show.toggle("Adversarial arrows", value=False, key="pg_show_arrows")
finished = all(r.done for r in runs.values())


def _panel(role: str, run: runner.PlaygroundRun, x: np.ndarray, y: np.ndarray) -> None:
    cfg = run.config
    label = "Standard (ERM)" if role == "standard" else f"Adversarial ({METHOD_LABELS[cfg.method]})"
    st.markdown(f"#### {label}")
    if run.status == "failed":
        st.error(f"The run failed: {run.error}")
        return
    frame = run.frame
    if frame is None:
        st.progress(0.0, text="starting…")
        return
    # The training loss goes in the progress line: a third metric would cut "5.47e-05" off at 1280 px.
    st.progress(min(run.progress(), 1.0), text=f"{run.status} · step {frame.step} of {cfg.steps} · "
                                                f"{frame.seconds:.1f} s · training loss {frame.loss:.3g}")
    m = st.columns(2)
    m[0].metric("Clean accuracy", f"{frame.clean_acc:.1%}", help="On held-out points")
    m[1].metric(f"Robust at ε = {cfg.eps:g}", f"{frame.robust_acc:.1%}", help="Held-out points PGD cannot flip")
    fig = views.decision_figure(frame, x, y, run.data.classes, eps=cfg.eps, norm=cfg.norm, show_balls=show_balls,
                                show_arrows=show_arrows, selected=st.session_state.get("pg_point"),
                                title=f"{label} · decision regions · step {frame.step}")
    event = st.plotly_chart(fig, key=f"pg_plane_{role}", on_select="rerun", selection_mode="points")
    picked = controls.clicked_point(event, x)
    if picked is not None and picked != st.session_state.get("pg_point"):
        st.session_state["pg_clicked"] = picked
        st.rerun()
    # The model in each chart's title: side by side, with the headings scrolled away, the two looked alike.
    st.plotly_chart(views.accuracy_figure(list(run.history), f"{label} · accuracy over training", eps=cfg.eps,
                                          chance=1 / len(run.data.classes)), key=f"pg_acc_{role}")


@st.fragment(run_every=None if finished else 0.5)
def live() -> None:
    """Redraws both runs from their latest frames; stops polling once both have finished."""
    x, y = runs["standard"].data.train.x.numpy(), runs["standard"].data.train.y.numpy()
    for column, (role, _) in zip(panels(2, "pg-runs", "large", kind="models"), ROLES):
        with column:
            _panel(role, runs[role], x, y)
    st.caption("Colours: the predicted class (pale = unsure). Markers: filled = robust at ε, open = correct but "
               "PGD flips it (with *Adversarial arrows* on, a red arrow to its adversarial point), ✕ = misclassified. "
               "Click a point to inspect it in the Langevin panel below. Accuracy is measured on held-out points "
               "drawn the same way.")
    if not finished and all(r.done for r in runs.values()):
        st.rerun()  # once, so the page is drawn again without the polling timer


live()


@st.fragment
def langevin_section() -> None:
    """The Langevin panel: reruns on its own when its controls move."""
    st.subheader("Langevin panel: DALE's perturbations vs PGD's worst case")
    c = st.columns([1.2, 1, 2, 1, 1])
    role = c[0].radio("Model", [r for r, _ in ROLES], index=1, horizontal=True, key="pg_lp_role",
                      format_func=dict(ROLES).__getitem__)
    run = runs[role]
    n = len(run.data.train)
    st.session_state["pg_point"] = min(int(st.session_state.get("pg_point", 0)), n - 1)
    index = c[1].number_input("Point (or click one)", 0, n - 1, key="pg_point")
    temperature = c[2].select_slider("Temperature T", TEMPERATURES, value=1.0, key="pg_T",
                                     help="Langevin noise in units of the loss gradient at the point; 0 = PGD")
    # No upper bounds (see playground_controls.settings_form): langevin_panel refuses too many with a message
    # naming the limit.
    samples = c[3].number_input("Samples", 10, None, 200, step=50, key="pg_lp_samples")
    steps = c[4].number_input("Langevin steps", 1, None, 40, key="pg_lp_steps")
    frame = run.frame
    if frame is None:
        st.info("Waiting for the first frame of this run.")
        return
    try:
        panel = cache.playground_langevin(run.config, frame.step, frame.weights, run.data, int(index),
                                          float(temperature), int(samples), int(steps))
    except AtlasError as exc:
        st.error(f"Cannot sample: {exc}")
        return
    left, right = panels(2, "pg-langevin", "large")
    name = run.data.classes[panel.y]
    left.plotly_chart(views.langevin_figure(panel, name), key="pg_langevin")
    if note := views.lattice_note(panel):
        left.caption(note)
    with right:
        controls.langevin_numbers(panel, f"Model of the {dict(ROLES)[role].lower()} run at step {frame.step}; point "
                                         f"{index} (class {name}); "
                                         f"{views.noise_text(temperature, panel.noise_scale, panel.noise_to_grad)}.")


langevin_section()
