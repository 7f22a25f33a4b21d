"""The Playground's training loop: a small MLP on a toy 2-D set, yielding frames to draw while it learns.

The loop reuses the engine's pieces rather than copying them: the training attack and the per-sample loss come
from :data:`core.training.methods.METHODS` (built from a :class:`TrainConfig` that mirrors the Playground config),
so ERM, FGSM-RS, PGD-AT, TRADES and DALE (with its primal-dual ν) behave exactly as on the Train page. What is
particular to the Playground is the optimiser (Adam, full batch by default: a toy set converges in a few hundred
steps), the frames, and their time-based rhythm: a frame after the first step, then whenever ``interval`` seconds
have passed since the last one was handed over, and one at the end. A frame attacks every point and evaluates the
whole grid, so on large settings it costs more than many steps: the wait between frames also grows with the last
frame's cost, so that frames take at most ``FRAME_SHARE`` of a run's time (without this rule a frame followed
nearly every step once a step plus a frame took longer than ``interval``, and frames, not training, set the pace),
but never beyond ``FRAME_WAIT_MAX``. The cost is the frame's CPU time in its thread, not its wall time: on a busy
machine (the browser, the page redrawing) one frame can wait seconds for the CPU or the GIL, and spacing the next
frames by that would freeze the picture for no reason.

A frame holds the class probabilities on a grid over [0, 1]², clean and robust accuracy on held-out points, and
for every training point its PGD adversarial point at ε and whether it is robust there (``robust_points``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from core.attacks import PGD
from core.data import DATASETS, Dataset, load_dataset
from core.errors import ConfigError
from core.models import build_model
from core.playground.config import PlaygroundConfig
from core.training.config import TrainConfig
from core.training.methods import METHODS, MethodState
from core.utils import derive_seed, make_generator

log = logging.getLogger(__name__)

FRAME_INTERVAL = 0.2  # seconds between frames: the page polls at 0.5 s, so it never waits long for a new one
FRAME_SHARE = 0.25  # at most this share of a run's time goes to frames: a slow frame spaces the next ones out
FRAME_WAIT_MAX = 2.0  # seconds: however slow frames are, the wait for the next one never exceeds this
StopFn = Callable[[], bool]


@dataclass(frozen=True)
class PlaygroundData:
    """The training points (drawn) and the held-out points (for the accuracy curves) of one config."""

    train: Dataset
    test: Dataset

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes


@dataclass(frozen=True)
class RobustPoints:
    """PGD at ε on a set of points: adversarial points, predictions, and the per-point verdicts (numpy)."""

    x_adv: np.ndarray
    pred: np.ndarray
    pred_adv: np.ndarray
    correct: np.ndarray
    robust: np.ndarray

    @property
    def flipped(self) -> np.ndarray:
        """Correct on x but not on its adversarial point: the points the arrows are drawn for."""
        return self.correct & ~self.robust


@dataclass
class Frame:
    """One picture of a run: everything the page draws, as numpy arrays and floats (no live tensors)."""

    step: int
    seconds: float
    loss: float
    clean_acc: float
    robust_acc: float
    train_clean_acc: float
    train_robust_acc: float
    probs: np.ndarray  # grid × grid × classes; row i is y = i / (grid − 1), column j is x = j / (grid − 1)
    points: RobustPoints
    weights: dict[str, torch.Tensor] = field(repr=False)
    nu: float | None = None

    def row(self) -> dict[str, float]:
        """The scalars of the frame, one row of the accuracy-over-time history."""
        out = {"step": self.step, "seconds": self.seconds, "loss": self.loss, "clean_acc": self.clean_acc,
               "robust_acc": self.robust_acc, "train_clean_acc": self.train_clean_acc,
               "train_robust_acc": self.train_robust_acc}
        if self.nu is not None:
            out["nu"] = self.nu
        return out


def default_noise(dataset: str) -> float:
    """The dataset's own default noise (core.data.synthetic): moons 0.1, circles 0.05, spirals 0.04, …"""
    return float(DATASETS[dataset].defaults["noise"])


def load_data(config: PlaygroundConfig) -> PlaygroundData:
    """Training and held-out points of the config's toy set; the same (dataset, n, noise, seed) gives the same."""
    train = load_dataset(config.dataset, "train", n=config.n, noise=config.noise, seed=config.seed)
    test = load_dataset(config.dataset, "test", n=config.test_n, noise=config.noise, seed=config.seed)
    return PlaygroundData(train, test)


def build_mlp(config: PlaygroundConfig, num_classes: int) -> nn.Module:
    """The config's MLP, initialised from its seed (so a standard and an adversarial run start identical)."""
    return build_model("mlp", seed=derive_seed("playground-init", config.seed), in_features=2,
                       num_classes=num_classes, hidden=config.hidden, activation=config.activation,
                       mean=(0.5,), std=(0.25,))


def load_weights(config: PlaygroundConfig, num_classes: int, weights: dict[str, torch.Tensor]) -> nn.Module:
    """Rebuild a frame's model from its weight snapshot (for the Langevin panel)."""
    model = build_mlp(config, num_classes)
    model.load_state_dict(weights)
    return model.eval()


def train_config(config: PlaygroundConfig) -> TrainConfig:
    """The TrainConfig the engine's methods read (attack, ε, β, DALE's ν rule) for this Playground config."""
    return TrainConfig(dataset=config.dataset, arch="mlp", method=config.method, norm=config.norm,
                       eps=config.eps, attack_steps=config.attack_steps, trades_beta=config.trades_beta,
                       epochs=1, batch_size=config.batch_size or config.n, optimizer="adam", lr=config.lr,
                       schedule="constant", weight_decay=0.0, seed=config.seed, eval_n=0)


def grid_axis(resolution: int) -> np.ndarray:
    """Coordinates of the grid's columns (and rows) over [0, 1]."""
    return np.linspace(0.0, 1.0, resolution, dtype=np.float32)


@torch.no_grad()
def grid_probabilities(model: nn.Module, resolution: int) -> np.ndarray:
    """Softmax probabilities on a resolution × resolution grid over [0, 1]² (row = y, column = x)."""
    axis = torch.from_numpy(grid_axis(resolution))
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    was_training = model.training
    model.eval()
    probs = torch.softmax(model(points), dim=1)
    model.train(was_training)
    return probs.reshape(resolution, resolution, -1).numpy()


def eval_attack(config: PlaygroundConfig) -> PGD:
    """The PGD that decides "robust at ε": started at x (no random start), so arrows do not jitter between
    frames; ``eval_steps`` steps of 2.5·ε/steps."""
    return PGD(norm=config.norm, steps=config.eval_steps, random_start=False)


def robust_points(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: PlaygroundConfig) -> RobustPoints:
    """PGD at ε on every point: a point is robust when it is classified correctly at x and at its PGD point
    (so a clean mistake is never robust). With ε = 0 a point is robust exactly when it is correct."""
    if config.eps == 0:
        with torch.no_grad():
            pred = model.eval()(x).argmax(1)
        correct = (pred == y).numpy()
        return RobustPoints(x.numpy().copy(), pred.numpy(), pred.numpy(), correct, correct.copy())
    result = eval_attack(config)(model, x, y, config.eps, generator=make_generator(config.seed, "playground-eval"))
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    pred_adv = result.logits_adv.argmax(1)
    correct = pred == y
    return RobustPoints(result.x_adv.numpy(), pred.numpy(), pred_adv.numpy(), correct.numpy(),
                        (correct & (pred_adv == y)).numpy())


def _batches(n: int, batch_size: int | None, seed: int) -> Iterator[torch.Tensor]:
    """Indices of the next batch, forever: everything at once, or shuffled minibatches epoch after epoch."""
    if batch_size is None or batch_size >= n:
        everything = torch.arange(n)
        while True:
            yield everything
    epoch = 0
    while True:
        perm = torch.randperm(n, generator=make_generator(seed, "playground-shuffle", epoch))
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start:start + batch_size]
        epoch += 1


def _frame(model: nn.Module, data: PlaygroundData, config: PlaygroundConfig, step: int, seconds: float,
           loss: float, nu: float | None) -> Frame:
    """Evaluate the model now: grid probabilities, PGD on training and held-out points (one attack call)."""
    n = len(data.train)
    x = torch.cat([data.train.x, data.test.x])
    y = torch.cat([data.train.y, data.test.y])
    verdict = robust_points(model, x, y, config)
    train = RobustPoints(*(a[:n] for a in (verdict.x_adv, verdict.pred, verdict.pred_adv, verdict.correct,
                                           verdict.robust)))
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Frame(step=step, seconds=seconds, loss=loss, clean_acc=float(verdict.correct[n:].mean()),
                 robust_acc=float(verdict.robust[n:].mean()), train_clean_acc=float(train.correct.mean()),
                 train_robust_acc=float(train.robust.mean()), probs=grid_probabilities(model, config.grid),
                 points=train, weights=weights, nu=nu)


class Trainer:
    """One run, one optimiser step at a time: what :func:`iter_frames` drives, and what a caller that trains
    several runs in one thread (the page's standard/adversarial pair) interleaves step by step."""

    def __init__(self, config: PlaygroundConfig, data: PlaygroundData | None = None) -> None:
        self.config = config
        self.data = data if data is not None else load_data(config)
        self.model = build_mlp(config, len(self.data.classes))
        self.tc = train_config(config)
        self.method = METHODS[config.method]
        self.attack = self.method.make_attack(self.tc)
        self.state = MethodState(nu=self.tc.dale_nu)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.gen = make_generator(config.seed, "playground-attack")
        self.batches = _batches(len(self.data.train), config.batch_size, config.seed)
        self.steps_done, self.loss = 0, math.nan
        self.started = time.perf_counter()
        self.frame_seconds = 0.0  # CPU seconds the last frame took in its thread (frame_due spaces frames by it)

    @property
    def finished(self) -> bool:
        return self.steps_done >= self.config.steps

    def step(self) -> None:
        """One optimiser step of the engine's method: attack (if any), per-sample loss, mean, step, ν update."""
        idx = next(self.batches)
        x, y = self.data.train.x[idx], self.data.train.y[idx]
        self.model.train()
        x_adv = None if self.attack is None else self.attack.perturb(self.model, x, y, self.tc.eps,
                                                                     generator=self.gen)[0]
        per_sample, _, parts = self.method.loss(self.model, x, y, x_adv, self.tc, self.state)
        loss = per_sample.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.method.after_step is not None:
            self.method.after_step(self.state, parts, self.tc)
        self.steps_done += 1
        self.loss = float(loss.detach())

    def frame(self) -> Frame:
        """The model as it is now, evaluated for drawing."""
        nu = self.state.nu if self.method.uses_nu else None
        cpu = time.thread_time()
        frame = _frame(self.model, self.data, self.config, self.steps_done, time.perf_counter() - self.started,
                       self.loss, nu)
        self.frame_seconds = time.thread_time() - cpu
        return frame


def iter_frames(config: PlaygroundConfig, *, data: PlaygroundData | None = None, should_stop: StopFn | None = None,
                interval: float = FRAME_INTERVAL, share: float = FRAME_SHARE) -> Iterator[Frame]:
    """Train the config's MLP and yield frames as it learns (see the module docstring for their rhythm).

    Stops early, after yielding a last frame, when ``should_stop()`` turns true (checked before every step).
    The same config gives the same frames' numbers (not the same timings): data, initial weights, batches and
    attacks all draw from generators seeded by the config.
    """
    if not 0 < share <= 1:
        raise ConfigError(f"share (of a run's time for frames) must be in (0, 1], got {share!r}")
    trainer = Trainer(config, data)
    last = -math.inf
    while not trainer.finished:
        if should_stop is not None and should_stop():
            yield trainer.frame()
            return
        trainer.step()
        if frame_due(trainer, last, interval, share):
            yield trainer.frame()
            last = time.perf_counter()  # from the end of the frame, so drawing never starves training


def frame_due(trainer: Trainer, last: float, interval: float, share: float = FRAME_SHARE) -> bool:
    """A frame after the first step, after the last one, and whenever ``interval`` s passed since the previous
    one ended — or longer when frames are slow: the wait is (1 − share) / share times the last frame's CPU cost if
    that is longer, so frames take at most ``share`` of the time (share = 1: ``interval`` alone decides), capped at
    ``FRAME_WAIT_MAX``."""
    wait = max(interval, min(trainer.frame_seconds * (1 - share) / share, FRAME_WAIT_MAX))
    return trainer.steps_done == 1 or trainer.finished or time.perf_counter() - last >= wait


def train_playground(config: PlaygroundConfig, *, on_frame: Callable[[Frame], None] | None = None,
                     should_stop: StopFn | None = None, interval: float = FRAME_INTERVAL,
                     share: float = FRAME_SHARE) -> Frame:
    """Run :func:`iter_frames` to the end (or a stop), handing each frame to ``on_frame``; return the last."""
    last: Frame | None = None
    for frame in iter_frames(config, should_stop=should_stop, interval=interval, share=share):
        last = frame
        if on_frame is not None:
            on_frame(frame)
    assert last is not None, "iter_frames always yields at least one frame"
    return last
