"""Attack targets of issue 4, measured against torchattacks 3.5.1 (the reference implementation) in the same run.

Usage: bash bench/reference_env.sh        # once: torchattacks into bench/.reference (git-ignored, --no-deps)
       python bench/bench_attacks.py [--quick] [--repeats 3] [--threads 1] [--out bench/RESULTS.md]

Shipped digits SmallCNNs (ERM, PGD-AT), first 360 test points as one batch; one JSON line per measurement on
stdout, a Markdown section at the end (appended to ``--out``). Timings: warm-up once, then best / median of repeats.
1. PGD ℓ∞ ε=0.1, 10 steps of 0.025, random start: throughput vs torchattacks.PGD (target ours ≥ 0.95× theirs).
2. DeepFool ℓ2 (50 steps, overshoot 0.02) vs torchattacks.DeepFool: time (target ≥ 10× faster), success on
   clean-correct points, median ℓ2 over points both fooled (target: equal success, ours ≤ theirs + 1 %).
3. APGD-CE (100 steps) and APGD-T (DLR, 3 targets) vs torchattacks.APGD / APGDT, ε = 0.1 and 0.2: robust accuracy
   difference and per-point agreement.
4. The quick ensemble vs torchattacks.AutoAttack (standard): wall time (target ≤ 3 s) and robust accuracy (target:
   never above by more than 1 point; below means quick broke more points). torchattacks builds its AutoAttack from
   members with their 10-step defaults; bench/bench_quick_variants.py compares with AutoAttack at paper strength.
5. Robustness curve on 16 ε: 16 PGD-10 runs (per_sample_table) vs one minimal-norm run (DeepFool ℓ∞, FMN ℓ∞)
   (target: time ≤ 0.5×, accuracy within 3 points at every ε).
torchattacks is never a project dependency: it is imported from bench/.reference only here.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "bench" / ".reference"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from attack_report import markdown  # noqa: E402
from common import emit, interleaved, paired_ratio  # noqa: E402

from core.attacks import ATTACKS, make_attack  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.evaluation.table import per_sample_table, summarize  # noqa: E402
from core.models import load_checkpoint  # noqa: E402

MODELS = ("erm", "pgd-at")
INSTALL = "bash bench/reference_env.sh"
FMN_STEPS = (100, 50)
QUICK_VARIANTS = ((50, 3), (25, 3), (25, 1), (10, 1))


def import_reference() -> Any:
    """torchattacks from bench/.reference (exit 2 with the install command when it is not there)."""
    if not (REFERENCE / "torchattacks").is_dir():
        print(f"error: torchattacks (the reference implementation) is not installed in "
              f"{REFERENCE.relative_to(ROOT)}/. Install it (bench-only, --no-deps) with:  {INSTALL}", file=sys.stderr)
        sys.exit(2)
    sys.path.insert(0, str(REFERENCE))
    try:
        import torchattacks
    except ModuleNotFoundError as exc:
        print(f"error: torchattacks is installed but needs the missing module {exc.name!r} (install it in .venv, "
              f"or re-run {INSTALL})", file=sys.stderr)
        sys.exit(2)
    return torchattacks


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    return {k: rounded(v) for k, v in value.items()} if isinstance(value, dict) else value


class Recorder:
    """One JSON line per measurement on stdout; keeps them for the Markdown section."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def __call__(self, measure: str, **fields: Any) -> dict[str, Any]:
        row = {"measure": measure, **{k: rounded(v) for k, v in fields.items()}}
        self.rows.append(row)
        emit([json.dumps(row)], None)
        return row


def timed(fn: Callable[[], Any], repeats: int, warmup: Callable[[], Any] | None = None) -> tuple[dict, Any]:
    (warmup or fn)()
    samples, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - start)
    return {"best_s": min(samples), "median_s": statistics.median(samples), "n": repeats}, out


@torch.no_grad()
def robust_flags(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x_adv).argmax(1) == y


def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def agreement(ours: torch.Tensor, theirs: torch.Tensor) -> dict[str, float]:
    return {"ours_acc": ours.float().mean().item(), "ref_acc": theirs.float().mean().item(),
            "diff_points": 100 * (ours.float().mean() - theirs.float().mean()).item(),
            "per_point_agreement": (ours == theirs).float().mean().item()}


def bench_pgd(rec: Recorder, ta: Any, models: dict, x: torch.Tensor, y: torch.Tensor, repeats: int) -> None:
    eps, steps, alpha = 0.1, 10, 0.025
    ours = make_attack("pgd", steps=steps, step_size=alpha)
    for name, model in models.items():
        theirs = ta.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
        t = interleaved({"ours": lambda: ours(model, x, y, eps, generator=gen()),
                         "ours_perturb": lambda: ours.perturb(model, x, y, eps, generator=gen()),
                         "ref": lambda: theirs(x, y),
                         # torchattacks returns images only: knowing which points it broke takes this forward pass,
                         # which our call includes (success re-predicted, as the Attack contract requires).
                         "ref_predict": lambda: robust_flags(model, theirs(x, y), y)}, repeats)
        acc = agreement(~ours(model, x, y, eps, generator=gen()).success, robust_flags(model, theirs(x, y), y))
        rec("pgd", model=name, eps=eps, ours_median_s=t["ours"]["median_s"], ref_median_s=t["ref"]["median_s"],
            perturb_median_s=t["ours_perturb"]["median_s"], ours_best_s=t["ours"]["best_s"],
            ref_best_s=t["ref"]["best_s"], repeats=repeats,
            ratio=paired_ratio(t, "ref", "ours"), ratio_perturb=paired_ratio(t, "ref", "ours_perturb"),
            ratio_same_work=paired_ratio(t, "ref_predict", "ours"),
            ratio_of_medians=t["ref"]["median_s"] / t["ours"]["median_s"],
            ours_acc=acc["ours_acc"], ref_acc=acc["ref_acc"], target=0.95,
            passed=paired_ratio(t, "ref", "ours") >= 0.95)


def bench_deepfool(rec: Recorder, ta: Any, models: dict, x: torch.Tensor, y: torch.Tensor, repeats: int,
                   ref_repeats: int) -> None:
    ours = make_attack("deepfool", norm="l2", steps=50, overshoot=0.02)
    for name, model in models.items():
        theirs = ta.DeepFool(model, steps=50, overshoot=0.02)
        t_ours, res = timed(lambda: ours(model, x, y, 100.0), repeats)
        t_ref, x_ref = timed(lambda: theirs(x, y), ref_repeats, warmup=lambda: theirs(x[:8], y[:8]))
        model.zero_grad(set_to_none=True)  # its Jacobian uses .backward(), which also fills parameter gradients
        with torch.no_grad():
            correct = model(x).argmax(1) == y
            fooled_ref = correct & (model(x_ref).argmax(1) != y)
        fooled_ours = correct & res.success
        both = fooled_ours & fooled_ref
        l2_ours, l2_ref = res.norms["l2"], (x_ref - x).flatten(1).norm(dim=1)
        med_ours, med_ref = l2_ours[both].median().item(), l2_ref[both].median().item()
        rec("deepfool_l2", model=name, ours_median_s=t_ours["median_s"], ref_median_s=t_ref["median_s"],
            ours_best_s=t_ours["best_s"], ref_best_s=t_ref["best_s"], ref_repeats=ref_repeats,
            speedup=t_ref["median_s"] / t_ours["median_s"], clean_correct=int(correct.sum()),
            ours_success=fooled_ours.sum().item() / correct.sum().item(),
            ref_success=fooled_ref.sum().item() / correct.sum().item(), both_fooled=int(both.sum()),
            ours_median_l2=med_ours, ref_median_l2=med_ref, l2_ratio=med_ours / med_ref,
            ours_median_l2_own=l2_ours[fooled_ours].median().item(),
            ref_median_l2_own=l2_ref[fooled_ref].median().item(),
            passed=t_ref["median_s"] / t_ours["median_s"] >= 10 and bool(fooled_ours.sum() >= fooled_ref.sum())
            and med_ours <= 1.01 * med_ref)


def bench_apgd(rec: Recorder, ta: Any, models: dict, x: torch.Tensor, y: torch.Tensor) -> None:
    for name, model in models.items():
        for eps in (0.1, 0.2):
            pairs = {
                "apgd-ce": (make_attack("apgd", steps=100, loss="ce"),
                            ta.APGD(model, norm="Linf", eps=eps, steps=100, loss="ce", n_restarts=1, seed=0)),
                "apgd-t (ref 9 targets)": (make_attack("apgd", steps=100, loss="dlr", targets=3),
                                           ta.APGDT(model, norm="Linf", eps=eps, steps=100, n_classes=10,
                                                    n_restarts=1, seed=0)),
                # APGDT attacks the n_classes − 1 most likely other classes: n_classes=4 is our 3 targets.
                "apgd-t (ref 3 targets)": (make_attack("apgd", steps=100, loss="dlr", targets=3),
                                           ta.APGDT(model, norm="Linf", eps=eps, steps=100, n_classes=4,
                                                    n_restarts=1, seed=0)),
            }
            for label, (ours, theirs) in pairs.items():
                start = time.perf_counter()
                r_ours = ~ours(model, x, y, eps, generator=gen()).success
                t_ours = time.perf_counter() - start
                start = time.perf_counter()
                x_ref = theirs(x, y)
                t_ref = time.perf_counter() - start
                rec("apgd", model=name, eps=eps, attack=label, ours_s=t_ours, ref_s=t_ref,
                    ref_max_linf=(x_ref - x).abs().amax().item(),
                    **agreement(r_ours, robust_flags(model, x_ref, y)))


class ForwardMeter:
    """Forward hooks on a model: calls, rows and seconds with / without grad, and rows spent on points already
    broken earlier in the run (a row is matched to its clean point by ℓ∞ distance, within ε)."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x_flat, self.y = x.flatten(1), y
        self.broken = torch.zeros(len(x), dtype=torch.bool)
        self.stats = {kind: {"calls": 0, "rows": 0, "seconds": 0.0, "rows_on_broken": 0}
                      for kind in ("grad", "no_grad")}
        self.overhead = 0.0  # the matching itself, subtracted from the run's wall time
        self.handles = [model.register_forward_pre_hook(self._pre), model.register_forward_hook(self._post)]

    def _pre(self, module: Any, inputs: Any) -> None:
        self._start = time.perf_counter()

    def _post(self, module: Any, inputs: Any, output: torch.Tensor) -> None:
        end = time.perf_counter()
        seconds = end - self._start
        stats = self.stats["grad" if torch.is_grad_enabled() else "no_grad"]
        with torch.no_grad():
            ids = torch.cdist(inputs[0].detach().flatten(1), self.x_flat, p=float("inf")).argmin(1)
            stats["rows_on_broken"] += int(self.broken[ids].sum())
            self.broken[ids[output.argmax(1) != self.y[ids]]] = True
        stats["calls"] += 1
        stats["rows"] += len(ids)
        stats["seconds"] += seconds
        self.overhead += time.perf_counter() - end

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def profile_quick(rec: Recorder, model: torch.nn.Module, name: str, eps: float, x: torch.Tensor,
                  y: torch.Tensor) -> None:
    quick = make_attack("quick")
    meter = ForwardMeter(model, x, y)
    start = time.perf_counter()
    quick(model, x, y, eps, generator=gen())
    total = time.perf_counter() - start - meter.overhead
    meter.close()
    profiler = cProfile.Profile()
    profiler.runcall(lambda: quick(model, x, y, eps, generator=gen()))
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    backward = sum(v[3] for k, v in stats.items() if "run_backward' of" in k[2])  # the C engine call only
    prof_total = max(v[3] for v in stats.values())
    top = sorted(((v[2], fn_label(k)) for k, v in stats.items()), reverse=True)[:6]
    grad, nograd = meter.stats["grad"], meter.stats["no_grad"]
    rec("quick_profile", model=name, eps=eps, total_s=total, forward_grad_s=grad["seconds"],
        forward_grad_rows=grad["rows"], forward_grad_calls=grad["calls"],
        grad_rows_on_broken=grad["rows_on_broken"] / max(grad["rows"], 1),
        forward_nograd_s=nograd["seconds"], forward_nograd_rows=nograd["rows"], forward_nograd_calls=nograd["calls"],
        profiled_s=prof_total, backward_share=backward / prof_total,
        top_tottime=[f"{fn} {s / prof_total:.0%}" for s, fn in top])


def fn_label(key: tuple[str, int, str]) -> str:
    """A readable name for a cProfile entry: torch.conv2d, run_backward, apgd.py:_run."""
    file, _, func = key
    if file != "~":
        return f"{Path(file).name}:{func}"
    if "run_backward' of" in func:
        return "autograd run_backward"
    return func.removeprefix("<built-in method ").removesuffix(">")


def time_members(autoattack: Any) -> dict[str, float]:
    """Seconds per member of a torchattacks AutoAttack, by wrapping each member instance's forward."""
    seconds: dict[str, float] = {}
    for member in autoattack._autoattack.attacks:
        def forward(images: torch.Tensor, labels: torch.Tensor, _inner: Any = member.forward,
                    _name: str = member.attack) -> torch.Tensor:
            start = time.perf_counter()
            out = _inner(images, labels)
            seconds[_name] = seconds.get(_name, 0.0) + time.perf_counter() - start
            return out
        member.forward = forward
    return seconds


def bench_quick(rec: Recorder, ta: Any, models: dict, x: torch.Tensor, y: torch.Tensor, repeats: int,
                profile: bool) -> None:
    quick = make_attack("quick")
    pgd10 = make_attack("pgd", steps=10)
    for name, eps in (("erm", 0.1), ("pgd-at", 0.1), ("pgd-at", 0.2)):
        model = models[name]
        t_pgd, _ = timed(lambda: pgd10(model, x, y, eps, generator=gen()), repeats)
        t_quick, res = timed(lambda: quick(model, x, y, eps, generator=gen()), repeats,
                             warmup=lambda: quick(model, x[:32], y[:32], eps, generator=gen()))
        aa = ta.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
        members = time_members(aa)
        start = time.perf_counter()
        x_aa = aa(x, y)
        t_aa = time.perf_counter() - start
        ours, theirs = ~res.success, robust_flags(model, x_aa, y)
        agree = agreement(ours, theirs)
        rec("quick_vs_autoattack", model=name, eps=eps, quick_median_s=t_quick["median_s"],
            quick_best_s=t_quick["best_s"], pgd10_median_s=t_pgd["median_s"],
            quick_over_pgd10=t_quick["median_s"] / t_pgd["median_s"], autoattack_s=t_aa,
            autoattack_over_quick=t_aa / t_quick["median_s"], autoattack_members_s=members, **agree,
            only_aa_breaks=int((ours & ~theirs).sum()), only_quick_breaks=int((~ours & theirs).sum()),
            time_passed=t_quick["median_s"] <= 3.0,
            acc_passed=agree["diff_points"] <= 1.0 + 1e-9)
        if profile and t_quick["median_s"] > 3.0:
            profile_quick(rec, model, name, eps, x, y)
            for steps, targets in QUICK_VARIANTS:
                start = time.perf_counter()
                robust = ~make_attack("quick", steps=steps, targets=targets)(model, x, y, eps, generator=gen()).success
                seconds = time.perf_counter() - start
                rec("quick_variant", model=name, eps=eps, steps=steps, targets=targets, seconds=seconds,
                    over_pgd10=seconds / t_pgd["median_s"], acc=robust.float().mean().item(),
                    diff_vs_autoattack_points=100 * (robust.float().mean() - theirs.float().mean()).item())


def minimal_norm_curve(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Any,
                       grid: list[float]) -> list[float]:
    """Robust accuracy at every ε from one minimal-norm run.

    A point is robust at ε iff it is clean-correct and the attack did not fool it or needed ‖δ‖∞ > ε.
    """
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    idx = torch.nonzero(correct).flatten()
    res = attack(model, x[idx], y[idx], 1.0)
    dist = torch.full((len(x),), -1.0)
    dist[idx] = torch.where(res.success, res.norms["linf"], torch.full_like(res.norms["linf"], float("inf")))
    return [(dist > eps).float().mean().item() for eps in grid]


def bench_curve(rec: Recorder, models: dict, data: Any, repeats: int) -> None:
    grid = torch.linspace(0.0125, 0.2, 16).tolist()
    x, y = data.x, data.y
    runs = {"deepfool-linf": make_attack("deepfool", norm="linf", steps=50)}
    if "fmn" in ATTACKS:
        runs.update({f"fmn-linf-{s}": make_attack("fmn", norm="linf", steps=s) for s in FMN_STEPS})
    pgd10 = make_attack("pgd", steps=10)
    for name, model in models.items():
        t_pgd, table = timed(lambda: per_sample_table(model, data, pgd10, grid, batch_size=len(data)), repeats,
                             warmup=lambda: pgd10(model, x, y, 0.1, generator=gen()))
        acc_pgd = [summarize(table, eps)["robust_acc"] for eps in grid]
        rec("curve_pgd10", model=name, median_s=t_pgd["median_s"], best_s=t_pgd["best_s"], eps=grid, acc=acc_pgd)
        for label, attack in runs.items():
            t_min, acc = timed(lambda: minimal_norm_curve(model, x, y, attack, grid), repeats)
            diffs = [100 * (a - b) for a, b in zip(acc, acc_pgd)]
            ratio = t_min["median_s"] / t_pgd["median_s"]
            max_diff = max(abs(d) for d in diffs)
            rec("curve_minimal_norm", model=name, attack=label, median_s=t_min["median_s"], best_s=t_min["best_s"],
                time_over_pgd16=ratio, max_abs_diff_points=max_diff, acc=acc, diff_points=[round(d, 2) for d in diffs],
                passed=ratio <= 0.5 and max_diff <= 3.0)
    if "fmn" not in ATTACKS:
        rec("curve_minimal_norm", attack="fmn", skipped="core/attacks/fmn.py is not registered in this tree")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 48 points, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after the warm-up (≥ 3 for figures)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: with 2 shared cores, 2 OpenMP threads stall on every small op)")
    parser.add_argument("--only", nargs="*", default=["pgd", "deepfool", "apgd", "quick", "curve"],
                        choices=["pgd", "deepfool", "apgd", "quick", "curve"])
    parser.add_argument("--no-profile", action="store_true", help="skip profiling the quick ensemble")
    parser.add_argument("--out", type=Path, default=None, help="append the Markdown section to this file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be ≥ 1")
    ta = import_reference()
    torch.set_num_threads(args.threads)
    args.n = 48 if args.quick else 360
    repeats = 1 if args.quick else args.repeats
    rec = Recorder()
    rec("reference", torchattacks=ta.__version__, torch=torch.__version__, path=str(REFERENCE.relative_to(ROOT)),
        threads=torch.get_num_threads(), n=args.n, repeats=repeats, fmn_present="fmn" in ATTACKS)
    data = load_dataset("digits", "test").subset(args.n)
    x, y = data.x, data.y
    models = {m: load_checkpoint(ROOT / "assets" / "models" / f"digits-smallcnn-{m}.safetensors")[0] for m in MODELS}
    start = time.perf_counter()
    if "pgd" in args.only:
        bench_pgd(rec, ta, models, x, y, max(5 * repeats, 3))
    if "deepfool" in args.only:
        bench_deepfool(rec, ta, models, x, y, repeats, repeats)
    if "apgd" in args.only:
        bench_apgd(rec, ta, models, x, y)
    if "quick" in args.only:
        bench_quick(rec, ta, models, x, y, repeats, not args.no_profile)
    if "curve" in args.only:
        bench_curve(rec, models, data, repeats)
    emit(markdown(rec.rows, args, ta.__version__, time.perf_counter() - start, INSTALL), args.out)


if __name__ == "__main__":
    main()
