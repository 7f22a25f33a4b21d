"""Features page under AppTest: attribution maps and measures for both models, unit quadrants and ablation."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def test_features_page_shows_maps_measures_units_and_ablation() -> None:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.session_state["feat_n"] = 20
    at.switch_page("../pages/features.py").run()
    assert not at.exception, at.exception
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert sum(t.startswith("Primary") for t in titles) == 2 and sum(t.startswith("Comparison") for t in titles) == 2
    measures = at.dataframe[0].value
    assert (measures.loc["rank correlation clean vs adv."].abs() <= 1).all()
    assert measures.loc["low-frequency energy (clean)"].between(0, 1).all()
    ablation = at.dataframe[1].value
    assert list(ablation.columns) == ["all units", "5 switched off"]
    at.slider(key="feat_k").set_value(8).run()
    assert list(at.dataframe[1].value.columns) == ["all units", "8 switched off"]
    at.selectbox(key="feat_method").set_value("gradcam").run()
    assert not at.exception, at.exception
