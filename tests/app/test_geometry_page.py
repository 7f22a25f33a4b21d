"""Geometry page under AppTest: both models on one plane, every plane type, capped sizes, refused budgets."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/geometry.py").run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_sections_of_both_models_on_one_plane_and_every_plane_type() -> None:
    at = open_page()
    figures = charts(at)
    sections = [f for f in figures if f["layout"]["title"]["text"].startswith(("Primary:", "Comparison:"))]
    assert len(sections) == 2
    for fig in sections:
        names = [t.get("name") for t in fig["data"]]
        assert "boundary of x's class" in names and "pgd path" in names and "x" in names
        assert any(n and n.startswith("ε-ball section") for n in names)
        assert "DeepFool normal" in fig["layout"]["xaxis"]["title"]["text"]
    # The two sections share their axes: the same plane and extent for both models.
    assert sections[0]["layout"]["xaxis"]["range"] == sections[1]["layout"]["xaxis"]["range"]
    table = at.dataframe[0].value
    assert list(table["model"].str.split(":").str[0]) == ["Primary", "Comparison"]
    assert (table["DeepFool distance ‖r‖₂"] > 0).all()
    surfaces = [f for f in figures if f["data"] and f["data"][0]["type"] == "surface"]
    assert len(surfaces) == 2

    at.selectbox(key="geo_plane").set_value("random").run()
    assert not at.exception, at.exception
    assert "random" in charts(at)[0]["layout"]["xaxis"]["title"]["text"]
    at.selectbox(key="geo_plane").set_value("image").run()
    assert any("other image lies at" in i.value for i in at.info)
    assert any(t.get("name") == "the other image" for t in charts(at)[0]["data"])
    at.segmented_control(key="geo_norm").set_value("l2").run()
    assert not at.exception, at.exception
    ball = next(t for t in charts(at)[0]["data"] if (t.get("name") or "").startswith("ε-ball"))
    assert "ℓ2" in ball["name"]


def test_budgets_beyond_limits_are_capped_and_bad_budgets_refused() -> None:
    at = open_page()
    at.select_slider(key="geo_res").set_value(33)
    at.number_input(key="geo_eps_linf").set_value(5.0).run()
    assert any("ε = 5 capped at 1" in i.value for i in at.info)
    at.number_input(key="geo_eps_linf").set_value(-0.1).run()
    assert any("ε must be a positive number" in e.value for e in at.error)
    assert not at.get("plotly_chart")


def test_curvature_statistics_over_a_sample() -> None:
    at = open_page()
    at.select_slider(key="geo_res").set_value(33)
    at.slider(key="geo_sample_n").set_value(10)
    at.button(key="geo_sample_go").click().run()
    assert not at.exception, at.exception
    stats = next(d.value for d in at.dataframe if "median Hessian top eigenvalue" in d.value.columns)
    at_row, erm_row = stats.iloc[0], stats.iloc[1]
    assert at_row["median Hessian top eigenvalue"] < erm_row["median Hessian top eigenvalue"]
    assert at_row["median DeepFool distance"] > erm_row["median DeepFool distance"]
    assert stats["√d"].tolist() == [8.0, 8.0]


def wait_for_geometry_jobs(deadline_s: float = 240) -> list[dict]:
    import time

    from core.jobs import list_jobs
    from core.store import Registry

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        jobs = [j for j in list_jobs(Registry(), limit=50) if j["kind"] == "geometry"]
        if jobs and all(j["status"] not in ("queued", "running", "cancelling") for j in jobs):
            return jobs
        time.sleep(0.5)
    raise AssertionError("geometry jobs did not finish in time")


def test_heavy_analyses_run_as_jobs_and_are_stored_per_run() -> None:
    at = open_page()
    at.select_slider(key="geo_res").set_value(33).run()
    at.button(key="geo_margin_go").click().run()
    margins = next(d.value for d in at.dataframe if "ρ_adv = mean ‖r‖/‖x‖" in d.value.columns)
    assert margins["median ‖r‖"].iloc[0] > margins["median ‖r‖"].iloc[1]  # PGD-AT (primary) farther than ERM
    at.slider(key="geo_dct_n").set_value(20)
    at.number_input(key="geo_uap_n").set_value(50)
    at.number_input(key="geo_uap_passes").set_value(2).run()
    at.button(key="geo_dct_go").click().run()
    at.button(key="geo_uap_go").click().run()
    jobs = wait_for_geometry_jobs()
    assert len(jobs) == 4 and {j["status"] for j in jobs} == {"completed"}, [j["error"] for j in jobs]
    at.run()
    assert not at.exception, at.exception
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Margin along DCT subspaces, low → high frequency" in titles
    assert "Fooling rate after each pass" in titles and sum(t.startswith("v — ") for t in titles) == 2
    assert not any(b.label.startswith("Compute") for b in at.button)
