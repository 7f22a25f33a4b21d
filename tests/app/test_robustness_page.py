"""The Robustness page under AppTest: the shipped models' default view comes from assets/evaluations without a
single attack; any other choice is computed once and stored in ATLAS_HOME; a new ε computes its attacks only when
asked (the browser test draws every view:
tests/e2e/test_lab_and_robustness_browser.py)."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import core.evaluation.suite as suite
import core.evaluation.trust as trust
from core.jobs import list_jobs
from core.store import Registry
from core.store.shipped import EVALUATIONS_DIR
from dashboard.components import robustness_charts as charts

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def _values(data: dict | list) -> list[float]:
    """Plotly sends numpy arrays as typed base64 blobs ({"dtype", "bdata"}) or as lists."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).tolist()
    return list(data)


def _gains(at: AppTest) -> list[float]:
    """Every bar of the "gain of stronger attacks over PGD-10" chart, in points."""
    chart = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                 if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith("Gain of stronger attacks"))
    return [v for trace in chart["data"] for v in _values(trace["y"])]


def _stars(at: AppTest) -> list[str]:
    curve = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                 if json.loads(c.proto.spec)["layout"]["title"]["text"] == "Robust accuracy vs ε")
    return [t["name"] for t in curve["data"]
            if t.get("marker", {}).get("symbol") == "star" and t.get("legendgroup") != "marks"]  # not the legend key


def test_defaults_come_from_the_shipped_evaluations_and_other_choices_are_computed_once(
        monkeypatch: pytest.MonkeyPatch, atlas_home: Path) -> None:
    """Also: moving the ε slider (per-class views and all) must not start a minute of attacks. The minimal-norm run
    answers a new ε at once; PGD-100, Temperature-PGD, the quick ensemble and the trust checks run on a button, here
    or as a background job in its own process."""
    computed = []
    real = suite.per_sample_table

    def counting(model, data, attack, eps_grid, **kwargs):
        computed.append((attack.name, len(data)))
        return real(model, data, attack, eps_grid, **kwargs)

    monkeypatch.setattr(suite, "per_sample_table", counting)
    trust_runs = []
    real_run = trust.run_trust_checks

    def counting_trust(*args, **kwargs):
        trust_runs.append(1)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(trust, "run_trust_checks", counting_trust)

    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/robustness.py").run()
    assert not at.exception, at.exception
    assert computed == [] and trust_runs == [], "the default view of the shipped models needs no attack"
    assert len(at.multiselect(key="rob_models").value) == 2
    # Sizes below the test split's own only (1000 was offered on digits' 450 points), the split named by its size.
    assert at.selectbox(key="rob_n").options == ["100", "200", "360", "all 450"]
    assert any("least robust class" in m.label for m in at.metric)
    assert min(_gains(at)) >= 0, "a point PGD-10 broke stays broken: no stronger attack gains less than nothing"
    export = next(c.value for c in at.caption if "per-sample tables are those of" in c.value)
    assert "digits SmallCNN · PGD-AT ε=0.1" in export and "chosen under *Per class*" in export, export
    rows = [r for run in at.multiselect(key="rob_models").value for r in Registry().evaluations(run)]
    assert rows and all(Path(r["table_path"]).parent.parent == EVALUATIONS_DIR for r in rows if r["table_path"])

    # Another number of test points for one model: computed here (curve, checks, 7 attacks at ε), then stored.
    at.multiselect(key="rob_models").set_value(at.multiselect(key="rob_models").value[:1]).run()
    at.selectbox(key="rob_n").set_value(100).run()
    assert not at.exception, at.exception
    assert len(computed) == 9 and {n for _, n in computed} == {100}, computed
    at.selectbox(key="rob_n").set_value(360).run()
    at.selectbox(key="rob_n").set_value(100).run()
    assert len(computed) == 9, "stored evaluations are never computed twice"
    stored = [r for r in Registry().evaluations(at.multiselect(key="rob_models").value[0])
              if r["config"].get("n") == 100]
    assert len(stored) == 9 and all(Path(r["table_path"]).is_relative_to(atlas_home) for r in stored)
    assert len(_stars(at)) == 1

    # A new ε: answered from the minimal-norm run, nothing computed until asked.
    before = len(computed), len(trust_runs)
    slider = at.select_slider(key="rob_eps_linf")
    default = slider.value
    other, third = [float(v) for v in slider.options if float(v) != default and float(v) > 0.05][:2]
    slider.set_value(third).run()
    assert not at.exception, at.exception
    assert (len(computed), len(trust_runs)) == before, "moving the slider computes nothing"
    assert _stars(at) == [], "no worst-case star without the attacks at ε"
    assert at.button(key="rob_compute_now") and at.button(key="rob_compute_bg")
    assert any("appear once the attacks at" in i.value for i in at.info)
    assert any("minimal-norm attack alone" in c.value for c in at.caption)
    # The table's "worst case per point" row repeated the FMN row's figure, which read as a verdict.
    table_caption = next(c.value for c in at.caption if c.value.startswith("Robust accuracy (%) at ε"))
    assert "only FMN has run at this ε so far: its worst case per point is that one attack's" in table_caption

    # In the background: one job per model, in its own process (it runs while the page computes another ε below).
    at.button(key="rob_compute_bg").click().run()
    jobs = [j for j in list_jobs(Registry(), limit=5) if j["kind"] == "eval"]
    assert len(jobs) == 1 and len(jobs[0]["args"]["specs"]) == 7 and jobs[0]["args"]["trust"]["eps"] == third
    assert not [b for b in at.button if b.key == "rob_compute_bg"], "a queued job is not offered twice"
    assert any("being computed in the background" in i.value for i in at.info)

    # "Compute them now": here, with a progress bar, exactly the 7 attacks and the trust checks, once.
    at.select_slider(key="rob_eps_linf").set_value(other).run()
    assert len(computed) == before[0]
    at.button(key="rob_compute_now").click().run()
    assert not at.exception, at.exception
    assert len(computed) == before[0] + 7 and len(trust_runs) == before[1] + 1, (computed, trust_runs)
    assert len(_stars(at)) == 1 and not [b for b in at.button if b.key == "rob_compute_now"]
    assert all(v >= 0 for v in _gains(at)), "bars (if any: an attack that gains nothing is left out) are ≥ 0"
    at.select_slider(key="rob_eps_linf").set_value(default).run()
    at.select_slider(key="rob_eps_linf").set_value(other).run()
    assert len(computed) == before[0] + 7, "computed once, read back after"

    # The job's tables and trust checks are picked up: the star appears and nothing is computed here.
    deadline = time.monotonic() + 240
    while list_jobs(Registry(), active_only=True) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [j["status"] for j in list_jobs(Registry(), limit=5)] == ["completed"], list_jobs(Registry(), limit=5)
    at.select_slider(key="rob_eps_linf").set_value(third).run()
    assert not at.exception, at.exception
    assert len(_stars(at)) == 1 and len(computed) == before[0] + 7 and len(trust_runs) == before[1] + 1


def test_gain_bars_leave_out_an_attack_that_gains_nothing_and_keep_headroom() -> None:
    """An attack whose gain is 0 in every class drew a legend entry with invisible bars; the tallest bar touched
    the frame."""
    gains = pd.DataFrame({"class": ["0", "1"], "PGD-100": [0.0, 0.0], "quick ensemble": [0.14, 0.05]})
    figure = charts.gain_bars(gains)
    assert [t.name for t in figure.data] == ["quick ensemble"]
    assert figure.layout.yaxis.range[1] > 14 and "PGD-100" in figure.layout.annotations[0].text
    heat = charts.class_eps_heatmap(pd.DataFrame([[1.0, 0.5]], index=["0"], columns=["0.01875", "0.0375"]))
    assert np.allclose(heat.data[0].x, [0.01875, 0.0375]) and heat.layout.xaxis.tickangle == 0


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the boxes (x0, y0, x1, y1) ``a`` and ``b`` share any area."""
    return bool(min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]))


def test_many_classes_are_named_on_hover_only() -> None:
    n = charts.MAX_LABELLED + 1
    per_class = pd.DataFrame({"class": [str(c) for c in range(n)], "robust_acc": np.linspace(0.2, 0.9, n)})
    fig = charts.weight_norm_scatter(per_class, np.linspace(1.0, 2.0, n))
    assert not fig.layout.annotations and "class %{text}" in fig.data[0].hovertemplate


def test_the_class_labels_of_crowded_dots_cover_nothing_and_read_as_their_own() -> None:
    """The shipped PGD-AT model at ε = 0.1125: classes 4, 0, 5 and 6 sit within 15 px of each other at 1280 px, and
    their labels, all above their dots, overlapped."""
    names = [str(c) for c in range(10)]
    norms = np.array([1.844, 1.904, 1.974, 1.787, 1.831, 1.861, 1.885, 2.061, 1.638, 1.695])
    robust = np.array([0.944, 0.711, 0.973, 0.889, 0.949, 0.944, 0.935, 0.909, 0.763, 0.722])
    fig = charts.weight_norm_scatter(pd.DataFrame({"class": names, "robust_acc": robust}), norms)
    notes = fig.layout.annotations
    assert [a.text for a in notes] == names and fig.data[0].mode == "markers", "labels drawn once, as annotations"
    offsets = np.array([[a.ax, -a.ay] if a.showarrow else [a.xshift, a.yshift] for a in notes], dtype=float)
    x_range, y_range = fig.layout.xaxis.range, fig.layout.yaxis.range
    boxes = charts.label_boxes(norms, robust, names, offsets, x_range, y_range)
    dots = charts.plot_pixels(norms, robust, x_range, y_range)
    radius = charts.DOT_PX / 2
    for i, box in enumerate(boxes):
        assert not any(_overlaps(box, other) for j, other in enumerate(boxes) if j != i), f"label {i} on a label"
        assert not any(_overlaps(box, np.r_[dot - radius, dot + radius]) for j, dot in enumerate(dots) if j != i), \
            f"label {i} covers another class's dot"
        assert 0 <= box[0] and box[2] <= charts.LABEL_PLOT_PX[0] and 0 <= box[1] and box[3] <= charts.LABEL_PLOT_PX[1]
        if not notes[i].showarrow:  # beside its dot: clearly nearer it than any other dot
            middle = (box[:2] + box[2:]) / 2
            others = np.delete(dots, i, axis=0)
            assert np.linalg.norm(others - middle, axis=1).min() >= charts.OWN_MARGIN * np.linalg.norm(
                dots[i] - middle), f"label {i} reads as another dot's"
    assert [a.text for a in notes if a.showarrow], "the crowded ones are joined to their dots by a line"
    assert not any(a.showarrow for a in notes if a.text in "12789"), "the lone dots keep their label beside them"


def test_four_models_get_one_legend_entry_each_and_short_shared_names() -> None:
    """With four models the legend had twelve entries (line, PGD-10, star per model) and covered the x-axis at
    1920 px, and the attack table's fourth column was cut off at 1280 px by four full names."""
    from dashboard.components.labels import drop_shared_prefix

    names = [f"digits SmallCNN · {m} ε=0.1" for m in ("TRADES", "DALE", "FGSM-RS")] + ["digits SmallCNN · ERM"]
    shared, short = drop_shared_prefix(names)
    assert shared == "digits SmallCNN" and short == ["TRADES ε=0.1", "DALE ε=0.1", "FGSM-RS ε=0.1", "ERM"]
    assert drop_shared_prefix(names[:1]) == ("", names[:1])
    assert drop_shared_prefix(["a · x", "b · x"])[0] == "", "no shared part"
    assert drop_shared_prefix(["a · x", "a · x"])[0] == "", "dropping it would leave two names the same"
    curve = pd.DataFrame({"eps": [0.0, 0.1], "robust_acc": [1.0, 0.5]})
    entries = [{"name": n, "curve": curve, "checks": curve, "worst": 0.5, "curve_label": "FMN (one minimal-norm run)"}
               for n in short]
    figure = charts.curve_figure(entries, 0.1, "linf", ["#111111", "#222222", "#333333", "#444444"])
    shown = [t.name for t in figure.data if t.showlegend is not False]
    assert shown == short + ["FMN (one minimal-norm run)", "PGD-10 check", "worst case per point at ε"]
    lines = [t for t in figure.data if t.mode == "lines" and t.showlegend is not False][:4]
    assert [t.line.color for t in lines] == ["#111111", "#222222", "#333333", "#444444"]
    assert figure.layout.xaxis.title.text == "ε (ℓ∞, image scale 0–1)"
    assert charts.curve_figure(entries, 0.1, "l2", scale="input units").layout.xaxis.title.text == \
        "ε (ℓ2, input units)", "toy data is not an image in 0–1"
    legend, margin = figure.layout.legend, figure.layout.margin
    assert legend.yref == "container" and legend.y == 0 and legend.yanchor == "bottom"
    assert margin.b >= 70 + 22 * 8, "room under the x-axis title for 4 model rows, the group title and 3 mark rows"


def test_the_full_ensemble_is_queued_once_across_sessions() -> None:
    """Pressed in one tab and again in another while the first job ran, the same evaluation was queued twice."""
    from core.jobs import cancel_job

    def open_robustness() -> AppTest:
        at = AppTest.from_file(APP, default_timeout=300).run()
        at.switch_page("../pages/robustness.py").run()
        assert not at.exception, at.exception
        return at

    first = open_robustness()
    first.button(key="rob_full").click().run()
    jobs = [j for j in list_jobs(Registry()) if j["kind"] == "eval"]
    try:
        assert len(jobs) == 1 and jobs[0]["args"]["spec"]["attack"] == "full"
        second = open_robustness()  # another session, as another tab or browser is
        assert not [b for b in second.button if b.key == "rob_full"]
        assert any(i.value.startswith("The full ensemble is being computed in the background") for i in second.info)
    finally:
        for job in jobs:
            cancel_job(Registry(), job["id"])


def test_the_training_heatmap_reads_as_the_robustness_pages() -> None:
    """Train drew class 0 at the bottom on a 0–1 scale; Robustness draws it at the top in percent."""
    from dashboard.components.charts import per_class_heatmap

    epochs = [{"epoch": e, "per_class_robust_acc": {"0": 0.1 * e, "1": 0.5}} for e in (1, 2)]
    train = per_class_heatmap(epochs, "t").to_plotly_json()["layout"]
    robustness = charts.class_eps_heatmap(pd.DataFrame([[1.0, 0.5]], index=["0"], columns=["0.1", "0.2"]))
    robustness = robustness.to_plotly_json()
    assert train["yaxis"]["autorange"] == robustness["layout"]["yaxis"]["autorange"] == "reversed"
    bar = per_class_heatmap(epochs, "t").data[0].colorbar
    assert bar.tickformat == robustness["data"][0]["colorbar"]["tickformat"] == ".0%"


def test_accuracy_heatmaps_are_readable_without_red_green_vision() -> None:
    """Train's and Robustness's per-class heatmaps ran red → green, which a colour-blind student cannot read: both
    use one perceptually uniform scale whose lightness rises with accuracy."""
    from plotly.colors import hex_to_rgb

    from dashboard.components.charts import per_class_heatmap

    epochs = [{"epoch": 1, "per_class_robust_acc": {"0": 0.2, "1": 0.9}}]
    train = per_class_heatmap(epochs, "t").to_plotly_json()["data"][0]["colorscale"]
    robustness = charts.class_eps_heatmap(pd.DataFrame([[1.0, 0.5]], index=["0"], columns=["0.1", "0.2"]))
    assert train == robustness.to_plotly_json()["data"][0]["colorscale"]
    lightness = [0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in (hex_to_rgb(c) for _, c in train)]
    assert lightness == sorted(lightness), "darker = less robust, all the way"


def test_a_new_primary_in_the_sidebar_replaces_the_models_analysed() -> None:
    """The page kept analysing PGD-AT and ERM after the sidebar's primary became another model (the URL named the
    new one); a list chosen by hand stays until the sidebar changes."""
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/robustness.py").run()
    assert at.multiselect(key="rob_models").value == ["shipped-digits-smallcnn-pgd-at", "shipped-digits-smallcnn-erm"]
    at.multiselect(key="rob_models").set_value(["shipped-digits-smallcnn-pgd-at"]).run()
    at.selectbox(key="_sb_comparison").select("shipped-digits-smallcnn-erm").run()  # no change: the hand pick stays
    assert at.multiselect(key="rob_models").value == ["shipped-digits-smallcnn-pgd-at"]
    at.selectbox(key="_sb_primary").select("shipped-digits-smallcnn-trades").run()
    assert not at.exception, at.exception
    assert at.multiselect(key="rob_models").value == ["shipped-digits-smallcnn-trades", "shipped-digits-smallcnn-erm"]


def test_an_attack_run_on_one_model_only_reads_not_run_and_the_captions_name_the_colours_drawn() -> None:
    """The tester's finds: the full ensemble row said "None" under ERM (run on PGD-AT only); the heatmap
    captions said red/green (Train) or nothing about colours over Viridis; the bars' caption said orange for rust
    red; the spread metric read "↓ -14.1 points"."""
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/robustness.py").run()
    assert not at.exception, at.exception
    from dashboard.components.evaluations import percent_cells

    table = pd.DataFrame({"PGD-AT": [91.6667, 90.0], "ERM": [52.2222, np.nan]}, index=["PGD-10", "full ensemble"])
    assert percent_cells(table).to_numpy().tolist() == [["91.7%", "52.2%"], ["90.0%", "not run"]]
    captions = " ".join(c.value for c in at.caption)
    assert charts.ACCURACY_SCALE == "Viridis" and "dark purple = easily attacked, yellow = robust" in captions
    assert "rust red: robust accuracy" in captions and "orange" not in captions
    [spread] = [m for m in at.metric if m.label.startswith("spread")]
    assert re.fullmatch(r"worst \d+\.\d below mean", spread.delta), spread.delta  # "points bel…" was cut off
    assert "least robust class" in spread.help and "percentage points" in spread.help


def test_the_patch_models_dead_end_draws_no_controls() -> None:
    """On patches the page said "Pick digits or a toy dataset" under live model chips and an ε slider (0.25 to 16)."""
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.selectbox(key="_sb_dataset").select("patches").run()
    at.switch_page("../pages/robustness.py").run()
    assert not at.exception, at.exception
    assert any("Theory Lab" in i.value and "Pick digits or a toy dataset" in i.value for i in at.info)
    assert at.selectbox(key="_sb_dataset").value == "patches" and not at.multiselect and not at.select_slider
    assert not [s for s in at.selectbox if s.key in ("rob_norm", "rob_n")]
