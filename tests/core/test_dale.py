"""DALE (Langevin perturbations, primal-dual ν), MART and the class-wise defences, with real runs on digits."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from core.attacks import PGD, Langevin
from core.data import load_dataset
from core.errors import ConfigError
from core.models import build_model, load_checkpoint
from core.store import Registry
from core.training import TrainConfig, train
from core.training.classwise import adaptive_weights, class_report, tune_logit_bias
from core.training.epoch import train_epoch
from core.training.loop import make_optimizer
from core.training.methods import METHODS, MethodState, mode_invariant, shares_clean_pass
from tests.core.test_models import _single_thread  # noqa: F401 (autouse fixture)


def small_model() -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = 0.2 + 0.6 * torch.rand(16, 1, 8, 8, generator=gen)  # away from the [0,1] edges
    return x, torch.randint(0, 10, (16,), generator=gen)


def test_zero_noise_langevin_is_pgd_without_random_start(batch) -> None:
    """In ℓ∞ (the paper's setting) the steps are signs, so the iterates agree exactly. (In ℓ2 the directions agree
    too, but a normalised gradient of a batch-mean loss with a tiny p_y is not exact in float32.)"""
    x, y = batch
    model = small_model()
    langevin = Langevin(steps=6, step_size=0.03, noise_scale=0.0, init_scale=0.0)
    pgd = PGD(steps=6, step_size=0.03, random_start=False)
    eps = 0.1
    a = langevin(model, x, y, eps, generator=torch.Generator().manual_seed(0)).x_adv
    b = pgd(model, x, y, eps, generator=torch.Generator().manual_seed(0)).x_adv
    assert torch.allclose(a, b, atol=1e-6), "sign(∇ log(1 − p_y)) = sign(∇ CE): the same iterates"


def test_laplacian_noise_enters_inside_the_sign_gaussian_outside(batch) -> None:
    x, y = batch
    model = small_model()
    step = 0.02
    common = dict(steps=1, step_size=step, init_scale=0.0)
    lap = Langevin(noise="laplacian", noise_scale=1.0, **common)(model, x, y, 0.1,
                                                              generator=torch.Generator().manual_seed(0))
    moves = (lap.x_adv - x).abs()
    assert torch.allclose(moves, torch.full_like(moves, step), atol=1e-6), "a sign step: every pixel moves by η"
    gauss = Langevin(noise="gaussian", noise_scale=0.005, **common)(model, x, y, 0.1,
                                                                  generator=torch.Generator().manual_seed(0))
    moves = (gauss.x_adv - x).abs()
    assert (moves - step).abs().max() > 1e-3, "noise added after the sign: steps are no longer exactly η"
    assert moves.max() <= 0.1 + 1e-6


def test_noise_to_gradient_ratio_is_reported_and_grows_with_the_batch() -> None:
    model = small_model()
    gen = torch.Generator().manual_seed(3)
    x, y = 0.2 + 0.6 * torch.rand(64, 1, 8, 8, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    attack = Langevin(noise="laplacian", noise_scale=1e-3, steps=1, init_scale=0.0)
    attack(model, x[:8], y[:8], 0.1, generator=torch.Generator().manual_seed(0))
    small = attack.last_noise_to_grad
    attack(model, x[:8].repeat(8, 1, 1, 1), y[:8].repeat(8), 0.1, generator=torch.Generator().manual_seed(0))
    assert small > 0 and attack.last_noise_to_grad == pytest.approx(8 * small, rel=0.2), \
        "ℓ_pert is a batch mean: the same points 8 times over make each gradient 8× smaller"


def test_shared_clean_pass_gives_the_same_step_as_two_passes() -> None:
    """DALE's training step takes f(x) from the Langevin chain's first forward pass (one pass fewer). With δ₀ = 0
    the first gradient is at x either way, so a whole epoch's weights agree with the two-pass step's."""
    data = load_dataset("digits", "train").subset(96)
    config = TrainConfig(dataset="digits", method="dale", eps=0.1, batch_size=32, attack_steps=3, epochs=1, seed=0)
    attack = Langevin(steps=3, init_scale=0.0, noise_scale=1e-3)
    trained = {}
    for shared in (True, False):
        method = dataclasses.replace(METHODS["dale"], clean_from_attack=shared)
        model = build_model("smallcnn", seed=0, in_channels=1, image_size=8, num_classes=10)
        assert shares_clean_pass(method, attack, model, distributed=False) is shared
        state = MethodState(nu=config.dale_nu)
        train_epoch(model, make_optimizer(model, config), data, config, method, attack, 1, torch.device("cpu"),
                    state=state)
        trained[shared] = (torch.cat([p.detach().flatten() for p in model.parameters()]), state.nu, state.means())
    (w_shared, nu_shared, parts_shared), (w_two, nu_two, parts_two) = trained[True], trained[False]
    assert (w_shared - w_two).abs().max() < 1e-5 and nu_shared == pytest.approx(nu_two, abs=1e-7)
    assert parts_shared["loss_nom"] == pytest.approx(parts_two["loss_nom"], rel=1e-5)
    assert not torch.equal(w_shared, torch.cat([p.detach().flatten() for p in build_model(
        "smallcnn", seed=0, in_channels=1, image_size=8, num_classes=10).parameters()])), "the epoch trained"


def test_clean_pass_is_shared_only_where_train_and_eval_mode_agree() -> None:
    dale, attack = METHODS["dale"], Langevin(steps=2)
    smallcnn = build_model("smallcnn", seed=0, in_channels=1, image_size=8, num_classes=10)
    assert shares_clean_pass(dale, attack, smallcnn, distributed=False)
    assert not shares_clean_pass(dale, attack, smallcnn, distributed=True), "torchrun keeps DDP's single forward"
    assert not shares_clean_pass(METHODS["pgd-at"], PGD(steps=2), smallcnn, distributed=False)
    batchnorm = build_model("preact_resnet18", seed=0, in_channels=1, num_classes=10, width=4)
    dropout = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 10))

    class Custom(nn.Module):  # a plugin's module may branch on self.training
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :10]

    for model in (batchnorm, dropout, Custom()):
        assert not mode_invariant(model) and not shares_clean_pass(dale, attack, model, distributed=False)


def test_perturb_with_clean_returns_the_clean_logits_and_the_same_chain(batch) -> None:
    x, y = batch
    model = small_model()
    attack = Langevin(steps=4, init_scale=0.0, noise_scale=1e-3)
    plain = attack.perturb(model, x, y, 0.1, generator=torch.Generator().manual_seed(0))[0]
    shared, logits = attack.perturb_with_clean(model, x, y, 0.1, clean_forward=model,
                                               generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain, shared) and not logits.requires_grad
    assert torch.allclose(logits, model(x), atol=1e-6)
    moved = Langevin(steps=4, init_scale=1e-3, noise_scale=1e-3).perturb_with_clean(
        model, x, y, 0.1, clean_forward=model, generator=torch.Generator().manual_seed(0))[0]
    assert (moved - x).abs().max() <= 0.1 + 1e-6


@pytest.mark.parametrize("confident", [False, True], ids=["one-pass", "two-pass-fallback"])
def test_clean_term_gradient_comes_with_the_first_step(batch, confident: bool) -> None:
    """The chain's first backward pass also leaves ∇θ Σ aᵢ·CE(f(xᵢ), yᵢ) in .grad, and the first step's input
    gradient is still that of log(1 − p_y). ``confident``: logits ×80 make 1 − p_y underflow for some samples,
    where the one-pass factor cannot be divided out and two passes run instead."""
    x, y = batch
    model = small_model()
    if confident:
        with torch.no_grad():
            model[-1].weight.mul_(80.0)
            model[-1].bias.mul_(80.0)
        margins = model(x).gather(1, y[:, None]).squeeze(1) - model(x).scatter(1, y[:, None], -1e9).amax(1)
        assert (margins > 70).any() and (margins < 60).any(), "the batch mixes underflowing and ordinary samples"
    coeff = torch.linspace(0.5, 2.0, len(y)) / len(y)
    params = list(model.parameters())
    attack = Langevin(steps=1, init_scale=0.0, noise_scale=0.0, step_size=0.01)
    x_adv, logits = attack.perturb_with_clean(model, x, y, 0.1, clean_forward=model, clean_weight=coeff,
                                              params=params, generator=torch.Generator().manual_seed(0))
    got = [p.grad.clone() for p in params]
    expected = torch.autograd.grad((coeff * nn.functional.cross_entropy(model(x), y, reduction="none")).sum(),
                                   params)
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-7 * e.abs().max())
    plain = Langevin(steps=1, init_scale=0.0, noise_scale=0.0, step_size=0.01).perturb(
        model, x, y, 0.1, generator=torch.Generator().manual_seed(0))[0]
    assert torch.equal(x_adv, plain), "the same sign step as the attack alone"
    assert torch.allclose(logits, model(x))


def test_zero_nu_leaves_no_parameter_gradient(batch) -> None:
    x, y = batch
    model = small_model()
    Langevin(steps=2).perturb_with_clean(model, x, y, 0.1, clean_forward=model, clean_weight=torch.zeros(len(y)),
                                         params=list(model.parameters()), generator=torch.Generator().manual_seed(0))
    assert all(p.grad is None for p in model.parameters())


def test_nu_rises_above_rho_and_falls_to_zero_below() -> None:
    config = TrainConfig(method="dale", dale_rho=0.1, dale_dual_lr=0.5, dale_nu=1.0)
    state = MethodState(nu=1.0)
    step = METHODS["dale"].after_step
    step(state, {"loss_nom": 0.9}, config)
    assert state.nu == pytest.approx(1.4)
    for _ in range(40):  # each step lowers ν by η_d·ρ = 0.05 until the clamp at 0
        step(state, {"loss_nom": 0.0}, config)
    assert state.nu == 0.0 and isinstance(state.nu, float)
    fixed = TrainConfig(method="dale", dale_dual_lr=0.0, dale_nu=0.1)
    frozen = MethodState(nu=0.1)
    step(frozen, {"loss_nom": 5.0}, fixed)
    assert frozen.nu == 0.1


def _digits(**overrides) -> TrainConfig:
    base = dict(dataset="digits", arch="smallcnn", eps=0.1, epochs=2, batch_size=64, attack_steps=3, lr=0.05,
                schedule="onecycle", eval_n=90, eval_steps=5)
    return TrainConfig(**{**base, **overrides})


@pytest.mark.slow
def test_dale_records_its_curves_and_nu_follows_the_constraint() -> None:
    registry = Registry()
    loose = train(_digits(method="dale", dale_rho=50.0, dale_dual_lr=0.05), registry=registry).history
    tight = train(_digits(method="dale", dale_rho=1e-4, dale_dual_lr=0.05), registry=registry).history
    for history in (loose, tight):
        for epoch in history:
            assert {"loss_nom", "loss_ro", "nu", "noise_to_grad"} <= set(epoch)
            assert epoch["noise_to_grad"] > 0
    assert loose[-1]["nu"] == 0.0, "the clean loss is far below ρ = 50: ν is pushed to 0"
    assert tight[-1]["nu"] > 1.0, "the clean loss stays above ρ ≈ 0: ν grows"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mart", "dale-kl"])
def test_other_methods_train(method: str) -> None:
    history = train(_digits(method=method, epochs=2, batch_size=32), registry=Registry()).history
    assert history[-1]["loss_ro"] > 0 and history[-1]["clean_acc"] > 0.5, "far above chance (0.1) after two epochs"


@pytest.mark.slow
def test_up_weighting_the_worst_class_raises_its_robust_accuracy() -> None:
    registry = Registry()
    common = dict(method="pgd-at", epochs=4, batch_size=32, eval_n=0)
    plain = train(_digits(**common), registry=registry)
    model, _ = load_checkpoint(plain.checkpoint_path)
    test = load_dataset("digits", "test")
    before = class_report(model, test, 0.1, "linf", steps=10)
    worst = before["worst_class"]
    weights = [4.0 if str(c) == worst else 1.0 for c in test.classes]
    weighted = train(_digits(**common, class_weighting="fixed", class_weights=weights), registry=registry)
    after = class_report(load_checkpoint(weighted.checkpoint_path)[0], test, 0.1, "linf", steps=10)
    assert after["per_class_robust_acc"][worst] > before["per_class_robust_acc"][worst] + 0.03, (before, after)
    assert weighted.history[-1]["class_weights"][worst] == 4.0


@pytest.mark.slow
def test_adaptive_weights_follow_the_training_robustness() -> None:
    history = train(_digits(method="pgd-at", class_weighting="adaptive", class_weight_strength=0.5),
                    registry=Registry()).history
    assert "class_weights" not in history[0], "epoch 1 is unweighted"
    weights, robust = history[1]["class_weights"], history[0]["train_robust_per_class"]
    assert sum(weights.values()) == pytest.approx(len(weights))
    weakest, strongest = min(robust, key=robust.get), max(robust, key=robust.get)
    assert weights[weakest] > weights[strongest]


def test_adaptive_weights_formula() -> None:
    assert adaptive_weights([1.0, 1.0], 0.5) == [1.0, 1.0]
    w = adaptive_weights([0.5, 0.9, 0.7], 1.0)
    assert w == pytest.approx([5 / 3, 1 / 3, 1.0]) and sum(w) == pytest.approx(3)


@pytest.mark.parametrize("bound", [0.0, 0.02])
def test_logit_bias_respects_the_clean_accuracy_bound(bound: float) -> None:
    model, _ = load_checkpoint("assets/models/digits-smallcnn-erm")
    test = load_dataset("digits", "test")
    tune, held = test.subset(indices=range(0, 450, 2)), test.subset(indices=range(1, 450, 2))
    result = tune_logit_bias(model, tune, eps=0.05, norm="linf", max_clean_drop=bound, steps=5,
                             evaluate_on=held)
    base = result.rows[0]
    assert base["bias"] == 0.0
    for row in result.rows:
        assert row["allowed"] == (base["clean_acc"] - row["clean_acc"] <= bound + 1e-12)
    chosen = next(r for r in result.rows if r["bias"] == max(result.bias))
    assert chosen["allowed"], "the chosen bias respects the bound on the tuning data"
    lifts = [r for r in result.rows if r["allowed"] and r["worst_robust_acc"] > base["worst_robust_acc"]]
    if max(result.bias) > 0:  # only a bias that lifts the worst class, not one that only moves the mean
        assert chosen["worst_robust_acc"] > base["worst_robust_acc"]
    else:
        assert not lifts, lifts
    assert sum(1 for b in result.bias if b != 0) <= 1


@pytest.mark.parametrize("fields,match", [
    ({"dale_rho": 0.0}, "ρ"), ({"dale_rho": -1.0}, "ρ"), ({"dale_noise_scale": -0.1}, "noise"),
    ({"dale_noise": "uniform"}, "dale_noise"), ({"class_weighting": "fixed"}, "needs class_weights"),
    ({"class_weighting": "fixed", "class_weights": [1.0, 0.0]}, "positive"),
    ({"class_weighting": "fixed", "class_weights": [1.0, float("nan")]}, "positive"),
    ({"class_weights": [1.0, 2.0]}, "only with"), ({"class_weight_strength": 2.0}, "class_weight_strength"),
    ({"method": "erm", "class_weighting": "adaptive"}, "ERM has no attack"),
])
def test_bad_dale_and_weight_options_are_refused(fields: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{"method": "dale", **fields})


def test_wrong_number_of_class_weights_fails_before_the_run_is_registered() -> None:
    registry = Registry()
    config = _digits(method="pgd-at", class_weighting="fixed", class_weights=[1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="3 values but the dataset has 10 classes"):
        train(config, registry=registry)
    assert registry.list_runs() == []


def test_new_options_at_their_defaults_keep_old_run_ids() -> None:
    identity = TrainConfig(method="pgd-at").identity()
    assert "dale_rho" not in identity and "class_weighting" not in identity
    assert "dale_rho" in TrainConfig(method="dale", dale_rho=0.2).identity()
