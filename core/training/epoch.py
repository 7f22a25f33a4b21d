"""One training epoch and the per-epoch evaluation (clean accuracy, PGD robust accuracy, per class)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from core.attacks import FGSM, PGD, Attack
from core.attacks.base import autocast_for
from core.attacks.shard import batch_shard
from core.data import Dataset
from core.distributed import SINGLE, DistContext, StepCarrier
from core.errors import TrainingDiverged
from core.training.classwise import sample_weights, weighted_mean
from core.training.config import TrainConfig
from core.training.methods import Method, MethodState, shares_clean_pass
from core.training.schedules import lr_at
from core.utils import derive_seed, make_generator

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]
# Seconds between two per-batch progress events and checks that the loss is finite (each reads the loss off the
# device; the last batch always reports and checks).
PROGRESS_EVERY = 0.25


@dataclass
class EpochStats:
    loss: float
    train_acc: float
    seconds: float
    stopped: bool


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: Dataset, config: TrainConfig,
                method: Method, attack: Attack | None, epoch: int, device: torch.device,
                on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                state: MethodState | None = None, *, dist: DistContext = SINGLE,
                train_model: nn.Module | None = None) -> EpochStats:
    """Run one epoch; return early (``stopped``) at a batch boundary when ``should_stop()`` says so. ``state``
    (ν, class weights, running loss parts) is updated in place.

    Under torchrun every rank walks the same shuffled global batches and trains on its contiguous share of each;
    ``train_model`` is then the DistributedDataParallel wrapper of ``model`` (the attack runs on ``model`` itself,
    so its input gradients trigger no gradient all-reduce). Each rank's loss is its share of the global batch's
    (weighted) mean, so the averaged gradient is exactly the single-process one on the same global batch."""
    state = state if state is not None else MethodState()
    # Dropout draws from the global RNG: seed it per epoch inside a fork so runs resume bit-identically.
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derive_seed(config.seed, "dropout", epoch, *_rank_key(dist)))
        # Not `train_model or model`: a torch.compile'd module refuses bool() ("does not support len()").
        step_model = model if train_model is None else train_model
        return _train_epoch(model, step_model, optimizer, data, config, method, attack, epoch, device, on_progress,
                            should_stop, state, dist)


def _rank_key(dist: DistContext) -> tuple[int, ...]:
    # Random streams get the rank in their key only under torchrun: a single process keeps its historical seeds.
    return (dist.rank,) if dist.enabled else ()


def _train_epoch(model: nn.Module, train_model: nn.Module, optimizer: torch.optim.Optimizer, data: Dataset,
                 config: TrainConfig, method: Method, attack: Attack | None, epoch: int, device: torch.device,
                 on_progress: ProgressFn | None, should_stop: StopFn | None, state: MethodState,
                 dist: DistContext) -> EpochStats:
    start = time.perf_counter()
    model.train()
    n = len(data)
    perm = torch.randperm(n, generator=make_generator(config.seed, "shuffle", epoch))
    # One attack stream for every rank: each draws for the whole global batch and keeps its rows (batch_shard), so
    # the adversarial examples are those of a single process on the same global batch.
    gen = make_generator(config.seed, "attack", epoch, device=str(device) if device.type == "cuda" else "cpu")
    batches = (n + config.batch_size - 1) // config.batch_size
    total_steps = batches * config.epochs
    # The epoch's sums stay on the device: reading a number off the GPU inside the loop would make the CPU wait for
    # every step before it queues the next one (read here once per epoch, and for progress every PROGRESS_EVERY s).
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    order = perm.to(data.x.device)  # batch indices on the data's device: no host-to-device copy per step
    last_report = time.perf_counter()
    autocast = amp_context(config, device)
    wants_stop = (lambda: False) if should_stop is None else should_stop
    # Under torchrun the stop request travels with each step's reduction (one collective per step, not two);
    # only the first batch needs a collective of its own.
    stop = dist.any(wants_stop()) if dist.enabled else False
    share_clean = shares_clean_pass(method, attack, model, dist.enabled)
    # Under torchrun f(x) comes from the DDP wrapper's one forward pass over [x; x'], but the Langevin chain still
    # takes its first gradient at x as one process does, so both train the same weights.
    chain_from_clean = not share_clean and shares_clean_pass(method, attack, model, False)
    params = [p for p in model.parameters() if p.requires_grad]
    carrier: StepCarrier | None = getattr(train_model, "step_carrier", None)
    for b in range(batches):
        if (stop if dist.enabled else wants_stop()):
            seen = min(b * config.batch_size, n)
            return EpochStats(float(loss_sum) / max(b, 1), _global_count(dist, int(correct), device) / max(seen, 1),
                              time.perf_counter() - start, True)
        batch = order[b * config.batch_size:(b + 1) * config.batch_size]
        shares = batch.tensor_split(dist.world_size) if dist.enabled else (batch,)
        idx = shares[dist.rank]
        offset = sum(len(share) for share in shares[:dist.rank])
        x, y = data.x[idx].to(device, non_blocking=True), data.y[idx].to(device, non_blocking=True)
        if config.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        x_adv, shared = None, {}
        if attack is not None:
            with autocast(), batch_shard(offset, len(idx), len(batch)):
                if share_clean:
                    # ∇θ of the clean term ν·CE(f(x), y) lands in .grad during the chain's first backward pass.
                    optimizer.zero_grad(set_to_none=True)
                    x_adv, shared["logits_clean"] = attack.perturb_with_clean(  # type: ignore[attr-defined]
                        model, x, y, config.eps, clean_forward=train_model, bounds=data.bounds, generator=gen,
                        clean_weight=state.nu * sample_weights(y, state.class_weights), params=params)
                elif chain_from_clean:
                    x_adv = attack.perturb_with_clean(  # type: ignore[attr-defined]
                        model, x, y, config.eps, clean_forward=model, bounds=data.bounds, generator=gen)[0]
                else:
                    x_adv = attack.perturb(model, x, y, config.eps, bounds=data.bounds, generator=gen)[0]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(config, (epoch - 1) * batches + b, total_steps)
        with autocast():
            per_sample, logits, parts = method.loss(train_model, x, y, x_adv, config, state, **shared)
            if dist.enabled:
                loss = _share_of_global_mean(per_sample, y, data.y[batch].to(device), state.class_weights, dist)
            else:
                loss = weighted_mean(per_sample, y, state.class_weights)
        if not shared:
            optimizer.zero_grad(set_to_none=True)
        ratio = getattr(attack, "last_noise_to_grad", None)
        if ratio is not None:
            parts = {**parts, "noise_to_grad": ratio}
        if dist.enabled:
            # The step's numbers travel with the gradients (one collective per step) when DDP carries them.
            values = _step_values(dist, loss, parts, len(idx), len(batch), wants_stop())
            if carrier is not None:
                carrier.send(values)
        loss.backward()
        optimizer.step()
        if dist.enabled:
            batch_loss, parts, stop = _reduce_step(dist, values, list(parts), carrier)
        else:
            batch_loss = loss.detach()
        loss_sum += batch_loss
        for name, value in parts.items():
            state.add(name, value)
        if method.after_step is not None:
            method.after_step(state, parts, config)
        correct += (logits.argmax(1) == y).sum()
        # Under torchrun at every step: the loss is then already a host number, the global batch's, the same on
        # every rank, so all ranks stop at the same step (one that stopped alone would leave the others waiting in
        # a collective). In one process every 0.25 s, since reading the loss waits for the GPU.
        if dist.enabled and not math.isfinite(batch_loss):
            raise TrainingDiverged(diverged_text(config, optimizer, epoch, b + 1, batches, batch_loss))
        if b == batches - 1 or time.perf_counter() - last_report >= PROGRESS_EVERY:
            last_report = time.perf_counter()
            if not dist.enabled and not math.isfinite(float(loss_sum)):
                raise TrainingDiverged(diverged_text(config, optimizer, epoch, b + 1, batches, float(loss_sum)))
            if on_progress is not None and dist.is_main:
                on_progress({"kind": "batch", "epoch": epoch, "batch": b + 1, "batches": batches,
                             "loss": float(batch_loss)})
    if dist.enabled:
        state.reduce_robust(dist)
    return EpochStats(float(loss_sum) / batches, _global_count(dist, int(correct), device) / n,
                      time.perf_counter() - start, False)


def diverged_text(config: TrainConfig, optimizer: torch.optim.Optimizer, epoch: int, batch: int, batches: int,
                  loss: float) -> str:
    """Why the run stopped and what to change: the loss is no longer a number, so every weight is garbage."""
    lr = max(group["lr"] for group in optimizer.param_groups)
    causes = [f"lower the learning rate (it was {lr:.3g} at that step)", *beta_cause(config)]
    return (f"training diverged in epoch {epoch} (by batch {batch} of {batches}): the loss became "
            f"{'NaN' if math.isnan(loss) else 'infinite'}. Nothing of that epoch was saved. Resuming would repeat "
            f"the same steps: start a new run with other settings — {'; '.join(causes)}.")


def beta_cause(config: TrainConfig) -> list[str]:
    """The other setting that makes the steps too large, for the methods that weigh a KL term by β."""
    if config.method in ("trades", "mart"):
        return [f"lower {'TRADES' if config.method == 'trades' else 'MART'} β"]
    return []


def chance_level(y: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """What a model that learned nothing scores on the points labelled ``y``: the share of the most common class
    (always answering it; 1/num_classes on balanced data), and the margin above it that still reads as chance: two
    standard errors of that score on this many points, at least 2 points of percentage."""
    counts = torch.bincount(y.flatten().long().cpu(), minlength=num_classes)
    n = max(int(counts.sum()), 1)
    share = max(float(counts.max()) / n, 1 / num_classes)
    return share, max(0.02, 2 * math.sqrt(share * (1 - share) / n))


def chance_warning(config: TrainConfig, history: list[dict[str, Any]], final: dict[str, Any], y: torch.Tensor,
                   num_classes: int, steps: int) -> str | None:
    """Why a run whose final clean accuracy (``final``, measured on the points labelled ``y``) is at chance level
    learned nothing, and what to change; None when it is above chance. ``history``: its epochs' metrics; ``steps``:
    the optimizer steps it took. Not an error (TrainingDiverged) as a non-finite loss is: a run of a few steps also
    ends here (one epoch of digits at batch 256 does, at the default learning rate), and its weights are what they
    are; the warning goes with its final metrics (the CLI prints it, the job card and the hub show it)."""
    clean = final.get("clean_acc")
    if clean is None or not history or not len(y):
        return None
    share, margin = chance_level(y, num_classes)
    if clean > share + margin:
        return None
    text = (f"training ended at chance level: clean accuracy {_pct(clean)} on {len(y)} test points, where always "
            f"answering the most common class scores {_pct(share)} ({num_classes} classes). The model has learned "
            "nothing usable" + (", and its robust accuracy says nothing about robustness." if "robust_acc" in final
                                else "."))
    guess = math.log(num_classes)  # the cross-entropy of a uniform guess
    # The loss recorded is the method's own (an adversarial loss, CE + β·KL): on 2 classes a healthy run can pass
    # 3·ln 2, so only a loss far past any healthy one (10 nats) says the steps blew up.
    peak = max(history, key=lambda m: m["loss"] if math.isfinite(m["loss"]) else -math.inf)
    # Not the last epoch: its held-out figure is on other points than the final one, and "then fell back" after
    # the epoch the run ended on would be false.
    best = max(history[:-1] or history[:1], key=lambda m: m.get("clean_acc", 0.0))
    # An adversarial run can also sit at chance because ε is too large for the data (the classes closer than 2ε):
    # then no learning rate helps.
    eps_cause = ([f"a smaller ε if the classes lie closer than 2ε (this run's was {config.eps:g})"]
                 if config.method != "erm" and config.eps > 0 else [])
    if peak["loss"] > max(3 * guess, 10.0):
        text += (f" Its training loss reached {peak['loss']:.3g} in epoch {peak['epoch']} (a uniform guess scores "
                 f"{guess:.2f}): the steps were most likely too large.")
    elif len(history) > 1 and best.get("clean_acc", 0.0) > share + margin:
        text += (f" Its clean accuracy was {_pct(best['clean_acc'])} after epoch {best['epoch']}, then fell back to "
                 "chance: the steps were most likely too large.")
    else:
        return (f"{text} It never rose above chance in {steps} optimizer steps: train more epochs; if it stays at "
                f"chance, use a smaller learning rate (this run's was {config.lr:g})"
                + "".join(f", or {cause}" for cause in eps_cause) + ".")
    smaller = TrainConfig.lr if config.lr > TrainConfig.lr else config.lr / 10
    return (f"{text} Train again with a smaller learning rate (this run's was {config.lr:g}; try {smaller:g})"
            + "".join(f", or {cause}" for cause in (*beta_cause(config), *eps_cause)) + ".")


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def amp_context(config: TrainConfig, device: torch.device) -> Callable[[], Any]:
    """Autocast for training steps and training attacks when ``config.amp`` asks for it: bf16 on CPU and on GPUs
    that support it, else fp16 (with fp32 master weights, as always: only activations are low precision)."""
    precision = "fp32"
    if config.amp:
        precision = "fp16" if device.type == "cuda" and not torch.cuda.is_bf16_supported() else "bf16"
    return lambda: autocast_for(precision, device)


def _share_of_global_mean(per_sample: torch.Tensor, y: torch.Tensor, y_global: torch.Tensor,
                          weights: torch.Tensor | None, dist: DistContext) -> torch.Tensor:
    """This rank's part of the global batch's weighted mean, times the world size (DDP averages gradients)."""
    if weights is None:
        return per_sample.sum() * (dist.world_size / len(y_global))
    return (per_sample * weights[y]).sum() * (dist.world_size / weights[y_global].sum())


def _step_values(dist: DistContext, loss: torch.Tensor, parts: dict[str, Any], n_local: int, n_global: int,
                 stop: bool) -> torch.Tensor:
    """This rank's share of the step's numbers, to be summed over the ranks: the stop flag, the loss parts (means
    over the global batch) and the loss, on the loss's device (no wait for the GPU)."""
    head = torch.tensor([float(stop)], dtype=torch.float64).to(loss.device)
    shares = [(torch.as_tensor(parts[k], dtype=torch.float64, device=loss.device) * n_local / n_global).reshape(1)
              for k in parts]
    return torch.cat([head, *shares, (loss.detach().double() / dist.world_size).reshape(1)])


def _reduce_step(dist: DistContext, values: torch.Tensor, names: list[str],
                 carrier: StepCarrier | None) -> tuple[float, dict[str, float], bool]:
    """The global batch's loss and loss parts, the same on every rank, so ν follows the same dual step
    everywhere; and whether any rank was asked to stop. Taken from the gradients' all-reduce when it carried
    them, else summed here."""
    reduced = carrier.take() if carrier is not None else None
    if reduced is None:
        reduced = dist.sum_(values)
    numbers = reduced.cpu().tolist()
    return numbers[-1], dict(zip(names, numbers[1:-1])), numbers[0] > 0


def _global_count(dist: DistContext, count: int, device: torch.device) -> int:
    if not dist.enabled:
        return count
    total = torch.tensor([count], dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    return int(dist.sum_(total).item())


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset, device: torch.device, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        x, y = data.x[i:i + batch_size].to(device), data.y[i:i + batch_size].to(device)
        correct += int((model(x).argmax(1) == y).sum())
    return correct / max(len(data), 1)


def robust_flags(model: nn.Module, data: Dataset, attack: Attack, eps: float, device: torch.device,
                 seed: int, batch_size: int = 256) -> torch.Tensor:
    """Per-sample flag: correctly classified after the attack (clean mistakes count as not robust)."""
    flags = []
    gen = make_generator(seed, "eval-attack", device=str(device) if device.type == "cuda" else "cpu")
    for i in range(0, len(data), batch_size):
        x, y = data.x[i:i + batch_size].to(device), data.y[i:i + batch_size].to(device)
        result = attack(model, x, y, eps, bounds=data.bounds, generator=gen)
        flags.append(result.logits_adv.argmax(1).eq(y).cpu())
    return torch.cat(flags) if flags else torch.zeros(0, dtype=torch.bool)


def evaluate_epoch(model: nn.Module, test: Dataset, held_out: Dataset, config: TrainConfig,
                   device: torch.device, with_fgsm: bool) -> dict[str, Any]:
    """Clean test accuracy, PGD robust accuracy on the held-out subset (overall and per class)."""
    start = time.perf_counter()
    metrics: dict[str, Any] = {"clean_acc": accuracy(model, test, device)}
    if len(held_out) and config.eps > 0:
        pgd = PGD(norm=config.norm, steps=config.eval_steps)
        flags = robust_flags(model, held_out, pgd, config.eps, device, config.seed)
        metrics["robust_acc"] = float(flags.float().mean())
        per_class = {}
        for c, name in enumerate(held_out.classes):
            mask = held_out.y == c
            if mask.any():
                per_class[str(name)] = float(flags[mask].float().mean())
        metrics["per_class_robust_acc"] = per_class
        if with_fgsm:
            fgsm_flags = robust_flags(model, held_out, FGSM(norm=config.norm), config.eps, device, config.seed)
            metrics["fgsm_acc"] = float(fgsm_flags.float().mean())
    metrics["eval_seconds"] = time.perf_counter() - start
    return metrics


def detect_catastrophic_overfitting(history: list[dict[str, Any]], current: dict[str, Any]) -> str | None:
    """Wong et al.'s symptom: PGD robust accuracy collapses while FGSM accuracy stays high."""
    best = max((h.get("robust_acc", 0.0) for h in history), default=0.0)
    robust = current.get("robust_acc")
    if robust is None or best < 0.2:
        return None
    collapsed = robust < 0.5 * best and best - robust > 0.15
    fgsm_gap = current.get("fgsm_acc", robust) - robust > 0.3
    if collapsed or fgsm_gap:
        return (f"catastrophic overfitting suspected: PGD robust accuracy {robust:.1%} (best so far {best:.1%})"
                f"{', FGSM accuracy %.1f%%' % (100 * current['fgsm_acc']) if 'fgsm_acc' in current else ''}")
    return None
