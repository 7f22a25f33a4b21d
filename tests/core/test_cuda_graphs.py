"""CUDA graphs for the iterative attacks (core/attacks/graphs.py): replays give the eager results.

The GPU tests run only where CUDA is available (on a GPU machine: `python -m pytest tests/core/test_cuda_graphs.py`); CI
has no GPU and runs the CPU test alone.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.attacks import FGSM, NFGSM, PGD, TRADESAttack
from core.attacks.tpgd import TemperaturePGD
from core.models import build_model

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _batches(device: torch.device, n: int = 4, size: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    made = [(torch.rand(size, 1, 8, 8, generator=gen), torch.randint(0, 10, (size,), generator=gen)) for _ in range(n)]
    return [(x.to(device), y.to(device)) for x, y in made]


def _run(attack: PGD, model: nn.Module, batches: list) -> list[torch.Tensor]:
    out = []
    for i, (x, y) in enumerate(batches):
        gen = torch.Generator(device=x.device).manual_seed(i)
        out.append(attack(model, x, y, 0.1, generator=gen).x_adv)
    return out


def test_no_graph_is_recorded_on_cpu() -> None:
    model = build_model("smallcnn", seed=0)
    attack = PGD(steps=3)
    _run(attack, model, _batches(torch.device("cpu")))
    assert attack.graph_cache.captures == 0 and attack.graph_cache.replays == 0


@cuda
@pytest.mark.parametrize("make", [lambda: PGD(steps=5), lambda: PGD(norm="l2", steps=5, restarts=2),
                                  lambda: TemperaturePGD(steps=5, temperature=0.1),
                                  lambda: FGSM(random_start=True, step_factor=1.25), lambda: NFGSM(),
                                  lambda: TRADESAttack(steps=5)],
                         ids=["linf", "l2-restarts", "tpgd", "fgsm-rs", "n-fgsm", "trades"])
def test_replayed_attack_equals_the_eager_one(make, monkeypatch: pytest.MonkeyPatch) -> None:
    device = torch.device("cuda")
    model = build_model("smallcnn", seed=0).to(device)
    batches = _batches(device)
    graphed = make()
    got = _run(graphed, model, batches)
    assert graphed.graph_cache.captures == 1 and graphed.graph_cache.replays >= 2
    monkeypatch.setenv("ATLAS_CUDA_GRAPHS", "0")
    eager = make()
    want = _run(eager, model, batches)
    assert eager.graph_cache.captures == 0
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@cuda
def test_a_replay_sees_weights_updated_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    device = torch.device("cuda")
    model = build_model("smallcnn", seed=0).to(device)
    batches = _batches(device, n=3)
    attack = PGD(steps=5)
    _run(attack, model, batches)  # eager, then recorded, then replayed
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # as an optimiser step would: same storage, new values
    got = _run(attack, model, batches[:1])[0]
    assert attack.graph_cache.replays >= 2
    monkeypatch.setenv("ATLAS_CUDA_GRAPHS", "0")
    want = _run(PGD(steps=5), model, batches[:1])[0]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


class _Syncing(nn.Module):
    """A model whose forward pass reads a number off the GPU: it cannot be recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.net = build_model("smallcnn", seed=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if float(logits.detach().abs().max()) > 1e6:
            raise RuntimeError("unreachable")
        return logits


@cuda
def test_a_model_that_cannot_be_recorded_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    device = torch.device("cuda")
    model = _Syncing().to(device)
    batches = _batches(device)
    attack = PGD(steps=3)
    got = _run(attack, model, batches)
    assert attack.graph_cache.broken and attack.graph_cache.captures == 0
    monkeypatch.setenv("ATLAS_CUDA_GRAPHS", "0")
    for a, b in zip(got, _run(PGD(steps=3), model, batches)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@cuda
@pytest.mark.parametrize("method", ["pgd-at", "fgsm-rs"])
def test_training_with_graphs_trains_the_eager_weights(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.data import load_dataset
    from core.training import TrainConfig
    from core.training.epoch import train_epoch
    from core.training.loop import make_optimizer, place_data
    from core.training.methods import METHODS, MethodState

    device = torch.device("cuda")
    torch.backends.cudnn.deterministic = True
    data = place_data(load_dataset("digits", "train"), device)
    config = TrainConfig(dataset="digits", method=method, epochs=1, batch_size=128, eps=0.1, attack_steps=5)

    def train(graphs: str) -> tuple[torch.Tensor, int]:
        monkeypatch.setenv("ATLAS_CUDA_GRAPHS", graphs)
        model = build_model("smallcnn", seed=0).to(device)
        optimizer, m = make_optimizer(model, config), METHODS[method]
        attack = m.make_attack(config)
        train_epoch(model, optimizer, data, config, m, attack, 1, device, state=MethodState())
        return torch.cat([p.detach().flatten() for p in model.parameters()]), attack.graph_cache.replays

    graphed, replays = train("1")
    eager, none = train("0")
    assert replays >= 5 and none == 0
    torch.testing.assert_close(graphed, eager, atol=1e-5, rtol=1e-4)
