"""A run that ends at chance level says so: training with lr = 10 (digits, SmallCNN, PGD-AT) completed at 10 %
clean accuracy without a word, and the run was listed with the other models. Its final metrics now carry the
warning (with why and what to change), the CLI prints it, and the same settings are refused with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.errors import RegistryError
from core.jobs import create_job, ended_at_chance
from core.store import Registry
from core.training import TrainConfig, run_id_for, train
from core.training.epoch import chance_level, chance_warning

ROOT = Path(__file__).resolve().parents[2]
# The tester's settings (the Train page's batch of 32, lr 10), one short epoch.
LR10 = TrainConfig(dataset="digits", arch="smallcnn", method="pgd-at", eps=0.1, lr=10.0, epochs=1, batch_size=32,
                   attack_steps=2, eval_n=64, eval_steps=2, device="cpu")
DIGITS_TEST = torch.arange(450) % 10  # balanced, as the digits test split nearly is


def test_training_with_lr_10_ends_at_chance_and_says_so_and_why(tmp_path: Path, subprocess_env: dict) -> None:
    registry = Registry(tmp_path / "home")
    result = train(LR10, registry=registry)
    final = result.final_metrics
    assert result.status == "completed" and final["clean_acc"] <= 0.13 and final["at_chance"] is True
    warning = final["warning"]
    assert warning.startswith("training ended at chance level: clean accuracy "), warning
    assert "The model has learned nothing usable, and its robust accuracy says nothing about robustness." in warning
    assert warning.endswith("the steps were most likely too large. Train again with a smaller learning rate (this "
                            "run's was 10; try 0.05), or a smaller ε if the classes lie closer than 2ε (this run's "
                            "was 0.1)."), warning

    run = registry.get_run(result.run_id)
    assert run["final_metrics"]["warning"] == warning and ended_at_chance(run), "the run's record says it"
    with pytest.raises(RegistryError, match=r"already trained as run \w+ .*, and training ended at chance level: "):
        create_job(registry, "train", LR10.to_dict())

    # The CLI with the same settings finds the completed run and prints its figures and the warning.
    env = {**subprocess_env, "ATLAS_HOME": str(tmp_path / "home")}
    flags = ["--dataset", "digits", "--arch", "smallcnn", "--method", "pgd-at", "--eps", "0.1", "--lr", "10",
             "--epochs", "1", "--batch-size", "32", "--attack-steps", "2", "--eval-n", "64", "--eval-steps", "2",
             "--device", "cpu"]
    out = subprocess.run([sys.executable, "-m", "core", "train", *flags], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith(f"run {run_id_for(LR10)}: completed after 1 epoch(s); clean 0.")
    assert lines[1] == f"warning: {warning}"


def test_a_short_run_above_chance_carries_no_warning(tmp_path: Path) -> None:
    result = train(TrainConfig(dataset="digits", method="erm", epochs=2, batch_size=64, eval_n=0, device="cpu"),
                   registry=Registry(tmp_path))
    assert result.final_metrics["clean_acc"] > 0.15, result.final_metrics
    assert "at_chance" not in result.final_metrics and "warning" not in result.final_metrics


def test_chance_is_what_always_answering_the_most_common_class_scores() -> None:
    share, margin = chance_level(DIGITS_TEST, 10)
    assert share == pytest.approx(0.1) and margin == pytest.approx(2 * (0.1 * 0.9 / 450) ** 0.5)
    skewed = torch.tensor([1] * 60 + [0] * 20 + [2] * 20)  # SVHN-like: one class far more common
    assert chance_level(skewed, 10) == (pytest.approx(0.6), pytest.approx(2 * (0.6 * 0.4 / 100) ** 0.5))
    assert chance_level(torch.zeros(10_000, dtype=torch.long), 2)[1] == 0.02, "at least 2 points of percentage"


@pytest.mark.parametrize("history, advice", [
    pytest.param([{"epoch": 1, "loss": 2.3, "clean_acc": 0.098}],
                 "It never rose above chance in 6 optimizer steps: train more epochs; if it stays at chance, use a "
                 "smaller learning rate (this run's was 0.05), or a smaller ε if the classes lie closer than 2ε "
                 "(this run's was 0.1).", id="too-few-steps"),
    pytest.param([{"epoch": 1, "loss": 2.26, "clean_acc": 0.278}, {"epoch": 2, "loss": 2.43, "clean_acc": 0.1}],
                 "Its clean accuracy was 27.8 % after epoch 1, then fell back to chance: the steps were most likely "
                 "too large. Train again with a smaller learning rate (this run's was 0.05; try 0.005), or lower "
                 "TRADES β, or a smaller ε if the classes lie closer than 2ε (this run's was 0.1).",
                 id="learned-then-lost-it"),
    # The best figure was the last epoch's: the run ended there, it did not fall back.
    pytest.param([{"epoch": 1, "loss": 2.5, "clean_acc": 0.098}, {"epoch": 2, "loss": 2.4, "clean_acc": 0.2}],
                 "It never rose above chance in 6 optimizer steps: train more epochs; if it stays at chance, use a "
                 "smaller learning rate (this run's was 0.05), or a smaller ε if the classes lie closer than 2ε "
                 "(this run's was 0.1).", id="no-blow-up-no-fall-back"),
])
def test_the_warning_says_why_from_the_run_s_history(history: list, advice: str) -> None:
    config = TrainConfig(dataset="digits", method="trades", eps=0.1)
    warning = chance_warning(config, history, {"clean_acc": 0.1}, DIGITS_TEST, 10, 6)
    assert warning == ("training ended at chance level: clean accuracy 10.0 % on 450 test points, where always "
                       "answering the most common class scores 10.0 % (10 classes). The model has learned nothing "
                       f"usable. {advice}")
    assert chance_warning(config, history, {"clean_acc": 0.13}, DIGITS_TEST, 10, 6) is None, "above chance + margin"


def test_a_two_class_robust_loss_of_a_few_nats_is_not_called_a_blow_up() -> None:
    """The loss recorded is the method's own: PGD-AT on moons at a healthy lr can pass 3·ln 2 = 2.08."""
    config = TrainConfig(dataset="moons", arch="mlp", method="pgd-at", eps=0.3, lr=0.05)
    history = [{"epoch": 1, "loss": 2.5, "clean_acc": 0.5}, {"epoch": 2, "loss": 2.2, "clean_acc": 0.5}]
    warning = chance_warning(config, history, {"clean_acc": 0.5}, torch.arange(400) % 2, 2, 20)
    assert "steps were most likely too large" not in warning and "never rose above chance" in warning, warning
    assert warning.endswith("or a smaller ε if the classes lie closer than 2ε (this run's was 0.3)."), warning
