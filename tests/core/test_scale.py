"""The speed options of the scale-out issue, on CPU: bf16 attacks and training, channels-last, recipes.

The GPU side (fp16, NCCL, the dataset kept on the GPU) needs a GPU; these tests run the same code paths on CPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from core.attacks import APGD, PGD
from core.cli.parser import build_parser
from core.cli.train_cmd import config_from_args
from core.data import load_dataset
from core.errors import ConfigError
from core.evaluation.trust import PRECISION_GAP_AMBER, run_trust_checks
from core.models import load_checkpoint
from core.store import Registry
from core.training import TrainConfig, run_id_for, train
from core.utils import assets_models_dir

N = 120


@pytest.fixture(scope="module")
def pgd_at() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    model, _ = load_checkpoint(assets_models_dir() / "digits-smallcnn-pgd-at.safetensors")
    data = load_dataset("digits", "test").subset(N)
    return model, data.x, data.y


@pytest.mark.parametrize("attack_class", [PGD, APGD])
def test_bf16_attacks_keep_the_contract_and_check_success_in_fp32(pgd_at, attack_class) -> None:
    model, x, y = pgd_at
    low_attack, full_attack = attack_class(norm="linf", steps=10, precision="bf16"), attack_class(norm="linf", steps=10)
    low, full = low_attack(model, x, y, 0.1), full_attack(model, x, y, 0.1)
    assert low.x_adv.dtype == torch.float32 and low.logits_adv.dtype == torch.float32
    assert float((low.x_adv - x).abs().max()) <= 0.1 + 1e-6 and 0 <= float(low.x_adv.min()) <= 1
    assert float(low.x_adv.max()) <= 1
    with torch.no_grad():
        again = model.eval()(low.x_adv)
    assert torch.equal(low.success, again.argmax(1) != y)  # re-predicted in fp32, not in bf16
    # bf16 is a different attack (rounded gradients) but not a broken one on this model.
    assert abs(float(low.robust.float().mean()) - float(full.robust.float().mean())) <= 0.05
    assert low_attack.config.to_dict()["precision"] == "bf16" and "precision" not in full_attack.config.to_dict()


def test_bad_precisions_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        PGD(precision="fp8")
    with pytest.raises(ConfigError, match="fp16 attacks need a CUDA GPU"):
        PGD(precision="fp16")(torch.nn.Linear(4, 2), torch.rand(3, 4), torch.zeros(3, dtype=torch.long), 0.1)


def test_the_precision_trust_check_compares_with_fp32(pgd_at) -> None:
    model, x, y = pgd_at
    checks = run_trust_checks(model, x, y, eps=0.1, precision="bf16")
    assert [c.key for c in checks][-1] == "precision"
    assert "precision" not in [c.key for c in run_trust_checks(model, x[:20], y[:20], eps=0.1)]
    check = checks[-1]
    value = check.value
    assert value["gap"] == pytest.approx(value["low_robust_acc"] - value["fp32_robust_acc"])
    pgd10 = next(c for c in checks if c.key == "fgsm_vs_pgd").value["pgd_robust_acc"]
    assert value["fp32_robust_acc"] == pgd10  # the same fp32 PGD-10 the other checks report
    expected = "green" if value["gap"] <= PRECISION_GAP_AMBER and value["zero_fraction"] == 0 else check.status
    assert check.status == expected and "bf16" in check.finding


def test_bf16_training_on_cpu_learns_and_is_its_own_run(tmp_path) -> None:
    base = dict(dataset="digits", method="erm", epochs=3, batch_size=32, eval_n=0, lr=0.1, schedule="onecycle",
                device="cpu")
    assert run_id_for(TrainConfig(**base, amp=True)) != run_id_for(TrainConfig(**base))
    result = train(TrainConfig(**base, amp=True), registry=Registry(tmp_path))
    last = result.final_metrics
    # fp32 reaches 0.96 with these settings, bf16 0.92 (measured): low precision trains, a little worse.
    assert result.status == "completed" and math.isfinite(last["loss"]) and last["clean_acc"] > 0.85


def test_channels_last_is_a_speed_option_with_the_same_run_and_weights(tmp_path) -> None:
    base = dict(dataset="digits", epochs=1, batch_size=64, eval_n=0, device="cpu")
    plain, fast = TrainConfig(**base), TrainConfig(**base, channels_last=True)
    assert run_id_for(plain) == run_id_for(fast)
    a = train(plain, registry=Registry(tmp_path / "a"))
    b = train(fast, registry=Registry(tmp_path / "b"))
    wa, wb = (load_checkpoint(r.checkpoint_path)[0].state_dict() for r in (a, b))
    # Same maths, other order of float operations in the convolutions: 5e-4 apart after one epoch (measured).
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 5e-3
    assert abs(a.final_metrics["clean_acc"] - b.final_metrics["clean_acc"]) <= 0.02
    with pytest.raises(ConfigError, match="channels_last must be true or false"):
        TrainConfig(**base, channels_last="yes")


def test_recipes_fill_in_what_the_user_did_not_set() -> None:
    parser = build_parser()
    config = config_from_args(parser.parse_args(["train", "--recipe", "cifar10-fgsm-rs", "--epochs", "3"]))
    assert (config.dataset, config.arch, config.method) == ("cifar10", "preact_resnet18", "fgsm-rs")
    assert config.eps == pytest.approx(8 / 255) and config.lr == 0.2 and config.schedule == "onecycle"
    assert config.amp is True and config.epochs == 3  # the flag given wins over the recipe's 15
    pgd = config_from_args(parser.parse_args(["train", "--recipe", "cifar10-pgd-at"]))
    assert (pgd.attack_steps, pgd.attack_step_size, pgd.epochs) == (10, pytest.approx(2 / 255), 200)
    assert pgd.schedule == "step" and pgd.step_milestones == (0.5, 0.75)
    with pytest.raises(ConfigError, match="unknown recipe 'imagenet'"):
        config_from_args(parser.parse_args(["train", "--recipe", "imagenet"]))
