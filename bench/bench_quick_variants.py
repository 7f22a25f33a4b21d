"""Quick-ensemble variants against a paper-strength AutoAttack (issue 4: "within 1 point of full AutoAttack").

Usage: python bench/bench_quick_variants.py [--seeds 8] [--cases pgd-at:0.2 trades:0.2 ...] [--variants ...]
                                           [--threads 2] [--out bench/RESULTS.md]

torchattacks' ``AutoAttack(version="standard")`` builds its members with their defaults: 10 APGD steps, 10 FAB steps.
The reference here is AutoAttack as Croce & Hein run it: APGD-CE 100 steps, APGD-T against the 9 other classes ×
100 steps, FAB-T 9 targets × 100 steps, Square 5000 queries (torchattacks' members, seed 0), and, point by point,
also our own ``full`` ensemble (APGD-CE 100, APGD-T 9 × 100, FMN 100, Square 5000): a point counts as robust in the
reference only if both leave it robust. Each variant "CE steps / targeted steps × targets" runs with 8 generator
seeds; "+" marks the adaptive plan (more targets, then an APGD-CE restart, where APGD-CE left few points; see
core.attacks.ensemble.QuickConfig.plan). Reported per case: robust
points out of 360 of the reference, the most and the mean robust points above it over the seeds, and the median
time of one quick call (all variants timed in the same run, on the same cores).

torchattacks is never a project dependency: it is imported from bench/.reference (bash bench/reference_env.sh).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "bench" / ".reference"))
import torch  # noqa: E402
from common import emit  # noqa: E402

from core.attacks import make_attack  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.models import load_checkpoint  # noqa: E402

DEFAULT_CASES = ("pgd-at:0.2", "trades:0.2", "dale:0.2", "pgd-at:0.1", "fgsm-rs:0.2", "erm:0.1")
DEFAULT_VARIANTS = ("50/20x5", "50/20x5+")


def parse_variant(text: str) -> dict:
    ce, rest = text.split("/")
    steps, targets = rest.rstrip("+").split("x")
    return {"steps": int(ce), "targeted_steps": int(steps), "targets": int(targets), "adaptive": text.endswith("+")}


def run_variant(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int,
                variant: dict) -> torch.Tensor:
    """Robust flags after core's QuickEnsemble with that config ("+": adaptive, see QuickConfig.plan)."""
    gen = torch.Generator().manual_seed(seed)
    config = {k: variant[k] for k in ("steps", "targeted_steps", "targets", "adaptive")}
    return ~make_attack("quick", **config)(model, x, y, eps, generator=gen).success


def reference(ta, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
              cache: Path | None = None) -> dict:
    """The reference flags and times; with ``cache``, read from / written to a file per model weights and ε (the
    reference takes minutes per case and does not change while variants are tried)."""
    if cache is not None:
        import hashlib

        digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()[:16]
        path = cache / f"ref-{digest}-{eps:g}-{len(x)}.pt"
        if path.exists():
            return torch.load(path)
        cache.mkdir(parents=True, exist_ok=True)
        ref = reference(ta, model, x, y, eps)
        torch.save(ref, path)
        return ref
    start = time.perf_counter()
    aa = ta.MultiAttack([
        ta.APGD(model, norm="Linf", eps=eps, steps=100, loss="ce", n_restarts=1, seed=0),
        ta.APGDT(model, norm="Linf", eps=eps, steps=100, n_classes=10, n_restarts=1, seed=0),
        ta.FAB(model, norm="Linf", eps=eps, steps=100, multi_targeted=True, n_classes=10, n_restarts=1, seed=0),
        ta.Square(model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, seed=0),
    ])
    x_aa = aa(x, y)
    t_aa = time.perf_counter() - start
    with torch.no_grad():
        robust_aa = model(x_aa).argmax(1) == y
    start = time.perf_counter()
    robust_full = ~make_attack("full")(model, x, y, eps, generator=torch.Generator().manual_seed(0)).success
    t_full = time.perf_counter() - start
    return {"aa": robust_aa, "full": robust_full, "both": robust_aa & robust_full, "t_aa": t_aa, "t_full": t_full}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--cases", nargs="*", default=list(DEFAULT_CASES), help="model:eps of the shipped digits")
    parser.add_argument("--variants", nargs="*", default=list(DEFAULT_VARIANTS),
                        help='"CE steps/targeted steps x targets", "+" = the adaptive plan')
    parser.add_argument("--n", type=int, default=360)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="append the Markdown section to this file")
    parser.add_argument("--cache", type=Path, default=None, help="keep the reference flags in this folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import torchattacks as ta

    data = load_dataset("digits", "test").subset(args.n)
    x, y = data.x, data.y
    header = ["| model, ε | AutoAttack-100 | our full | reference (both) |"
              + "".join(f" {v}: max / mean above, s |" for v in args.variants)]
    rows = []
    for case in args.cases:
        name, eps_text = case.split(":")
        eps = float(eps_text)
        model = load_checkpoint(ROOT / "assets" / "models" / f"digits-smallcnn-{name}.safetensors")[0].eval()
        ref = reference(ta, model, x, y, eps, args.cache)
        cells = [f"{name} {eps:g}", f"{int(ref['aa'].sum())} ({ref['t_aa']:.0f} s)",
                 f"{int(ref['full'].sum())} ({ref['t_full']:.0f} s)", str(int(ref["both"].sum()))]
        for text in args.variants:
            variant = parse_variant(text)
            above, times = [], []
            for seed in range(args.seeds):
                start = time.perf_counter()
                robust = run_variant(model, x, y, eps, seed, variant)
                times.append(time.perf_counter() - start)
                above.append(int(robust.sum()) - int(ref["both"].sum()))
            cells.append(f"{max(above):+d} / {statistics.mean(above):+.2f}, {statistics.median(times):.2f}")
            print(case, text, above, [round(t, 2) for t in times], flush=True)
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    lines = [f"### Quick-ensemble variants vs AutoAttack at paper strength (issue 4) — "
             f"`python bench/bench_quick_variants.py --seeds {args.seeds} --threads {args.threads}`, "
             f"torch {torch.__version__}", "",
             f"Robust points out of {args.n} (digits test). 1 percentage point = {args.n / 100:g} points.", "",
             *header, "|" + "---|" * (4 + len(args.variants)), *rows, ""]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
