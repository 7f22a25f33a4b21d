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


MARKS = (":green[", ":orange[", ":red[", ":gray[")


def claims(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith(MARKS)]


def test_runs_draw_live_and_end_with_the_theorem_panel() -> None:
    at = open_page()
    settings = at.expander[-1]
    assert settings.label == "Settings: data, network and training" and settings.proto.expanded
    at.number_input(key="th_iters").set_value(20)
    runs = run_both(at)
    # Folded once the runs go: open, the settings filled a laptop's window and the charts began below it.
    assert not at.expander[-1].proto.expanded
    assert [r.status for r in runs.values()] == ["done", "done"]
    assert runs["at"].config.adversarial and not runs["st"].config.adversarial
    assert len(runs["st"].history) <= 21, "each row costs a robustness evaluation: about 20 rows a run"
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = [[t.get("name") for t in c["data"]] for c in charts]
    assert len(charts) == 5 and sum("U<sub>0</sub> robust" in n for n in names) == 2
    assert names.count(["Standard training", "Adversarial training"]) == 1, "one heatmap, both runs in it"
    assert len(claims(at)) == 4
    texts = json.dumps([[c["layout"]["title"]["text"], c["layout"]["yaxis"].get("title", {}).get("text", "")]
                        for c in charts], ensure_ascii=False)
    assert "<sub>j,r</sub>" in texts and "_{" not in texts, "plotly shows TeX braces as they are: HTML instead"


def test_a_diverged_run_is_called_out_and_is_not_evidence() -> None:
    """At learning rate 10 adversarial training's loss jumps to ≈ 25 (from 1.44) and V to 68; its final row then
    read '✓ AT is robust … 100 % (PGD from x)'. Now an error names the divergence; its claims are not judged."""
    at = open_page()
    at.number_input(key="th_lr").set_value(10.0)
    at.number_input(key="th_iters").set_value(20)
    assert [r.status for r in run_both(at).values()] == ["done", "done"]
    assert any("Adversarial training diverged" in e.value and "learning rate" in e.value for e in at.error)
    rows = claims(at)
    assert [r.startswith(":gray[") for r in rows] == [False, False, True, True], rows
    assert all("training diverged" in r and "not evidence" in r for r in rows[2:])
    assert any("own colour range" in c.value for c in at.caption)


def test_a_bad_data_model_is_refused_before_anything_runs() -> None:
    at = open_page()
    at.number_input(key="th_d").set_value(6)  # 2k = 8 > d: the features cannot be orthonormal
    next(b for b in at.button if "Run standard" in b.label).click().run()
    assert any("2k ≤ d" in e.value and "d (patch dim) ≥ 8" in e.value for e in at.error)
    assert "th_runs" not in at.session_state
    assert at.expander[-1].proto.expanded, "a refused start leaves open the fields its message names"
    at.number_input(key="th_d").set_value(64)
    at.number_input(key="th_nnr").set_value(64)  # 1 + 64 > 64 patches; the message speaks the form's words
    next(b for b in at.button if "Run standard" in b.label).click().run()
    (error,) = at.error
    assert "# robust + # non-robust patches (1 + 64) must not exceed P patches (64)" in error.value
    assert "n_robust" not in error.value and "n_nonrobust" not in error.value
    assert "th_runs" not in at.session_state
    at.number_input(key="th_nnr").set_value(60)
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
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (spec,) = [s for s in specs if s["layout"]["title"]["text"] == views.HEATMAP_TITLE]
    assert [a["text"] for a in spec["layout"]["annotations"]] == ["robust, α = 0 (1)", "non-robust (60)", "noise (3)"]
    assert [t["name"] for t in spec["data"]] == ["Standard training", "Adversarial training"]


def test_progress_line_says_how_long_is_left() -> None:
    history = [{"t": t, "elapsed_seconds": 2.0 + 0.2 * t} for t in range(0, 61, 20)]
    first = views.progress_text("running", history[:1], 600)
    assert first == "running · t = 0 of 600 · timing the first iterations…"
    assert views.progress_text("running", history, 600) == "running · t = 60 of 600 · about 2 min left"
    assert views.progress_text("running", history, 120) == "running · t = 60 of 120 · about 10 s left"
    assert views.progress_text("done", history, 60) == "done · t = 60 of 60"
    assert [views.duration_text(s) for s in (0.4, 42, 87, 90, 165)] == ["5 s", "40 s", "85 s", "1.5 min", "3 min"]


def test_form_labels_fit_their_columns_and_the_heatmap_title_clears_the_toolbar() -> None:
    """At 1024 px (sidebar open) an 8-column row broke labels mid-word ("# robus / t"): four inputs a row, short
    labels (the meaning is in the help). Plotly's toolbar covers the top 30 px of a chart on hover: titles start
    below it."""
    at = open_page()
    assert [n.label for n in at.number_input if n.key in ("th_nr", "th_nnr")] == ["\\# robust", "\\# non-robust"]
    assert all(len(n.label) <= 14 for n in at.number_input), [n.label for n in at.number_input]
    assert all(n.help for n in at.number_input if n.key != "th_iters"), "short labels need their meaning in help"
    assert min(c.weight for c in at.columns) >= 0.25, "at most four inputs a row"
    layout = views.heatmap_figure({"ST": heat(), "AT": heat()}, views.HEATMAP_TITLE).layout
    assert layout.title.yref == "container" and layout.title.pad.t >= 30 and layout.margin.t >= 90
    assert [a.text for a in layout.annotations] == ["robust (1)", "non-robust (60)", "noise (3)"]
    assert tuple(layout.xaxis.range) == (0, views.column_edges(heat()["roles"])[-1]), "labels must not widen it"
    accuracy = views.accuracy_figure([], "Test accuracy over t", 0.25).layout
    assert accuracy.title.pad.t >= 30 and accuracy.margin.t <= 65, "no empty band between title and plot"
    features = views.features_figure([], 2, views.FEATURE_TITLE, 1.0).layout
    assert features.xaxis.title.text == accuracy.xaxis.title.text == "iteration t"
    assert views.accuracy_figure([], "t", 0.25).layout.legend.orientation == "h", "a legend at the right took half"


def heat(scale: float = 1.0) -> dict:
    roles = np.array([1] + [2] * 60 + [0] * 3)
    z = scale * np.linspace(-1, 1, 16 * 64).reshape(16, 64)
    return {"z": z, "patches": np.arange(64), "roles": roles, "rows": [str(i) for i in range(16)],
            "labels": {1: "robust", 2: "non-robust", 0: "noise"}}


def test_every_heatmap_column_group_is_visible_and_each_panel_shows_its_own_structure() -> None:
    """The lone robust patch was 1 px wide at 64 columns. One shared colour range, set by AT's single robust cell
    (≈ 4.6), left ST's panel and AT's ±0.16 non-robust rows white: each panel has its own range, which a few
    outlying cells do not set, stated on its bar; row labels are readable on a projector."""
    edges = views.column_edges(heat()["roles"])
    widths = np.diff(edges)
    assert len(edges) == 65 and widths[0] >= 0.1 * edges[-1], "the robust column is ≥ 10 % of the axis"
    assert (widths[61:] * 3 >= 0.1 * edges[-1]).all() and np.allclose(widths[1:61], 1)
    at_like = heat(0.16)
    at_like["z"][13, 0] = 4.6
    fig = views.heatmap_figure({"Standard training": heat(0.8), "Adversarial training": at_like}, "t")
    assert [t.coloraxis for t in fig.data] == ["coloraxis", "coloraxis2"]
    st_max, at_max = fig.layout.coloraxis.cmax, fig.layout.coloraxis2.cmax
    assert 0.7 < st_max <= 0.8 and 0.1 < at_max <= 0.16, (st_max, at_max)
    assert fig.layout.coloraxis.cmin == -st_max and fig.layout.coloraxis2.cmin == -at_max
    assert "±0.16" in fig.layout.coloraxis2.colorbar.title.text and "4.6" in fig.layout.coloraxis2.colorbar.title.text
    assert fig.layout.yaxis.tickfont.size >= 11 and fig.layout.yaxis2.tickfont.size >= 11
    waiting = views.heatmap_figure({"Standard training": heat(), "Adversarial training": None}, "t")
    assert len(waiting.data) == 1, "a run without weights yet leaves its panel empty"
