"""t-SNE's size limit is refused before any attack runs, never answered with a PCA map after the attack (a tester
chose t-SNE on 1,000 points, waited ~29 s of attacks and got PCA)."""

from __future__ import annotations

import pytest

import core.latent.maps as maps
from core.data import load_dataset
from core.errors import ConfigError
from core.latent import LatentSpec
from core.latent.projection import TSNE_MAX_POINTS, tsne_max_clean_points
from core.models import build_model

GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def test_the_cap_counts_every_clean_point_with_all_its_twins() -> None:
    assert tsne_max_clean_points(6) == TSNE_MAX_POINTS // 7 == 857
    assert tsne_max_clean_points(8) == 666
    assert 857 * 7 <= TSNE_MAX_POINTS < 858 * 7
    with pytest.raises(ConfigError, match="at least one ε"):
        tsne_max_clean_points(0)


def test_a_tsne_spec_over_the_cap_is_refused_and_one_at_the_cap_accepted() -> None:
    with pytest.raises(ConfigError, match="at most 857 points at 6 ε; got 1000"):
        LatentSpec(run_id="r", dataset="digits", eps_grid=GRID, n=1000, projection="tsne")
    assert LatentSpec(run_id="r", dataset="digits", eps_grid=GRID, n=857, projection="tsne").n == 857
    assert LatentSpec(run_id="r", dataset="digits", eps_grid=GRID, n=1000, projection="umap").n == 1000


def test_compute_map_refuses_before_it_attacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """compute_map takes data already cut; data larger than the cap is refused before the attack, not mapped by PCA
    after it."""
    def no_attack(*args, **kwargs):
        raise AssertionError("the attack ran before the size was checked")

    monkeypatch.setattr(maps, "_attack_grid", no_attack)
    data = load_dataset("digits", split="train").subset(1000)
    spec = LatentSpec(run_id="r", dataset="digits", eps_grid=GRID, n=450, projection="tsne")
    with pytest.raises(ConfigError, match="t-SNE .* at most 857 points"):
        maps.compute_map(build_model("smallcnn", seed=0), data, spec)
