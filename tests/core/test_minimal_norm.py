"""Temperature-PGD and DeepFool: exact answers on linear models and real facts on the shipped digits models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from core.attacks import PGD, DeepFool, TemperaturePGD
from core.data import load_dataset
from core.errors import ConfigError
from core.models import load_checkpoint

MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"


def linear_model(d: int = 6, k: int = 2, seed: int = 0) -> nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, k)
    with torch.no_grad():
        model.weight.copy_(torch.randn(k, d, generator=gen))
        model.bias.copy_(torch.randn(k, generator=gen) * 0.1)
    return model


def test_tpgd_with_temperature_one_is_exactly_pgd() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 6, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    model = linear_model(k=3)
    a = PGD(steps=7)(model, x, y, 0.1, generator=torch.Generator().manual_seed(5)).x_adv
    b = TemperaturePGD(steps=7, temperature=1.0)(model, x, y, 0.1, generator=torch.Generator().manual_seed(5)).x_adv
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")], ids=["zero", "negative", "nan"])
def test_tpgd_refuses_bad_temperatures(bad: float) -> None:
    with pytest.raises(ConfigError, match="temperature"):
        TemperaturePGD(temperature=bad)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_finds_the_analytic_distance_of_a_linear_classifier(norm: str) -> None:
    """Binary linear model: the distance to the boundary is |f1 − f0| / ‖w1 − w0‖ (dual norm: ℓ2 or ℓ1)."""
    model = linear_model(d=6, k=2)
    gen = torch.Generator().manual_seed(1)
    x = 0.4 + 0.2 * torch.rand(32, 6, generator=gen)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    w = (model.weight[1] - model.weight[0]).detach()
    margin = (logits[:, 1] - logits[:, 0]).abs()
    analytic = margin / (w.norm() if norm == "l2" else w.abs().sum())
    result = DeepFool(norm=norm, overshoot=0.005)(model, x, y, eps=10.0, bounds=None)
    assert result.success.all()
    found = result.norms[norm]
    assert torch.allclose(found, analytic, rtol=0.01, atol=1e-4)


def test_deepfool_margins_are_larger_after_adversarial_training() -> None:
    test = load_dataset("digits", "test").subset(120)
    medians = {}
    for name in ("erm", "pgd-at"):
        model, _ = load_checkpoint(MODELS / f"digits-smallcnn-{name}.safetensors")
        correct = model(test.x).argmax(1) == test.y
        result = DeepFool(norm="l2")(model, test.x[correct], test.y[correct], eps=100.0)
        assert result.success.float().mean() > 0.95
        medians[name] = result.norms["l2"].median().item()
    assert medians["pgd-at"] > 1.5 * medians["erm"], medians


def test_checkpoints_follow_the_authors_schedule() -> None:
    from core.attacks.apgd import checkpoints

    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("name", ["erm", "pgd-at"])
def test_apgd_is_at_least_as_strong_as_pgd_on_shipped_models(name: str) -> None:
    from core.attacks import APGD

    test = load_dataset("digits", "test").subset(200)
    model, _ = load_checkpoint(MODELS / f"digits-smallcnn-{name}.safetensors")
    gen = torch.Generator().manual_seed(0)
    pgd = PGD(steps=10)(model, test.x, test.y, 0.1, generator=gen).robust.float().mean().item()
    apgd_ce = APGD(steps=50)(model, test.x, test.y, 0.1, generator=gen).robust.float().mean().item()
    apgd_t = APGD(steps=50, loss="dlr", targets=3)(model, test.x, test.y, 0.1, generator=gen)
    worst = (~(APGD(steps=50)(model, test.x, test.y, 0.1, generator=torch.Generator().manual_seed(0)).success
               | apgd_t.success)).float().mean().item()
    assert apgd_ce <= pgd + 0.005, (apgd_ce, pgd)
    assert worst <= apgd_ce


def test_quick_ensemble_is_the_worst_case_of_its_parts() -> None:
    from core.attacks import APGD, QuickEnsemble

    test = load_dataset("digits", "test").subset(150)
    model, _ = load_checkpoint(MODELS / "digits-smallcnn-pgd-at.safetensors")
    quick = QuickEnsemble(steps=30)(model, test.x, test.y, 0.1, generator=torch.Generator().manual_seed(0))
    for part in (APGD(steps=30), APGD(steps=30, loss="dlr", targets=3)):
        alone = part(model, test.x, test.y, 0.1, generator=torch.Generator().manual_seed(0))
        assert quick.robust.float().mean() <= alone.robust.float().mean() + 1e-9
    clean_wrong = model(test.x).argmax(1) != test.y
    assert quick.success[clean_wrong].all()
