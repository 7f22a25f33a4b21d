"""The Latent page's choices say what they will do before any work runs: the Points choices stop at the split's
size, and t-SNE over its one-fit limit is cut to it with a note (it used to attack every point for ~29 s and then
draw PCA). The attack is replaced by the clean points here: these tests are about sizes, not robustness."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import core.latent.maps as maps
from core.latent import LatentSpec
from tests.app.test_latent_page import open_latent

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture
def specs(monkeypatch: pytest.MonkeyPatch) -> list[LatentSpec]:
    """The spec of every map the page computes. No attack (the clean points stand for their twins) and a fresh
    attacked-points memory, so these placeholders never reach another test's maps."""
    def unattacked(model, data, spec):
        x = data.x.repeat(len(spec.eps_grid), *([1] * (data.x.dim() - 1)))
        return x, maps._predict(model, x)

    seen: list[LatentSpec] = []
    real = maps.compute_map
    monkeypatch.setattr(maps, "_ATTACKED", OrderedDict())
    monkeypatch.setattr(maps, "_attack_grid", unattacked)
    monkeypatch.setattr(maps, "compute_map", lambda *a, **k: seen.append(a[2]) or real(*a, **k))
    return seen


def draw(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Draw the maps").click().run()
    assert not at.exception, at.exception


def test_points_offer_only_what_the_split_holds(specs: list[LatentSpec]) -> None:
    """digits' test split has 450 points: 1000 and 2000 were offered there."""
    at = open_latent()
    points = at.selectbox(key="lat_n")
    assert points.options == ["100", "200", "all 450"] and points.value == 450
    assert [s.n for s in specs] == [450, 450]
    at.selectbox(key="lat_split").set_value("train")
    draw(at)
    assert at.selectbox(key="lat_n").options == ["100", "200", "450", "1000", "all 1347"]
    at.selectbox(key="lat_n").set_value(1000)
    draw(at)
    assert specs[-1].n == 1000 and specs[-1].split == "train"
    # Back to the test split with 1000 chosen: the choice cannot stand, and the page says what it uses instead.
    at.selectbox(key="lat_split").set_value("test")
    draw(at)
    assert at.selectbox(key="lat_n").value == 450
    assert any("has 450 points, fewer than the 1000 chosen before: the maps use all 450" in i.value for i in at.info)
    captions = [c.value for c in at.caption if " of penultimate" in c.value]
    assert len(captions) == 2 and all("450 points" in c for c in captions), captions
    assert all(s.n <= 450 for s in specs if s.split == "test"), "never more points than the test split holds"


def test_tsne_over_its_limit_is_cut_with_a_note_before_anything_runs(specs: list[LatentSpec],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fitted = []

    def quick_tsne(clean: np.ndarray, adversarial: list[np.ndarray], *, seed: int = 0):
        fitted.append(len(clean) * (1 + len(adversarial)))
        return clean[:, :2].copy(), np.stack([a[:, :2] for a in adversarial])

    monkeypatch.setattr(maps, "tsne_joint", quick_tsne)
    at = open_latent(lat_projection="tsne", lat_split="train", lat_n=1000)
    # PGD-AT ε = 0.1 (ℓ∞): 6 ε, so each point brings 6 twins and 857 × 7 ≤ 6000 points fit in one t-SNE.
    assert [s.n for s in specs] == [857, 857] and all(s.projection == "tsne" for s in specs)
    assert fitted == [857 * 7, 857 * 7]
    note = next(i.value for i in at.info if "t-SNE" in i.value)
    assert "at most 857 points at 6 ε" in note and "first 857 of the 1000 points chosen" in note
    captions = [c.value for c in at.caption if " of penultimate" in c.value]
    assert len(captions) == 2 and all(c.startswith("t-SNE of") and "857 points" in c for c in captions)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")
              if '"Primary' in c.proto.spec or '"Comparison' in c.proto.spec]
    assert titles and all(t.endswith("· t-SNE") for t in titles), titles
    assert not any("PCA" in w.value for w in at.warning)
    # Within the limit nothing is cut and nothing is said.
    at.selectbox(key="lat_n").set_value(450)
    draw(at)
    assert specs[-1].n == 450 and not any("t-SNE" in i.value for i in at.info)


def test_a_projection_other_than_the_chosen_one_is_said_beside_its_chart() -> None:
    """UMAP needs more than 16 points and draws PCA below that: the caption under the chart says so, and the title
    names the projection shown."""
    from dashboard.components import latent_views as views

    n = 12
    note = "UMAP needs more than 16 points for its 15 neighbours; got 12, so this map is PCA."
    latent = maps.LatentMap(eps_grid=np.array([0.1]), indices=np.arange(n), y=np.arange(n) % 3,
                            pred_clean=np.arange(n) % 3, pred_adv=np.zeros((1, n), dtype=np.int64),
                            clean_xy=np.zeros((n, 2), np.float32), adv_xy=np.zeros((1, n, 2), np.float32), scores={},
                            info={"method": "pca", "method_label": "PCA", "note": note, "layer_label": "penultimate",
                                  "feature_dim": 128, "seconds": {"attack": 1.0, "fit": 0.1}})
    caption = views.map_caption(latent, "umap")
    assert caption.startswith(f"**PCA instead of UMAP**: {note} PCA of penultimate (128 features), 12 points.")
    assert views.map_caption(latent, "pca").startswith("PCA of penultimate")
    assert views.map_title("Primary: m", latent) == "Primary: m · PCA"


def test_a_link_to_the_train_split_keeps_its_points(specs: list[LatentSpec]) -> None:
    """The split is read before the Points choices are drawn, so a link's 1000 train points are on offer."""
    at = AppTest.from_file(APP, default_timeout=300)
    for key, value in {"lat_projection": "PCA", "lat_split": "train", "lat_n": "1000"}.items():
        at.query_params[key] = value
    at.run()
    at.switch_page("../pages/latent.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="lat_n").value == 1000 and at.selectbox(key="lat_split").value == "train"
    assert {(s.split, s.n, s.projection) for s in specs} == {("train", 1000, "pca")}
