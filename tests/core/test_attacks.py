"""Invariants every attack must keep, parametrised over the registry, plus exact answers on a linear model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.attacks import ATTACKS, PGD, Attack, make_attack, project, threat_norm
from core.errors import ConfigError

CASES = [
    ("fgsm", {}), ("fgsm", {"random_start": True, "step_factor": 1.25}), ("nfgsm", {}),
    ("pgd", {"steps": 5}), ("pgd", {"steps": 5, "norm": "l2"}), ("pgd", {"steps": 3, "restarts": 2}),
    ("trades", {"steps": 5}), ("tpgd", {"steps": 5, "temperature": 0.1}), ("deepfool", {}),
    ("deepfool", {"norm": "linf"}), ("apgd", {"steps": 10}), ("apgd", {"steps": 10, "loss": "dlr", "norm": "l2"}),
    ("apgd", {"steps": 10, "loss": "dlr", "targets": 3}), ("quick", {"steps": 5}),
    ("cw", {"steps": 5, "search_steps": 2}), ("fmn", {"steps": 10}), ("fmn", {"steps": 10, "norm": "l2"}),
    ("square", {"queries": 30}), ("full", {"steps": 3, "targets": 3, "square_queries": 20}),
    ("full", {"steps": 3, "targets": 2, "norm": "l2"}),
    ("langevin", {"steps": 5}), ("langevin", {"steps": 5, "noise": "gaussian", "norm": "l2"}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for name, kw in CASES]


def small_model() -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.0), nn.Linear(32, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(24, 1, 8, 8, generator=gen), torch.randint(0, 10, (24,), generator=gen)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_attack_invariants(name: str, kwargs: dict, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    check_invariants(make_attack(name, **kwargs), *batch)


@pytest.mark.parametrize("name", ["pgd", "tpgd"])
def test_targeted_attack_invariants(name: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    keep = y != 4
    check_invariants(make_attack(name, steps=5, target=4), x[keep], y[keep])


def check_invariants(attack: Attack, x: torch.Tensor, y: torch.Tensor) -> None:
    """Inside the (per-sample) ε-ball and the box, mode restored, success = re-prediction, seed → same output."""
    model = small_model().train()
    eps = torch.linspace(0.01, 0.2, len(x))
    result = attack(model, x, y, eps, generator=torch.Generator().manual_seed(3))
    radius = attack.radius(eps)
    assert (threat_norm(result.x_adv - x, attack.config.norm) <= radius + 1e-6).all()
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert model.training, "the model's train mode must be restored"
    with torch.no_grad():
        model.eval()
        again = model(result.x_adv).argmax(1)
    assert torch.equal(result.success, again != y)
    assert torch.allclose(result.norms["linf"], (result.x_adv - x).flatten(1).abs().amax(1))
    second = attack(model, x, y, eps, generator=torch.Generator().manual_seed(3))
    assert torch.equal(second.x_adv, result.x_adv), "same seed must give the same output"


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_attack_restores_eval_mode_too(name: str, kwargs: dict, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = small_model().eval()
    make_attack(name, **kwargs)(model, *batch, 0.1)
    assert not model.training


def test_pgd_beats_nothing_and_grows_with_eps(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    model = small_model()
    rates = [PGD(steps=10)(model, x, y, eps).success.float().mean().item() for eps in (0.0, 0.05, 0.3)]
    clean_wrong = (model(x).argmax(1) != y).float().mean().item()
    assert rates[0] == pytest.approx(clean_wrong)
    assert rates[0] <= rates[1] <= rates[2]
    assert rates[2] > rates[0]


def test_pgd_on_linear_model_reaches_analytic_linf_optimum() -> None:
    """For a binary linear model the ℓ∞ optimum is x − ε·sign(w₁−w₀) when the box does not bind."""
    torch.manual_seed(0)
    model = nn.Linear(5, 2)
    x = torch.full((1, 5), 0.5)
    y = torch.tensor([0])
    eps = 0.1
    result = PGD(steps=20, random_start=False)(model, x, y, eps)
    direction = (model.weight[1] - model.weight[0]).sign().detach()
    assert torch.allclose(result.x_adv, x + eps * direction, atol=1e-6)


def test_l2_projection_is_exact() -> None:
    delta = torch.randn(4, 3, 5)
    out = project(delta, torch.full((4,), 0.5), "l2")
    assert torch.allclose(out.flatten(1).norm(dim=1), torch.full((4,), 0.5), atol=1e-5)
    per_patch = project(delta, torch.full((4,), 0.5), "l2patch")
    assert (per_patch.norm(dim=2) <= 0.5 + 1e-6).all()


@pytest.mark.parametrize("bad", [float("nan"), -0.1, float("inf")], ids=["nan", "negative", "inf"])
def test_bad_eps_is_refused(bad: float, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    with pytest.raises(ConfigError, match="eps"):
        PGD()(small_model(), *batch, bad)


@pytest.mark.parametrize("kwargs,match", [({"steps": 0}, "steps"), ({"norm": "l7"}, "norm"),
                                          ({"step_size": -1.0}, "step_size"), ({"restarts": 1.5}, "restarts")])
def test_bad_config_is_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PGD(**kwargs)


def test_configs_are_hashable_and_frozen() -> None:
    for cls in ATTACKS.values():
        config = cls.config_class()
        assert hash(config) == hash(cls.config_class())
        with pytest.raises(AttributeError):
            config.norm = "l2"  # type: ignore[misc]


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_attack_leaves_global_rng_alone(name: str, kwargs: dict, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = small_model()
    before = torch.get_rng_state()
    make_attack(name, **kwargs)(model, *batch, 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(before, torch.get_rng_state())


def test_unknown_attack_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown attack"):
        make_attack("deepfoo")


class ModeRecorder(nn.Module):
    """Records whether it was in train mode at every forward (an attack must run the model in eval mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = small_model()
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.inner(x)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_model_runs_in_eval_mode_during_attack(name: str, kwargs: dict,
                                               batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = ModeRecorder().train()
    model.inner[3].eval()  # a deliberately frozen submodule must stay frozen afterwards
    make_attack(name, **kwargs)(model, *batch, 0.1)
    assert model.modes and not any(model.modes)
    assert model.training and not model.inner[3].training


class RunawayAttack(PGD):
    """A deliberately broken subclass: the template must still project and clip its output."""

    def _perturb(self, model, x, y, eps, generator, bounds):
        return x + 10.0, torch.empty(0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_template_projects_and_clips_whatever_perturb_returns(norm: str,
                                                              batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    result = RunawayAttack(norm=norm)(small_model(), x, y, 0.05)
    assert (threat_norm(result.x_adv - x, norm) <= 0.05 + 1e-6).all()
    assert result.x_adv.max() <= 1.0


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_zero_eps_leaves_the_input_unchanged(name: str, kwargs: dict,
                                             batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    eps = torch.full((len(x),), 0.1)
    eps[::2] = 0.0
    result = make_attack(name, **kwargs)(small_model(), x, y, eps)
    assert torch.equal(result.x_adv[::2], x[::2])


RANDOM = ("nfgsm", "pgd", "apgd", "square", "full")


@pytest.mark.parametrize("name,kwargs", [c for c in CASES if c[1].get("random_start") or c[0] in RANDOM],
                         ids=[i for c, i in zip(CASES, IDS) if c[1].get("random_start") or c[0] in RANDOM])
def test_generator_seed_matters(name: str, kwargs: dict, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    attack = make_attack(name, **kwargs)
    a = attack(small_model(), *batch, 0.1, generator=torch.Generator().manual_seed(1)).x_adv
    b = attack(small_model(), *batch, 0.1, generator=torch.Generator().manual_seed(2)).x_adv
    assert not torch.equal(a, b)


def test_only_nfgsm_reaches_beyond_eps() -> None:
    eps = torch.tensor([0.1])
    for name, cls in ATTACKS.items():
        expected = 3 * eps if name == "nfgsm" else eps
        assert torch.allclose(cls().radius(eps), expected), name
        assert cls.evaluates_at_eps == (name != "nfgsm")


def test_l2patch_pgd_keeps_every_patch_in_its_ball() -> None:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6, 3))
    x, y = torch.randn(8, 4, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
    result = PGD(norm="l2patch", steps=5)(model, x, y, 0.3, bounds=None)
    assert ((result.x_adv - x).norm(dim=2) <= 0.3 + 1e-6).all()
    with pytest.raises(ConfigError, match="l2patch"):
        PGD(norm="l2patch")(model, x.reshape(8, -1), y, 0.3, bounds=None)


def test_restarts_without_random_start_are_refused() -> None:
    with pytest.raises(ConfigError, match="restarts"):
        PGD(restarts=3, random_start=False)


@pytest.mark.parametrize("name,kwargs,match", [
    ("square", {"norm": "l2"}, "linf"), ("cw", {"norm": "linf"}, "'l2'"), ("fmn", {"norm": "l2patch"}, "FMN"),
    ("fmn", {"gamma_init": 1.5}, "gamma_init"), ("cw", {"search_steps": 0}, "search_steps"),
    ("square", {"p_init": 2.0}, "p_init"), ("full", {"norm": "l2patch"}, "full ensemble"),
    ("pgd", {"target": -1}, "target"), ("tpgd", {"target": 1.5}, "target"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_new_attack_configs_are_validated(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_attack(name, **kwargs)


def test_full_ensemble_runs_square_only_for_linf() -> None:
    from core.attacks import FullEnsemble

    linf = [type(a).__name__ for a in FullEnsemble().config.members()]
    l2 = [type(a).__name__ for a in FullEnsemble(norm="l2").config.members()]
    assert linf == ["APGD", "APGD", "FMN", "Square"] and l2 == ["APGD", "APGD", "FMN"]


def test_apgd_drops_points_once_fooled(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A fooled point leaves the batch: its trace is NaN from then on, a robust point's trace is complete, and the
    result still agrees with re-prediction."""
    x, _ = batch
    model = small_model().eval()
    with torch.no_grad():
        y = model(x).argmax(1)  # every point clean-correct
    result = make_attack("apgd", steps=20)(model, x, y, eps=0.01, generator=torch.Generator().manual_seed(0))
    trace = result.loss_trace
    assert trace.shape == (20, len(x))
    finite = torch.isfinite(trace)
    robust = ~result.success
    assert robust.any() and result.success.any()
    assert finite[:, robust].all()
    # For every fooled point the finite prefix is contiguous and shorter than the run (or empty: fooled at start).
    for j in torch.nonzero(result.success).flatten():
        steps_run = int(finite[:, j].sum())
        assert steps_run < 20 and finite[:steps_run, j].all()
    assert torch.equal(model(result.x_adv).argmax(1) != y, result.success)


def test_apgd_halves_the_step_as_the_authors_check_it() -> None:
    """Croce & Hein's ``check_oscillation``: k comparisons (the first with the loss before the window), halve when
    at most ρ·k were rises (``<=``); "no improvement" counts only when the step was not halved last time."""
    from core.attacks.apgd import halve_step

    # k = 4 steps: 3 rises (0.75·4 = 3, so "at most" halves), 4 rises (keeps), 3 rises again but a flat last one.
    window = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0], [2.5, 4.0, 3.0]])
    halved_last = torch.tensor([True, True, True])
    best = torch.tensor([3.0, 4.0, 3.0])
    assert halve_step(window, 0.75, halved_last, best, best).tolist() == [True, False, True]
    # The same climbing point halves for lack of improvement only if its step was not just halved.
    not_halved = torch.tensor([False, False, False])
    assert halve_step(window, 0.75, not_halved, best, best + 1).tolist() == [True, True, True]
    assert halve_step(window, 0.75, not_halved, best, best - 1).tolist() == [True, False, True]


@pytest.mark.parametrize("classes", [10, 4, 100, 3])
def test_the_adaptive_quick_plan_spends_the_fixed_budget_and_no_more(classes: int) -> None:
    """After APGD-CE has left r of n points robust: never weaker than the fixed plan, never over its worst-case
    budget (targets × steps on every point), more targets first (at most the other classes), then restarts."""
    from core.attacks.ensemble import MAX_RESTARTS, QuickConfig, QuickPlan

    fixed, adaptive = QuickConfig(adaptive=False), QuickConfig()
    n, budget = 360, fixed.targets * fixed.targeted_steps * 360
    plain = QuickPlan(fixed.targets, fixed.targeted_steps)
    assert fixed.plan(n, 40, classes) == plain and adaptive.plan(n, n, classes) == plain, "all left: the fixed plan"
    for still_robust in (1, 5, 40, 110, 200, 330, 359):
        plan = adaptive.plan(n, still_robust, classes)
        assert fixed.targets <= plan.targets <= max(fixed.targets, classes - 1)
        assert plan.targeted_steps == fixed.targeted_steps and 0 <= plan.restarts <= MAX_RESTARTS
        assert plan.restart_steps == (fixed.steps // 2 if plan.restarts else 0)
        spent = (plan.targets * plan.targeted_steps + plan.restarts * plan.restart_steps) * still_robust
        assert spent <= budget or plan == plain
    assert adaptive.plan(n, 110, classes).targets == min(max(5, classes - 1), 16), "few left: more targets first"
    assert adaptive.plan(n, 110, 10) == QuickPlan(9, 20, 5, 25), "then restarts with what is left"
    assert adaptive.plan(n, 170, 10) == QuickPlan(9, 20, 1, 25)
    assert adaptive.plan(n, 330, 10) == plain, "most left (ε = 0.1 on a robust model): the fixed plan"
    assert adaptive.plan(n, 100, 2) == plain, "two classes: no APGD-T, so no budget of its to spend on restarts"
