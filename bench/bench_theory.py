"""Theory Lab speed (issue 7): the Li & Li simulation in torch vs a plain numpy reference of the same algorithm.

Usage: python bench/bench_theory.py [--repeats 3] [--threads 2] [--iterations 600] [--out bench/RESULTS.md]

Both run METHODS.md §3's defaults (600 iterations of full-batch GD; AT: 3 ℓ2-per-patch PGD steps from x before each
step) and record every 20 iterations what the page plots: U, V, noise memorisation, clean accuracy and the robust
accuracy of PGD-10 from x, PGD-10 from a random start and the feature-shift probe. The numpy reference uses the
same data and initial weights, so its final U and V are checked against torch's (the random start draws from
another generator, so that column may differ slightly). Targets: ST ≤ 20 s, AT ≤ 60 s; "first plot" is the time
to the first recorded row, which is when the page first draws.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.data.patches import patch_features  # noqa: E402
from core.models import build_model  # noqa: E402
from core.theory import TheoryConfig, simulate  # noqa: E402
from core.theory.simulate import SHIFT_ANGLES  # noqa: E402


class NumpyPatchNet:
    """F_j(X) = Σ_r Σ_p σ̃(⟨w_{j,r}, x_p⟩) with hand-written gradients (float32, like the torch model)."""

    def __init__(self, weight: np.ndarray, q: float, rho: float) -> None:
        self.w, self.q, self.rho = weight, q, rho

    def _act(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """σ̃(z) and σ̃'(z)."""
        q, rho = self.q, self.rho
        zc = np.clip(z, 0.0, rho)
        value = np.where(z >= rho, z - (1 - 1 / q) * rho, zc ** q / (q * rho ** (q - 1)))
        slope = np.where(z >= rho, 1.0, (zc / rho) ** (q - 1)).astype(z.dtype)
        return value.astype(z.dtype), slope

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = np.einsum("npd,kmd->nkmp", x, self.w, optimize=True)
        return self._act(z)[0].sum(axis=(2, 3))

    def loss_grads(self, x: np.ndarray, y: np.ndarray, *, wrt: str) -> tuple[float, np.ndarray]:
        """Mean cross-entropy and its gradient w.r.t. the weight (``wrt="w"``) or the per-sample CE's gradient
        w.r.t. the input (``wrt="x"``, what PGD ascends)."""
        z = np.einsum("npd,kmd->nkmp", x, self.w, optimize=True)
        value, slope = self._act(z)
        logits = value.sum(axis=(2, 3))
        shifted = logits - logits.max(1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(1, keepdims=True)
        loss = float(-np.log(probs[np.arange(len(y)), y] + 1e-30).mean())
        g = probs
        g[np.arange(len(y)), y] -= 1.0
        gs = g[:, :, None, None] * slope  # n k m p
        if wrt == "w":
            return loss, np.einsum("nkmp,npd->kmd", gs, x, optimize=True) / len(y)
        return loss, np.einsum("nkmp,kmd->npd", gs, self.w, optimize=True)


def project_patches(delta: np.ndarray, eps: float) -> np.ndarray:
    lengths = np.linalg.norm(delta, axis=2, keepdims=True)
    return delta * np.minimum(eps / (lengths + 1e-12), 1.0)


def numpy_pgd(net: NumpyPatchNet, x: np.ndarray, y: np.ndarray, eps: float, steps: int,
              start: np.ndarray | None = None) -> np.ndarray:
    step = 2.5 * eps / steps
    x_adv = x.copy() if start is None else x + start
    for _ in range(steps):
        grad = net.loss_grads(x_adv, y, wrt="x")[1]
        x_adv = x_adv + step * grad / (np.linalg.norm(grad, axis=2, keepdims=True) + 1e-12)
        x_adv = x + project_patches(x_adv - x, eps)
    return x_adv


def numpy_simulate(config: TheoryConfig, rng: np.random.Generator) -> list[dict[str, float]]:
    train = load_dataset("patches", "train", **config.data_params())
    test = load_dataset("patches", "test", **config.data_params())
    u, v = (t.numpy() for t in patch_features(config.k, config.d, config.data_seed))
    x, y = train.x.numpy(), train.y.numpy()
    xt, yt = test.x.numpy(), test.y.numpy()
    basis = np.concatenate([u, v]).T
    noise = x - x @ basis @ basis.T
    net = NumpyPatchNet(build_model("patchnet", **config.arch_kwargs()).weight.detach().numpy().copy(),
                        config.q, config.rho)
    history = []
    for t in range(config.iterations + 1):
        batch = numpy_pgd(net, x, y, config.eps, config.train_pgd_steps) if config.adversarial else x
        loss, grad_w = net.loss_grads(batch, y, wrt="w")
        if t % config.record_every == 0 or t == config.iterations:
            proj_u = np.einsum("jrd,jd->jr", net.w, u).max(1)
            proj_v = np.einsum("jrd,jd->jr", net.w, v).max(1)
            mem = float(np.abs(np.einsum("jrd,npd->jrnp", net.w, noise, optimize=True)).max())
            clean = float((net.logits(xt).argmax(1) == yt).mean())
            fooled_a = net.logits(numpy_pgd(net, xt, yt, config.eps, config.test_pgd_steps)).argmax(1) != yt
            gauss = rng.standard_normal(xt.shape).astype(np.float32)
            direction = gauss / (np.linalg.norm(gauss, axis=2, keepdims=True) + 1e-12)
            start = direction * rng.random((*xt.shape[:2], 1)).astype(np.float32) ** (1 / config.d) * config.eps
            fooled_b = net.logits(numpy_pgd(net, xt, yt, config.eps, config.test_pgd_steps, start)).argmax(1) != yt
            shift = np.zeros(len(yt), dtype=bool)
            for features in (u, v):
                unit = features / np.linalg.norm(features, axis=1, keepdims=True)
                for j in range(config.k):
                    for theta in SHIFT_ANGLES:
                        moved = xt + config.eps * (np.sin(theta) * unit[j] - np.cos(theta) * unit[yt][:, None, :])
                        shift |= (net.logits(moved.astype(np.float32)).argmax(1) != yt) & (yt != j)
            history.append({"t": t, "loss": loss, "U": float(proj_u.mean()), "V": float(proj_v.mean()),
                            "noise_memorisation": mem, "clean_acc": clean,
                            "robust_acc": float((~(fooled_a | fooled_b | shift)).mean()),
                            "robust_acc_pgd": float((~fooled_a).mean())})
        if t == config.iterations:
            break
        net.w = net.w - np.float32(config.lr) * grad_w.astype(np.float32)
    return history


def run_torch(config: TheoryConfig) -> tuple[float, float, dict[str, float]]:
    start = time.perf_counter()
    first: list[float] = []
    result = simulate(config, on_progress=lambda row: first.append(time.perf_counter() - start) if not first else None)
    return time.perf_counter() - start, first[0], result.final


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for adversarial, target in ((False, 20.0), (True, 60.0)):
        config = TheoryConfig(adversarial=adversarial, iterations=args.iterations)
        ours, firsts, refs = [], [], []
        for repeat in range(args.repeats):
            seconds, first, final = run_torch(config)
            ours.append(seconds)
            firsts.append(first)
            start = time.perf_counter()
            ref = numpy_simulate(config, np.random.default_rng(repeat))[-1]
            refs.append(time.perf_counter() - start)
            print(f"{'AT' if adversarial else 'ST'} repeat {repeat}: torch {seconds:.2f} s, numpy {refs[-1]:.2f} s",
                  file=sys.stderr, flush=True)
        agree = abs(final["U"] - ref["U"]) <= 0.02 * max(1.0, abs(ref["U"])) and \
            abs(final["V"] - ref["V"]) <= 0.02 * max(1.0, abs(ref["V"]))
        t_ours, t_ref = statistics.median(ours), statistics.median(refs)
        name = "AT (3-step PGD per iteration)" if adversarial else "ST"
        rows.append(f"| {name} | {t_ours:.2f} | {statistics.median(firsts):.2f} | {t_ref:.2f} | "
                    f"{t_ours / t_ref:.2f}× | U {final['U']:.2f} / {ref['U']:.2f}, V {final['V']:.3f} / "
                    f"{ref['V']:.3f} ({'agree' if agree else '**differ**'}) | ≤ {target:g} s | "
                    f"{'pass' if t_ours <= target else '**miss**'} |")
    lines = ["", f"### Theory Lab (issue 7) — {time.strftime('%Y-%m-%d')}, {args.threads} torch threads, "
             f"torch {torch.__version__}, numpy {np.__version__}", "",
             f"Command: `python bench/bench_theory.py --repeats {args.repeats} --threads {args.threads}`. "
             f"METHODS.md §3 defaults, {args.iterations} iterations, a row recorded every 20; medians.", "",
             "| run | torch, s | first plot, s | numpy reference, s | torch ÷ numpy | final U, V (torch / numpy) | "
             "target | |", "|---|---|---|---|---|---|---|---|", *rows]
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
