"""Argument parsing and dispatch for ``python -m core``. Imports nothing heavy at module level."""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import sys
from typing import Any, Sequence

from core.evaluation.protocol import HEADLINE_N, HEADLINE_STEPS
from core.store.registry import MAX_NAME as MAX_RUN_NAME

EXIT_USAGE = 2
METHODS = ("erm", "fgsm-rs", "n-fgsm", "pgd-at", "trades", "mart", "dale", "dale-kl")
SCHEDULES = ("constant", "cosine", "onecycle", "step")
EVAL_ATTACKS = ("fgsm", "pgd", "tpgd", "apgd", "deepfool", "cw", "fmn", "square", "quick", "full")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (no usage dump) and exits with code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_USAGE)


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be finite (not NaN or inf)")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be ≥ 0")
    return value + 0.0  # -0 is 0: one run id, and "ε=0" rather than "ε=-0" in what is printed


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be ≥ 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be ≥ 0")
    return value


def display_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a name must not be blank")
    return text


def float_list(text: str) -> tuple[float, ...]:
    """``1,2,0.5`` → (1.0, 2.0, 0.5); the engine checks the values (positive, one per class)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def key_value(text: str) -> tuple[str, Any]:
    """``key=value`` with value parsed as JSON when it can be (numbers, booleans, lists), else a string."""
    import json

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model (resumes the same config if interrupted)")
    p.add_argument("--dataset", default="digits", help="dataset name (see `data list`); default digits")
    p.add_argument("--param", type=key_value, action="append", default=None, metavar="KEY=VALUE",
                   help="dataset parameter, repeatable (e.g. --param n=2000)")
    p.add_argument("--arch", default="smallcnn", help="architecture; default smallcnn")
    p.add_argument("--arch-kwarg", type=key_value, action="append", default=None, metavar="KEY=VALUE",
                   help="architecture keyword argument, repeatable (e.g. --arch-kwarg hidden=[128,128])")
    p.add_argument("--method", choices=METHODS, default="erm",
                   help="training method: erm is plain training, the others adversarial (default erm)")
    p.add_argument("--norm", choices=("linf", "l2", "l2patch"), default="linf",
                   help="threat model; l2patch = ℓ2 ball per patch (patches data)")
    p.add_argument("--eps", type=non_negative_float, default=0.1, help="radius in [0,1] input units")
    p.add_argument("--attack-steps", type=positive_int, default=10,
                   help="steps of the training attack (pgd-at, trades, mart, dale); default 10")
    p.add_argument("--attack-step-size", type=positive_float, default=None, help="default 2.5·eps/steps")
    p.add_argument("--trades-beta", type=non_negative_float, default=6.0,
                   help="TRADES: weight of the robustness (KL) term; default 6")
    p.add_argument("--mart-beta", type=non_negative_float, default=5.0,
                   help="MART: weight of the misclassification-aware KL term; default 5")
    p.add_argument("--dale-noise", choices=("laplacian", "gaussian"), default="laplacian",
                   help="DALE: Langevin noise inside (laplacian) or outside (gaussian) the sign")
    p.add_argument("--dale-noise-scale", type=float, default=1e-3, help="DALE: noise scale c (≥ 0)")
    p.add_argument("--dale-rho", type=float, default=0.1, help="DALE: bound ρ on the clean loss (> 0)")
    p.add_argument("--dale-nu", type=float, default=1.0, help="DALE: initial ν (kept fixed when --dale-dual-lr 0)")
    p.add_argument("--dale-dual-lr", type=float, default=1e-3, help="DALE: dual step η_d")
    p.add_argument("--class-weighting", choices=("none", "fixed", "adaptive"), default="none",
                   help="per-class loss weights: fixed (--class-weights) or adaptive (following per-class "
                        "robustness; not with erm); default none")
    p.add_argument("--class-weights", type=float_list, default=(), metavar="W0,W1,…",
                   help="one positive weight per class (with --class-weighting fixed)")
    p.add_argument("--class-weight-strength", type=float, default=0.5, help="adaptive weighting strength in [0,1]")
    p.add_argument("--epochs", type=positive_int, default=10, help="training epochs; default 10")
    p.add_argument("--batch-size", type=positive_int, default=128, help="training batch size; default 128")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="optimizer; default sgd")
    p.add_argument("--lr", type=positive_float, default=0.05, help="peak learning rate; default 0.05")
    p.add_argument("--momentum", type=non_negative_float, default=0.9, help="SGD momentum; default 0.9")
    p.add_argument("--weight-decay", type=non_negative_float, default=5e-4, help="weight decay; default 5e-4")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                   help="learning-rate schedule over the epochs; default cosine")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="random seed (initialisation, batches, attacks); part of the run id; default 0")
    p.add_argument("--eval-n", type=non_negative_int, default=256, help="held-out points for the PGD check")
    p.add_argument("--eval-steps", type=positive_int, default=10,
                   help="PGD steps of the per-epoch check; default 10")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]; under torchrun one GPU per process")
    p.add_argument("--config", default=None, metavar="FILE.json",
                   help="the whole training config as JSON (as a run's config.json); the other options are ignored")
    p.add_argument("--recipe", default=None, help="start from a named recipe (cifar10-fgsm-rs, cifar10-pgd-at); "
                   "flags given beside it override its values")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 autocast; fp16 on GPUs without bf16)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory layout (faster convs on GPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step's model")
    p.add_argument("--name", default="", help="display name of the run")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_eval(sub: Any) -> None:
    p = sub.add_parser("eval", help="clean and robust accuracy of a checkpoint or run")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="path to NAME.safetensors (with NAME.json beside it)")
    src.add_argument("--run", help="run id from `python -m core runs`")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's own dataset")
    p.add_argument("--split", choices=("train", "test"), default="test", help="which split to attack; default test")
    p.add_argument("--attack", choices=EVAL_ATTACKS, default="pgd",
                   help="quick = APGD-CE then targeted APGD-DLR on points still robust; full = APGD-CE, APGD-T "
                        "(9 targets), FMN and (linf) Square, the same way (both: worst case per point); deepfool, "
                        "cw (l2 only) and fmn are minimal-norm, capped at --eps; square = black-box, linf only")
    p.add_argument("--eps", type=non_negative_float, default=None,
                   help="radius in [0,1] input units (default: the checkpoint's own ε, else 0.1)")
    p.add_argument("--norm", choices=("linf", "l2", "l2patch"), default=None,
                   help="threat model (default: l2 for cw, else the checkpoint's own, else linf)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="iterations (default 20 for pgd/tpgd/apgd; 50 for quick's APGD-CE, whose 5 targeted runs "
                        "take 20 each, more targets and restarts where APGD-CE leaves few points; 50 for "
                        "deepfool; 100 for fmn, full, and cw per search step; not for fgsm or square)")
    p.add_argument("--queries", type=positive_int, default=None,
                   help="Square's query budget (default 1000 for square, 5000 inside full)")
    p.add_argument("--target", type=non_negative_int, default=None, metavar="CLASS",
                   help="targeted pgd/tpgd toward CLASS; points of that class are left out (and counted)")
    p.add_argument("--step-size", type=positive_float, default=None, help="pgd/tpgd step (default 2.5·eps/steps)")
    p.add_argument("--restarts", type=positive_int, default=None, help="random restarts of pgd/tpgd (default 1)")
    p.add_argument("--temperature", type=positive_float, default=None, help="T for tpgd (default 1: PGD)")
    p.add_argument("--n", type=positive_int, default=None, help="first N points of the split (default all)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the attack's random starts; default 0")
    p.add_argument("--batch-size", type=positive_int, default=256, help="points attacked at once; default 256")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]; under torchrun one GPU per process")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="autocast dtype of the attack's passes (success is always checked in fp32); with --trust a "
                        "check compares it with fp32")
    p.add_argument("--table", default=None, metavar="FILE.csv|FILE.parquet",
                   help="also write the per-sample table (one row per point) to this file")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--trust", action="store_true",
                   help="also run the gradient-masking trust checks (red/amber/green) on the first 150 points")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_misc(sub: Any) -> None:
    runs = sub.add_parser("runs", help="list, show, import, rename or delete runs").add_subparsers(dest="action")
    lst = runs.add_parser("list", help="list runs (the default)")
    lst.add_argument("--dataset", default=None, help="only the runs of this dataset")
    lst.add_argument("--json", action="store_true", help="print the runs as one JSON list")
    show = runs.add_parser("show", help="one run with its per-epoch metrics")
    show.add_argument("run_id", help="run id from `python -m core runs`")
    show.add_argument("--json", action="store_true", help="print the run as one line of JSON (default: indented)")
    imp = runs.add_parser("import", help="register a checkpoint from disk as the hub's Import does (same checks, "
                          "run id and measurement), for files up to 4 GiB")
    imp.add_argument("weights", metavar="PATH.safetensors", help="the weights file")
    imp.add_argument("--meta", default=None, metavar="PATH.json",
                     help="the metadata file (default: the .json of the same name beside the weights)")
    imp.add_argument("--name", type=display_name, default=None,
                     help="display name (default: the .json file's \"name\", else \"imported ARCH\")")
    imp.add_argument("--no-measure", action="store_true",
                     help="keep the .json file's accuracy (shown as reported) instead of measuring clean accuracy on "
                          f"the test split and PGD-{HEADLINE_STEPS} at the model's ε (up to {HEADLINE_N} points); "
                          "the model is still checked against its dataset")
    imp.add_argument("--device", default="auto", help="where to measure: auto, cpu or cuda[:N] (default auto)")
    imp.add_argument("--json", action="store_true", help="print the registered run as one JSON object")
    ren = runs.add_parser("rename", help="give a run another display name (not shipped models)")
    ren.add_argument("run_id", help="run id from `python -m core runs`")
    ren.add_argument("name", help="the new display name (unique among the models of the run's dataset, at most "
                     f"{MAX_RUN_NAME} characters; quote it if it has spaces)")
    dele = runs.add_parser("delete", help="delete a run and its folder (not shipped models)")
    dele.add_argument("run_id", help="run id from `python -m core runs`")
    data = sub.add_parser("data", help="datasets: list, download, verify").add_subparsers(dest="action",
                                                                                          required=True)
    dl = data.add_parser("list", help="the dataset registry")
    dl.add_argument("--json", action="store_true", help="print the datasets as one JSON list")
    for name, text in (("download", "fetch the standard files (needs a network)"),
                       ("verify", "check the files on disk and their checksums")):
        cmd = data.add_parser(name, help=text)
        cmd.add_argument("name", help="dataset name (see `python -m core data list`)")
        cmd.add_argument("--json", action="store_true", help="print the result as one JSON object")
    jobs = sub.add_parser("jobs", help="background jobs: list, cancel (and run, used by the dashboard)")
    jobs_sub = jobs.add_subparsers(dest="action", required=True)
    jl = jobs_sub.add_parser("list", help="recent jobs with status and progress")
    jl.add_argument("--json", action="store_true", help="print the jobs as one JSON list")
    jc = jobs_sub.add_parser("cancel", help="stop a job after its current batch (its last epoch is kept)")
    jc.add_argument("job_id", help="job id from `python -m core jobs list`")
    jsub = jobs_sub.add_parser("submit-train", help="queue a training job from a JSON config (as the dashboard does)")
    jsub.add_argument("config_json", help='e.g. \'{"dataset": "digits", "method": "pgd-at", "epochs": 5}\'')
    jr = jobs_sub.add_parser("run", help="run a queued job in this process (the dashboard starts these)")
    jr.add_argument("job_id", help="id of a queued job (as printed by submit-train)")
    plugins = sub.add_parser("plugins", help="the ATLAS_PLUGINS modules, their architectures and errors "
                             "(exit code 1 when one failed)")
    plugins.add_argument("--json", action="store_true", help="print the plugins as one JSON list")
    bd = sub.add_parser("build-defaults", help="retrain the shipped models into assets/models and write their "
                        "Robustness-page evaluations into assets/evaluations and Latent-page maps into assets/latent")
    bd.add_argument("--only", action="append", default=None, help="build only this default (repeatable)")
    bd.add_argument("--out", default=None, help="output folder (default assets/models)")
    bd.add_argument("--json", action="store_true", help="print what was built as one JSON object")
    bd.add_argument("--evaluations-only", action="store_true",
                    help="only recompute what is shipped beside the models: the Robustness page's default "
                    "evaluations (assets/evaluations) and the Latent page's first maps (assets/latent)")
    bd.add_argument("--metrics-only", action="store_true",
                    help="only measure the shipped trained models again (PGD-20, as every model in the hub) and "
                    "write the figures into their .json files; the weights are not touched")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m core", description="Robustness Atlas engine: train, evaluate and "
                           "manage adversarially robust models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _add_train(sub)
    _add_eval(sub)
    _add_misc(sub)
    return parser


COMMANDS = {"train": "core.cli.train_cmd", "eval": "core.cli.eval_cmd", "runs": "core.cli.misc_cmd",
            "data": "core.cli.misc_cmd", "build-defaults": "core.cli.misc_cmd", "jobs": "core.cli.jobs_cmd",
            "plugins": "core.cli.misc_cmd"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from core.errors import AtlasError
    from core.runtime import tune_allocator

    tune_allocator()
    module = importlib.import_module(COMMANDS[args.command])

    try:
        return int(module.run(args) or 0)
    except AtlasError as exc:
        # Under torchrun every rank may raise the same error: rank 0 says it plainly, the others name themselves.
        rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
        prefix = "" if rank == "0" else f"[rank {rank}] "
        sys.stderr.write(f"{prefix}python -m core {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        # `python -m core runs | head` closed the pipe: not an error of ours.
        sys.stderr.close()
        return 0
