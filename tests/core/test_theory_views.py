"""Theory Lab views: patch roles, the ⟨w, x_p⟩ heatmap ordering and the theorem check."""

from __future__ import annotations

import math

import pytest
import torch

from core.data import load_dataset
from core.data.patches import patch_features
from core.errors import ConfigError
from core.theory import TheoryConfig, simulate
from core.theory.views import (AGREES, DISAGREES, MASKED, NOT_EVIDENCE, ROBUST, absent_features, divergence,
                               example_input, patch_heatmap, seconds_left, verdict)


@pytest.mark.parametrize("changes", [{}, {"alpha": 0.0}, {"beta": 0.0}, {"alpha": 0.0, "beta": 0.0},
                                     {"n_robust": 3, "n_nonrobust": 20}],
                         ids=["defaults", "alpha-0", "beta-0", "both-0", "3-robust-20-non-robust"])
def test_example_roles_follow_the_data_settings(changes: dict) -> None:
    """The roles are the generator's: with α = 0 the robust patch is pure noise, orthogonal to u_y like every other
    patch, so reading roles off the patches' content marked about half the patches robust (31 of 64)."""
    cfg = TheoryConfig(**changes)
    x, y, roles = example_input(cfg.data_params())
    test = load_dataset("patches", "test", **cfg.data_params())
    assert torch.equal(x, test.x[0]) and y == int(test.y[0])
    assert int((roles == 1).sum()) == cfg.n_robust and int((roles == 2).sum()) == cfg.n_nonrobust
    u, v = patch_features(cfg.k, cfg.d, cfg.data_seed)
    assert torch.allclose(x[roles == 1] @ u[y], torch.full((cfg.n_robust,), cfg.alpha), atol=1e-5)
    assert torch.allclose(x[roles == 2] @ v[y], torch.full((cfg.n_nonrobust,), cfg.beta), atol=1e-5)
    heat = patch_heatmap(torch.zeros(cfg.k, cfg.m, cfg.d), x, roles, alpha=cfg.alpha, beta=cfg.beta)
    assert heat["roles"].tolist() == [1] * cfg.n_robust + [2] * cfg.n_nonrobust + [0] * (cfg.P - cfg.n_robust
                                                                                          - cfg.n_nonrobust)
    assert heat["labels"][1] == ("robust, α = 0" if cfg.alpha == 0 else "robust")


def test_absent_features_are_named() -> None:
    assert absent_features(TheoryConfig()) == []
    (note,) = absent_features(TheoryConfig(alpha=0.0))
    assert note.startswith("With α = 0 (the robust patches carry noise only) the data have no robust feature")
    (note,) = absent_features(TheoryConfig(n_robust=0))
    assert note.startswith("With no robust patches the data have no robust feature")
    assert len(absent_features(TheoryConfig(alpha=0.0, n_nonrobust=0))) == 2


def test_heatmap_sorts_patches_by_role_and_matches_the_inner_products() -> None:
    gen = torch.Generator().manual_seed(0)
    weight, x = torch.randn(2, 3, 5, generator=gen), torch.randn(4, 5, generator=gen)
    roles = torch.tensor([0, 2, 1, 2])
    heat = patch_heatmap(weight, x, roles)
    assert heat["labels"] == {1: "robust", 2: "non-robust", 0: "noise"}
    assert heat["patches"].tolist() == [2, 1, 3, 0] and heat["roles"].tolist() == [1, 2, 2, 0]
    assert heat["z"].shape == (6, 4) and heat["rows"][4] == "class 1 · neuron 1"
    assert abs(heat["z"][4, 0] - float(weight[1, 1] @ x[2])) < 1e-5


def test_simulate_reports_weights_and_time_as_it_records() -> None:
    seen = []
    result = simulate(TheoryConfig(iterations=4, record_every=2), on_weights=seen.append)
    assert len(seen) == len(result.history) == 3
    assert seen[-1].shape == (4, 4, 64) and torch.equal(seen[-1], result.model.weight.detach())
    elapsed = [h["elapsed_seconds"] for h in result.history]
    assert 0 < elapsed[0] < elapsed[1] < elapsed[2]


def test_seconds_left_follows_the_recent_pace() -> None:
    assert seconds_left([], 600) is None and seconds_left([{"t": 0, "elapsed_seconds": 1.0}], 600) is None
    history = [{"t": t, "elapsed_seconds": 1.0 + 0.1 * t} for t in range(0, 101, 20)]
    assert abs(seconds_left(history, 600) - 50.0) < 1e-9, "0.1 s per iteration, 500 to go"
    faster = history + [{"t": t, "elapsed_seconds": 11.0 + 0.05 * (t - 100)} for t in range(120, 301, 20)]
    assert abs(seconds_left(faster, 600) - 15.0) < 1e-9, "the last 5 intervals only: the other run has ended"
    assert seconds_left(history, 100) == 0.0


def test_verdict_states_each_claim() -> None:
    st = {"U": 0.1, "V": 1.5, "robust_acc_pgd": 0.5, "robust_acc": 0.3}
    at = {"U": 2.4, "V": 0.04, "robust_acc_pgd": 0.78, "robust_acc": 0.7}
    rows = verdict(st, at, chance=0.25)
    assert [r["status"] for r in rows] == [AGREES] * 4 and all(r["agrees"] for r in rows)
    rows = verdict({**st, "V": 0.1}, {**at, "robust_acc_pgd": 0.3, "robust_acc": 0.3}, chance=0.25)
    assert [r["agrees"] for r in rows] == [False, True, True, False]
    rows = verdict({**st, "robust_acc": 0.45}, {**at, "V": 1.0}, chance=0.25)
    assert [r["agrees"] for r in rows] == [True, False, False, True], "ST judged by its worst case; U ≫ V means > 4×"


def test_at_is_robust_only_by_its_worst_case() -> None:
    """The defaults end with AT at 76 % under PGD from x and 0 % in the worst case; the claim got a green tick.
    Robust only against the masked PGD is MASKED (amber), never AGREES; robust against nothing is DISAGREES."""
    st = {"U": 0.28, "V": 1.53, "robust_acc_pgd": 0.49, "robust_acc": 0.46}
    at = {"U": 2.56, "V": 0.07, "robust_acc_pgd": 0.76, "robust_acc": 0.0}
    claim = verdict(st, at, chance=0.25)[3]
    assert claim["status"] == MASKED and not claim["agrees"]
    assert claim["claim"] == "AT is robust: worst-case robust accuracy ≥ 60%"
    assert claim["value"] == "worst case 0% (PGD from x 76%)"
    assert verdict(st, {**at, "robust_acc_pgd": 0.2}, chance=0.25)[3]["status"] == DISAGREES
    assert verdict(st, {**at, "robust_acc": ROBUST}, chance=0.25)[3]["status"] == AGREES


def test_a_diverged_run_is_not_evidence() -> None:
    calm = [{"t": t, "loss": 1.4 - 0.01 * t, "peak_loss": 1.4 - 0.01 * t + 0.005, "U": 0.1, "V": 0.1}
            for t in range(0, 60, 20)]
    assert divergence(calm) is None and divergence([]) is None
    spike = calm[:1] + [{**calm[1], "peak_loss": 25.4}] + calm[2:]
    assert divergence(spike) == "the training loss jumped to 25.4 by t = 20 (it started at 1.4)"
    assert "stopped being finite" in divergence(calm[:2] + [{**calm[2], "loss": math.nan, "peak_loss": math.nan}])
    assert "stopped being finite" in divergence(calm[:2] + [{**calm[2], "U": math.inf}])
    st = {"U": 0.1, "V": 1.5, "robust_acc_pgd": 0.5, "robust_acc": 0.3}
    at = {"U": 1.44, "V": 68.3, "robust_acc_pgd": 1.0, "robust_acc": 0.0}
    rows = verdict(st, at, chance=0.25, at_diverged="the training loss jumped to 25.4 by t = 20")
    assert [r["status"] for r in rows] == [AGREES, AGREES, NOT_EVIDENCE, NOT_EVIDENCE]
    assert rows[3]["value"] == "worst case 0% (PGD from x 100%); training diverged (the training loss jumped to " \
                               "25.4 by t = 20)"


def test_simulate_records_the_peak_loss_between_rows() -> None:
    """At learning rate 10 adversarial training's loss spikes to ≈ 25 between two recorded rows, whose own losses
    (1.44, 2.26) look calm: the peak is recorded so that the page can call the run diverged."""
    history = simulate(TheoryConfig(adversarial=True, lr=10.0, iterations=20, record_every=20)).history
    assert [h["t"] for h in history] == [0, 20]
    assert history[0]["peak_loss"] == history[0]["loss"]
    assert history[1]["peak_loss"] > 5 * history[0]["loss"] > history[1]["loss"]
    assert divergence(history).startswith("the training loss jumped to")
    calm = simulate(TheoryConfig(adversarial=True, iterations=20, record_every=10)).history
    assert divergence(calm) is None


def test_config_errors_use_the_forms_words() -> None:
    with pytest.raises(ConfigError, match=r"# robust \+ # non-robust patches \(1 \+ 64\) must not exceed P "
                                          r"patches \(64\)"):
        TheoryConfig(n_nonrobust=64)
    with pytest.raises(ConfigError, match=r"k classes = 4 needs d \(patch dim\) ≥ 8"):
        TheoryConfig(d=6)
