"""Playground under AppTest: both runs train in the background, the page draws their frames, a click-free point
choice drives the Langevin panel, and a bad setting is refused before anything runs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("../pages/playground.py").run()
    assert not at.exception, at.exception
    return at


def wait_for(runs: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(r.done for r in runs.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(r.status == "done" for r in runs.values()), [(r.status, r.error) for r in runs.values()]


def test_training_draws_both_panels_and_the_langevin_panel() -> None:
    at = open_page()
    assert any("Press **Start**" in i.value for i in at.info)
    at.number_input(key="pg_steps").set_value(120)
    at.number_input(key="pg_grid").set_value(400)  # the widget allows it; the Playground caps it at 200
    at.button(key="pg_start").click().run()
    assert not at.exception, at.exception
    assert any(i.value.startswith("Grid resolution capped at 200 (asked for 400)") for i in at.info)
    assert at.selectbox(key="pg_activation").options == ["ReLU", "tanh", "Softplus"]  # labels, not identifiers
    assert at.selectbox(key="pg_activation").value == "relu"
    assert not at.button(key="pg_stop").disabled
    runs = at.session_state["pg_runs"]
    assert runs["standard"].config.method == "erm" and runs["adversarial"].config.method == "pgd-at"
    assert runs["standard"].data is runs["adversarial"].data
    wait_for(runs)
    at.run()
    assert not at.exception, at.exception
    assert at.button(key="pg_stop").disabled  # nothing runs any more
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    # Each chart names its model: side by side with the headings scrolled away, the two were titled alike.
    titles = [json.loads(s)["layout"]["title"]["text"] for s in specs]
    assert any(t.startswith("Standard (ERM) · decision regions") for t in titles), titles
    assert any(t.startswith("Adversarial (") and "· decision regions" in t for t in titles), titles
    assert sum("decision regions" in s for s in specs) == 2
    # The ε-balls and arrows are off at first (they covered the standard model's boundary) and come on by toggle.
    planes = [s for s in specs if "decision regions" in s]
    assert not any("PGD step (flips the class)" in s or "ε-ball (ℓ" in s for s in planes)
    at.toggle(key="pg_show_arrows").set_value(True).run()
    at.toggle(key="pg_show_balls").set_value(True).run()
    planes = [c.proto.spec for c in at.get("plotly_chart") if "decision regions" in c.proto.spec]
    assert all("PGD step (flips the class)" in s and "ε-ball (ℓ" in s for s in planes) and len(planes) == 2
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert sum("accuracy over training" in s for s in specs) == 2
    assert sum("DALE's samples at T" in s for s in specs) == 1
    labels = [m.label for m in at.metric]
    assert labels.count("Clean accuracy") == 2 and "Samples fooling" in labels
    assert float(at.metric[0].value.rstrip("%")) >= 90  # the standard run's clean accuracy on moons
    loss = next(m for m in at.metric if m.label == "Samples' mean loss")
    assert "vs PGD" in loss.proto.delta or "both ≈ 0" in loss.proto.delta  # a difference, never a ratio
    at.select_slider(key="pg_T").set_value(0.0).run()
    spread = next(m for m in at.metric if m.label == "Spread")
    # T = 0: every sample is fixed-step PGD's last point; where the star climbed on from it, the page says so.
    stopped_short = [i.value for i in at.info if "fixed steps stopped at loss" in i.value]
    assert (float(spread.value) > 0) == bool(stopped_short)
    assert any("T = 0: no noise" in c.value for c in at.caption)


def test_a_change_restarts_and_bad_input_is_refused() -> None:
    at = open_page()
    at.number_input(key="pg_steps").set_value(30)
    at.button(key="pg_start").click().run()
    first = at.session_state["pg_runs"]
    at.number_input(key="pg_width").set_value(16).run()
    second = at.session_state["pg_runs"]
    assert second is not first and all(r.stop.is_set() for r in first.values())
    assert second["adversarial"].config.width == 16
    at.number_input(key="pg_eps").set_value(0.0).run()
    assert any("needs ε > 0" in e.value for e in at.error)
    assert at.session_state["pg_runs"] is second  # nothing restarted with the refused setting
    assert at.button(key="pg_start").disabled
    at.number_input(key="pg_eps").set_value(0.07)
    at.number_input(key="pg_lr").set_value(0.0).run()
    assert [e.value for e in at.error] == ["Not started: learning rate must be > 0, got 0.0"]  # the form's label
    # Below a field's lower bound: refused by name. With the bound in the browser the entry only turned red and
    # the run went on with the previous value.
    at.number_input(key="pg_lr").set_value(0.05)
    at.number_input(key="pg_seed").set_value(-1).run()
    assert [e.value for e in at.error] == ["Not started: seed must be ≥ 0, got -1"]
    assert at.session_state["pg_runs"] is second
    wait_for(second)


def test_loss_comparison_never_divides_by_a_loss_near_zero() -> None:
    from dashboard.components.playground_views import loss_delta, loss_text, noise_text

    assert loss_delta(2.68e-08, 0.0) == ("both ≈ 0: the ball lies deep inside the class", "off")  # the tester's case
    assert loss_delta(0.3, 0.0) == ("+0.3 vs PGD", "auto")  # short: PGD's loss has a metric of its own
    assert loss_delta(0.42, 0.73) == ("-0.31 vs PGD", "auto")
    assert loss_text(0.0) == "≈ 0" and loss_text(1.234) == "1.23"
    assert "flat" in noise_text(1.0, 1e-12, 3e25) and "1.03× the gradient" in noise_text(1.0, 0.6, 1.03)


def test_a_restart_abandons_the_old_pair_without_a_last_frame() -> None:
    from core.playground import PlaygroundConfig, Trainer
    from dashboard import playground_runner as runner

    config = PlaygroundConfig(n=20, test_n=10, steps=5)
    runs = {"a": runner.PlaygroundRun(config, Trainer(config), threading.Event()),
            "b": runner.PlaygroundRun(config, Trainer(config), threading.Event())}
    assert runner.running(runs)
    runner.stop_all(runs, last_frame=False)
    runner._advance(runs["a"], 0.2)
    runner.stop_all({"b": runs["b"]})  # the Stop button: a last frame shows where training stopped
    runner._advance(runs["b"], 0.2)
    assert runs["a"].status == runs["b"].status == "stopped" and not runner.running(runs)
    assert runs["a"].frame is None and runs["b"].frame is not None and runs["b"].frame.step == 0


def test_a_class_looks_the_same_in_every_panels_legend() -> None:
    """The legend drew a class with its first point's marker: "class lower moon" was open in the ERM panel (its
    first point not robust) and filled in the PGD-AT panel."""
    from dataclasses import replace

    import numpy as np

    from core.playground import PlaygroundConfig, Trainer
    from dashboard.components.playground_views import decision_figure

    config = PlaygroundConfig(n=20, test_n=10, steps=5)
    trainer = Trainer(config)
    frame = trainer.frame()
    x, y = trainer.data.train.x.numpy(), trainer.data.train.y.numpy()
    legends = []
    for robust in (np.zeros_like(frame.points.robust), np.ones_like(frame.points.robust)):
        points = replace(frame.points, robust=robust, correct=np.ones_like(robust))
        figure = decision_figure(replace(frame, points=points), x, y, trainer.data.classes, eps=config.eps,
                                 norm=config.norm, title="t")
        legends.append({t.name: t.marker.symbol for t in figure.data
                        if t.name.startswith("class ") and t.showlegend is not False})
    assert legends[0] == legends[1] == {f"class {c}": "circle" for c in trainer.data.classes}


def test_the_langevin_panel_says_why_its_samples_sit_on_a_grid() -> None:
    """A teacher's students asked why 200 samples showed as a regular lattice of about 50 points."""
    from types import SimpleNamespace

    import numpy as np

    from dashboard.components.playground_views import lattice_note

    x = np.array([0.3, 0.6])
    steps = np.array([[1, 1], [1, 1], [-3, 2], [0, 0]])
    panel = SimpleNamespace(norm="linf", x=x, step_size=0.01, samples=x + 0.01 * steps)
    note = lattice_note(panel)
    assert note.startswith("The 4 samples sit on 3 distinct points of a grid") and "η = 0.01" in note
    assert lattice_note(SimpleNamespace(norm="l2", x=x, step_size=0.01, samples=panel.samples)) is None
    cold = SimpleNamespace(norm="linf", x=x, step_size=0.01, samples=x + 0.01 * np.array([[2, 3]] * 5))
    assert lattice_note(cold).startswith("The 5 samples sit on one point of a grid"), "not “on 1 distinct points”"
