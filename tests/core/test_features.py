"""Attributions (captum), their change measures, the DCT frequency share, unit scores and ablation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.data import load_dataset
from core.errors import ConfigError
from core.features import (METHODS, ablated, ablation_study, attribute, low_frequency_share, rank_correlation,
                           stroke_share, topk_overlap, unit_activations, unit_maps, unit_scores)
from core.features.attributions import dct_matrix
from core.models import build_model, load_checkpoint
from tests.core.test_models import _single_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model, _ = load_checkpoint("assets/models/digits-smallcnn-pgd-at")
    data = load_dataset("digits", "test")
    return model, data.x[:6], data.y[:6]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_maps_of_the_input_shape_reproducibly(method: str, digits) -> None:
    model, x, y = digits
    model.train()
    state = torch.random.get_rng_state()
    first = attribute(model, x, y, method, n_steps=16, samples=4, seed=1)
    again = attribute(model, x, y, method, n_steps=16, samples=4, seed=1)
    assert first.shape == x.shape and torch.isfinite(first).all() and first.abs().sum() > 0
    assert torch.equal(first, again), "seeded: the same maps twice"
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG is left alone"
    assert model.training, "the model's mode is restored"


def test_integrated_gradients_are_complete() -> None:
    """Σ IG = F(x) − F(baseline) for the target logit (Sundararajan et al.'s completeness axiom)."""
    model = build_model("mlp", seed=0, in_features=64, num_classes=10, hidden=(32,), activation="softplus").eval()
    x = load_dataset("digits", "test").x[:4].flatten(1)
    target = torch.tensor([0, 3, 5, 9])
    maps = attribute(model, x, target, "integrated_gradients", n_steps=64)
    with torch.no_grad():
        gap = model(x).gather(1, target[:, None]).squeeze(1) - model(torch.zeros_like(x))[:, target].diagonal()
    assert torch.allclose(maps.sum(1), gap, rtol=1e-3, atol=1e-4)


def test_gradcam_needs_a_convolution() -> None:
    model = build_model("mlp", seed=0, in_features=2, num_classes=2)
    with pytest.raises(ConfigError, match="Grad-CAM"):
        attribute(model, torch.rand(3, 2), 0, "gradcam")
    with pytest.raises(ConfigError, match="method"):
        attribute(model, torch.rand(3, 2), 0, "lrp")


def test_frequency_share_on_images_of_known_spectrum() -> None:
    dct = dct_matrix(8).float()
    low = torch.outer(dct[0], dct[1])[None, None]    # a single low-frequency DCT basis image
    high = torch.outer(dct[7], dct[6])[None, None]   # a single high-frequency one
    mixed = (low + high) / 2 ** 0.5                  # half of the energy in each
    shares = low_frequency_share(torch.cat([low, high, mixed]))
    assert shares.tolist() == pytest.approx([1.0, 0.0, 0.5], abs=1e-6)


def test_rank_correlation_and_topk_overlap() -> None:
    a = torch.arange(1.0, 65.0).reshape(1, 1, 8, 8)
    assert rank_correlation(a, a).item() == pytest.approx(1.0)
    assert rank_correlation(a, 65 - a).item() == pytest.approx(-1.0)
    assert topk_overlap(a, a, 0.1).item() == 1.0 and topk_overlap(a, 65 - a, 0.1).item() == 0.0


def _two_unit_model() -> nn.Module:
    """penultimate = ReLU(I·x): unit 0 reads feature 0, unit 1 reads feature 1; the head sums them per class."""
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
        model[2].bias.copy_(torch.tensor([2.0, -2.0]))
    return model.eval()


def test_unit_scores_find_the_unit_the_attack_moves() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2
    x = torch.stack([1.0 + 2.0 * y + 0.1 * torch.randn(40, generator=gen),
                     1.0 + 2.0 * y + 0.1 * torch.randn(40, generator=gen)], dim=1)
    x_adv = x.clone()
    x_adv[:, 1] += torch.where(y == 1, -2.0, 2.0)  # the attacker pushes only feature 1 across
    scores = unit_scores(_two_unit_model(), "penultimate", x, y, x_adv)
    assert scores.usefulness[0] > 0.9 and scores.usefulness[1] > 0.9, "both units separate the classes"
    assert scores.robustness[0] == pytest.approx(1.0) and scores.robustness[1] < 0.5
    assert list(scores.quadrant(useful_at=0.5, robust_at=0.5)) == ["useful & robust", "useful & non-robust"]
    assert scores.nonrobust_useful(1, useful_at=0.5) == [1]


def test_ablation_switches_units_off_and_restores_the_model(digits) -> None:
    model, x, y = digits
    with torch.no_grad():
        before = model(x)
        with ablated(model, "penultimate", range(128)):
            off = model(x)
        after = model(x)
    assert torch.equal(before, after), "the hook is gone afterwards"
    assert torch.allclose(off, model.head.bias.expand_as(off)), "all penultimate units off: only the bias is left"
    study = ablation_study(model, "penultimate", x, y, [0, 1, 2], eps=0.1, steps=3)
    assert set(study) >= {"clean_acc", "robust_acc", "clean_acc_ablated", "robust_acc_ablated"}
    assert torch.equal(model(x), before)


def test_constant_maps_have_no_rank_correlation_and_ties_are_averaged() -> None:
    zeros = torch.zeros(1, 1, 8, 8)
    assert torch.isnan(rank_correlation(zeros, zeros)).all() and torch.isnan(topk_overlap(zeros, zeros)).all()
    a, b = torch.tensor([[0.0, 0.0, 1.0, 2.0]]), torch.tensor([[0.0, 0.0, 2.0, 1.0]])
    # Average ranks (1.5, 1.5, 3, 4) vs (1.5, 1.5, 4, 3): ρ = 3.5 / 4.5; breaking ties by position would give 0.8.
    assert rank_correlation(a, b).item() == pytest.approx(7 / 9)


def test_stroke_share_counts_attribution_on_bright_pixels() -> None:
    x = torch.zeros(3, 1, 4, 4)
    x[:, 0, 1, :] = 1.0                                  # one bright row: 4 of 16 pixels are "strokes"
    on = torch.zeros(1, 1, 4, 4)
    on[0, 0, 1, 2] = -3.0                                # all |attribution| on a stroke pixel (sign ignored)
    uniform = torch.ones(1, 1, 4, 4)
    shares = stroke_share(torch.cat([on, uniform, torch.zeros(1, 1, 4, 4)]), x)
    assert shares[:2].tolist() == pytest.approx([1.0, 0.25])
    assert torch.isnan(shares[2]), "an all-zero map has no share"
    with pytest.raises(ConfigError, match="shaped like the images"):
        stroke_share(torch.ones(3, 1, 4, 4), torch.ones(3, 1, 8, 8))


def test_unit_maps_are_spatial_for_convolutions_only(digits) -> None:
    model, x, _ = digits
    maps = unit_maps(model, "body", x)
    assert maps is not None and maps.dim() == 4 and len(maps) == len(x)
    means = maps.mean(dim=(2, 3))
    assert torch.allclose(means, unit_activations(model, "body", x), atol=1e-6), "channel means of the maps"
    assert unit_maps(model, "penultimate", x) is None


def test_a_unit_constant_on_clean_inputs_is_its_own_category_and_never_ablated() -> None:
    """A dead unit drew at η² = 0 and robustness 1 (or 0 when the attack woke it) among the live ones: a tester read
    it as a perfectly robust unit. Now it is 'constant on clean inputs' and the ablation never picks it."""
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 0.0, -1.0]))  # unit 2: ReLU(−1) = 0 on every input
        model[2].weight.copy_(torch.tensor([[-1.0, -1.0, 0.0], [1.0, 1.0, 0.0]]))
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2
    x = torch.stack([1.0 + 2.0 * y + 0.1 * torch.randn(40, generator=gen),
                     1.0 + 2.0 * y + 0.1 * torch.randn(40, generator=gen)], dim=1)
    scores = unit_scores(model.eval(), "penultimate", x, y, x + 0.5)
    assert list(scores.constant) == [False, False, True]
    assert scores.usefulness[2] == 0 and scores.quadrant(useful_at=0.0)[2] == "constant on clean inputs"
    assert 2 not in scores.nonrobust_useful(3, useful_at=0.0), "usefulness 0 ≥ 0, but a dead unit is not useful"
