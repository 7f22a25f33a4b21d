"""Trust checks shown with every evaluation: signs that a robust-accuracy number may be an artefact of the attack.

Papers:
  * Athalye, Carlini, Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018,
    https://arxiv.org/abs/1802.00420
  * Carlini et al., "On Evaluating Adversarial Robustness", 2019, https://arxiv.org/abs/1902.06705
  * Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks", ICML 2020, https://arxiv.org/abs/2003.01690
  * Tian et al., "Analysis and Applications of Class-wise Robustness in Adversarial Training", KDD 2021

Each check is green (no sign of trouble), amber (look closer) or red (the robust-accuracy number is probably
not to be trusted). Robust accuracies are fractions of all given points; points misclassified clean count as not
robust and are not attacked. Stronger attacks that follow a weaker one run only on the points it left robust
(Croce & Hein 2020), so their numbers are the per-point worst case of both. A check that does not apply to the
threat model (Square is ℓ∞ only) has the status "not run" (NOT_RUN), a finding that starts "Not run" and
``value["skipped"]``: it neither clears nor flags the model.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from core.attacks import FGSM, NORMS, PGD, Attack, TemperaturePGD, make_attack, validate_eps
from core.attacks.base import PRECISIONS, Bounds, autocast_for, eval_mode
from core.errors import ConfigError
from core.utils import make_generator

LOGGER = logging.getLogger(__name__)

GREEN, AMBER, RED, NOT_RUN = "green", "amber", "red", "not run"

# 1. Gradients: fraction of points whose input gradient of the cross-entropy is exactly zero. A handful can be
# normal (float32 softmax saturates on very confident points); any NaN/inf is always red.
ZERO_GRAD_AMBER = 0.01
ZERO_GRAD_RED = 0.10
# 2. Black-box vs white-box: fraction of points Square fools but no white-box attack does.
SQUARE_QUERIES = 100
BLACKBOX_RED = 0.01  # above this fraction red; one or more points at or below it amber
# 3. Very large ε: ℓ∞ radius as a fraction of the data range (0.5 reaches mid-grey from every point); ℓ2 radius is
# the diagonal of the data box (the whole box lies in the ball). Robust accuracy there should be ~0.
LARGE_EPS_LINF_FRACTION = 0.5
LARGE_EPS_STEPS = 10
LARGE_EPS_AMBER = 0.01
LARGE_EPS_RED = 0.05
# 4. FGSM vs PGD: how much lower FGSM's robust accuracy is than PGD-10's (fractions, i.e. 0.01 = 1 point).
PGD_STEPS = 10
FGSM_GAP_AMBER = 0.01
FGSM_GAP_RED = 0.05
# 5. More steps: extra points PGD-100 breaks after PGD-10.
PGD_MANY_STEPS = 100
STEPS_DROP_AMBER = 0.05
STEPS_DROP_RED = 0.10
# 6. Temperature: extra points T-PGD (same steps as PGD) breaks after PGD-10, at the worst temperature.
TEMPERATURES = (0.1, 10.0)
TPGD_GAP_AMBER = 0.05
TPGD_GAP_RED = 0.10
# 7. Softmax outputs: a row is probability-like if non-negative and summing to 1 within PROB_TOL.
PROB_TOL = 1e-3
SOFTMAX_RED = 0.9
# 8. Randomness: two forward passes in eval mode differ by more than this (relative to the logits' scale).
RANDOM_TOL = 1e-4
# 9. Precision (only for low-precision evaluations): PGD in bf16/fp16 leaves this many more points robust than fp32.
PRECISION_GAP_AMBER = 0.01
PRECISION_GAP_RED = 0.03


@dataclass(frozen=True)
class TrustCheck:
    """One check's verdict, ready to show: a coloured title, the measured finding and what to do about it."""

    key: str  # stable id, e.g. "gradients"
    title: str  # short, e.g. "Gradients are alive"
    status: str  # "green" | "amber" | "red" | "not run"
    finding: str  # one sentence with the measured numbers
    explanation: str  # why it matters and what to do, with the paper
    value: dict  # the measured numbers (JSON-serialisable)


@dataclass
class _Probe:
    """The model, the points and a cache of per-point robust flags, so each attack runs once per call."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    eps: float
    norm: str
    bounds: Bounds
    seed: int
    flags: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.y)

    def generator(self, key: str) -> torch.Generator:
        return make_generator(self.seed, "trust", key, device="cuda" if self.x.device.type == "cuda" else "cpu")

    def clean_correct(self) -> torch.Tensor:
        if "clean" not in self.flags:
            with torch.no_grad():
                self.flags["clean"] = self.model(self.x).argmax(1) == self.y
        return self.flags["clean"]

    def robust(self, key: str, attack: Attack, *, eps: float | None = None, among: str = "clean") -> torch.Tensor:
        """Per-point robust flags of ``attack`` run only on the points robust under ``among``."""
        if key not in self.flags:
            todo = torch.nonzero(self.flags[among] if among != "clean" else self.clean_correct()).flatten()
            flags = torch.zeros(self.n, dtype=torch.bool, device=self.x.device)
            if len(todo):
                result = attack(self.model, self.x[todo], self.y[todo], self.eps if eps is None else eps,
                                bounds=self.bounds, generator=self.generator(key))
                flags[todo] = result.robust
            self.flags[key] = flags
        return self.flags[key]

    def acc(self, key: str) -> float:
        return float(self.flags[key].float().mean())

    def pgd10(self) -> torch.Tensor:
        return self.robust("pgd10", PGD(norm=self.norm, steps=PGD_STEPS))

    def pgd100(self) -> torch.Tensor:
        self.pgd10()
        return self.robust("pgd100", PGD(norm=self.norm, steps=PGD_MANY_STEPS), among="pgd10")

    def fgsm(self) -> torch.Tensor:
        return self.robust("fgsm", FGSM(norm=self.norm))


def _grade(value: float, amber: float, red: float) -> str:
    return RED if value > red else AMBER if value > amber else GREEN


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def check_gradients(probe: _Probe) -> TrustCheck:
    x = probe.x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(probe.model(x), probe.y, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
    flat = grad.reshape(probe.n, -1)
    nonfinite = (~torch.isfinite(flat)).any(1)
    zero = (flat == 0).all(1) & ~nonfinite
    zero_frac, nonfinite_frac = float(zero.float().mean()), float(nonfinite.float().mean())
    status = RED if nonfinite_frac > 0 else _grade(zero_frac, ZERO_GRAD_AMBER, ZERO_GRAD_RED)
    finding = (f"{_pct(zero_frac)} of {probe.n} points have an all-zero input gradient and {_pct(nonfinite_frac)} "
               "a NaN or infinite one.")
    explanation = (
        "Gradient attacks cannot move a point whose loss gradient is zero or NaN, so robustness there is an "
        "artefact, the first sign of obfuscated gradients (Athalye et al. 2018). Red above "
        f"{_pct(ZERO_GRAD_RED)} zero or any NaN, amber above {_pct(ZERO_GRAD_AMBER)}: check for non-differentiable "
        "layers (rounding, quantisation), saturated outputs, or try a margin/temperature loss and Square.")
    return TrustCheck("gradients", "Gradients are alive", status, finding, explanation,
                      {"zero_fraction": zero_frac, "nonfinite_fraction": nonfinite_frac, "n": probe.n})


def check_blackbox(probe: _Probe) -> TrustCheck:
    title = "Black-box does not beat white-box"
    if probe.norm != "linf":
        return TrustCheck("blackbox", title, NOT_RUN,
                          f"Not run: the Square attack here is ℓ∞ only and this evaluation uses {probe.norm}.",
                          "This check compares the query-based Square attack with the gradient attacks "
                          "(Croce & Hein 2020); it has no ℓ2 version here, so it says nothing about this model.",
                          {"skipped": True, "norm": probe.norm})
    white = probe.fgsm() & probe.pgd10() & probe.pgd100()
    probe.flags["white"] = white
    probe.robust("square", make_attack("square", norm="linf", queries=SQUARE_QUERIES), among="white")
    beaten = int(white.sum() - probe.flags["square"].sum())
    fraction = beaten / probe.n
    status = RED if fraction > BLACKBOX_RED else AMBER if beaten else GREEN
    finding = (f"Square ({SQUARE_QUERIES} queries) fools {beaten} of {int(white.sum())} points that FGSM, PGD-10 "
               f"and PGD-100 all leave robust ({_pct(fraction)} of {probe.n}).")
    explanation = (
        "A black-box attack that sees only outputs should never beat attacks that see gradients; when it does, the "
        "gradients are misleading (Athalye et al. 2018; Carlini et al. 2019; Croce & Hein 2020). Red above "
        f"{_pct(BLACKBOX_RED)} of points, amber for fewer: report the worst case over all attacks and look for "
        "gradient masking.")
    return TrustCheck("blackbox", title, status, finding, explanation,
                      {"skipped": False, "beaten": beaten, "fraction": fraction, "queries": SQUARE_QUERIES,
                       "whitebox_robust_acc": float(white.float().mean())})


def large_eps(norm: str, x: torch.Tensor, bounds: Bounds) -> float:
    """The 'very large' radius of the check: the data range comes from ``bounds`` or, unbounded, from ``x``."""
    span = float(bounds[1] - bounds[0]) if bounds is not None else float(x.max() - x.min()) if x.numel() else 1.0
    if norm == "linf":
        return LARGE_EPS_LINF_FRACTION * span
    dims = x.shape[-1] if norm == "l2patch" else x[0].numel()
    return span * math.sqrt(dims)


def check_large_eps(probe: _Probe) -> TrustCheck:
    radius = large_eps(probe.norm, probe.x, probe.bounds)
    probe.robust("large", PGD(norm=probe.norm, steps=LARGE_EPS_STEPS), eps=radius)
    acc = probe.acc("large")
    finding = f"PGD-{LARGE_EPS_STEPS} at ε = {radius:g} ({probe.norm}) leaves robust accuracy at {_pct(acc)}."
    explanation = (
        "At a radius this large any input can be turned into another class, so robust accuracy must reach about "
        "0; if it does not, the attack is failing, not the model succeeding (Carlini et al. 2019; Athalye et al. "
        f"2018). Red above {_pct(LARGE_EPS_RED)}, amber above {_pct(LARGE_EPS_AMBER)}.")
    return TrustCheck("large_eps", "Large ε breaks everything", _grade(acc, LARGE_EPS_AMBER, LARGE_EPS_RED),
                      finding, explanation, {"eps": radius, "steps": LARGE_EPS_STEPS, "robust_acc": acc})


def check_fgsm(probe: _Probe) -> TrustCheck:
    probe.fgsm()
    probe.pgd10()
    fgsm_acc, pgd_acc = probe.acc("fgsm"), probe.acc("pgd10")
    gap = pgd_acc - fgsm_acc
    finding = (f"Robust accuracy is {_pct(fgsm_acc)} under FGSM and {_pct(pgd_acc)} under PGD-{PGD_STEPS} "
               f"({'FGSM' if gap > 0 else 'PGD'} lower by {100 * abs(gap):.1f} points).")
    explanation = (
        "An iterative attack should be at least as strong as a single step; a stronger FGSM means PGD is being "
        "led astray by a locally misleading loss surface (Carlini et al. 2019; Athalye et al. 2018). Red above "
        f"{100 * FGSM_GAP_RED:g} points, amber above {100 * FGSM_GAP_AMBER:g}: tune PGD's step or use APGD.")
    return TrustCheck("fgsm_vs_pgd", "PGD beats FGSM", _grade(gap, FGSM_GAP_AMBER, FGSM_GAP_RED), finding,
                      explanation, {"fgsm_robust_acc": fgsm_acc, "pgd_robust_acc": pgd_acc, "gap": gap})


def check_steps(probe: _Probe) -> TrustCheck:
    probe.pgd100()
    few, many = probe.acc("pgd10"), probe.acc("pgd100")
    drop = few - many
    finding = (f"Robust accuracy falls from {_pct(few)} after PGD-{PGD_STEPS} to {_pct(many)} after "
               f"PGD-{PGD_MANY_STEPS} ({100 * drop:.1f} points).")
    explanation = (
        "If ten times more steps still break many more points, the attack had not converged and the shorter "
        "number overstates robustness (Carlini et al. 2019; Croce & Hein 2020). Red above "
        f"{100 * STEPS_DROP_RED:g} points, amber above {100 * STEPS_DROP_AMBER:g}: report the stronger attack "
        "(APGD / the quick ensemble).")
    return TrustCheck("more_steps", "More steps change little", _grade(drop, STEPS_DROP_AMBER, STEPS_DROP_RED),
                      finding, explanation, {"pgd_robust_acc": few, "pgd_many_robust_acc": many, "drop": drop,
                                             "steps": PGD_STEPS, "many_steps": PGD_MANY_STEPS})


def check_temperature(probe: _Probe) -> TrustCheck:
    probe.pgd10()
    accs = {}
    for temperature in TEMPERATURES:
        key = f"tpgd{temperature:g}"
        attack = TemperaturePGD(norm=probe.norm, steps=PGD_STEPS, temperature=float(temperature))
        probe.robust(key, attack, among="pgd10")
        accs[temperature] = probe.acc(key)
    worst_t = min(accs, key=accs.__getitem__)
    gap = probe.acc("pgd10") - accs[worst_t]
    finding = (f"T-PGD-{PGD_STEPS} at T = {worst_t:g} takes robust accuracy from {_pct(probe.acc('pgd10'))} "
               f"(PGD-{PGD_STEPS}) to {_pct(accs[worst_t])} ({100 * gap:.1f} points).")
    explanation = (
        "Rescaling the logits by a temperature leaves the classifier unchanged, so a large gain means the "
        "cross-entropy gradient was saturated rather than the model robust (Tian et al. 2021; Carlini et al. 2019). "
        f"Red above {100 * TPGD_GAP_RED:g} points, amber above {100 * TPGD_GAP_AMBER:g}: report the worst case.")
    return TrustCheck("temperature", "Temperature changes little", _grade(gap, TPGD_GAP_AMBER, TPGD_GAP_RED),
                      finding, explanation, {"pgd_robust_acc": probe.acc("pgd10"), "gap": gap,
                                             "worst_temperature": float(worst_t),
                                             **{f"tpgd_robust_acc@{t:g}": acc for t, acc in accs.items()}})


def check_softmax(probe: _Probe) -> TrustCheck:
    with torch.no_grad():
        out = probe.model(probe.x).float()
    prob_like = (out.min(1).values >= -PROB_TOL) & ((out.sum(1) - 1).abs() <= PROB_TOL)
    fraction = float(prob_like.float().mean())
    status = RED if fraction >= SOFTMAX_RED else GREEN
    finding = f"{_pct(fraction)} of output rows are non-negative and sum to 1 (probabilities, not logits)."
    explanation = (
        "Cross-entropy on probabilities applies softmax twice, which flattens the loss and weakens every gradient "
        "attack (Carlini et al. 2019); models must output logits. Red when at least "
        f"{_pct(SOFTMAX_RED)} of rows look like probabilities: remove the final softmax layer.")
    return TrustCheck("softmax", "Outputs are logits", status, finding, explanation,
                      {"probability_rows_fraction": fraction})


def check_randomness(probe: _Probe) -> TrustCheck:
    with torch.no_grad():
        first, second = probe.model(probe.x).float(), probe.model(probe.x).float()
    scale, diff = float(first.abs().max()), float((first - second).abs().max())
    status = RED if not math.isfinite(diff) or diff > RANDOM_TOL * max(1.0, scale) else GREEN
    finding = f"Two forward passes in eval mode differ by at most {diff:.3g} (largest logit {scale:.3g})."
    explanation = (
        "A randomised forward pass makes single-sample gradients noisy, and attacks without expectation over "
        "transformation overstate robustness (Athalye et al. 2018). Red above a relative difference of "
        f"{RANDOM_TOL:g}: attack with EOT or remove the randomness.")
    return TrustCheck("randomness", "Forward pass is deterministic", status, finding, explanation,
                      {"max_abs_diff": diff, "max_abs_logit": scale})


def _zero_gradient_fraction(probe: _Probe, precision: str) -> float:
    x = probe.x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), autocast_for(precision, probe.x.device):
        loss = F.cross_entropy(probe.model(x).float(), probe.y, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return float((grad.reshape(probe.n, -1) == 0).all(1).float().mean())


def check_precision(probe: _Probe, precision: str) -> TrustCheck:
    """Low-precision attacks against the same attack in fp32: rounding can flatten the loss surface (masking)."""
    probe.pgd10()
    low = probe.robust(f"pgd10-{precision}", PGD(norm=probe.norm, steps=PGD_STEPS, precision=precision))
    fp32_acc, low_acc = probe.acc("pgd10"), probe.acc(f"pgd10-{precision}")
    gap = low_acc - fp32_acc
    zero_frac, fp32_zero = _zero_gradient_fraction(probe, precision), _zero_gradient_fraction(probe, "fp32")
    finding = (f"PGD-{PGD_STEPS} leaves {_pct(low_acc)} robust in {precision} and {_pct(fp32_acc)} in fp32 "
               f"({100 * gap:+.1f} points); {_pct(zero_frac)} of the points have an all-zero {precision} input "
               "gradient.")
    explanation = (
        f"Attacks run in {precision} to save time; rounding the logits and gradients can hide the direction that "
        "breaks a point, which is gradient masking by precision, not robustness. Red above "
        f"{100 * PRECISION_GAP_RED:g} points more robust than in fp32 (or more all-zero gradients), amber above "
        f"{100 * PRECISION_GAP_AMBER:g}: report the fp32 numbers.")
    status = _grade(gap, PRECISION_GAP_AMBER, PRECISION_GAP_RED)
    if zero_frac > fp32_zero:
        status = RED
    return TrustCheck("precision", f"{precision} attacks match fp32", status, finding, explanation,
                      {"precision": precision, "fp32_robust_acc": fp32_acc, "low_robust_acc": low_acc, "gap": gap,
                       "zero_fraction": zero_frac, "fp32_zero_fraction": fp32_zero})


CHECKS: tuple[Callable[[_Probe], TrustCheck], ...] = (
    check_gradients, check_blackbox, check_large_eps, check_fgsm, check_steps, check_temperature, check_softmax,
    check_randomness,
)


def run_trust_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
                     bounds: Bounds = (0.0, 1.0), seed: int = 0, device: torch.device | str | None = None,
                     on_progress: Callable[[int, int], None] | None = None,
                     precision: str = "fp32") -> list[TrustCheck]:
    """Run every trust check on the given points (about 100–200 are enough) and return them in display order.

    With ``precision`` bf16 or fp16 (the evaluation's attacks ran in it) one more check compares PGD in that
    precision with PGD in fp32.

    ``on_progress(done, total)`` is called after each check. Attacks are seeded from ``seed``; the global RNG is
    never touched. Errors propagate: a check that cannot run is a bug, not a finding.
    """
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; choose from {', '.join(NORMS)}")
    if x.shape[0] != y.shape[0]:
        raise ConfigError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ConfigError("the trust checks need at least one point")
    validate_eps(eps, x.shape[0], torch.device("cpu"))
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else x.device
    probe = _Probe(model, x.detach().to(device), y.to(device), float(eps), norm, bounds, seed)
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    todo = list(CHECKS)
    if precision != "fp32":
        todo.append(lambda p: check_precision(p, precision))
    checks = []
    with eval_mode(model):
        for done, check in enumerate(todo, start=1):
            checks.append(check(probe))
            LOGGER.debug("trust check %s: %s", checks[-1].key, checks[-1].status)
            if on_progress is not None:
                on_progress(done, len(todo))
    return checks


def checks_to_frame(checks: Sequence[TrustCheck]) -> pd.DataFrame:
    """One row per check with columns key, title, status, finding, explanation, value (a dict)."""
    columns = ["key", "title", "status", "finding", "explanation", "value"]
    return pd.DataFrame([asdict(check) for check in checks], columns=columns)
