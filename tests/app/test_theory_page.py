"""Theory Lab under AppTest: both runs go in the background, the page redraws them, the theorem panel appears."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from streamlit.testing.v1 import AppTest

from dashboard.components import theory_views as views

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/theory.py").run()
    assert not at.exception, at.exception
    return at


def run_both(at: AppTest) -> dict:
    """Press Run, wait for both background runs to end, redraw; returns the runs."""
    next(b for b in at.button if "Run standard" in b.label).click().run()
    runs = at.session_state["th_runs"]
    deadline = time.monotonic() + 240
    while not all(r.done for r in runs.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    at.run()
    assert not at.exception, at.exception
    return runs


def test_runs_draw_live_and_end_with_the_theorem_panel() -> None:
    at = open_page()
    at.number_input(key="th_iters").set_value(20)
    runs = run_both(at)
    assert [r.status for r in runs.values()] == ["done", "done"]
    assert runs["at"].config.adversarial and not runs["st"].config.adversarial
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(charts) == 6 and sum("U_0 (robust)" in c for c in charts) == 2
    claims = [m.value for m in at.markdown if "agree" in m.value]
    assert len(claims) == 4


def test_a_bad_data_model_is_refused_before_anything_runs() -> None:
    at = open_page()
    at.number_input(key="th_d").set_value(6)  # 2k = 8 > d: the features cannot be orthonormal
    next(b for b in at.button if "Run standard" in b.label).click().run()
    assert any("2k ≤ d" in e.value for e in at.error)
    assert "th_runs" not in at.session_state
    at.number_input(key="th_d").set_value(64)
    at.number_input(key="th_eps").set_value(0.0)
    next(b for b in at.button if "Run standard" in b.label).click().run()
    assert any("ε must be > 0" in e.value for e in at.error)
    assert "th_runs" not in at.session_state


def test_alpha_zero_is_explained_and_the_role_bar_follows_the_data_settings() -> None:
    """α = 0 left the robust patch as noise; roles read off the patches' content then called 31 of 64 robust."""
    at = open_page()
    at.number_input(key="th_alpha").set_value(0.0)
    at.number_input(key="th_iters").set_value(10)
    assert [r.status for r in run_both(at).values()] == ["done", "done"]
    assert any("α = 0" in i.value and "no robust feature" in i.value for i in at.info)
    heatmaps = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "⟨w_{j,r}, x_p⟩" in c.proto.spec]
    assert len(heatmaps) == 2
    for spec in heatmaps:
        bar = [a["text"] for a in spec["layout"]["annotations"]]
        assert bar == ["robust, α = 0 (1)", "non-robust (60)", "noise (3)"]


def test_progress_line_says_how_long_is_left() -> None:
    history = [{"t": t, "elapsed_seconds": 2.0 + 0.2 * t} for t in range(0, 61, 20)]
    assert views.progress_text("running", history[:1], 600) == "running · t = 0 of 600 · timing the first iterations…"
    assert views.progress_text("running", history, 600) == "running · t = 60 of 600 · about 2 min left"
    assert views.progress_text("running", history, 120) == "running · t = 60 of 120 · about 10 s left"
    assert views.progress_text("done", history, 60) == "done · t = 60 of 60"
    assert [views.duration_text(s) for s in (0.4, 42, 87, 90, 165)] == ["5 s", "40 s", "85 s", "1.5 min", "3 min"]


def test_form_labels_fit_their_columns_and_the_heatmap_title_clears_the_toolbar() -> None:
    """At 1400 px an 8-column row holds about 16 characters per label; 'non-robust patches' wrapped and pushed its
    box down. Plotly's toolbar covers the top 30 px of a chart on hover: the titles start below it."""
    at = open_page()
    assert [n.label for n in at.number_input if n.key in ("th_nr", "th_nnr")] == ["\\# robust", "\\# non-robust"]
    assert all(len(n.label) <= 16 for n in at.number_input if n.key != "th_seed")
    roles = np.array([1] + [2] * 60 + [0] * 3)
    heat = {"z": np.zeros((16, 64)), "patches": np.arange(64), "roles": roles, "rows": [str(i) for i in range(16)],
            "labels": {1: "robust", 2: "non-robust", 0: "noise"}}
    layout = views.heatmap_figure(heat, "⟨w_{j,r}, x_p⟩ on the first test input").layout
    assert layout.title.yref == "container" and layout.title.pad.t >= 30 and layout.margin.t >= 90
    assert [(a.text, a.xanchor) for a in layout.annotations] == [
        ("robust (1)", "right"), ("non-robust (60)", "center"), ("noise (3)", "left")]
    assert tuple(layout.xaxis.range) == (-0.5, 63.5), "the role labels must not widen the axis"
    assert views.accuracy_figure([], "Test accuracy over t", 0.25).layout.title.pad.t >= 30
