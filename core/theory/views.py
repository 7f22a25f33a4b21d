"""What the Theory Lab shows beside the curves: patch roles, the ⟨w_{j,r}, x_p⟩ heatmap and the theorem check.

Li & Li's claim (METHODS.md §3): standard training (ST) ends with the non-robust features learned (V ≫ U) and
robust accuracy near chance; adversarial training (AT) ends with the robust features learned (U ≫ V) and is robust
(METHODS.md: PGD-robust ≈ 78 %, PGD started at x). ``verdict`` states each part and whether this pair of runs
agrees. Both robustness claims are judged by the same measure, the worst case over PGD from x, PGD from a random
start and the feature-shift probe, at the training ε. PGD from x alone is masked: σ̃ is flat near 0, so a PGD
that starts at x does not see the direction ε·u_j on the many patches where ⟨w, x_p⟩ ≈ 0, while moving every
patch by ε toward another class's feature adds up over the P patches (at the defaults U ≈ 2.6, ε·U ≈ 0.64 > ϱ:
the probe flips every input from ε ≈ 0.15 on, none at ε ≤ 0.1). An AT run that is robust only against PGD from x
is marked so ("masked"), never as agreeing. A run whose training loss jumped far above its start, or was not
finite, diverged: its numbers are not evidence either way (``divergence``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from core.data.patches import generate_patches
from core.theory.simulate import TheoryConfig

ROLE_NAMES = ("noise", "robust", "non-robust")


def example_input(data_params: dict[str, Any], index: int = 0) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Test input ``index`` of the patch data (P×d, the point ``load_dataset("patches", "test", **data_params)``
    gives), its label, and the role of each patch as the generator assigned it: 1 robust (J_R), 2 non-robust (J_NR),
    0 noise. The roles come from the generator, not from the patches' content, which cannot tell them apart when
    α or β is 0 (a robust patch with α = 0 is pure noise, orthogonal to u_y like every other patch)."""
    params = dict(data_params)
    n_test = params.pop("n_test")
    params.pop("n_train", None)
    sample = generate_patches(n_test, stream="test", **params)
    return sample.x[index], int(sample.y[index]), sample.roles[index]


def absent_features(config: TheoryConfig) -> list[str]:
    """One sentence per feature that the data settings leave out (no patches for it, or a zero amplitude)."""
    notes = []
    for name, symbol, count, amplitude, curve in (("robust", "α", config.n_robust, config.alpha, "U"),
                                                   ("non-robust", "β", config.n_nonrobust, config.beta, "V")):
        if count == 0:
            why = f"no {name} patches"
        elif amplitude == 0:
            why = f"{symbol} = 0 (the {name} patches carry noise only)"
        else:
            continue
        notes.append(f"With {why} the data have no {name} feature: {curve}(t) measures alignment with a direction "
                     "the labels never use, so neither training can learn it.")
    return notes


def patch_heatmap(weight: torch.Tensor, x: torch.Tensor, roles: torch.Tensor, *, alpha: float = 1.0,
                  beta: float = 1.0) -> dict[str, Any]:
    """⟨w_{j,r}, x_p⟩ for every class j, neuron r (rows, class-major) and patch p (columns, robust patches first,
    then non-robust, then noise). ``labels`` names each role; one whose amplitude (α or β) is 0 says so."""
    order = torch.cat([torch.nonzero(roles == role).flatten() for role in (1, 2, 0)])
    values = torch.einsum("jrd,pd->jrp", weight, x).flatten(0, 1)[:, order]
    labels = {1: "robust" if alpha else "robust, α = 0", 2: "non-robust" if beta else "non-robust, β = 0", 0: "noise"}
    return {"z": values.numpy(), "patches": order.numpy(), "roles": roles[order].numpy(), "labels": labels,
            "rows": [f"class {j} · neuron {r}" for j in range(weight.shape[0]) for r in range(weight.shape[1])]}


def seconds_left(history: Sequence[dict[str, float]], iterations: int, window: int = 5) -> float | None:
    """Wall time the run still needs, at the pace of its last ``window`` recorded intervals (recent, so that it
    speeds up when the other run ends and leaves the CPU to this one); None until two rows exist."""
    if len(history) < 2:
        return None
    first, last = history[max(0, len(history) - 1 - window)], history[-1]
    pace = (last["elapsed_seconds"] - first["elapsed_seconds"]) / max(last["t"] - first["t"], 1)
    return max(0.0, pace * (iterations - last["t"]))


MUCH = 4.0          # "V ≫ U" reads V > 4·U here (and U > 4·V for AT)
NEAR_CHANCE = 0.15  # "near chance" reads robust accuracy ≤ 1/k + 0.15
ROBUST = 0.6        # "robust" reads worst-case robust accuracy ≥ 60 % (METHODS.md: AT ≈ 78 % by PGD from x)
DIVERGED = 5.0      # a training loss above 5× its value at t = 0 (≈ log k at init) is divergence, not learning

AGREES, MASKED, DISAGREES, NOT_EVIDENCE = "agrees", "masked", "does not agree", "diverged"


def divergence(history: Sequence[dict[str, float]]) -> str | None:
    """Why this run diverged, or None: a training loss (``peak_loss``, the largest since the previous row) that was
    not finite or rose above DIVERGED × the loss at t = 0, or non-finite feature alignments."""
    if not history:
        return None
    start = history[0]["loss"]
    for row in history:
        peak = row.get("peak_loss", row["loss"])
        if not all(math.isfinite(row[key]) for key in ("loss", "U", "V")) or not math.isfinite(peak):
            return f"the training loss or the weights stopped being finite numbers by t = {row['t']}"
        if peak > DIVERGED * max(start, 1e-12):
            return f"the training loss jumped to {peak:.3g} by t = {row['t']} (it started at {start:.3g})"
    return None


def verdict(st: dict[str, float], at: dict[str, float], chance: float, *, st_diverged: str | None = None,
            at_diverged: str | None = None) -> list[dict[str, Any]]:
    """The theorem's statements for this pair of final rows, each with its ``status``: AGREES, MASKED (AT robust
    only against PGD from x), DISAGREES, or NOT_EVIDENCE (that run diverged; the reason is in ``value``)."""
    def check(ok: bool) -> str:
        return AGREES if ok else DISAGREES

    at_robust = AGREES if at["robust_acc"] >= ROBUST else MASKED if at["robust_acc_pgd"] >= ROBUST else DISAGREES
    rows = [
        {"claim": "ST learns the non-robust features: V ≫ U", "value": f"U {st['U']:.2f}, V {st['V']:.2f}",
         "status": check(st["V"] > MUCH * st["U"]), "run": "st"},
        {"claim": "ST is not robust: robust accuracy near chance", "value":
            f"worst case {st['robust_acc']:.0%} (PGD from x {st['robust_acc_pgd']:.0%}), chance {chance:.0%}",
         "status": check(st["robust_acc"] <= chance + NEAR_CHANCE), "run": "st"},
        {"claim": "AT learns the robust features: U ≫ V", "value": f"U {at['U']:.2f}, V {at['V']:.2f}",
         "status": check(at["U"] > MUCH * at["V"]), "run": "at"},
        {"claim": f"AT is robust: worst-case robust accuracy ≥ {ROBUST:.0%}", "value":
            f"worst case {at['robust_acc']:.0%} (PGD from x {at['robust_acc_pgd']:.0%})",
         "status": at_robust, "run": "at"},
    ]
    for row in rows:
        reason = st_diverged if row["run"] == "st" else at_diverged
        if reason:
            row.update(status=NOT_EVIDENCE, value=f"{row['value']}; training diverged ({reason})")
        row["agrees"] = row["status"] == AGREES
    return rows
