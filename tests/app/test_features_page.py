"""Features page under AppTest: attribution maps and measures for both models, unit quadrants and ablation."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def values(data: dict | list) -> list[float]:
    """Plotly sends numpy arrays as typed base64 blobs ({"dtype", "bdata"}) or as lists."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).tolist()
    return list(data)


def test_features_page_shows_maps_measures_units_and_ablation() -> None:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.session_state["feat_n"] = 20
    at.switch_page("../pages/features.py").run()
    assert not at.exception, at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert sum(t.startswith("Primary") for t in titles) == 2 and sum(t.startswith("Comparison") for t in titles) == 2
    measures = at.dataframe[0].value
    assert (measures.loc["rank correlation"].abs() <= 1).all()
    assert measures.loc["low freq. (clean)"].between(0, 1).all()
    assert measures.loc["on strokes (clean)"].between(0, 1).all()
    assert list(measures.columns) == ["Primary", "Comparison"], "short headers: the table is narrow"
    # At 1280 px the "Comparison" column was cut to "Compari" / "0.": fixed widths that fit the table's column (3/7
    # of a main area ≈ 820 px wide), and labels and headers that fit theirs (≈ 6 px a character at the table's font,
    # measured on a screenshot, plus 16 px of padding).
    config = json.loads(at.dataframe[0].proto.columns)
    assert sum(c["width"] for c in config.values()) <= 0.9 * 820 * 3 / 7
    assert max(len(label) for label in measures.index) * 6 + 16 <= config["_index"]["width"]
    assert all(len(name) * 6 + 16 <= config[name]["width"] for name in measures.columns)
    assert {c["type_config"].get("format") for name, c in config.items() if name != "_index"} == {"%.3f"}
    boxes = next(s for s in specs if "over 20 points" in s["layout"]["title"]["text"])
    assert [len(trace["y"]) for trace in boxes["data"]] == [6 * 20, 6 * 20], "six measures × 20 points, per model"
    at.selectbox(key="feat_layer").set_value("body").run()
    assert not at.exception, at.exception
    maps = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    maps = [s for s in maps if "activation maps" in s["layout"]["title"]["text"]]
    assert len(maps) == 2 and len(maps[0]["data"]) == 8, "4 channels × clean/adversarial, for both models"
    bars = next(s for s in specs if "the units the attack moves most on it" in s["layout"]["title"]["text"])
    clean, adv = (values(trace["y"]) for trace in bars["data"])
    moved = [abs(a - c) for c, a in zip(clean, adv)]
    assert moved == sorted(moved, reverse=True) and moved[0] > 0, "this example's most-moved units, most first"
    ablation = at.dataframe[1].value
    assert list(ablation.columns) == ["all units", "5 switched off"]
    at.slider(key="feat_k").set_value(8).run()
    assert list(at.dataframe[1].value.columns) == ["all units", "8 switched off"]
    at.selectbox(key="feat_method").set_value("gradcam").run()
    assert not at.exception, at.exception


def test_primary_and_comparison_keep_their_colours_across_pages() -> None:
    """The primary model was blue on Features and orange on Geometry."""
    from dashboard.components import feature_views, geometry_views

    assert feature_views.RUN_COLOURS == geometry_views.MODEL_COLOURS


def test_each_model_is_drawn_in_its_methods_colour_as_on_the_other_pages() -> None:
    """Features drew the primary orange whatever it was: a TRADES primary was orange here and green elsewhere."""
    from dashboard.components.charts import method_colour

    at = AppTest.from_file(APP, default_timeout=300).run()
    at.selectbox(key="_sb_primary").select("shipped-digits-smallcnn-trades").run()
    at.switch_page("../pages/features.py").run()
    assert not at.exception, at.exception
    boxes = next(f for f in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
                 if f["data"] and f["data"][0]["type"] == "box")
    assert [t["marker"]["color"] for t in boxes["data"]] == [method_colour("trades"), method_colour("erm")]


def test_a_smaller_sample_keeps_the_example_inside_it() -> None:
    """Example 40 of 50 points, then a sample of 20: its last point, not a refusal (Example 99999 typed is one)."""
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/features.py").run()
    at.number_input(key="feat_example").set_value(99999).run()
    assert [e.value for e in at.error] == ["Not drawn: Example is 99999; allowed: 0 to 49"]
    at.number_input(key="feat_example").set_value(40).run()
    at.selectbox(key="feat_n").set_value(20).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.number_input(key="feat_example").value == 19


def test_features_starts_on_the_attack_labs_example() -> None:
    """A teacher attacked test #13 on the Attack Lab; Features showed test #0, another digit, with nothing said."""
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.session_state["lab_mode"] = "By index"
    at.session_state["lab_index"] = 13
    at.session_state["feat_n"] = 20
    at.switch_page("../pages/attack_lab.py").run()
    assert not at.exception, at.exception
    at.switch_page("../pages/features.py").run()
    assert not at.exception, at.exception
    assert at.number_input(key="feat_example").value == 13
    captions = " ".join(c.value for c in at.caption)
    assert "Example 13 is test #13 (class " in captions and "the Attack Lab's and Geometry's example too" in captions
    at.number_input(key="feat_example").set_value(2).run()
    assert "Example 2 is test #2 (class " in " ".join(c.value for c in at.caption)


def test_a_links_example_past_the_sample_is_its_last_point_and_a_toast_says_so() -> None:
    """`?feat_example=99999` stopped the page with a red error its reader could not fix from the link."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["feat_example"] = "99999"
    at.query_params["feat_n"] = "20"
    at.run()
    at.switch_page("../pages/features.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.number_input(key="feat_example").value == 19
    assert [t.value for t in at.toast] == [
        "The link sets Example (feat\\_example) to “99999”, which this page does not offer: it shows “19” "
        "instead."]
    # ∞ too: Streamlit's int field raised OverflowError on it (a crash, not a refusal).
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["feat_example"] = "inf"
    at.query_params["feat_n"] = "20"
    at.run()
    at.switch_page("../pages/features.py").run()
    assert not at.exception and at.number_input(key="feat_example").value == 19
