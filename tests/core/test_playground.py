"""The Playground's engine: default settings learn moons, the verdicts agree with PGD, T → 0 gives PGD's point,
caps come with notes, and bad input is refused with a clear ConfigError."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.attacks import PGD
from core.errors import ConfigError
from core.playground import (
    LIMITS, SIZE_CAPS_COST, PlaygroundConfig, frame_due, iter_frames, langevin_panel, load_data, load_weights,
    robust_points, train_playground,
)
from core.utils import make_generator
from dashboard.components.playground_views import langevin_figure


@pytest.fixture(scope="module")
def trained() -> tuple[PlaygroundConfig, object, torch.nn.Module]:
    """The default Playground run (ERM on moons), trained to the end once for the module."""
    config = PlaygroundConfig()
    frame = train_playground(config)
    data = load_data(config)
    return config, frame, load_weights(config, len(data.classes), frame.weights)


def test_defaults_learn_moons_to_high_clean_accuracy(trained) -> None:
    config, frame, _ = trained
    assert config.dataset == "moons" and config.method == "erm"
    assert frame.step == config.steps
    assert frame.clean_acc >= 0.95 and frame.train_clean_acc >= 0.95
    assert frame.probs.shape == (config.grid, config.grid, 2)
    np.testing.assert_allclose(frame.probs.sum(2), 1.0, atol=1e-5)


def test_adversarial_training_is_more_robust_than_standard(trained) -> None:
    config, standard, _ = trained
    frame = train_playground(PlaygroundConfig(method="pgd-at", steps=200))
    assert frame.clean_acc >= 0.9
    assert frame.robust_acc > standard.robust_acc


def test_frames_come_first_after_one_step_then_by_time_and_at_the_end() -> None:
    config = PlaygroundConfig(method="dale", steps=30, n=100, test_n=50)
    frames = list(iter_frames(config, interval=0.0, share=1.0))
    assert [f.step for f in frames] == list(range(1, 31))
    assert all(f.nu is not None for f in frames)  # DALE's ν is reported
    lazy = list(iter_frames(config, interval=math.inf))
    assert [f.step for f in lazy] == [1, 30]
    stopped = list(iter_frames(config, should_stop=lambda: True))
    assert [f.step for f in stopped] == [0]


def test_slow_frames_are_spaced_out_to_their_share_of_the_time() -> None:
    now = time.perf_counter()
    slow = SimpleNamespace(steps_done=5, finished=False, frame_seconds=0.5)  # a frame costs 0.5 s of CPU
    assert not frame_due(slow, now - 1.2, interval=0.2)  # frames ≤ 25 % of the time: wait 1.5 s, not 0.2 s
    assert frame_due(slow, now - 1.6, interval=0.2)
    assert frame_due(slow, now - 0.3, interval=0.2, share=1.0)
    assert frame_due(SimpleNamespace(steps_done=5, finished=False, frame_seconds=0.01), now - 0.21, interval=0.2)
    assert frame_due(SimpleNamespace(steps_done=1, finished=False, frame_seconds=1.0), now, interval=0.2)
    assert frame_due(SimpleNamespace(steps_done=5, finished=False, frame_seconds=60.0), now - 2.1, interval=0.2)  # cap
    with pytest.raises(ConfigError, match="share"):
        next(iter_frames(PlaygroundConfig(), share=0.0))


def test_robust_flags_agree_with_a_pgd_attack(trained) -> None:
    config, _, model = trained
    data = load_data(config)
    verdict = robust_points(model, data.train.x, data.train.y, config)
    result = PGD(norm=config.norm, steps=config.eval_steps, random_start=False)(
        model, data.train.x, data.train.y, config.eps, generator=make_generator(0))
    with torch.no_grad():
        correct = model(data.train.x).argmax(1) == data.train.y
    expected = correct & ~result.success
    assert np.array_equal(verdict.robust, expected.numpy())
    np.testing.assert_allclose(verdict.x_adv, result.x_adv.numpy(), atol=1e-6)
    assert (~verdict.robust).any() and verdict.robust.any()
    moved = np.abs(verdict.x_adv - data.train.x.numpy()).max(1)
    assert (moved <= config.eps + 1e-6).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_langevin_at_zero_temperature_is_pgd(trained, norm: str) -> None:
    config, _, model = trained
    data = load_data(config)
    x, y = data.train.x[3], int(data.train.y[3])
    cold = langevin_panel(model, x, y, eps=0.08, norm=norm, temperature=0.0, samples=50, steps=15)
    # ℓ∞ signs agree exactly; an ℓ2 direction is the normalised gradient, and PGD's cross-entropy gradient
    # carries the rounding of 1 − p_y (the sampler's log(1 − p_y) form does not): agreement to 1e-4 of a unit.
    tolerance = 1e-6 if norm == "linf" else 1e-4
    assert np.abs(cold.samples - cold.fixed_step_point).max() < tolerance
    assert cold.pgd_loss >= cold.fixed_step_loss - 1e-6  # the compass search that finishes PGD never descends
    warm = langevin_panel(model, x, y, eps=0.08, norm=norm, temperature=3.0, samples=50, steps=15)
    assert warm.spread > 10 * np.linalg.norm(cold.samples - cold.fixed_step_point, axis=1).mean() + 1e-3
    assert 1.0 < warm.noise_to_grad < 9.0  # T is the noise in units of the gradient
    inside = ~np.isnan(warm.loss)
    assert inside.any() and np.nanmax(warm.loss) >= warm.pgd_loss - 0.5
    delta = warm.samples - warm.x
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert (size <= 0.08 + 1e-6).all()
    # The ℓ∞ samples sit on a grid of spacing η around x (signed steps; students asked why: the page says so).
    on_grid = delta / warm.step_size
    inside_box = ((warm.x + delta > 1e-6) & (warm.x + delta < 1 - 1e-6)).all(1)
    if norm == "linf":
        assert warm.step_size == pytest.approx(0.008)
        assert np.abs(on_grid[inside_box] - np.rint(on_grid[inside_box])).max() < 1e-3
        assert 1 < len(np.unique(np.rint(on_grid).astype(int), axis=0)) < len(warm.samples)


def kinked_model(kink: float) -> torch.nn.Module:
    """Class 0's margin is 20·|x₁ − kink| + 5·(1 − x₂) − 1: the loss peaks on the kink and rises with x₂."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0]]))
        model[0].bias.copy_(torch.tensor([-kink, kink, 1.0]))
        model[2].weight.copy_(torch.tensor([[20.0, 20.0, 5.0], [0.0, 0.0, 0.0]]))
        model[2].bias.copy_(torch.tensor([-1.0, 0.0]))
    return model.eval()


def test_pgd_point_is_a_local_maximum_where_fixed_signed_steps_zigzag_across_a_kink() -> None:
    # From x₁ = 0.5 signed steps of 0.007 straddle the kink at 0.523 and end on 0.528, not on the higher 0.521.
    model, x = kinked_model(0.523), torch.tensor([0.5, 0.5])
    panel = langevin_panel(model, x, 0, eps=0.07, temperature=0.0, samples=10, steps=40, resolution=5)
    assert abs(panel.fixed_step_point[0] - 0.528) < 1e-5  # the zigzag itself, as fixed-step PGD leaves it
    np.testing.assert_allclose(panel.pgd_point, [0.523, 0.57], atol=1e-4)  # on the kink, at the ball's top edge
    with torch.no_grad():
        angles = torch.linspace(0, 2 * math.pi, 33)[:-1]
        ring = torch.tensor(panel.pgd_point) + 2e-3 * torch.stack([angles.cos(), angles.sin()], 1)
        ring = ring[(ring - x).abs().max(1).values <= 0.07]  # the neighbours inside the ball
        around = torch.nn.functional.cross_entropy(model(ring), torch.zeros(len(ring), dtype=torch.int64),
                                                   reduction="none")
    assert len(ring) >= 8 and float(around.max()) <= panel.pgd_loss
    assert panel.pgd_loss > panel.fixed_step_loss + 0.02 and panel.samples_above_pgd == 0.0
    # At T = 0 every sample sits on the fixed steps' end: the figure marks it, or the cloud seemed to leave PGD.
    traces = {t.name: t for t in langevin_figure(panel, "0").data}
    stopped = next(t for name, t in traces.items() if name.startswith("PGD's fixed steps stopped here"))
    np.testing.assert_allclose([stopped.x[0], stopped.y[0]], panel.fixed_step_point)
    np.testing.assert_allclose(panel.samples, np.repeat(panel.fixed_step_point[None], 10, 0), atol=1e-6)
    calm = langevin_panel(model, torch.tensor([0.3, 0.5]), 0, eps=0.07, temperature=0.0, samples=10, steps=40,
                          resolution=5)
    assert not any(t.name.startswith("PGD's fixed steps") for t in langevin_figure(calm, "0").data), \
        "no second star where the fixed steps end on the star"


def test_sizes_above_their_limits_are_capped_with_a_note() -> None:
    config, notes = PlaygroundConfig.capped(n=50_000, grid=1000, width=4096, steps=10**6, eps=0.9, batch_size=64)
    assert (config.n, config.grid, config.width, config.steps) == (LIMITS["n"], 200, LIMITS["width"], 5000)
    assert config.eps == LIMITS["eps"] and config.batch_size == 64
    assert len(notes) == 4  # n and width share one note: their caps are chosen together
    assert notes[0] == (f"Points n capped at 1,000 (asked for 50,000), width capped at {LIMITS['width']:g} (asked "
                        f"for 4,096): with points n, width and hidden layers all at their caps a run takes about "
                        f"{SIZE_CAPS_COST}× as long as with the defaults.")
    assert any(note.startswith("ε capped at 0.25") for note in notes)  # a label, not the field name "eps"
    config, notes = PlaygroundConfig.capped(n=40, batch_size=100)
    assert config.batch_size is None and "full batch" in notes[0]
    assert PlaygroundConfig.capped() == (PlaygroundConfig(), [])
    with pytest.raises(ConfigError, match="capped lowers it"):
        PlaygroundConfig(grid=1000)


@pytest.mark.parametrize("values, message", [
    ({"eps": float("nan")}, "^ε must be a finite number"),
    ({"eps": -0.1}, "^ε must be ≥ 0"),
    ({"method": "pgd-at", "eps": 0.0}, "needs ε > 0"),
    ({"lr": 0.0}, "^learning rate must be > 0"),
    ({"n": 2.5}, "^points n must be a whole number"),
    ({"noise": float("inf")}, "^noise must be a finite number"),
    ({"dataset": "mnist"}, "^toy data must be one of"),
    ({"norm": "l1"}, "^norm must be one of"),
    ({"depth": -1}, "^hidden layers must be ≥ 0"),
    ({"colour": "red"}, "unknown Playground option"),
], ids=["nan-eps", "negative-eps", "adversarial-eps-0", "zero-lr", "fractional-n", "inf-noise", "dataset",
        "norm", "negative-depth", "unknown-key"])
def test_bad_input_is_refused_with_a_clear_message(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PlaygroundConfig.capped(**values)


def test_every_bad_number_is_named_at_once() -> None:
    """One at a time, a user fixed n to be told about the noise, then about ε."""
    with pytest.raises(ConfigError) as info:
        PlaygroundConfig.capped(n=0, noise=-1.0, eps=float("nan"), steps=50_000_000)
    message = str(info.value)
    assert "points n must be" in message and "noise must be ≥ 0" in message and "ε must be a finite number" in message


def test_langevin_panel_refuses_bad_values(trained) -> None:
    config, _, model = trained
    x = load_data(config).train.x[0]
    with pytest.raises(ConfigError, match="temperature T must be a finite number"):
        langevin_panel(model, x, 0, eps=0.05, temperature=float("nan"))
    with pytest.raises(ConfigError, match="samples must be between"):
        langevin_panel(model, x, 0, eps=0.05, samples=10**6)
