"""Universal adversarial perturbations on the shipped digits models: the ξ-ball, fooling rates that agree with
re-prediction, the stopping rule, the normals' spectrum, refusals, persistence and cancel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.attacks.norms import threat_norm
from core.data import load_dataset
from core.errors import ConfigError
from core.geometry.analysis import AnalysisCancelled
from core.geometry.universal import UAPSpec, compute_uap, fooling_rate, universal_perturbation
from core.models import load_checkpoint
from core.store import Registry
from core.store.shipped import register_shipped
from tests.core.test_models import _single_thread  # noqa: F401 (autouse fixture)

MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"
ERM = "shipped-digits-smallcnn-erm"


@pytest.fixture(scope="module")
def erm() -> nn.Module:
    return load_checkpoint(MODELS / "digits-smallcnn-erm.safetensors")[0].eval()


def spec(**kw) -> UAPSpec:
    return UAPSpec(**{"run_id": ERM, "dataset": "digits", "n": 100, "max_passes": 3, "batch_size": 32,
                      "holdout_n": 0, **kw})


@pytest.mark.parametrize("norm,xi", [("l2", 3.0), ("linf", 0.3)])
def test_uap_fools_many_images_inside_the_xi_ball(erm: nn.Module, norm: str, xi: float) -> None:
    train = load_dataset("digits", "train").subset(100)
    holdout = load_dataset("digits", "test").subset(100)
    result = compute_uap(erm, train, spec(norm=norm, xi=xi), holdout=holdout)
    v = torch.from_numpy(result.v)
    assert v.shape == (1, 8, 8)
    assert threat_norm(v.unsqueeze(0), norm).item() <= xi * (1 + 1e-5)
    rates = result.fooling_rate
    assert fooling_rate(erm, train.x, torch.zeros_like(v), train.bounds) == 0.0
    assert 1 <= len(rates) <= 3 and rates[0] > 0.2, rates
    # v is the best pass's, and its fooling rate is what re-predicting says.
    assert fooling_rate(erm, train.x, v, train.bounds) == pytest.approx(rates.max())
    assert result.info["best_pass"] == int(np.argmax(rates)) + 1
    assert 0.1 < float(result.fooling_rate_holdout) <= 1.0, "a universal v transfers to unseen images"
    assert result.adv_label_counts.sum() == result.clean_label_counts.sum() == 100
    assert result.info["dominant_share"] == result.adv_label_counts.max() / 100
    assert (result.accepted > 0).all()


def test_uap_stops_once_the_target_fooling_rate_is_reached(erm: nn.Module) -> None:
    train = load_dataset("digits", "train").subset(60)
    result = compute_uap(erm, train, spec(n=60, xi=3.0, delta=0.95, max_passes=40))
    assert len(result.fooling_rate) == 1 and result.info["reached_target"]
    assert result.fooling_rate[0] >= 0.05
    assert "capped at 20" in result.info["notes"][0]


def test_deepfool_normals_share_a_low_dimensional_subspace(erm: nn.Module) -> None:
    """UAP paper §4: the normalised normals' spectrum decays much faster than that of random unit vectors."""
    train = load_dataset("digits", "train").subset(120)
    result = compute_uap(erm, train, spec(n=120, xi=3.0, delta=0.99, max_passes=1))
    normals, rand = result.singular_normals, result.singular_random
    assert normals.shape == rand.shape == (64,)
    assert np.all(np.diff(normals) <= 1e-9) and np.all(np.diff(rand) <= 1e-9)
    assert np.sum(normals**2) == pytest.approx(np.sum(rand**2), rel=1e-6), "both are unit rows, same count"
    top = lambda s: np.sum(s[:8] ** 2) / np.sum(s**2)  # noqa: E731 (share of energy in the top 8 directions)
    assert top(normals) > 1.5 * top(rand), (top(normals), top(rand))


@pytest.mark.parametrize("kwargs,match", [
    (dict(xi=0.0), r"ξ \(xi\) must be in \(0"),
    (dict(xi=-1.0), r"ξ \(xi\) must be in"),
    (dict(xi=float("nan")), r"ξ \(xi\) must be a finite number"),
    (dict(norm="linf", xi=2.0), r"ξ \(xi\) must be in \(0, 1\]"),
    (dict(norm="l1"), "'l2' or 'linf'"),
    (dict(delta=1.5), r"δ \(delta\) must be in"),
    (dict(batch_size=0), "batch_size must be an integer"),
    (dict(holdout_n=-1), "holdout_n must be an integer ≥ 0"),
], ids=["xi-zero", "xi-negative", "xi-nan", "xi-above-linf", "bad-norm", "delta", "batch", "holdout"])
def test_bad_uap_specs_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        spec(**kwargs)


def test_uap_persists_per_run_and_cancel_persists_nothing(atlas_home: Path) -> None:
    registry = Registry()
    register_shipped(registry)
    s = spec(n=40, xi=3.0, max_passes=2, holdout_n=30)
    with pytest.raises(AnalysisCancelled, match="pass 1"):
        universal_perturbation(s, registry=registry, should_stop=lambda: True)
    assert not (registry.home / "geometry").exists()
    first = universal_perturbation(s, registry=registry)
    second = universal_perturbation(s, registry=registry)
    assert second.info["cached"] and first.info["n_holdout"] == 30
    for name in ("v", "fooling_rate", "adv_label_counts", "singular_normals", "fooling_rate_holdout"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert len(list((registry.home / "geometry" / ERM).glob("uap-*.npz"))) == 1
