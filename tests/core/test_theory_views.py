"""Theory Lab views: patch roles, the ⟨w, x_p⟩ heatmap ordering and the theorem check."""

from __future__ import annotations

import torch

from core.data import load_dataset
from core.data.patches import patch_features
from core.theory import TheoryConfig, simulate
from core.theory.views import patch_heatmap, patch_roles, verdict


def test_roles_recover_the_generated_patch_layout() -> None:
    cfg = TheoryConfig()
    test = load_dataset("patches", "test", **cfg.data_params())
    u, v = patch_features(cfg.k, cfg.d, cfg.data_seed)
    for i in range(5):
        roles = patch_roles(test.x[i], int(test.y[i]), u, v, cfg.alpha, cfg.beta)
        assert int((roles == 1).sum()) == cfg.n_robust and int((roles == 2).sum()) == cfg.n_nonrobust


def test_heatmap_sorts_patches_by_role_and_matches_the_inner_products() -> None:
    gen = torch.Generator().manual_seed(0)
    weight, x = torch.randn(2, 3, 5, generator=gen), torch.randn(4, 5, generator=gen)
    roles = torch.tensor([0, 2, 1, 2])
    heat = patch_heatmap(weight, x, roles)
    assert heat["patches"].tolist() == [2, 1, 3, 0] and heat["roles"].tolist() == [1, 2, 2, 0]
    assert heat["z"].shape == (6, 4) and heat["rows"][4] == "class 1 · neuron 1"
    assert abs(heat["z"][4, 0] - float(weight[1, 1] @ x[2])) < 1e-5


def test_simulate_reports_weights_as_it_records() -> None:
    seen = []
    result = simulate(TheoryConfig(iterations=4, record_every=2), on_weights=seen.append)
    assert len(seen) == len(result.history) == 3
    assert seen[-1].shape == (4, 4, 64) and torch.equal(seen[-1], result.model.weight.detach())


def test_verdict_states_each_claim() -> None:
    st = {"U": 0.1, "V": 1.5, "robust_acc_pgd": 0.5, "robust_acc": 0.3}
    at = {"U": 2.4, "V": 0.04, "robust_acc_pgd": 0.78, "robust_acc": 0.0}
    rows = verdict(st, at, chance=0.25)
    assert [r["agrees"] for r in rows] == [True, True, True, True]
    rows = verdict({**st, "V": 0.1}, {**at, "robust_acc_pgd": 0.3}, chance=0.25)
    assert [r["agrees"] for r in rows] == [False, True, True, False]
    rows = verdict({**st, "robust_acc": 0.45}, {**at, "V": 1.0}, chance=0.25)
    assert [r["agrees"] for r in rows] == [True, False, False, True], "ST judged by its worst case; U ≫ V means > 4×"
