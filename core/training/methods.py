"""Training methods: each is the loop's attack (if any) plus its loss. ``METHODS`` maps name → method.

* ``erm``      — standard training on clean inputs.
* ``fgsm-rs``  — Wong, Rice, Kolter 2020: FGSM from a uniform random start, α = 1.25ε.
* ``n-fgsm``   — de Jorge et al. 2022: FGSM from k·ε noise (k = nfgsm_noise), α = ε, no projection to ε.
* ``pgd-at``   — Madry et al. 2018: PGD-K with random start, step 2.5ε/K unless given.
* ``trades``   — Zhang et al. 2019: CE(f(x), y) + β·KL(f(x) ‖ f(x')), x' from KL-PGD.
* ``mart``     — Wang et al. 2020: boosted CE on x' + β·KL(f(x) ‖ f(x'))·(1 − p_y(x)), x' from PGD.
* ``dale``     — Robey et al. 2021: x' from Langevin steps (core.attacks.langevin); loss CE(f(x'), y) + ν·CE(f(x), y);
  ν ← max(0, ν + η_d·(ℓ_nom − ρ)) after every step (η_d = 0 keeps ν fixed).
* ``dale-kl``  — the KL variant: x' from TRADES's KL ascent, loss KL(f(x) ‖ f(x')) + ν·CE(f(x), y), same ν rule.

A loss returns per-sample values (the loop applies class weights, see core.training.classwise), the logits the
training accuracy is read from, and the batch's ℓ_nom (clean CE) and ℓ_ro (robust loss) where it has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.attacks import FGSM, NFGSM, PGD, Attack, Langevin, TRADESAttack
from core.training.config import TrainConfig

if TYPE_CHECKING:
    from core.distributed import DistContext


@dataclass
class MethodState:
    """What a method carries from step to step: the dual variable ν and the current class weights."""

    nu: float = 0.0
    class_weights: torch.Tensor | None = None
    # Running sums of the loss parts: float64 tensors on the model's device (read once per epoch by ``means``).
    sums: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    robust_hits: torch.Tensor | None = None  # per class: training points still right on their adversarial input
    robust_seen: torch.Tensor | None = None

    def count_robust(self, y: torch.Tensor, logits_adv: torch.Tensor) -> None:
        """Tally, per class, the training points whose adversarial input the model still gets right."""
        k = logits_adv.shape[1]
        # Kept on the model's device and read once per epoch: no device sync inside the batch loop.
        hits = torch.bincount(y, weights=(logits_adv.detach().argmax(1) == y).float(), minlength=k)
        seen = torch.bincount(y, minlength=k)
        self.robust_hits = hits if self.robust_hits is None else self.robust_hits + hits
        self.robust_seen = seen if self.robust_seen is None else self.robust_seen + seen

    def reset_epoch(self) -> None:
        self.sums, self.counts, self.robust_hits, self.robust_seen = {}, {}, None, None

    def reduce_robust(self, dist: "DistContext") -> None:
        """Sum the per-class tallies over torchrun's ranks (each saw its share of every batch)."""
        if self.robust_seen is not None:
            self.robust_hits = dist.sum_(self.robust_hits.float())
            self.robust_seen = dist.sum_(self.robust_seen.float())

    def train_robust_per_class(self) -> list[float] | None:
        if self.robust_seen is None:
            return None
        return (self.robust_hits.float() / self.robust_seen.clamp_min(1).float()).cpu().tolist()

    def add(self, name: str, value: float | torch.Tensor) -> None:
        """Add a step's value (a float, or a 0-dim tensor left on its device: no wait for the GPU)."""
        self.sums[name] = self.sums.get(name, 0.0) + value
        self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: float(self.sums[k]) / self.counts[k] for k in self.sums}


def _mean(values: torch.Tensor) -> torch.Tensor:
    """A loss part: the batch mean as a float64 0-dim tensor on the batch's device. Reading it as a number would
    wait for the GPU at every step; the epoch's sum is read once (``MethodState.means``)."""
    return values.detach().mean().double()


Parts = dict[str, Any]  # loss parts: 0-dim tensors (see _mean) or floats
LossOut = tuple[torch.Tensor, torch.Tensor, Parts]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None, TrainConfig, MethodState], LossOut]


def _ce_on_adv(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None,
               config: TrainConfig, state: MethodState) -> LossOut:
    logits = model(x if x_adv is None else x_adv)
    per_sample = F.cross_entropy(logits, y, reduction="none")
    if x_adv is not None:
        state.count_robust(y, logits)
    parts = {"loss_nom" if x_adv is None else "loss_ro": _mean(per_sample)}
    return per_sample, logits, parts


def _clean_and_adv(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of x and x': one forward pass over both batches when the model has no BatchNorm (faster on a CPU);
    two passes otherwise, as the authors do, so clean and adversarial BatchNorm statistics are not mixed."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model(x), model(x_adv)
    logits = model(torch.cat([x, x_adv]))
    return logits[: len(x)], logits[len(x):]


def _kl(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(f(x) ‖ f(x'))."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.log_softmax(logits_clean, dim=1), reduction="none",
                    log_target=True).sum(1)


def _trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None,
                 config: TrainConfig, state: MethodState) -> LossOut:
    assert x_adv is not None
    logits_clean, logits_adv = _clean_and_adv(model, x, x_adv)
    state.count_robust(y, logits_adv)
    nom, kl = F.cross_entropy(logits_clean, y, reduction="none"), _kl(logits_clean, logits_adv)
    return nom + config.trades_beta * kl, logits_clean, {"loss_nom": _mean(nom), "loss_ro": _mean(kl)}


def _mart_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None,
               config: TrainConfig, state: MethodState) -> LossOut:
    assert x_adv is not None
    logits_clean, logits_adv = _clean_and_adv(model, x, x_adv)
    state.count_robust(y, logits_adv)
    probs_adv = F.softmax(logits_adv, dim=1)
    wrong = probs_adv.scatter(1, y[:, None], 0.0).amax(dim=1)
    boosted = F.cross_entropy(logits_adv, y, reduction="none") - torch.log((1.0001 - wrong).clamp_min(1e-12))
    p_true = F.softmax(logits_clean, dim=1).gather(1, y[:, None]).squeeze(1)
    per_sample = boosted + config.mart_beta * _kl(logits_clean, logits_adv) * (1.0 - p_true)
    nom = F.cross_entropy(logits_clean.detach(), y)
    return per_sample, logits_adv, {"loss_nom": _mean(nom), "loss_ro": _mean(boosted)}


def _dale_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None,
               config: TrainConfig, state: MethodState, logits_clean: torch.Tensor | None = None) -> LossOut:
    """``logits_clean``: f(x), detached, when the attack's first step already computed it and put the gradient
    of ν·CE(f(x), y) into the parameters' .grad (``Langevin.perturb_with_clean``); otherwise both passes run here."""
    assert x_adv is not None
    if logits_clean is None:
        logits_clean, logits_adv = _clean_and_adv(model, x, x_adv)
    else:
        logits_adv = model(x_adv)
    state.count_robust(y, logits_adv)
    nom = F.cross_entropy(logits_clean, y, reduction="none")
    ro = (_kl(logits_clean, logits_adv) if config.method == "dale-kl"
          else F.cross_entropy(logits_adv, y, reduction="none"))
    return ro + state.nu * nom, logits_clean, {"loss_nom": _mean(nom), "loss_ro": _mean(ro)}


def _dual_step(state: MethodState, parts: Parts, config: TrainConfig) -> None:
    """ν ← max(0, ν + η_d·(ℓ_nom − ρ)): a plain float, so it lives on no device (the authors' clamp returned a
    CUDA tensor)."""
    state.nu = max(0.0, state.nu + config.dale_dual_lr * (float(parts["loss_nom"]) - config.dale_rho))


@dataclass(frozen=True)
class Method:
    name: str
    make_attack: Callable[[TrainConfig], Attack | None]
    loss: LossFn
    single_step: bool = False
    description: str = ""
    after_step: Callable[[MethodState, Parts, TrainConfig], None] | None = None
    uses_nu: bool = False
    # The loss takes ``logits_clean`` from the attack's first step (see shares_clean_pass).
    clean_from_attack: bool = False


_MODE_DEPENDENT = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)


def mode_invariant(model: nn.Module) -> bool:
    """True when ``model`` computes the same function in train and eval mode: it is built only from torch.nn
    and this package's modules, none of them a normalisation with running statistics or a dropout. (A plugin's
    own module might branch on ``self.training``, so it does not count.)"""
    return all(not isinstance(m, _MODE_DEPENDENT) and type(m).__module__.startswith(("torch.nn.", "core.models."))
               for m in model.modules())


def shares_clean_pass(method: Method, attack: Attack | None, model: nn.Module, distributed: bool) -> bool:
    """Whether the training step takes f(x), and the gradient of its ν·CE term, from the attack's first forward
    and backward passes (DALE with Langevin steps on a mode-invariant model, one process): the clean term costs
    no pass of its own. Under torchrun both passes stay in the DistributedDataParallel wrapper's single forward."""
    return (method.clean_from_attack and isinstance(attack, Langevin) and not distributed
            and mode_invariant(model))


def _pgd(config: TrainConfig) -> Attack:
    return PGD(norm=config.norm, steps=config.attack_steps, step_size=config.attack_step_size)


def _trades(config: TrainConfig) -> Attack:
    return TRADESAttack(norm=config.norm, steps=config.attack_steps, step_size=config.attack_step_size)


def _langevin(config: TrainConfig) -> Attack:
    return Langevin(norm=config.norm, steps=config.attack_steps, step_size=config.attack_step_size,
                    noise=config.dale_noise, noise_scale=config.dale_noise_scale)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("erm", lambda c: None, _ce_on_adv, description="standard training on clean inputs"),
        Method("fgsm-rs", lambda c: FGSM(norm=c.norm, random_start=True, step_factor=1.25), _ce_on_adv,
               single_step=True, description="FGSM from a random start (Wong et al. 2020)"),
        Method("n-fgsm", lambda c: NFGSM(norm=c.norm, noise_factor=c.nfgsm_noise, step_factor=1.0), _ce_on_adv,
               single_step=True, description="noisy FGSM without projection (de Jorge et al. 2022)"),
        Method("pgd-at", _pgd, _ce_on_adv, description="PGD adversarial training (Madry et al. 2018)"),
        Method("trades", _trades, _trades_loss, description="TRADES: clean CE + β·KL (Zhang et al. 2019)"),
        Method("mart", _pgd, _mart_loss, description="MART: boosted CE + β·KL on misclassified (Wang et al. 2020)"),
        Method("dale", _langevin, _dale_loss, after_step=_dual_step, uses_nu=True, clean_from_attack=True,
               description="DALE: Langevin perturbations, primal-dual ν (Robey et al. 2021)"),
        Method("dale-kl", _trades, _dale_loss, after_step=_dual_step, uses_nu=True,
               description="DALE, KL variant: KL ascent, KL + ν·CE (Robey et al. 2021)"),
    )
}
