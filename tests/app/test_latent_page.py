"""Latent page under AppTest on the shipped digits models (PCA keeps these fast; the browser test draws UMAP)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import core.latent.maps as maps
from dashboard.components import latent_views as views

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def open_latent(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.session_state["lat_projection"] = "pca"
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page("../pages/latent.py").run()
    assert not at.exception, at.exception
    return at


def primary_points(at: AppTest) -> dict[str, list]:
    """name → x coordinates of every trace of the primary map (from the spec sent to the browser)."""
    chart = next(c for c in at.get("plotly_chart") if "Primary" in c.proto.spec)
    spec = json.loads(chart.proto.spec)
    return {t["name"]: t["x"] for t in spec["data"]}


def is_empty(values) -> bool:
    """Plotly sends numpy arrays as typed base64 blobs ({"dtype", "bdata"}) or as lists."""
    return values.get("bdata", "") == "" if isinstance(values, dict) else len(values) == 0


def test_scrubbing_moves_the_adversarial_points_without_recomputing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = maps.compute_map
    monkeypatch.setattr(maps, "compute_map", lambda *a, **k: calls.append(a[2].run_id) or real(*a, **k))
    at = open_latent()
    assert len(calls) == 2, "one map per model (primary and comparison)"
    before = primary_points(at)
    assert "class 0" in before and any(name.startswith("adversarial") for name in before)
    at.select_slider(key="lat_eps").set_value("0.3").run()
    assert not at.exception
    after = primary_points(at)
    assert after["class 0"] == before["class 0"], "clean points stay where the map put them"
    moved = [n for n in after if n.startswith("adversarial") and after[n] != before.get(n)]
    assert moved, "the adversarial points moved"
    assert len(calls) == 2, "scrubbing only indexed into the cached maps"
    at.select_slider(key="lat_eps").set_value("clean").run()
    twins = [v for n, v in primary_points(at).items() if n.startswith("adversarial")]
    assert twins and all(is_empty(v) for v in twins), "at ε = 0 the twin traces are there (for animation) but empty"
    assert len(calls) == 2


def test_measures_table_and_animation_frames() -> None:
    at = open_latent()
    # The slider opens at the primary model's own ε, as the other pages do (it opened at 0.15, off the grid's 0.1).
    assert at.select_slider(key="lat_eps").value == "0.1"
    assert any(m.value == "**Measures at ε = 0.1**" for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table.index[:2]) == ["k-NN acc (clean)", "silhouette (clean)"]
    robust_row = table.loc["k-NN acc (adv.)"]
    assert robust_row.iloc[0] > robust_row.iloc[1], "the PGD-AT model's features keep their class better than ERM's"
    at.toggle(key="lat_animate").set_value(True).run()
    chart = next(c for c in at.get("plotly_chart") if "Primary" in c.proto.spec)
    assert len(json.loads(chart.proto.spec)["frames"]) == 7, "clean + 6 ε (0.05, 0.1, …, 0.3)"


def test_too_many_points_fall_back_to_the_whole_split() -> None:
    at = open_latent(lat_n=2000)
    assert any("has 450 points" in i.value for i in at.info)
    assert not at.error


def test_a_selection_resolves_to_the_right_samples() -> None:
    rng = np.random.default_rng(0)
    n = 30
    latent = maps.LatentMap(eps_grid=np.array([0.1]), indices=np.arange(n), y=np.arange(n) % 3,
                            pred_clean=np.arange(n) % 3, pred_adv=(np.arange(n)[None] + 1) % 3,
                            clean_xy=rng.normal(size=(n, 2)).astype(np.float32),
                            adv_xy=rng.normal(size=(1, n, 2)).astype(np.float32), scores={}, info={})
    fig, rows = views.latent_figure(latent, 1, ["a", "b", "c"], views.Layers(), "t", "0.1")
    names = [t.name for t in fig.data]
    clean_b, adv_c = names.index("class b"), names.index("adversarial → c")
    event = {"selection": {"points": [{"curve_number": clean_b, "point_index": 2},
                                      {"curve_number": adv_c, "point_index": 0},
                                      {"curve_number": clean_b, "point_index": 2}]}}
    picked = views.selected_rows(event, rows)
    assert picked.tolist() == [7, 1], "clean 'b' #2 is sample 7; the first twin predicted 'c' is sample 1"
    assert latent.y[7] == 1 and latent.pred_adv[0, 1] == 2
    # The trace's own coordinates are those of the picked samples.
    assert fig.data[clean_b].x[2] == latent.clean_xy[7, 0]


def test_the_eps_grid_holds_the_models_own_eps_and_opens_there() -> None:
    grid, first = maps.eps_grid(0.3, 0.1)
    # Round steps a lecturer can read out, as on the Robustness page (it was 0.0375, 0.075, …, 0.2625).
    assert grid == (0.05, 0.1, 0.15, 0.2, 0.25, 0.3) and first == 1
    assert maps.eps_grid(0.3, None) == (maps.eps_grid(0.3, 0.0)[0], 3), "no ε of its own: the fourth budget"
    grid, first = maps.eps_grid(0.3, 0.3)
    assert grid[-1] == 0.3 and first == len(grid) - 1 and len(grid) <= 8
    assert maps.eps_grid(2.0, None)[0] == (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    assert maps.eps_grid(0.3, 0.5)[1] == 3, "an ε beyond the range leaves the grid and the default alone"
    grid, first = maps.eps_grid(1.0, 0.01)
    assert grid[0] == 0.01 and first == 0 and list(grid) == sorted(grid)


def test_the_first_view_of_a_fresh_install_reads_the_shipped_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    """UMAP maps of the default primary and comparison at the page's defaults are shipped (assets/latent): the
    first visit took ≈ 15 s of attacks plus UMAP's compilation, on the laptop a lecture runs on."""
    def no_compute(*args, **kwargs):
        raise AssertionError("the first view should read the shipped maps")

    monkeypatch.setattr(maps, "compute_map", no_compute)
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/latent.py").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Primary" in s for s in specs) and any("Comparison" in s for s in specs)
