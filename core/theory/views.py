"""What the Theory Lab shows beside the curves: patch roles, the ⟨w_{j,r}, x_p⟩ heatmap and the theorem check.

Li & Li's claim (METHODS.md §3): standard training (ST) ends with the non-robust features learned (V ≫ U) and
robust accuracy near chance; adversarial training (AT) ends with the robust features learned (U ≫ V) and robust
accuracy well above chance (≥ 0.6 with the paper's PGD-from-x measure). ``verdict`` states each part and whether
this pair of runs agrees. Each robustness claim is checked with the measure that can refute it: ST's non-robustness
with the worst case over all attacks (PGD from x is masked for ST too: 50 % at the defaults), AT's robustness with
the paper's PGD from x, the worst case shown beside it (≈ 0 %: see simulate.py).
"""

from __future__ import annotations

from typing import Any

import torch

ROLE_NAMES = ("noise", "robust", "non-robust")


def patch_roles(x: torch.Tensor, y: int, u: torch.Tensor, v: torch.Tensor, alpha: float,
                beta: float) -> torch.Tensor:
    """Role per patch of one input (P×d): 1 robust (carries α·u_y), 2 non-robust (β·v_y), 0 noise only."""
    roles = torch.zeros(x.shape[0], dtype=torch.long)
    roles[(x @ v[y]) > beta / 2] = 2
    roles[(x @ u[y]) > alpha / 2] = 1
    return roles


def patch_heatmap(weight: torch.Tensor, x: torch.Tensor, roles: torch.Tensor) -> dict[str, Any]:
    """⟨w_{j,r}, x_p⟩ for every class j, neuron r (rows, class-major) and patch p (columns, robust patches first,
    then non-robust, then noise)."""
    order = torch.cat([torch.nonzero(roles == role).flatten() for role in (1, 2, 0)])
    values = torch.einsum("jrd,pd->jrp", weight, x).flatten(0, 1)[:, order]
    return {"z": values.numpy(), "patches": order.numpy(), "roles": roles[order].numpy(),
            "rows": [f"class {j} · neuron {r}" for j in range(weight.shape[0]) for r in range(weight.shape[1])]}


MUCH = 4.0          # "V ≫ U" reads V > 4·U here (and U > 4·V for AT)
NEAR_CHANCE = 0.15  # "near chance" reads robust accuracy ≤ 1/k + 0.15


def verdict(st: dict[str, float], at: dict[str, float], chance: float) -> list[dict[str, Any]]:
    """The theorem's statements for this pair of final rows, each with whether the run agrees."""
    return [
        {"claim": "ST learns the non-robust features: V ≫ U", "value": f"U {st['U']:.2f}, V {st['V']:.2f}",
         "agrees": st["V"] > MUCH * st["U"]},
        {"claim": "ST is not robust: robust accuracy near chance", "value":
            f"worst case {st['robust_acc']:.0%} (PGD from x {st['robust_acc_pgd']:.0%}), chance {chance:.0%}",
         "agrees": st["robust_acc"] <= chance + NEAR_CHANCE},
        {"claim": "AT learns the robust features: U ≫ V", "value": f"U {at['U']:.2f}, V {at['V']:.2f}",
         "agrees": at["U"] > MUCH * at["V"]},
        {"claim": "AT is robust: robust accuracy ≥ 0.6", "value":
            f"{at['robust_acc_pgd']:.0%} (PGD from x); worst case {at['robust_acc']:.0%}",
         "agrees": at["robust_acc_pgd"] >= 0.6},
    ]
