"""Geometry page under AppTest: both models on one plane, every plane type, capped sizes, refused budgets."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from streamlit.testing.v1 import AppTest

from dashboard.components import geometry_views as views

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/geometry.py").run()
    assert not at.exception, at.exception
    return at


def values(data: dict | list) -> np.ndarray:
    """Plotly sends numpy arrays as typed base64 blobs ({"dtype", "bdata"}) or as lists."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
    return np.asarray(data, dtype=float)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_sections_of_both_models_on_one_plane_and_every_plane_type() -> None:
    at = open_page()
    figures = charts(at)
    sections = [f for f in figures if f["layout"]["title"]["text"].startswith(("Primary:", "Comparison:"))]
    assert len(sections) == 2
    for fig in sections:
        names = [t.get("name") for t in fig["data"]]
        assert "boundary of x's class" in names and "PGD path" in names and "x" in names
        assert any(n and n.startswith("ε-ball section") for n in names)
        # Whose normal: the comparison's panel said "DeepFool normal" alone, which read as its own.
        assert fig["layout"]["xaxis"]["title"]["text"] == "a along û (DeepFool normal of the primary)"
    # The two sections share their axes: the same plane and extent for both models.
    assert sections[0]["layout"]["xaxis"]["range"] == sections[1]["layout"]["xaxis"]["range"]
    # One column per model (a table that fits at any width), one row per quantity.
    table = at.dataframe[0].value.set_index("quantity")
    assert [c.split(":")[0] for c in table.columns] == ["Primary", "Comparison"]
    assert (table.loc["DeepFool distance ‖r‖₂"].astype(float) > 0).all()
    crossing = table.loc["û-axis crossing a (− = on the −û side)"]
    assert crossing.str.match(r"^[+-]\d").all(), crossing
    surfaces = [f for f in figures if f["data"] and f["data"][0]["type"] == "surface"]
    assert len(surfaces) == 2
    # Compared side by side, the two surfaces share one height and colour range; axis titles are short.
    assert {(f["data"][0]["cmin"], f["data"][0]["cmax"]) for f in surfaces} == {
        tuple(surfaces[0]["layout"]["scene"]["zaxis"]["range"])}
    # Short axis titles (the scene's corners clip long ones); the height's is the colour bar's.
    assert all(len(f["layout"]["scene"][axis]["title"]["text"]) <= 12 for f in surfaces for axis in ("xaxis", "yaxis"))
    assert all(f["data"][0]["colorbar"]["title"]["text"] == "loss" for f in surfaces)
    profile = next(f for f in figures if f["layout"]["title"]["text"].startswith("Margin profile"))
    assert not any(c in profile["layout"]["title"]["text"] for c in "_{}")
    at.segmented_control(key="geo_colour").set_value("margin").run()
    heat = [next(t for t in f["data"] if t["type"] == "heatmap") for f in charts(at)[:2]]
    assert heat[0]["zmax"] == heat[1]["zmax"] == -heat[0]["zmin"] > 0, "one colour range for both panels"

    # At 1280 px the selector is ~190 px wide: "DeepFool normal, random" showed as "DeepFool normal, rand".
    plane = at.selectbox(key="geo_plane")
    assert plane.options == ["DeepFool normal", "Loss gradient", "Two random", "Toward an image"]
    assert "orthogonal" in plane.help
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


def misclassified_by_erm() -> int:
    """A digits test index the shipped ERM model (the default comparison) gets wrong."""
    import torch

    from core.data import load_dataset
    from core.models import load_checkpoint

    data = load_dataset("digits")
    erm, _ = load_checkpoint(ROOT / "assets" / "models" / "digits-smallcnn-erm")
    with torch.no_grad():
        return int((erm(data.x).argmax(1) != data.y).nonzero()[0, 0])


def test_misclassified_inputs_are_flagged_budgets_beyond_limits_capped_and_bad_budgets_refused() -> None:
    at = open_page()
    at.select_slider(key="geo_res").set_value(33)
    at.segmented_control(key="lab_mode").set_value("By index").run()
    at.number_input(key="lab_index").set_value(misclassified_by_erm()).run()
    assert not at.exception, at.exception
    badges = [m.value for m in at.markdown if "Already misclassified as" in m.value]
    assert len(badges) == 1, [m.value for m in at.markdown]
    comparison = next(c.value for c in at.caption if "misclassified already" in c.value)
    assert "does not flip it" not in comparison and "= inf" not in comparison
    at.number_input(key="geo_eps_linf").set_value(5.0).run()
    assert any("ε = 5 capped at 1, the largest ℓ∞ budget" in i.value for i in at.info)
    at.number_input(key="geo_uap_xi_l2").set_value(1e12).run()
    assert any("ξ = 1e+12 capped at 100, the largest ℓ2 budget" in i.value for i in at.info)
    assert not any("must be in" in e.value for e in at.error)
    at.number_input(key="geo_eps_linf").set_value(0.0).run()
    assert not at.exception and not at.error, at.exception
    assert any("Set ε above 0" in w.value and "ε-ball" in w.value for w in at.warning)
    assert not at.get("plotly_chart"), "no cross-section without a budget"
    at.slider(key="geo_sample_n").set_value(10)
    at.button(key="geo_sample_go").click().run()
    assert any("statistic" in d.value.columns for d in at.dataframe), "what needs no ε still works"


def test_curvature_statistics_over_a_sample() -> None:
    at = open_page()
    at.select_slider(key="geo_res").set_value(33)
    at.slider(key="geo_sample_n").set_value(10)
    at.button(key="geo_sample_go").click().run()
    assert not at.exception, at.exception
    stats = next(d.value for d in at.dataframe if "statistic" in d.value.columns).set_index("statistic")
    assert len(stats.columns) == 2, "one column per model: the table fits at any width"
    at_col, erm_col = stats.iloc[:, 0], stats.iloc[:, 1]
    assert at_col["median Hessian top eigenvalue"] < erm_col["median Hessian top eigenvalue"]
    assert at_col["median DeepFool distance"] > erm_col["median DeepFool distance"]
    assert any("√d = 8.0" in c.value for c in at.caption)
    # The box plot and the table summarise the same ratios: infinite ones are drawn at the reach, and counted.
    ratio = next(f for f in charts(at) if f["layout"]["title"]["text"].startswith("Random ÷"))
    for box, column in zip(ratio["data"], stats.columns):
        assert math.isclose(float(np.median(values(box["y"]))), stats.loc[views.RATIO_ROW, column], rel_tol=1e-9)
        assert f"{int(stats.loc[views.INFINITE_ROW, column])} of " in box["name"]
    profile = next(f for f in charts(at) if f["layout"]["title"]["text"].startswith("Margin profile"))
    assert {t["yaxis"] for t in profile["data"]} == {"y", "y2"}, "each model on its own y axis"
    hessian = next(f for f in charts(at) if f["layout"]["title"]["text"].startswith("Top eigenvalue"))
    if hessian["layout"]["yaxis"].get("type") == "log":
        assert hessian["layout"]["yaxis"]["exponentformat"] == "power", "no SI ticks such as 100μ"


def section_stub(row: list[float], prediction: int, path_preds: list[int] | None) -> SimpleNamespace:
    a = np.linspace(-1, 1, len(row))
    section = SimpleNamespace(a=a, b=a.copy(), margin=np.tile(np.asarray(row, dtype=float), (len(row), 1)))
    path = None if path_preds is None else SimpleNamespace(attack="pgd", preds=path_preds, off_plane=np.zeros(2))
    return SimpleNamespace(section=section, prediction=prediction, deepfool_distance=0.5, path=path)


def test_the_crossing_reported_is_the_drawn_one_on_either_side_and_misclassified_inputs_say_so() -> None:
    # The boundary of x's class meets the axis only on the −û side, at a = −0.625 (between −0.75 and −0.5).
    local = section_stub([-2, -1, 1, 2, 3, 4, 5, 6, 7], prediction=3, path_preds=[3, 3])
    assert math.isclose(views.crossing_along_u(local.section), -0.625)
    caption = views.section_caption(local, [str(c) for c in range(10)], 0, extent=1.0)
    assert "a = -0.625 (on the −û side)" in caption and "inf" not in caption
    assert "misclassified already" in caption and "does not flip" not in caption and "PGD path" in caption
    nearest = section_stub([-1, 1, 2, 3, 4, 1, -1, -2, -3], prediction=0, path_preds=[0, 2])
    assert math.isclose(views.crossing_along_u(nearest.section), 0.375)
    assert "flips it to **2**" in views.section_caption(nearest, [str(c) for c in range(10)], 0, extent=1.0)
    nowhere = section_stub([1.0] * 9, prediction=0, path_preds=None)
    assert math.isnan(views.crossing_along_u(nowhere.section))
    assert "does not cross the û axis within ±1.000" in views.section_caption(nowhere, ["0"], 0, extent=1.0)
    table = views.local_table({"m": SimpleNamespace(**vars(nowhere), hessian=1.0, cure=1.0,
                                                    boundary=SimpleNamespace(kappa=0.0))}, ["0"])
    assert table.set_index("quantity").loc["û-axis crossing a (− = on the −û side)", "m"] == "none in view"


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
    v_maps = [f["data"][0] for f in charts(at) if f["layout"]["title"]["text"].startswith("v — ")]
    assert v_maps[0]["zmax"] == v_maps[1]["zmax"] == -v_maps[0]["zmin"] > 0, "both v share one colour range"


def _crossings(at: AppTest) -> list[tuple[float, float]]:
    """(where the boundary crosses û, the model's own DeepFool distance) per panel, primary first."""
    pattern = r"crosses the û axis nearest to x at a = ([+-][\d.]+).*own DeepFool distance .*? is (\d+\.\d+)"
    found = [re.search(pattern, c.value) for c in at.caption]
    return [(abs(float(m[1])), float(m[2])) for m in found if m]


def test_the_learn_tours_geometry_claims_hold_on_the_shipped_models() -> None:
    """The tour said PGD-AT's boundary sits farther out "on the same plane"; on PGD-AT's own normal (the default)
    the standard model's crossed farther (1.73 vs 1.47). It now names the plane where the claim holds."""
    tour = next(m.value for m in AppTest.from_file(str(ROOT / "pages" / "learn.py")).run().markdown
                if "Direction û of" in m.value)
    assert "**comparison**" in tour
    at = open_page()
    (pgd_here, pgd_own), (erm_here, erm_own) = _crossings(at)
    assert pgd_own > 1.4 * erm_own, "PGD-AT's own DeepFool distance is the larger"
    at.radio(key="geo_plane_from").set_value("comparison").run()
    assert not at.exception, at.exception
    (pgd_there, _), (erm_there, _) = _crossings(at)
    assert pgd_there > 1.8 * erm_there, "on the standard model's normal PGD-AT's boundary is about twice as far"
    assert abs(erm_there - 0.8) < 0.1 and abs(pgd_there - 1.7) < 0.15, (erm_there, pgd_there)


def test_primary_comes_first_on_the_comparisons_plane_and_the_loss_caption_is_measured() -> None:
    """On the comparison's plane the table said "Comparison | Primary" and the margin profile put the comparison on
    top, beside sections drawn primary first. The Loss landscape caption claimed "a standard model's loss rises
    steeply; adversarial training leaves a flatter valley" while the default view showed PGD-AT climbing highest."""
    at = open_page()
    at.radio(key="geo_plane_from").set_value("comparison").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("quantity")
    assert [c.split(":")[0] for c in table.columns] == ["Primary", "Comparison"]
    profile = next(f for f in charts(at) if f["layout"]["title"]["text"].startswith("Margin profile"))
    assert [a["text"].split(":")[0] for a in profile["layout"]["annotations"][:2]] == ["Primary", "Comparison"]
    along = [t["name"].split(": ")[1] for t in profile["data"][::2]]
    assert along == ["along û (DeepFool normal of the comparison)"] * 2, "whose normal, in both panels' legend"
    caption = next(c.value for c in at.caption if "Cross-entropy loss of the true class" in c.value)
    assert "flatter, wider valley" not in caption
    assert re.search(r"diamond\): Primary's loss (stays at|goes from) [\d.]+.*; "
                     r"Comparison's loss (stays at|goes from)", caption)
    surfaces = [f for f in charts(at) if f["data"] and f["data"][0]["type"] == "surface"]
    # The ε-ball's section, dashed on each surface, a hair above it (its heights are the surface's, interpolated).
    for fig in surfaces:
        outline = fig["data"][1]
        assert outline["type"] == "scatter3d" and outline["line"]["dash"] == "dash"
        assert (values(outline["z"]) >= 0).all()
        # x named on the surface (alone, the few-pixel outline read as a stray dot), and seen from the −û side:
        # from the +û side the climb past the boundary along the DeepFool normal hid x behind it.
        (point,) = [t for t in fig["data"] if t.get("name") == "x"]
        assert values(point["x"]).tolist() == [0.0] and values(point["y"]).tolist() == [0.0]
        assert point["text"] == ["<b>x</b>"] and values(point["z"])[0] >= 0
        assert fig["layout"]["scene"]["camera"]["eye"]["x"] < 0


def test_the_loss_caption_names_the_flatter_model_only_from_its_numbers() -> None:
    def result(at_x: float, highest: float) -> SimpleNamespace:
        return SimpleNamespace(ball_loss=SimpleNamespace(at_x=at_x, highest=highest, rise=highest - at_x))

    both = views.ball_loss_text({"Primary: a": result(0.06, 0.5), "Comparison: b": result(0.18, 3.8)}, 64)
    assert "Comparison's rises 8.2× as much as Primary's: Primary is the flatter" in both
    one = views.ball_loss_text({"Primary: a": result(0.0, 0.01), "Comparison: b": result(0.2, 1.2)}, 64)
    assert "Primary's loss goes from 0 to 0.01; Comparison's loss goes from 0.2 to 1.2" in one
    assert "Primary's stays flat there; Comparison's rises by 1" in one
    none = views.ball_loss_text({"Primary: a": result(0.0, 0.0), "Comparison: b": result(0.0, 0.001)}, 64)
    assert "Primary's loss stays at 0; Comparison's loss goes from 0 to 0.001" in none
    assert "Neither rises inside it on this plane" in none and "2 of the input's 64 directions" in none


def test_the_loss_range_reads_from_zero_not_minus_zero() -> None:
    """The Loss landscape caption said "(-0–20.2)" for a lower bound a hair below zero."""
    assert (views.loss_text(-1e-6), views.loss_text(-0.0), views.loss_text(20.213)) == ("0", "0", "20.2")
    assert views.loss_text(0.0123) == "0.0123"


def test_each_model_is_drawn_in_its_methods_colour_as_on_the_other_pages() -> None:
    """The profile drew the primary orange whatever it was: a TRADES primary was orange here and green elsewhere."""
    from dashboard.components.charts import method_colour

    at = AppTest.from_file(APP, default_timeout=300).run()
    at.selectbox(key="_sb_primary").select("shipped-digits-smallcnn-trades").run()
    at.switch_page("../pages/geometry.py").run()
    assert not at.exception, at.exception
    profile = next(f for f in charts(at) if any(t.get("type") == "scatter" and "along" in (t.get("name") or "")
                                                 for t in f["data"]))
    colours = {t["line"]["color"] for t in profile["data"] if t.get("line", {}).get("color") not in (None, "#111")}
    assert colours == {method_colour("trades"), method_colour("erm")}, colours


def test_each_class_has_the_hue_it_has_on_the_other_pages() -> None:
    """Class 9 was a light grey region here and cyan on Latent and Robustness; grey was class 7 there."""
    import colorsys

    from dashboard.components.robustness_charts import CLASS_COLOURS

    def hls(colour: str) -> tuple[float, float, float]:
        return colorsys.rgb_to_hls(*(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)))

    for k, strong in enumerate(CLASS_COLOURS):
        (h1, l1, s1), (h2, l2, s2) = hls(strong), hls(views.REGION_COLOURS[k])
        assert l2 > l1, f"class {k}: the region colour must be the lighter one"
        if s1 < 0.05:
            assert s2 < 0.05, f"class {k} is grey there"
        else:
            assert min(abs(h1 - h2), 1 - abs(h1 - h2)) < 0.05, f"class {k}: {strong} vs {views.REGION_COLOURS[k]}"
    # Class 0's light blue and class 9's light cyan were 25° apart: one colour on a projector.
    assert abs(hls(views.REGION_COLOURS[0])[0] - hls(views.REGION_COLOURS[9])[0]) * 360 > 40


def test_the_eps_outline_follows_the_loss_surface() -> None:
    """Bilinear heights on the surface's grid: exact at grid points, linear between them."""
    coords = np.linspace(-1.0, 1.0, 5)
    surface = SimpleNamespace(a=coords, b=coords.copy(), loss=np.add.outer(2 * coords, 3 * coords))  # 2b + 3a
    points = np.array([[0.0, 0.0], [0.5, -0.5], [0.3, 0.7], [-1.0, 1.0]])
    assert np.allclose(views._on_grid(surface, points), 3 * points[:, 0] + 2 * points[:, 1])


def test_a_plane_that_fell_back_to_random_is_nobodys() -> None:
    """With no gradient or boundary the plane falls back to random directions; "random of the primary" misled."""
    random = SimpleNamespace(kind="random", u_label="random")
    normal = SimpleNamespace(kind="deepfool", u_label="DeepFool normal")
    assert views.u_text(random, "primary") == "random"
    assert views.u_text(normal, "primary") == "DeepFool normal of the primary"
    assert views.u_text(normal) == "DeepFool normal"
