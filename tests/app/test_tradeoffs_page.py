"""Trade-off Explorer under AppTest: charts of the shipped models (patches too), the logit bias, refusals before a job
starts, the launcher's fields."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.jobs import cancel_job, create_job, list_jobs, update_job
from core.training import TrainConfig
from dashboard import cache
from dashboard.components import tradeoff_charts as tc

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/tradeoffs.py").run()
    assert not at.exception, at.exception
    return at


def launch(at: AppTest, **values) -> AppTest:
    """Choose the method and the weighting first (the form's fields follow them), then fill the form and start."""
    choices = {key: values.pop(key) for key in ("to_method", "to_weighting") if key in values}
    for key, value in choices.items():
        at.selectbox(key=key).set_value(value)
    if choices:
        at.run()
    for key, value in values.items():
        widget = at.selectbox(key=key) if key == "to_noise" else (
            at.text_input(key=key) if key == "to_weights" else at.number_input(key=key))
        widget.set_value(value)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception
    return at


def test_the_shipped_dale_run_shows_its_constraint_curves() -> None:
    at = open_page()
    chosen = at.multiselect(key="to_runs_digits").value
    assert "shipped-digits-smallcnn-dale" in chosen
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Dual variable" in t for t in titles) and any("ρ = 0.1" in t for t in titles)
    assert any("Worst class vs mean" in t for t in titles)
    nu = next(c.value for c in at.caption if c.value.startswith("ν rises"))
    assert "dual-ascent" in nu and "toward 0" not in nu, "ν falls by η_d·(ℓ_nom − ρ) per step, not to 0"
    assert "(η_d = 0.001, ρ = 0.1): ℓ_nom is under ρ from epoch 5" in nu and "at most η_d·ρ = 0.0001 per step" in nu


def test_the_logit_bias_is_tuned_and_reported() -> None:
    at = open_page()
    at.button(key="to_bias_go").click().run()
    assert not at.exception
    table = at.dataframe[-1].value
    assert list(table.columns) == ["without bias", "with bias"]
    drop = table.loc["clean accuracy", "without bias"] - table.loc["clean accuracy", "with bias"]
    assert table.loc["worst-class robust accuracy", "with bias"] >= 0 and drop < 0.05


def test_bad_dale_options_are_refused_before_a_job_starts() -> None:
    at = launch(open_page(), to_rho=0.0)
    assert any("ρ" in e.value and "must be > 0" in e.value for e in at.error)
    at = launch(open_page(), to_scale=-0.01)
    assert any("noise" in e.value for e in at.error)
    at = launch(open_page(), to_weighting="fixed", to_weights="1,2,3")
    assert any("3 values but the dataset has 10 classes" in e.value for e in at.error)
    at = launch(open_page(), to_weighting="fixed", to_weights="1,1,1,1,1,1,1,1,1,-2")
    assert any("positive" in e.value for e in at.error)
    assert list_jobs(cache.registry()) == [], "nothing was queued"


def test_a_class_weighted_dale_run_is_queued_and_its_live_charts_follow_it() -> None:
    old = create_job(cache.registry(), "train", TrainConfig(method="erm", epochs=2).to_dict())
    update_job(cache.registry(), old, status="completed", progress=1.0)
    at = open_page()
    assert at.selectbox(key="to_method").options[:2] == ["DALE (Robey et al.)", "DALE-KL (Robey et al.)"]
    assert at.selectbox(key="to_weighting").options == ["None", "Adaptive", "Fixed"]
    assert at.selectbox(key="train_chart_job").value == old
    at = launch(at, to_weighting="adaptive", to_epochs=1)
    assert any("Queued job" in s.value for s in at.success)
    jobs = list_jobs(cache.registry())
    try:
        assert len(jobs) == 2 and jobs[0]["args"]["method"] == "dale", jobs
        assert jobs[0]["args"]["class_weighting"] == "adaptive"
        charts = at.selectbox(key="train_chart_job")
        assert charts.value == jobs[0]["id"], "the live charts follow the new job"
        assert "1 epoch, adaptive class weights (strength 0.5))" in charts.options[0]
    finally:
        cancel_job(cache.registry(), jobs[0]["id"])


def test_patch_models_show_their_curves_over_iterations() -> None:
    """Their histories come from the Li & Li simulation, per iteration t: no epochs (this page used to crash). The
    dataset is switched on this page, so the runs chosen for digits must not leave the patch runs unchosen."""
    at = open_page()
    at.selectbox(key="_sb_dataset").select("patches").run()
    assert not at.exception, at.exception
    assert set(at.multiselect(key="to_runs_patches").value) == {"shipped-patches-patchnet-at",
                                                                 "shipped-patches-patchnet-st"}
    specs = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert "to_acc" not in specs and {"to_acc_t", "to_loss_t"} <= set(specs)
    for key in ("to_acc_t", "to_loss_t"):
        assert specs[key]["layout"]["xaxis"]["title"]["text"].startswith("iteration t")
    traces = {(t["name"], t["line"]["dash"]) for t in specs["to_acc_t"]["data"]}
    assert ("patches two-layer net · AT", "dot") in traces, "PGD from x is drawn beside the worst case"
    assert any("over iterations t, not epochs" in m.value for m in at.markdown)


def test_fixed_weights_are_usable_only_with_fixed_weighting() -> None:
    at = open_page()
    assert at.selectbox(key="to_weighting").value == "none"
    weights = at.text_input(key="to_weights")
    assert weights.disabled and "only with Class weighting = fixed" in weights.label
    at.selectbox(key="to_weighting").set_value("fixed").run()
    assert not at.text_input(key="to_weights").disabled
    assert at.number_input(key="to_strength").disabled, "the adaptive strength is for adaptive weighting only"


def test_refusals_name_the_fields_of_the_form() -> None:
    at = launch(open_page(), to_rho=-1.0)
    assert [e.value for e in at.error] == ["Not started: ρ (clean-loss bound) must be > 0, got -1.0"]
    at = launch(open_page(), to_weighting="fixed", to_weights="1,2,x")
    assert any("Fixed weights: 'x' is not a number" in e.value for e in at.error)
    at = launch(open_page(), to_weighting="fixed", to_weights="")
    assert any("Fixed weights is empty" in e.value for e in at.error)
    at = launch(open_page(), to_epochs=0, to_steps=500)
    assert [e.value for e in at.error] == ["Not started: Epochs is 0; allowed: 1 to 200; Attack / Langevin steps is "
                                           "500; allowed: 1 to 50"]
    at = launch(open_page(), to_eps=None)
    assert any("ε is empty or not a number" in e.value for e in at.error)
    assert not any("dale_" in e.value or "class_weights" in e.value for e in at.error)
    assert list_jobs(cache.registry()) == [], "nothing was queued"


def test_the_dale_fields_are_offered_for_dale_methods_only() -> None:
    at = open_page()
    assert at.number_input(key="to_rho").label == "ρ (clean-loss bound)"
    at.selectbox(key="to_method").set_value("pgd-at").run()
    assert not at.exception
    assert not any(n.key == "to_rho" for n in at.number_input)


def test_accuracy_axes_leave_room_at_100_percent_and_legends_sit_below_the_axis_title() -> None:
    table = pd.DataFrame({"id": ["a", "b"], "name": ["a", "b"], "method": ["erm", "pgd-at"],
                          "clean acc": [1.0, 0.7], "robust acc": [0.0, 0.6], "ε": [0.1, 0.1]})
    per_class = {"0": 0.5, "1": 0.9}
    worst = tc.worst_vs_mean(tc.class_table([{"id": "a", "name": "a", "method": "dale-kl",
                                              "final_metrics": {"per_class_robust_acc": per_class}}]))
    assert worst.data[0].name == "DALE-KL", "methods by their readable names"
    fig = tc.pareto(table, ["a"])
    assert [t.name for t in fig.data[:2]] == ["ERM", "PGD-AT"], "the Pareto legend names methods readably too"
    for axis, lowest in ((fig.layout.xaxis, 0.7), (fig.layout.yaxis, 0.0)):
        low, high = axis.range
        assert high > 1.02 and max(axis.tickvals) == pytest.approx(1.0), "the ring at 100 % is drawn whole"
        assert low < lowest - 0.01 and low <= min(axis.tickvals) and min(axis.tickvals) >= 0
    history = [{"epoch": e, "clean_acc": 0.5 + e / 10, "robust_acc": 0.3} for e in (1, 2, 3)]
    fig = tc.accuracy_curves({"run one": history, "run two": history})
    assert [t.showlegend for t in fig.data] == [True, False, True, False], "one legend entry per run"
    assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 0
    assert fig.layout.margin.b >= 80 + 2 * tc.LEGEND_ROW_PX and fig.layout.height == 400 + 2 * tc.LEGEND_ROW_PX
