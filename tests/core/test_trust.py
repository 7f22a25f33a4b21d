"""Trust checks: healthy shipped models pass, models built to mask gradients or to misbehave are caught."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn

from core.data import load_dataset
from core.errors import ConfigError
from core.evaluation import trust
from core.evaluation.trust import TrustCheck, checks_to_frame, run_trust_checks
from core.models import load_checkpoint

MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"
N_POINTS = 64
EPS = 0.1


def shipped(method: str) -> nn.Module:
    model, _ = load_checkpoint(MODELS / f"digits-smallcnn-{method}.safetensors")
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Batches this small gain nothing from a second intra-op thread, and on a shared, oversubscribed machine
    two threads waiting on each other make every step many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("digits", "test")
    return data.x[:N_POINTS], data.y[:N_POINTS]


def by_key(checks: list[TrustCheck]) -> dict[str, TrustCheck]:
    return {check.key: check for check in checks}


class Rounded(nn.Module):
    """Quantises the input to 5 levels before the model: torch.round has a zero gradient everywhere."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 4) / 4)


class Scaled(nn.Module):
    """Multiplies the logits by a huge factor: same predictions, but the cross-entropy saturates to 0 in float32."""

    def __init__(self, model: nn.Module, factor: float = 1e4) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.factor


class Constant(nn.Module):
    """Always predicts one class whatever the input (the input stays in the graph, with a zero gradient)."""

    def __init__(self, label: int, num_classes: int = 10) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.nn.functional.one_hot(torch.tensor(label), num_classes).float() * 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1) + 0 * x.flatten(1).sum(1, keepdim=True)


class Noisy(nn.Module):
    """Adds fresh noise to the input on every call, even in eval mode (its own generator: no global RNG)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.gen = model, torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + 0.05 * torch.randn(x.shape, generator=self.gen))


@pytest.fixture(scope="module")
def healthy_checks(digits: tuple[torch.Tensor, torch.Tensor]) -> dict[str, list[TrustCheck]]:
    return {method: run_trust_checks(shipped(method), *digits, eps=EPS, seed=0) for method in ("pgd-at", "erm")}


@pytest.mark.parametrize("method", ["pgd-at", "erm"])
def test_healthy_models_pass_the_basic_checks(method: str, healthy_checks: dict) -> None:
    checks = by_key(healthy_checks[method])
    for key in ("gradients", "large_eps", "softmax", "randomness", "blackbox"):
        assert checks[key].status == "green", (key, checks[key].finding)
    assert checks["large_eps"].value["robust_acc"] <= trust.LARGE_EPS_AMBER
    assert checks["gradients"].value["zero_fraction"] == 0.0
    assert checks["blackbox"].value["skipped"] is False


def test_every_check_is_complete_and_serialisable(healthy_checks: dict) -> None:
    checks = healthy_checks["pgd-at"]
    assert [c.key for c in checks] == ["gradients", "blackbox", "large_eps", "fgsm_vs_pgd", "more_steps",
                                       "temperature", "softmax", "randomness"]
    for check in checks:
        assert check.status in ("green", "amber", "red")
        assert check.title and check.finding and check.explanation
        assert any(name in check.explanation for name in ("Athalye", "Carlini", "Croce", "Tian"))
        json.dumps(check.value)
        assert all(not isinstance(v, float) or math.isfinite(v) for v in check.value.values())


def test_pgd_at_is_more_robust_than_erm_in_the_findings(healthy_checks: dict) -> None:
    pgd_at = by_key(healthy_checks["pgd-at"])["more_steps"].value["pgd_robust_acc"]
    erm = by_key(healthy_checks["erm"])["more_steps"].value["pgd_robust_acc"]
    assert pgd_at > erm + 0.2


def test_softmax_output_is_red(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = nn.Sequential(shipped("erm"), nn.Softmax(dim=1))
    checks = by_key(run_trust_checks(model, digits[0][:30], digits[1][:30], eps=EPS))
    assert checks["softmax"].status == "red"
    assert checks["softmax"].value["probability_rows_fraction"] == 1.0


def test_rounding_input_masks_gradients(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    checks = by_key(run_trust_checks(Rounded(shipped("erm")), digits[0][:60], digits[1][:60], eps=EPS))
    assert checks["gradients"].status == "red"
    assert checks["gradients"].value["zero_fraction"] == 1.0
    assert checks["blackbox"].status == "red", checks["blackbox"].finding
    assert checks["blackbox"].value["beaten"] >= 3


def test_saturated_logits_kill_gradients(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    checks = by_key(run_trust_checks(Scaled(shipped("pgd-at")), digits[0][:30], digits[1][:30], eps=EPS))
    assert checks["gradients"].status == "red"
    assert checks["gradients"].value["zero_fraction"] > 0.9
    assert checks["softmax"].status == "green"


def test_moderately_saturated_logits_are_caught_by_temperature(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Logits ×100: the cross-entropy's gradient underflows to 0 on confident points, so PGD-10 stalls there; T = 10
    brings it back (Tian et al.), and so does T = 0.1 since its step direction no longer underflows; the check
    says how much PGD alone overstated robustness."""
    probe = trust._Probe(Scaled(shipped("erm"), factor=100.0), digits[0][:60], digits[1][:60], EPS, "linf",
                         (0.0, 1.0), 0)
    check = trust.check_temperature(probe)
    assert check.status == "red" and check.value["worst_temperature"] != 1.0
    for temperature in (0.1, 10):
        assert check.value[f"tpgd_robust_acc@{temperature:g}"] < check.value["pgd_robust_acc"] - trust.TPGD_GAP_RED
    assert check.value["gap"] > trust.TPGD_GAP_RED and check.value["pgd_robust_acc"] > 0.5


@pytest.mark.parametrize("fgsm,pgd,pgd100,fgsm_status,steps_status", [
    (0.50, 0.50, 0.50, "green", "green"),
    (0.48, 0.50, 0.44, "amber", "amber"),
    (0.40, 0.50, 0.38, "red", "red"),
], ids=["healthy", "amber", "red"])
def test_fgsm_and_step_checks_grade_their_gaps(fgsm: float, pgd: float, pgd100: float, fgsm_status: str,
                                                 steps_status: str) -> None:
    """FGSM stronger than PGD-10, and PGD-100 far stronger than PGD-10: graded from the robust flags each attack
    left (set here, so the grading is tested on exact gaps; the attacks themselves are tested in test_attacks)."""
    n = 100
    probe = trust._Probe(nn.Identity(), torch.zeros(n, 2), torch.zeros(n, dtype=torch.long), EPS, "linf",
                         (0.0, 1.0), 0)
    probe.flags.update({key: torch.arange(n) < round(frac * n)
                        for key, frac in (("fgsm", fgsm), ("pgd10", pgd), ("pgd100", pgd100))})
    fgsm_check, steps_check = trust.check_fgsm(probe), trust.check_steps(probe)
    assert (fgsm_check.status, steps_check.status) == (fgsm_status, steps_status)
    assert fgsm_check.value["gap"] == pytest.approx(pgd - fgsm)
    assert steps_check.value["drop"] == pytest.approx(pgd - pgd100)
    if fgsm_status != "green":
        assert "FGSM lower by" in fgsm_check.finding


def test_constant_model_does_not_break_at_large_eps(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = digits
    label = int(torch.bincount(y).argmax())
    checks = by_key(run_trust_checks(Constant(label), x, y, eps=EPS))
    assert checks["large_eps"].status == "red"
    assert checks["large_eps"].value["robust_acc"] == pytest.approx(float((y == label).float().mean()))
    assert checks["gradients"].status == "red"


def test_randomised_forward_is_red(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    probe = trust._Probe(Noisy(shipped("pgd-at")), *digits, EPS, "linf", (0.0, 1.0), 0)
    check = trust.check_randomness(probe)
    assert check.status == "red"
    assert check.value["max_abs_diff"] > 0


def test_same_seed_same_checks(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = digits[0][:40], digits[1][:40]
    first = run_trust_checks(shipped("erm"), x, y, eps=EPS, seed=3)
    assert run_trust_checks(shipped("erm"), x, y, eps=EPS, seed=3) == first


def test_l2_skips_square_and_reports_progress(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = digits
    calls: list[tuple[int, int]] = []
    checks = by_key(run_trust_checks(shipped("pgd-at"), x[:40], y[:40], eps=1.0, norm="l2",
                                     on_progress=lambda done, total: calls.append((done, total))))
    assert checks["blackbox"].status == "not run", "a check that does not apply does not clear the model"
    assert checks["blackbox"].value["skipped"] is True
    assert checks["blackbox"].finding.startswith("Not run")
    assert checks["large_eps"].value["eps"] == pytest.approx(8.0)
    assert checks["large_eps"].status == "green"
    assert calls == [(i, len(trust.CHECKS)) for i in range(1, len(trust.CHECKS) + 1)]


def test_model_mode_is_restored(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = nn.Sequential(shipped("erm"), nn.Softmax(dim=1)).train()
    run_trust_checks(model, digits[0][:20], digits[1][:20], eps=EPS, norm="l2")
    assert all(module.training for module in model.modules())


def test_bad_arguments_are_refused(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = digits
    with pytest.raises(ConfigError, match="norm"):
        run_trust_checks(shipped("erm"), x, y, eps=EPS, norm="l1")
    with pytest.raises(ConfigError, match="eps"):
        run_trust_checks(shipped("erm"), x, y, eps=-0.1)
    with pytest.raises(ConfigError, match="samples"):
        run_trust_checks(shipped("erm"), x, y[:-1], eps=EPS)


def test_checks_to_frame(healthy_checks: dict) -> None:
    frame = checks_to_frame(healthy_checks["erm"])
    assert list(frame.columns) == ["key", "title", "status", "finding", "explanation", "value"]
    assert len(frame) == len(trust.CHECKS)
    assert frame.loc[frame["key"] == "softmax", "status"].item() == "green"
    assert checks_to_frame([]).columns.tolist() == list(frame.columns)
