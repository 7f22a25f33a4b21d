"""The CLI as a user runs it: exit codes, one-line errors, JSON output, SIGKILL recovery.

Most tests call ``core.cli.parser.main`` in this process (the code ``python -m core`` runs after start-up: argument
parsing, the command, the one-line error handler), which saves the 4-5 s torch import of a fresh interpreter per
call. Real ``python -m core`` subprocesses remain where the process is the fact under test: the exit status and the
stderr/stdout of the interpreter itself (test_python_m_core_exits_2_with_one_line_and_no_traceback) and the
process killed by SIGKILL (test_sigkill_mid_epoch_leaves_a_resumable_run; this process then resumes its run)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

from core.cli.parser import main
from core.models import load_checkpoint
from core.store import Registry

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["train", "--dataset", "digits", "--method", "pgd-at", "--attack-steps", "3", "--batch-size", "64",
         "--eval-n", "64", "--eval-steps", "3", "--schedule", "onecycle"]
BAD_INPUT = [
    (["eval", "--checkpoint", "x", "--eps", "-1"], "must be ≥ 0"),
    (["eval", "--checkpoint", "x", "--eps", "nan"], "finite"),
    (["eval", "--checkpoint", "x", "--steps", "0"], "must be ≥ 1"),
    (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "--method", "magic"], "invalid choice"),
    (["train", "--epochs", "-3"], "must be ≥ 1"),
    (["eval", "--checkpoint", "missing.safetensors"], "missing.safetensors"),
    (["data", "verify", "nope"], "unknown dataset"),
    (["runs", "show", "nope"], "no run with id 'nope'"),
    (["eval", "--checkpoint", "x", "--attack", "square", "--norm", "l2"], "Square is implemented for norm 'linf' only"),
    (["eval", "--checkpoint", "x", "--attack", "cw", "--norm", "linf"], "norm must be 'l2'"),
    (["eval", "--checkpoint", "x", "--attack", "apgd", "--target", "3"], "--target applies to pgd, tpgd only"),
    (["eval", "--checkpoint", "x", "--attack", "fgsm", "--steps", "5"], "--steps applies to pgd, tpgd, apgd"),
    (["eval", "--checkpoint", "x", "--attack", "pgd", "--queries", "50"], "--queries applies to square, full only"),
    (["eval", "--checkpoint", "x", "--attack", "apgd", "--restarts", "2"], "--restarts applies to pgd, tpgd only"),
    (["eval", "--checkpoint", "x", "--attack", "pgd", "--temperature", "2"], "--temperature applies to tpgd only"),
    (["eval", "--checkpoint", "x", "--attack", "full", "--norm", "l2", "--queries", "50"], "Square for linf only"),
    (["eval", "--checkpoint", "x", "--target", "-1"], "'-1' must be ≥ 0"),
    (["train", "--seed", "1.5"], "'1.5' is not an integer"),
]
BAD_INPUT_IDS = ["neg-eps", "nan-eps", "zero-steps", "unknown-dataset", "bad-method", "neg-epochs", "missing-ckpt",
                 "verify-unknown", "unknown-run", "square-l2", "cw-linf", "target-not-pgd", "steps-not-fgsm",
                 "queries-not-pgd", "restarts-not-apgd", "temperature-not-pgd", "queries-full-l2", "neg-target",
                 "fractional-seed"]

Cli = Callable[[list[str]], subprocess.CompletedProcess]


def subprocess_cli(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """A real ``python -m core ARGS`` process."""
    return subprocess.run([sys.executable, "-m", "core", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _exit_status(code: object) -> int:
    """The process exit status ``sys.exit(code)`` gives: None → 0, an int as is, anything else is printed to stderr
    and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``python -m core ARGS`` in this process, answered like ``subprocess.run``: returncode, stdout, stderr.

    As in a fresh interpreter started by :func:`subprocess_cli`: cwd is the repo root, torch uses one thread
    (OMP_NUM_THREADS=1), the root logger has no handlers so ``logging.basicConfig`` in ``main`` writes to (the
    captured) stderr. ATLAS_HOME is the per-test folder set by the autouse ``atlas_home`` fixture. What a call
    changes in this process is put back after it: SIGTERM/SIGINT handlers (StopOnSignal), the root logger, torch's
    thread count. torchrun's variables are removed so no call starts a process group (which could not be undone).
    An uncaught exception propagates and fails the test (a subprocess would print a traceback)."""
    monkeypatch.chdir(ROOT)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)

    def call(args: list[str]) -> subprocess.CompletedProcess:
        capsys.readouterr()
        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        saved_threads = torch.get_num_threads()
        root.handlers = []
        root.setLevel(logging.WARNING)
        torch.set_num_threads(1)
        try:
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = _exit_status(exc.code)
            out, err = capsys.readouterr()
        finally:
            for handler in root.handlers:
                if handler not in saved_handlers:
                    handler.close()
            root.handlers = saved_handlers
            root.setLevel(saved_level)
            for sig, handler in saved_signals.items():
                signal.signal(sig, handler)
            torch.set_num_threads(saved_threads)
        return subprocess.CompletedProcess(["python", "-m", "core", *args], int(code), out, err)

    return call


@pytest.mark.parametrize("args,match", BAD_INPUT, ids=BAD_INPUT_IDS)
def test_bad_input_gives_one_line_and_exit_2(args: list[str], match: str, cli: Cli) -> None:
    out = cli(args)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and match in lines[0], out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args,match", [BAD_INPUT[0], BAD_INPUT[6]], ids=["argparse-error", "error-after-torch-import"])
def test_python_m_core_exits_2_with_one_line_and_no_traceback(args: list[str], match: str,
                                                             subprocess_env: dict) -> None:
    """The interpreter itself: exit status 2 and one stderr line from an argparse error (SystemExit inside main) and
    from an engine error after eval's heavy imports (main's return value through sys.exit); nothing on stdout, so
    import-time output cannot spoil --json."""
    out = subprocess_cli(args, subprocess_env)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and match in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == "", out.stdout


def test_eval_json_on_a_trained_checkpoint(cli: Cli) -> None:
    trained = cli([*TRAIN, "--epochs", "2", "--json"])
    assert trained.returncode == 0, trained.stderr
    run = json.loads(trained.stdout)
    out = cli(["eval", "--checkpoint", run["checkpoint"], "--attack", "pgd", "--eps", "0.1", "--steps", "5",
               "--n", "40", "--json"])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["n"] == 40 and result["dataset"] == "digits" and result["attack"] == "pgd"
    assert 0 <= result["robust_acc"] <= result["clean_acc"] <= 1
    by_run_out = cli(["eval", "--run", run["run_id"], "--eps", "0", "--n", "40", "--json"])
    assert by_run_out.returncode == 0, by_run_out.stderr
    by_run = json.loads(by_run_out.stdout)
    assert by_run["robust_acc"] == by_run["clean_acc"] == result["clean_acc"]
    listing = json.loads(cli(["runs", "list", "--json"]).stdout)
    assert run["run_id"] in {r["id"] for r in listing}


def test_minus_zero_eps_is_zero() -> None:
    """`--eps -0` once made a second run of the same model (its own id) and printed "ε=-0"."""
    from core.cli.parser import non_negative_float
    from core.training import TrainConfig, run_id_for

    assert str(non_negative_float("-0")) == "0.0"
    assert run_id_for(TrainConfig(eps=-0.0)) == run_id_for(TrainConfig(eps=0.0))
    assert str(TrainConfig(eps=-0.0).eps) == "0.0"


def test_train_summary_says_what_is_not_measured_instead_of_nan() -> None:
    from core.cli.train_cmd import summary
    from core.training import TrainConfig

    line = summary("abc", "completed", 2, {"clean_acc": 0.9}, "/x/ckpt.safetensors", TrainConfig(eps=0.0))
    assert line == "run abc: completed after 2 epoch(s); clean 0.9000, no robust accuracy (ε = 0); checkpoint " \
                   "/x/ckpt.safetensors"
    early = summary("abc", "cancelled", 0, {}, None, TrainConfig())
    assert early == "run abc: cancelled before its first epoch finished; nothing was saved"
    both = summary("abc", "cancelled", 1, {"clean_acc": 0.5, "robust_acc": 0.25}, "c", TrainConfig())
    assert "nan" not in both and "None" not in both and "robust 0.2500" in both


def test_runs_table_columns_line_up_for_long_ids(cli: Cli) -> None:
    """The shipped TRADES and DALE runs have ids longer than the 28 characters the table once allowed, which
    pushed their rows' columns right of the header's."""
    lines = cli(["runs", "list"]).stdout.splitlines()
    ids = [line.split()[0] for line in lines[1:]]
    assert max(len(i) for i in ids) > 28 and "shipped-digits-smallcnn-trades" in ids
    assert any("digits SmallCNN · TRADES" in line for line in lines), "the name column shows the runs' names"
    for column in ("name", "dataset", "method", "status", "created"):
        start = lines[0].index(column)
        for line in lines[1:]:
            assert line[start - 1] == " " and line[start] != " ", (column, line)


def test_data_list_and_verify(cli: Cli) -> None:
    listing = json.loads(cli(["data", "list", "--json"]).stdout)
    names = {row["name"] for row in listing}
    assert {"digits", "moons", "patches", "mnist", "cifar10", "svhn"} <= names
    missing = cli(["data", "verify", "mnist", "--json"])
    assert missing.returncode == 1 and json.loads(missing.stdout)["loads"] is False


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_sigkill_mid_epoch_leaves_a_resumable_run(atlas_home: Path, subprocess_env: dict, cli: Cli) -> None:
    args = [*TRAIN, "--epochs", "4", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "core", *args], env=subprocess_env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        def first_epoch_done() -> bool:
            runs = Registry(atlas_home).list_runs()
            return bool(runs) and runs[0]["epochs_done"] >= 1

        wait_for(first_epoch_done, 240, "the first epoch")
        time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    reg = Registry(atlas_home)
    run = reg.list_runs()[0]
    assert run["status"] == "interrupted"
    done = run["epochs_done"]
    assert 1 <= done < 4
    assert [e["epoch"] for e in reg.epochs(run["id"])] == list(range(1, done + 1))
    ckpt = Path(run["run_dir"]) / "checkpoints" / f"epoch_{done:04d}.safetensors"
    load_checkpoint(ckpt)
    resumed = cli([*args, "--json"])  # another process (this one) picks the run up
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(resumed.stdout)
    assert final["run_id"] == run["id"] and final["status"] == "completed" and final["epochs_done"] == 4
    assert [e["epoch"] for e in reg.epochs(run["id"])] == [1, 2, 3, 4]


def test_ctrl_c_keeps_the_run_and_exits_130(atlas_home: Path, subprocess_env: dict) -> None:
    """Ctrl-C stops at a batch boundary and keeps the finished epochs, but the command did not finish what it was
    asked: it once exited 0, so `train && eval` carried on."""
    args = ["train", "--dataset", "digits", "--method", "erm", "--epochs", "50", "--eval-n", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "core", *args], env=subprocess_env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(r["epochs_done"] >= 1 for r in Registry(atlas_home).list_runs()), 240, "the first epoch")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    run = Registry(atlas_home).list_runs()[0]
    assert run["status"] == "cancelled" and 1 <= run["epochs_done"] < 50
    assert out.strip().startswith(f"run {run['id']}: cancelled after {run['epochs_done']} epoch(s); clean ")
    assert "no robust accuracy (--eval-n 0)" in out and "nan" not in out
    # The listing shows the stopped run's last finished epoch, and how far it got (it showed "-" for both), marked
    # as that epoch's check: it sat unmarked beside the other rows' final PGD-20 test figures.
    listed = subprocess.run([sys.executable, "-m", "core", "runs"], env=subprocess_env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith(run["id"])]
    last = Registry(atlas_home).epochs(run["id"])[-1]["metrics"]
    assert f"{last['clean_acc']:.3f}* " in line and f"cancelled {run['epochs_done']}/50" in line
    assert listed.stdout.splitlines()[-1].startswith("* an unfinished run's last epoch's check")
    (shipped,) = [row for row in listed.stdout.splitlines() if row.startswith("shipped-digits-smallcnn-erm ")]
    assert "*" not in shipped


def test_parser_choices_match_the_engine() -> None:
    from core.cli import parser
    from core.training import METHOD_NAMES, SCHEDULES

    assert tuple(parser.METHODS) == tuple(METHOD_NAMES)
    assert tuple(parser.SCHEDULES) == tuple(SCHEDULES)


def test_eval_on_a_mismatched_dataset_is_a_clear_error(cli: Cli) -> None:
    ckpt = ROOT / "assets" / "models" / "moons-mlp-erm.safetensors"
    out = cli(["eval", "--checkpoint", str(ckpt), "--dataset", "digits", "--n", "5"])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "2 classes but digits has 10" in out.stderr


def test_l2patch_on_images_is_refused_before_a_run_exists(atlas_home: Path, cli: Cli) -> None:
    out = cli(["train", "--dataset", "digits", "--norm", "l2patch", "--epochs", "1"])
    assert out.returncode == 2 and "l2patch threat model needs patch data" in out.stderr
    assert Registry(atlas_home).list_runs() == []


@pytest.mark.parametrize("attack", ["fgsm", "tpgd", "apgd", "deepfool", "quick"])
def test_eval_runs_every_attack_name(attack: str, cli: Cli) -> None:
    ckpt = ROOT / "assets" / "models" / "digits-smallcnn-erm.safetensors"
    steps = [] if attack == "fgsm" else ["--steps", "5"]  # one step by definition: --steps is refused
    out = cli(["eval", "--checkpoint", str(ckpt), "--attack", attack, "--eps", "0.1", *steps, "--n", "30", "--json"])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["attack"] == attack and result["n"] == 30
    assert 0 <= result["robust_acc"] <= result["clean_acc"] <= 1


def test_submit_train_refuses_a_dataset_without_files(atlas_home: Path, cli: Cli) -> None:
    out = cli(["jobs", "submit-train", '{"dataset": "mnist", "method": "erm", "epochs": 1}'])
    assert out.returncode == 2 and "mnist needs its files" in out.stderr
    listing = cli(["jobs", "list", "--json"])
    assert json.loads(listing.stdout) == []


def test_eval_uses_the_checkpoint_threat_model_and_refuses_eps_beyond_range(cli: Cli) -> None:
    ckpt = str(ROOT / "assets" / "models" / "moons-mlp-pgd-at.safetensors")
    out = cli(["eval", "--checkpoint", ckpt, "--n", "20", "--steps", "3", "--json"])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["eps"], result["norm"]) == (0.05, "linf")
    refused = cli(["eval", "--checkpoint", ckpt, "--eps", "5"])
    assert refused.returncode == 2 and "beyond the linf limit" in refused.stderr


ERM = str(ROOT / "assets" / "models" / "digits-smallcnn-erm.safetensors")


def test_eval_fmn_json(cli: Cli) -> None:
    out = cli(["eval", "--checkpoint", ERM, "--attack", "fmn", "--n", "20", "--json"])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["attack"] == "fmn" and result["n"] == 20 and result["steps"] == 100
    assert result["config"]["norm"] == result["norm"] == "linf"
    assert 0 <= result["robust_acc"] <= result["clean_acc"] <= 1


@pytest.mark.parametrize("attack,extra", [("cw", ["--steps", "5"]), ("square", ["--queries", "30"]),
                                          ("full", ["--steps", "3", "--queries", "20"])])
def test_eval_runs_the_new_attacks(attack: str, extra: list[str], cli: Cli) -> None:
    out = cli(["eval", "--checkpoint", ERM, "--attack", attack, "--n", "20", "--json", *extra])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["attack"] == attack and result["norm"] == ("l2" if attack == "cw" else "linf")
    assert 0 <= result["robust_acc"] <= result["clean_acc"] <= 1


def test_eval_target_leaves_out_the_target_class(cli: Cli) -> None:
    from core.data import load_dataset

    same = int((load_dataset("digits", "test").y[:40] == 3).sum())
    assert same > 0, "the first 40 test digits must include some 3s for this test to mean anything"
    out = cli(["eval", "--checkpoint", ERM, "--attack", "pgd", "--target", "3", "--eps", "0.3", "--steps", "5",
               "--n", "40", "--json"])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["target"], result["dropped"], result["n"]) == (3, same, 40 - same)
    assert "3" not in result["per_class_robust_acc"] and result["config"]["target"] == 3
    assert result["target_rate"] > 0.5
    text = cli(["eval", "--checkpoint", ERM, "--attack", "tpgd", "--target", "3", "--steps", "2", "--n", "40",
                "--quiet"])
    assert text.returncode == 0 and f"left out {same} points" in text.stdout
    refused = cli(["eval", "--checkpoint", ERM, "--attack", "pgd", "--target", "10", "--n", "5"])
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1 and "outside the 10 classes of digits" in lines[0]


def test_eval_reports_the_trust_checks_on_request(cli: Cli) -> None:
    ckpt = ROOT / "assets" / "models" / "digits-smallcnn-pgd-at.safetensors"
    out = cli(["eval", "--checkpoint", str(ckpt), "--attack", "pgd", "--steps", "5", "--n", "40", "--trust",
               "--json"])
    assert out.returncode == 0, out.stderr
    checks = json.loads(out.stdout)["trust"]
    assert {c["key"] for c in checks} >= {"gradients", "blackbox", "large_eps", "softmax"}
    assert all(c["status"] in ("green", "amber", "red") for c in checks)
    assert next(c for c in checks if c["key"] == "softmax")["status"] == "green"


def test_long_run_names_are_cut_in_the_middle_and_stay_apart() -> None:
    """Names of runs trained here end in what tells them apart; cut at 32 characters, two runs of different seeds
    both read "digits SmallCNN · ERM · 1 ep · …"."""
    from core.cli.misc_cmd import _short

    names = [f"digits SmallCNN · ERM · 1 ep · seed {s} · {'4256' if s == 1 else '4371'}" for s in (1, 2)]
    assert [_short(n, 56) for n in names] == names, "a trained run's usual name fits whole"
    long = [f"my favourite adversarially trained SmallCNN on digits, try {s} · {i}" for s, i in ((1, "a2e5"),
                                                                                              (2, "b3f6"))]
    cut = [_short(n, 56) for n in long]
    assert all(len(c) == 56 and "…" in c for c in cut)
    assert cut[0] != cut[1] and cut[0].startswith("my favourite") and cut[0].endswith("try 1 · a2e5"), cut
